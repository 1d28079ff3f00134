"""SAM-family torch optimizers that execute the very rule objects of ``convergence.methods``.

    x_{k+1} = x_k - t_k g_k,    g_k = grad f_S(x_k + rho_k d_k)

The rule (SAM, ASAM, USAM, Unified SAM, F-SAM, VaSSO, RSAM, DNSAM, m-SAM, ...) builds d_k and g_k from
a gradient oracle over this step's batch, exactly as in the numpy runner; the parameters are restored
to x_k and the wrapped base optimizer (SGD, ...) takes its step with g_k in ``p.grad``. Moving the
parameters to a perturbed point and back re-points ``p.data`` at other tensors (no copies, exact);
vector arithmetic is ``torch._foreach_*`` (ParamVec), so no Python loop over parameters does math.

    opt = SAMFamily(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, model=model)   # method="sam"
    def closure(inputs, targets):                 # forward + backward, no zero_grad needed
        loss = F.cross_entropy(model(inputs), targets); loss.backward(); return loss
    opt.step(closure, batch=(inputs, targets))   # batch: needed by m-SAM (it splits it); optional else

The widely used PyTorch SAM's loops run unchanged (its signature ``SAM(params, base_optimizer,
rho=0.05, adaptive=False, **kwargs)``, ``adaptive=True`` being ASAM):

    loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True)
    loss_fn(model(x), y).backward(); opt.second_step(zero_grad=True)
or
    loss_fn(model(x), y).backward(); opt.step(closure); opt.zero_grad()

In the second form ``step`` sees the gradients the backward left (new since the last step or
``opt.zero_grad()``) and uses them as the gradient at x_k: two passes, as there, not three. Only the
rules that need one gradient at x_k serve these forms (all but RSAM and m-SAM, which are refused).
``second_step`` goes through ``step``, so step hooks and the LR scheduler's order check see every step.

Per-group rho (``param_groups[i]["rho"]``) scales each group's part of the perturbation, the ascent
direction staying one global vector (one norm), as in the widely used SAM.

BatchNorm: with ``model=`` given, only the first forward pass of a step updates the running
statistics (at x_k for every rule but RSAM, whose first pass is at x_k + delta; the first chunk for
m-SAM); the passes at perturbed points use batch statistics and leave the running ones unchanged,
in ``step(closure)`` and between ``first_step`` and ``second_step`` alike. ``freeze_bn_stats(model)``
and ``disable_running_stats`` / ``enable_running_stats`` do the same by hand.

Mixed precision: bf16 autocast needs nothing. fp16 with ``torch.amp.GradScaler``: every gradient is
unscaled before the rule sees it (norms of unscaled gradients), and a step whose gradients hold an
inf or NaN is skipped (parameters, rule state and step count unchanged; one host sync, as
GradScaler.step has), then ``scaler.update()`` lowers the scale:

    scaler.scale(loss1).backward(); opt.first_step(zero_grad=True, scaler=scaler)
    scaler.scale(loss2).backward(); scaler.step(opt); scaler.update()
or  opt.step(closure, scaler=scaler); scaler.update()        # the closure scales its loss

Distributed (torchrun): ``distributed=None`` communicates nothing: right for one process, and for a
model wrapped in DistributedDataParallel (its hooks average every backward, overlapped with it, so the
ascent direction uses the all-reduced gradient). ``distributed="local"`` keeps the ascent gradient of
each rank's own batch and averages only g_k (m-sharpness with m = per-rank batch, as in Foret et al.'s
multi-device code): with a DDP ``model=`` the ascent passes run under ``no_sync()`` and DDP averages the
final pass during its backward; with an unwrapped model the optimizer all-reduces g_k.
``distributed="global"`` (unwrapped models) all-reduces every gradient. Tested with two gloo
processes against one process (tests/test_deepnet_ddp.py).
"""
from __future__ import annotations

import contextlib
import operator

import numpy as np
import torch

from convergence.deepnet.paramvec import ParamVec, PerTensor
from convergence.errors import InputError
from convergence.methods import Rule, make_method
from convergence.random import stream_seed
from convergence.vec import norm, tree_map

# --------------------------------------------------------------------------------------------- BN


def _bn_modules(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def freeze_bn_stats(model):
    """Inside: BatchNorm layers in train mode normalize with batch statistics but do not update their
    running mean/var nor num_batches_tracked (so a perturbed forward pass leaves them unchanged)."""
    changed = [m for m in _bn_modules(model) if m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in changed:
            m.track_running_stats = True


def disable_running_stats(model):
    """Stop BatchNorm running-statistics updates (before the second, perturbed pass)."""
    for m in _bn_modules(model):
        if not hasattr(m, "_samconv_track"):
            m._samconv_track = m.track_running_stats
        m.track_running_stats = False


def enable_running_stats(model):
    """Undo ``disable_running_stats`` (before the first pass of the next step)."""
    for m in _bn_modules(model):
        if hasattr(m, "_samconv_track"):
            m.track_running_stats = m._samconv_track
            del m._samconv_track


def _is_ddp(model) -> bool:
    return isinstance(model, torch.nn.parallel.DistributedDataParallel)


# ------------------------------------------------------------------------------------ random streams
class TorchStreams:
    """The random numbers of one optimizer step, a pure function of (seed, salt, stream, k): a resumed
    run draws the same numbers, and no generator state needs saving.

    ``exact=True`` draws the numbers of the numpy runner's ``convergence.random.Streams`` (run 0), so
    that RSAM's torch and numpy iterates agree; it runs on the host and is meant for tests.
    """

    def __init__(self, seed: int, k: int, exact: bool = False, salt: int = 0):
        self.seed, self.k, self.exact, self.salt = int(seed), int(k), exact, int(salt)

    def normal_like(self, x: ParamVec, stream: int = 7) -> ParamVec:
        n, t0 = sum(t.numel() for t in x.tensors), x.tensors[0]
        if self.exact:
            from convergence.random import normal
            flat = torch.from_numpy(normal(self.seed, np.array([0]), stream, self.k, (n,))[0])
        else:
            gen = torch.Generator(device=t0.device)
            gen.manual_seed(stream_seed(self.seed, self.salt, stream, self.k))
            flat = torch.randn(n, generator=gen, device=t0.device, dtype=t0.dtype)
        return ParamVec.from_flat(flat, x.tensors)


# ------------------------------------------------------------------------------------------- oracles
def _owned(params) -> tuple[ParamVec, set]:
    """Take over the gradients the last backward left in ``p.grad`` (``p.grad`` becomes None) as a
    vector nobody else writes: views into shared storage (DDP's gradient_as_bucket_view, which the
    next backward overwrites) are copied. A parameter without a gradient contributes zeros and its
    index is returned, so that the base step can skip it as it would without SAM."""
    grads, missing = [], set()
    for i, p in enumerate(params):
        if p.grad is None:
            missing.add(i)
        grads.append(torch.zeros_like(p) if p.grad is None else p.grad)
        p.grad = None
    views = [i for i, g in enumerate(grads) if g._base is not None]
    for i, copy in zip(views, torch._foreach_mul([grads[i] for i in views], 1) if views else ()):
        grads[i] = copy
    return ParamVec(grads), missing


def _gradient_marks(params) -> tuple[list, list]:
    """The gradient tensors in ``p.grad`` (kept, so that their ids stay theirs) and their versions."""
    grads = [p.grad for p in params]
    return grads, [-1 if g is None else g._version for g in grads]


def _nonfinite(g: ParamVec) -> torch.Tensor:
    """A 0-d bool tensor: does g hold an inf or NaN (no host synchronisation)."""
    return ~torch.isfinite(norm(g))


class _StepContext:
    """What the oracles of one step share: the parameters, x_k, the closures, the buffer that holds
    perturbed points, and which point the parameters hold now (moved only when a gradient is asked
    at another point). ``ddp`` (a DDP model, local perturbation): passes other than the final one run
    under ``no_sync``. ``inv_scale`` (a GradScaler's 1/scale): those passes are unscaled here and
    their non-finite entries noted in ``inf``; the final pass is left for ``scaler.unscale_``."""

    def __init__(self, params, x, buffer, closure, full_closure, model, reduce_each=None,
                 freeze_all=False, ddp=None, inv_scale=None):
        self.params, self.x, self.buffer = params, x, buffer
        self.closure, self.full_closure = closure, full_closure
        self.model, self.reduce_each, self.freeze_all = model, reduce_each, freeze_all
        self.ddp, self.inv_scale, self.inf = ddp, inv_scale, None
        self.current = x
        self.passes = 0
        self.missing = set()         # parameters that got no gradient in any pass of the step
        self.primary = False
        self.first_loss = None
        self.final_reduced = False   # DDP averaged the final pass during its backward

    def move_to(self, y: ParamVec) -> None:
        """Let the parameters hold y: point them at y's tensors if it has them (x_k: no copy, exact),
        else evaluate y (e.g. x_k + rho d_k) into the step buffer, which only the parameters use."""
        if y is not self.current:
            tensors = y.tensors if y.evaluated else y.evaluate_into(self.buffer())
            for p, t in zip(self.params, tensors):
                p.data = t
            self.current = y

    def gradient(self, fn, args, primary: bool, frozen: bool = False, final: bool = False) -> ParamVec:
        """Run ``fn(*args)`` (forward + backward) and take ownership of the gradients it leaves."""
        for p in self.params:
            p.grad = None
        self.primary = primary
        freeze = self.model is not None and (frozen or self.freeze_all or self.passes > 0)
        local = self.ddp is not None and not final
        with torch.enable_grad(), (freeze_bn_stats(self.model) if freeze else contextlib.nullcontext()), \
                (self.ddp.no_sync() if local else contextlib.nullcontext()):
            loss = fn(*args)
        if self.first_loss is None and loss is not None:
            self.first_loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        self.primary = False
        g, missing = _owned(self.params)
        self.missing = missing if self.passes == 0 else self.missing & missing
        self.passes += 1
        self.final_reduced = self.final_reduced or (final and self.ddp is not None)
        if self.inv_scale is not None and not final:
            g = g * self.inv_scale
            self.inf = _nonfinite(g) if self.inf is None else self.inf | _nonfinite(g)
        return self.reduce_each(g) if self.reduce_each is not None else g


class BatchOracle:
    """The oracle contract of ``convergence.methods`` over one batch: ``grad(y)`` sets the parameters
    to y and back-propagates the closure on this batch, ``full_grad(y)`` back-propagates
    ``full_closure`` (DNSAM), ``split(m)`` gives the oracles of m-sized chunks (m-SAM)."""

    L = None            # the smoothness of a network's loss is unknown: no inexactness bound

    def __init__(self, ctx: _StepContext, batch):
        self.ctx, self.batch, self.calls = ctx, batch, 0

    def grad(self, y: ParamVec, final: bool = False) -> ParamVec:
        self.ctx.move_to(y)
        g = self.ctx.gradient(self.ctx.closure, self.batch or (), primary=self.calls == 0, final=final)
        self.calls += 1
        return g

    def full_grad(self, y: ParamVec) -> ParamVec:
        if self.ctx.full_closure is None:
            raise InputError("this method needs the full gradient (DNSAM): pass full_closure=..., a "
                             "closure that back-propagates the loss of the data set or a fixed subset")
        self.ctx.move_to(y)
        return self.ctx.gradient(self.ctx.full_closure, (), primary=False, frozen=True)

    def split(self, m: int) -> list:
        if self.batch is None:
            raise InputError("m-SAM splits the batch: call step(closure, batch=(inputs, targets)) with "
                             "a closure taking the batch tensors")
        size = len(self.batch[0])
        if size % m:
            raise InputError(f"--m {m} must divide the per-process batch size {size}")
        return [BatchOracle(self.ctx, tuple(t[j:j + m] for t in self.batch)) for j in range(0, size, m)]


class _GivenOracle:
    """The oracle of ``first_step``: the gradient at x_k is the one already in ``p.grad``."""

    L = None

    def __init__(self, ctx, g):
        self.ctx, self.g = ctx, g

    def grad(self, y):
        assert y is self.ctx.x, "first_step serves only rules with gradients_at_x_only"
        return self.g

    def full_grad(self, y):
        return BatchOracle(self.ctx, None).full_grad(y)


# ----------------------------------------------------------------------------------------- optimizer
def _point(params) -> ParamVec:
    """x_k as a ParamVec over the parameters' current storage (no copy). The oracles move the
    parameters by pointing them at other tensors and back, so x_k's tensors stay unchanged during
    the step; the base optimizer then updates them in place."""
    return ParamVec([p.data for p in params])


def _unshare(state, x: ParamVec):
    """A rule's new state with any vector that shares x_k's storage copied (the base step is about
    to update that storage in place). No rule of methods.py keeps x_k; this keeps future ones safe."""
    ids = {id(t) for t in x.tensors}
    return tree_map(lambda v: v.clone() if isinstance(v, ParamVec) and any(id(t) in ids for t in v.tensors)
                    else v, state)


def _pack(leaf):
    """A leaf of a rule's state as saved: a vector as one flat tensor (the leaves of rule states are
    ParamVecs, numbers and None, so every saved tensor is a vector)."""
    if isinstance(leaf, torch.Tensor):
        raise TypeError("a rule state holds a bare tensor: keep its vectors as ParamVec")
    return leaf.flat() if isinstance(leaf, ParamVec) else leaf


class SAMFamily(torch.optim.Optimizer):
    """A SAM-family method (any rule of ``convergence.methods``) around a base optimizer.

    params, base_optimizer (a class, e.g. torch.optim.SGD), rho (radius; per parameter group, or per
    step via ``set_rho``), adaptive (True: ASAM, the widely used SAM's switch), and:
      method          a name of ``convergence.methods.METHODS`` or a Rule (default "sam")
      method_options  the rule's hyper-parameters, e.g. {"beta": 0.6} for fsam
      model           the module (or its DDP wrapper), to freeze BatchNorm statistics on the
                      perturbed passes (and, with distributed="local", run the ascent under no_sync)
      seed            seed of the rule's random numbers (RSAM), drawn per (seed, step)
      exact_random    draw them as the numpy runner does (tests)
      distributed     None, "global" or "local" (see the module docstring)
      max_grad_norm   clip g_k to this global norm before the base step
      **base_kwargs   the base optimizer's own arguments (lr, momentum, weight_decay, fused, ...)
    The rule acts on all parameters as one vector (one global norm).
    """

    _step_supports_amp_scaling = True    # GradScaler.step(opt) hands over grad_scale and found_inf

    def __init__(self, params, base_optimizer=torch.optim.SGD, rho: float = 0.05, adaptive: bool = False, *,
                 method=None, method_options: dict | None = None, model=None, seed: int = 0,
                 exact_random: bool = False, distributed: str | None = None,
                 max_grad_norm: float | None = None, **base_kwargs):
        if distributed not in (None, "global", "local"):
            raise ValueError(f"distributed must be None, 'global' or 'local', got {distributed!r}")
        if distributed == "global" and _is_ddp(model):
            raise ValueError("a DistributedDataParallel model averages every backward already: use "
                             "distributed=None for the global perturbation, or 'local'")
        if adaptive and method is not None:
            raise ValueError("adaptive=True selects ASAM (method='asam'), as in the widely used SAM: "
                             "give either method= or adaptive=True")
        method = "asam" if adaptive else "sam" if method is None else method
        self.rule = method if isinstance(method, Rule) else make_method(method, **(method_options or {}))
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        for i, group in enumerate(self.param_groups):
            if not (isinstance(group["rho"], (int, float)) and group["rho"] >= 0):
                raise ValueError(f"rho must be a non-negative number, got {group['rho']!r} (param group {i})")
            if group["adaptive"] != adaptive:
                raise ValueError(f"param group {i} sets adaptive={group['adaptive']}: ASAM is one rule for all "
                                 f"parameters, set adaptive on the optimizer only")
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.model, self.seed, self.exact_random = model, int(seed), exact_random
        self.distributed, self.max_grad_norm = distributed, max_grad_norm
        self.k = 0                   # steps taken
        self.rule_state = None
        self._initialized = False
        self._pending = None         # (params, x_k, new state, inf, scaler) between first_step and second_step
        self._ctx = None
        self._buffer = None          # storage of the perturbed points, reused step after step
        self._left = None            # (p.grad tensors, their versions) as the last step or zero_grad left them

    # ------------------------------------------------------------------ small accessors
    @property
    def rho(self) -> float:
        return self.param_groups[0]["rho"]

    def set_rho(self, rho: float) -> None:
        """Every parameter group's radius (a per-group rho is set in ``param_groups`` directly)."""
        for group in self.param_groups:
            group["rho"] = float(rho)

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    @property
    def primary_pass(self) -> bool:
        """True inside the closure during the first gradient of each (chunk) oracle in a step, i.e.
        the pass at x_k for all rules but RSAM: where a training loop records loss and accuracy."""
        return self._ctx is not None and self._ctx.primary

    def _params(self):
        """The trainable parameters, after checking no first_step() is awaiting its second_step()
        (the parameters then hold x_k + rho d_k, not x_k)."""
        if self._pending is not None:
            raise RuntimeError("first_step() is awaiting its second_step(): call second_step() first")
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _radius(self):
        """rho_k: one number, or one per parameter tensor where the groups' rho differ."""
        radii = [g["rho"] for g in self.param_groups for p in g["params"] if p.requires_grad]
        return radii[0] if len(set(radii)) == 1 else PerTensor(radii)

    def _buffer_source(self, params):
        """A function returning the storage of perturbed points, tensors like ``params`` (called only
        when a step moves the parameters): allocated once and again only if the parameters change
        shape, dtype or device. Reusing it spares a fresh parameter-sized allocation per step (on
        CPU, page faults that cost more than the arithmetic)."""
        def buffer():
            b = self._buffer
            if b is None or len(b) != len(params) or any(
                    t.shape != p.shape or t.dtype != p.dtype or t.device != p.device for t, p in zip(b, params)):
                self._buffer = b = [torch.empty_like(p) for p in params]
            return b
        return buffer

    def _state(self, x):
        return self.rule_state if self._initialized else self.rule.init(x)

    def _streams(self, salt=0):
        return TorchStreams(self.seed, self.k, self.exact_random, salt)

    def _reduce(self, g: ParamVec) -> ParamVec:
        """Average a gradient over the ranks: one all-reduce of the flattened vector (in the widest
        dtype of its tensors; each piece goes back to its own dtype)."""
        import torch.distributed as dist
        flat = g.flat()
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        return ParamVec.from_flat(flat, g.tensors)

    def _remember_gradients(self, params) -> None:
        self._left = _gradient_marks(params)

    def _fresh_gradients(self, params) -> bool:
        """Did a backward run since the last step or zero_grad (``loss.backward(); opt.step(closure)``)?
        A backward leaves new gradient tensors, or adds into the old ones (their version changes)."""
        grads, versions = _gradient_marks(params)
        if self._left is not None and versions == self._left[1] and all(map(operator.is_, grads, self._left[0])):
            return False
        return any(g is not None for g in grads)

    def zero_grad(self, set_to_none: bool = True):
        super().zero_grad(set_to_none)
        self._remember_gradients([p for g in self.param_groups for p in g["params"] if p.requires_grad])

    def _descend(self, params, g: ParamVec, state, missing=(), scaler=None, inf=None) -> None:
        """The base step with g_k as the gradient; parameters in ``missing`` (no gradient in any pass)
        keep ``p.grad = None``, so weight decay and momentum skip them as without SAM. With a
        GradScaler (``scaler``, or GradScaler.step's ``grad_scale``/``found_inf``) g_k is still scaled:
        it is unscaled, and the step is skipped when it or an ascent gradient (``inf``) is not finite."""
        for i, (p, gi) in enumerate(zip(params, g.tensors)):
            p.grad = None if i in missing else gi
        grads = [p.grad for p in params if p.grad is not None]
        found = None
        if hasattr(self, "found_inf"):               # inside GradScaler.step(opt): it checked p.grad
            if self.grad_scale is not None:
                torch._foreach_mul_(grads, self.grad_scale.reciprocal())
            found = self.found_inf > 0
        elif scaler is not None:
            scaler.unscale_(self)                    # unscales p.grad, records the infs for update()
            found = _nonfinite(ParamVec(grads))
        if found is not None and inf is not None:
            found = found | inf
        if found is not None and bool(found):        # one host sync, as GradScaler.step makes
            self._remember_gradients(params)
            return
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
        self.base_optimizer.step()
        self.rule_state, self._initialized = state, True
        self.k += 1
        self._remember_gradients(params)

    @staticmethod
    def _as_batch(batch):
        if batch is None or isinstance(batch, (tuple, list)):
            return None if batch is None else tuple(batch)
        return (batch,)

    def _gradient(self, ctx: _StepContext, state, batch, salt=0):
        """(g_k, new state) of the rule, the parameters back at x_k afterwards. A rule that builds
        d_k and then takes one gradient at x_k + rho_k d_k (Rule.gradient's form) gets that last
        pass marked final (DDP averages it; a GradScaler's unscale_ sees it); a rule with its own
        passes (m-SAM) runs them all as ascent passes."""
        oracle, streams, radius = BatchOracle(ctx, self._as_batch(batch)), self._streams(salt), self._radius()
        try:
            if type(self.rule).gradient is Rule.gradient:
                d, state = self.rule.direction(self.k, ctx.x, oracle, state, streams)
                return oracle.grad(ctx.x + radius * d, final=True), state
            g, _, state = self.rule.gradient(self.k, ctx.x, oracle, state, radius, streams)
            return g, state
        finally:
            ctx.move_to(ctx.x)

    # ------------------------------------------------------------------ closure API
    @torch.no_grad()
    def step(self, closure=None, batch=None, full_closure=None, scaler=None):
        """One step: g_k from the rule (the closure runs forward + backward, called as
        ``closure(*batch)`` when ``batch`` is given, else ``closure()``), then the base step.
        Returns the loss of the first pass (at x_k for all rules but RSAM; after a
        ``loss.backward()``, the closure's loss at the perturbed point). Without a closure it
        completes a pending ``first_step()`` (what ``second_step()`` and ``GradScaler.step`` call)."""
        if self._pending is not None:
            if closure is not None:
                raise RuntimeError("first_step() is awaiting its second_step(): call second_step() or "
                                   "scaler.step(opt), not step(closure)")
            return self._finish(scaler)
        if closure is None:
            raise RuntimeError("SAMFamily.step needs a closure that runs forward and backward "
                               "(or use first_step()/second_step())")
        if hasattr(self, "found_inf"):
            raise RuntimeError("GradScaler.step(opt, closure) does not see the passes the closure runs: "
                               "call opt.step(closure, scaler=scaler), then scaler.update()")
        params = self._params()
        if self._fresh_gradients(params):            # loss.backward(); opt.step(closure)
            self.first_step(full_closure=full_closure, scaler=scaler)
            with torch.enable_grad():
                loss = closure(*self._as_batch(batch)) if batch is not None else closure()
            self._finish(scaler)
            return loss
        if scaler is not None and type(self.rule).gradient is not Rule.gradient:
            raise InputError(f"method '{self.rule.name}' runs passes of its own that a GradScaler cannot "
                             f"unscale: train it in bf16 autocast (no scaler needed) or float32")
        x = _point(params)
        ddp = self.model if self.distributed == "local" and _is_ddp(self.model) else None
        ctx = self._ctx = _StepContext(
            params, x, self._buffer_source(params), closure, full_closure, self.model,
            self._reduce if self.distributed == "global" else None, ddp=ddp,
            inv_scale=None if scaler is None else 1.0 / scaler.get_scale())
        try:
            g, state = self._gradient(ctx, self._state(x), batch)
        finally:
            self._ctx = None
        if self.distributed == "local" and not ctx.final_reduced:
            g = self._reduce(g)
        self._descend(params, g, _unshare(state, x), ctx.missing, scaler, ctx.inf)
        return ctx.first_loss

    @torch.no_grad()
    def method_gradient(self, closure, batch=None, full_closure=None) -> ParamVec:
        """g_k of the rule at the current parameters, without stepping, changing the rule's state or
        BatchNorm statistics, and without communication (for probes: ||g_k - grad f_S||)."""
        params = self._params()
        x = _point(params)
        ctx = _StepContext(params, x, self._buffer_source(params), closure, full_closure, self.model,
                           freeze_all=True)
        return self._gradient(ctx, self._state(x), batch, salt=1)[0]

    # ------------------------------------------------------------------ two-call API
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False, full_closure=None, scaler=None):
        """Move to x_k + rho d_k, d_k from the gradient at x_k now in ``p.grad`` (the optimizer takes
        those gradient tensors over; ``p.grad`` is None afterwards). With ``model=``, BatchNorm running
        statistics stay as they are until ``second_step``. ``scaler``: the GradScaler that scaled
        this backward (its gradients are unscaled first)."""
        if not self.rule.gradients_at_x_only:
            raise InputError(f"method '{self.rule.name}' takes its gradients elsewhere than at x_k (or per "
                             f"chunk): use step(closure, batch=...) with no gradients computed before it "
                             f"(call opt.zero_grad() after loss.backward()), not first_step()/second_step()")
        params = self._params()
        x = _point(params)
        given = [p.grad for p in params]
        g, _ = _owned(params)
        inf = None
        if scaler is not None:
            g = g * (1.0 / scaler.get_scale())
            inf = _nonfinite(g)
        if self.distributed == "global":
            g = self._reduce(g)
        ctx = _StepContext(params, x, self._buffer_source(params), None, full_closure, self.model)
        try:
            d, state = self.rule.direction(self.k, x, _GivenOracle(ctx, g), self._state(x), self._streams())
        except InputError:                       # e.g. DNSAM without full_closure: nothing changed
            for p, t in zip(params, given):
                p.grad = t
            raise
        ctx.move_to(x + self._radius() * d)
        if self.model is not None:
            disable_running_stats(self.model)
        self._pending = (params, x, _unshare(state, x), inf, scaler)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False, scaler=None):
        """Restore x_k and let the base optimizer step with the gradient now in ``p.grad`` (taken at
        x_k + rho d_k). Runs through ``step()``, so step hooks and LR schedulers see it."""
        if self._pending is None:
            raise RuntimeError("second_step() called without first_step()")
        self.step(scaler=scaler)
        if zero_grad:
            self.zero_grad()

    def _finish(self, scaler=None):
        """The second half of a two-call step: x_k back, BatchNorm statistics on, the base step."""
        params, x, state, inf, scaler0 = self._pending
        self._pending = None
        g, missing = _owned(params)
        for p, t in zip(params, x.tensors):
            p.data = t
        if self.model is not None:
            enable_running_stats(self.model)
        if self.distributed is not None and not _is_ddp(self.model):
            g = self._reduce(g)
        self._descend(params, g, state, missing, scaler or scaler0, inf)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        self._params()                           # refuses while a first_step() awaits second_step()
        sd = self.base_optimizer.state_dict()
        sd["samconv"] = {"rule": repr(self.rule), "k": self.k, "initialized": self._initialized,
                         "rule_state": tree_map(_pack, self.rule_state)}
        return sd

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()``; checked whole before anything is changed."""
        params = self._params()
        sd = dict(state_dict)
        extra = sd.pop("samconv", None)
        if extra is not None:
            if extra["rule"] != repr(self.rule):
                raise ValueError(f"this state_dict is of {extra['rule']}, the optimizer runs {self.rule!r}")
            total = sum(p.numel() for p in params)

            def unpack(leaf):
                if not isinstance(leaf, torch.Tensor):
                    return leaf
                if leaf.numel() != total:
                    raise ValueError(f"this state_dict holds vectors of {leaf.numel()} entries, the optimizer "
                                     f"has {total} trainable parameter entries")
                return ParamVec.from_flat(leaf, params)
            rule_state = tree_map(unpack, extra["rule_state"])
        self.base_optimizer.load_state_dict(sd)
        self.param_groups = self.base_optimizer.param_groups
        if extra is not None:
            self.k, self._initialized, self.rule_state = int(extra["k"]), bool(extra["initialized"]), rule_state

    def __repr__(self):
        return f"SAMFamily({self.rule!r}, rho={self.rho}, base={self.base_optimizer.__class__.__name__})"
