"""SAM-family torch optimizers that execute the very rule objects of ``convergence.methods``.

    x_{k+1} = x_k - t_k g_k,    g_k = grad f_S(x_k + rho_k d_k)

The rule (SAM, USAM, Unified SAM, F-SAM, VaSSO, RSAM, DNSAM, m-SAM, ...) builds d_k and g_k from a
gradient oracle over this step's batch, exactly as in the numpy runner; the parameters are restored to
x_k and the wrapped base optimizer (SGD, ...) takes its step with g_k in ``p.grad``. Moving the
parameters to a perturbed point and back re-points ``p.data`` at other tensors (no copies, exact);
vector arithmetic is ``torch._foreach_*`` (ParamVec), so no Python loop over parameters does math.

    opt = SAMFamily(model.parameters(), torch.optim.SGD, method="sam", rho=0.05, lr=0.1, model=model)
    def closure(inputs, targets):                 # forward + backward, no zero_grad needed
        loss = F.cross_entropy(model(inputs), targets); loss.backward(); return loss
    opt.step(closure, batch=(inputs, targets))   # batch: needed by m-SAM (it splits it); optional else

or, in the two-call style of the widely used PyTorch SAM:

    loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True)
    loss_fn(model(x), y).backward(); opt.second_step(zero_grad=True)

(first_step/second_step serve the rules that need one gradient at x_k: gd, sam, usam, unified, fsam,
vasso, dnsam; rsam and msam evaluate gradients elsewhere and need ``step(closure)``.)

BatchNorm: with ``model=`` given, only the first forward pass of a step updates the running
statistics (at x_k for every rule but RSAM, whose first pass is at x_k + delta; the first chunk for
m-SAM); the passes at perturbed points use batch statistics and leave the running ones unchanged.
``freeze_bn_stats(model)`` (a context manager) and ``disable_running_stats`` /
``enable_running_stats`` do the same by hand.

Distributed (torchrun): ``distributed=None`` communicates nothing, which is right for one process and
for a model wrapped in DistributedDataParallel (its hooks average every backward, so the ascent
direction then uses the all-reduced gradient). For an unwrapped model replicated on every rank,
``distributed="global"`` all-reduces every gradient (the perturbation of the global batch: SAM with
m = global batch) and ``distributed="local"`` keeps the ascent gradient of each rank's own batch and
all-reduces only g_k (m-sharpness with m = per-rank batch, as in Foret et al.'s multi-device code).
Both are tested with two gloo processes against one process (tests/test_deepnet_ddp.py).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from convergence.deepnet.paramvec import ParamVec
from convergence.errors import InputError
from convergence.methods import Rule, make_method

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


# ------------------------------------------------------------------------------------ random streams
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``parts`` (SplitMix64 chain)."""
    z = 0
    for p in parts:
        z = _mix64((z + (int(p) & _MASK) * _GOLDEN + _GOLDEN) & _MASK)
    return z >> 1


class TorchStreams:
    """The random numbers of one optimizer step, a pure function of (seed, salt, stream, k): a resumed
    run draws the same numbers, and no generator state needs saving.

    ``exact=True`` draws the numbers of the numpy runner's ``convergence.random.Streams`` (run 0), so
    that RSAM's torch and numpy iterates agree; it runs on the host and is meant for tests.
    """

    def __init__(self, seed: int, k: int, exact: bool = False, salt: int = 0):
        self.seed, self.k, self.exact, self.salt = int(seed), int(k), exact, int(salt)

    def normal_like(self, x: ParamVec, stream: int = 7) -> ParamVec:
        sizes = [t.numel() for t in x.tensors]
        t0 = x.tensors[0]
        if self.exact:
            from convergence.random import normal
            flat = torch.from_numpy(normal(self.seed, np.array([0]), stream, self.k, (sum(sizes),))[0])
            flat = flat.to(device=t0.device, dtype=t0.dtype)
        else:
            gen = torch.Generator(device=t0.device)
            gen.manual_seed(stream_seed(self.seed, self.salt, stream, self.k))
            flat = torch.randn(sum(sizes), generator=gen, device=t0.device, dtype=t0.dtype)
        return ParamVec([c.view_as(t).to(t.dtype) for c, t in zip(flat.split(sizes), x.tensors)])


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


class _StepContext:
    """What the oracles of one step share: the parameters, x_k, the closures, the buffer that holds
    perturbed points, and which point the parameters hold now (moved only when a gradient is asked
    at another point)."""

    def __init__(self, params, x, buffer, closure, full_closure, model, reduce_each, freeze_all=False):
        self.params, self.x, self.buffer = params, x, buffer
        self.closure, self.full_closure = closure, full_closure
        self.model, self.reduce_each, self.freeze_all = model, reduce_each, freeze_all
        self.current = x
        self.passes = 0
        self.missing = set()         # parameters that got no gradient in any pass of the step
        self.primary = False
        self.first_loss = None

    def move_to(self, y: ParamVec) -> None:
        """Let the parameters hold y: point them at y's tensors if it has them (x_k: no copy, exact),
        else evaluate y (e.g. x_k + rho d_k) into the step buffer, which only the parameters use."""
        if y is not self.current:
            tensors = y.tensors if y.evaluated else y.evaluate_into(self.buffer())
            for p, t in zip(self.params, tensors):
                p.data = t
            self.current = y

    def gradient(self, fn, args, primary: bool, frozen: bool = False) -> ParamVec:
        """Run ``fn(*args)`` (forward + backward) and take ownership of the gradients it leaves."""
        for p in self.params:
            p.grad = None
        self.primary = primary
        freeze = self.model is not None and (frozen or self.freeze_all or self.passes > 0)
        with torch.enable_grad(), (freeze_bn_stats(self.model) if freeze else contextlib.nullcontext()):
            loss = fn(*args)
        if self.first_loss is None and loss is not None:
            self.first_loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        self.primary = False
        g, missing = _owned(self.params)
        self.missing = missing if self.passes == 0 else self.missing & missing
        self.passes += 1
        return g


class BatchOracle:
    """The oracle contract of ``convergence.methods`` over one batch: ``grad(y)`` sets the parameters
    to y and back-propagates the closure on this batch, ``full_grad(y)`` back-propagates
    ``full_closure`` (DNSAM), ``split(m)`` gives the oracles of m-sized chunks (m-SAM)."""

    L = None            # the smoothness of a network's loss is unknown: no inexactness bound

    def __init__(self, ctx: _StepContext, batch):
        self.ctx, self.batch, self.calls = ctx, batch, 0

    def grad(self, y: ParamVec) -> ParamVec:
        self.ctx.move_to(y)
        g = self.ctx.gradient(self.ctx.closure, self.batch or (), primary=self.calls == 0)
        self.calls += 1
        return self.ctx.reduce_each(g) if self.ctx.reduce_each is not None else g

    def full_grad(self, y: ParamVec) -> ParamVec:
        if self.ctx.full_closure is None:
            raise InputError("this method needs the full gradient (DNSAM): pass full_closure=..., a "
                             "closure that back-propagates the loss of the data set or a fixed probe subset")
        self.ctx.move_to(y)
        g = self.ctx.gradient(self.ctx.full_closure, (), primary=False, frozen=True)
        return self.ctx.reduce_each(g) if self.ctx.reduce_each is not None else g

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

    def __init__(self, name, ctx, g):
        self.name, self.ctx, self.g = name, ctx, g

    def grad(self, y):
        if y is self.ctx.x:
            return self.g
        raise InputError(f"method '{self.name}' takes gradients at other points than x_k: use "
                         f"step(closure) instead of first_step()/second_step()")

    def full_grad(self, y):
        return BatchOracle(self.ctx, None).full_grad(y)

    def split(self, m):
        raise InputError(f"method '{self.name}' splits the batch: use step(closure, batch=...)")


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
    if isinstance(state, ParamVec):
        return state.clone() if any(id(t) in ids for t in state.tensors) else state
    if isinstance(state, (tuple, list)):
        return type(state)(_unshare(s, x) for s in state)
    if isinstance(state, dict):
        return {k: _unshare(v, x) for k, v in state.items()}
    return state


def _pack(state):
    if isinstance(state, ParamVec):
        return {"__paramvec__": list(state.tensors)}
    if isinstance(state, (tuple, list)):
        return {"__seq__": [_pack(s) for s in state], "tuple": isinstance(state, tuple)}
    if isinstance(state, dict):
        return {"__dict__": {k: _pack(v) for k, v in state.items()}}
    return state


def _unpack(state, params):
    if isinstance(state, dict) and "__paramvec__" in state:
        if len(state["__paramvec__"]) != len(params):
            raise ValueError(f"this state_dict holds vectors of {len(state['__paramvec__'])} tensors, the "
                             f"optimizer has {len(params)} trainable parameters")
        return ParamVec([t.to(device=p.device, dtype=p.dtype) for t, p in zip(state["__paramvec__"], params)])
    if isinstance(state, dict) and "__seq__" in state:
        seq = [_unpack(s, params) for s in state["__seq__"]]
        return tuple(seq) if state["tuple"] else seq
    if isinstance(state, dict) and "__dict__" in state:
        return {k: _unpack(v, params) for k, v in state["__dict__"].items()}
    return state


class SAMFamily(torch.optim.Optimizer):
    """A SAM-family method (any rule of ``convergence.methods``) around a base optimizer.

    params, base_optimizer (a class, e.g. torch.optim.SGD), method (a name of
    ``convergence.methods.METHODS`` or a Rule), rho (radius; per step via ``set_rho``), and:
      method_options  the rule's hyper-parameters, e.g. {"beta": 0.6} for fsam
      model           the module, to freeze BatchNorm statistics on the perturbed passes
      seed            seed of the rule's random numbers (RSAM), drawn per (seed, step)
      exact_random    draw them as the numpy runner does (tests)
      distributed     None, "global" or "local" (see the module docstring)
      max_grad_norm   clip g_k to this global norm before the base step
      **base_kwargs   the base optimizer's own arguments (lr, momentum, weight_decay, ...)
    The rule acts on all parameters as one vector (one global norm), so rho is one number.
    """

    def __init__(self, params, base_optimizer=torch.optim.SGD, method="sam", rho: float = 0.05, *,
                 method_options: dict | None = None, model=None, seed: int = 0, exact_random: bool = False,
                 distributed: str | None = None, max_grad_norm: float | None = None, **base_kwargs):
        if not (isinstance(rho, (int, float)) and rho >= 0):
            raise ValueError(f"rho must be a non-negative number, got {rho}")
        if distributed not in (None, "global", "local"):
            raise ValueError(f"distributed must be None, 'global' or 'local', got {distributed!r}")
        self.rule = method if isinstance(method, Rule) else make_method(method, **(method_options or {}))
        super().__init__(params, dict(rho=float(rho), **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.model, self.seed, self.exact_random = model, int(seed), exact_random
        self.distributed, self.max_grad_norm = distributed, max_grad_norm
        self.k = 0                   # steps taken
        self.rule_state = None
        self._initialized = False
        self._pending = None         # (params, x_k, new state) between first_step and second_step
        self._ctx = None
        self._buffer = None          # storage of the perturbed points, reused step after step

    # ------------------------------------------------------------------ small accessors
    @property
    def rho(self) -> float:
        return self.param_groups[0]["rho"]

    def set_rho(self, rho: float) -> None:
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
        pieces = flat.split([t.numel() for t in g.tensors])
        return ParamVec([c.view_as(t).to(t.dtype) for c, t in zip(pieces, g.tensors)])

    def _descend(self, params, g: ParamVec, state, missing=()) -> None:
        """The base step with g_k as the gradient; parameters in ``missing`` (no gradient in any
        pass) keep ``p.grad = None``, so weight decay and momentum skip them as without SAM."""
        for i, (p, gi) in enumerate(zip(params, g.tensors)):
            p.grad = None if i in missing else gi
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
        self.base_optimizer.step()
        self.rule_state, self._initialized = state, True
        self.k += 1

    @staticmethod
    def _as_batch(batch):
        if batch is None or isinstance(batch, (tuple, list)):
            return None if batch is None else tuple(batch)
        return (batch,)

    # ------------------------------------------------------------------ closure API
    @torch.no_grad()
    def step(self, closure=None, batch=None, full_closure=None):
        """One step: g_k from the rule (the closure runs forward + backward, called as
        ``closure(*batch)`` when ``batch`` is given, else ``closure()``), then the base step.
        Returns the loss of the first pass (at x_k for all rules but RSAM)."""
        if closure is None:
            raise RuntimeError("SAMFamily.step needs a closure that runs forward and backward "
                               "(or use first_step()/second_step())")
        params = self._params()
        x = _point(params)
        state = self._state(x)
        reduce_each = self._reduce if self.distributed == "global" else None
        ctx = self._ctx = _StepContext(params, x, self._buffer_source(params), closure, full_closure,
                                       self.model, reduce_each)
        try:
            g, _, state = self.rule.gradient(self.k, x, BatchOracle(ctx, self._as_batch(batch)),
                                             state, self.rho, self._streams())
        finally:
            ctx.move_to(x)
            self._ctx = None
        state = _unshare(state, x)
        if self.distributed == "local":
            g = self._reduce(g)
        self._descend(params, g, state, ctx.missing)
        return ctx.first_loss

    @torch.no_grad()
    def method_gradient(self, closure, batch=None, full_closure=None) -> ParamVec:
        """g_k of the rule at the current parameters, without stepping, changing the rule's state or
        BatchNorm statistics, and without communication (for probes: ||g_k - grad f||)."""
        params = self._params()
        x = _point(params)
        ctx = _StepContext(params, x, self._buffer_source(params), closure, full_closure, self.model,
                           None, freeze_all=True)
        try:
            g, _, _ = self.rule.gradient(self.k, x, BatchOracle(ctx, self._as_batch(batch)),
                                         self._state(x), self.rho, self._streams(salt=1))
        finally:
            ctx.move_to(x)
        return g

    # ------------------------------------------------------------------ two-call API
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False, full_closure=None):
        """Move to x_k + rho d_k, d_k from the gradient at x_k now in ``p.grad`` (the optimizer takes
        those gradient tensors over; ``p.grad`` is None afterwards)."""
        if type(self.rule).gradient is not Rule.gradient:
            raise InputError(f"method '{self.rule.name}' computes its own gradients: use step(closure, batch=...)")
        params = self._params()
        x = _point(params)
        given = [p.grad for p in params]
        g, _ = _owned(params)
        try:
            if self.distributed == "global":
                g = self._reduce(g)
            ctx = _StepContext(params, x, self._buffer_source(params), None, full_closure, self.model, None)
            d, state = self.rule.direction(self.k, x, _GivenOracle(self.rule.name, ctx, g), self._state(x),
                                           self._streams())
        except InputError:                       # e.g. RSAM: leave the user's gradients as they were
            for p, t in zip(params, given):
                p.grad = t
            raise
        ctx.move_to(x + self.rho * d)
        self._pending = (params, x, _unshare(state, x))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False):
        """Restore x_k and let the base optimizer step with the gradient now in ``p.grad`` (taken at
        x_k + rho d_k; clip it before this call if you clip)."""
        if self._pending is None:
            raise RuntimeError("second_step() called without first_step()")
        params, x, state = self._pending
        self._pending = None
        g, missing = _owned(params)
        for p, t in zip(params, x.tensors):
            p.data = t
        if self.distributed is not None:
            g = self._reduce(g)
        self._descend(params, g, state, missing)
        if zero_grad:
            self.zero_grad()

    # ------------------------------------------------------------------ state
    def state_dict(self):
        self._params()                           # refuses while a first_step() awaits second_step()
        sd = self.base_optimizer.state_dict()
        sd["samconv"] = {"rule": repr(self.rule), "k": self.k, "initialized": self._initialized,
                         "rule_state": _pack(self.rule_state)}
        return sd

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()``; checked whole before anything is changed."""
        params = self._params()
        sd = dict(state_dict)
        extra = sd.pop("samconv", None)
        if extra is not None:
            if extra["rule"] != repr(self.rule):
                raise ValueError(f"this state_dict is of {extra['rule']}, the optimizer runs {self.rule!r}")
            rule_state = _unpack(extra["rule_state"], params)
        self.base_optimizer.load_state_dict(sd)
        self.param_groups = self.base_optimizer.param_groups
        if extra is not None:
            self.k, self._initialized, self.rule_state = int(extra["k"]), bool(extra["initialized"]), rule_state

    def __repr__(self):
        return f"SAMFamily({self.rule!r}, rho={self.rho}, base={self.base_optimizer.__class__.__name__})"
