"""Drop-in use: SAMFamily behaves as the widely used PyTorch SAM (davda54/sam) does for its users.

Each test runs the same loop with SAMFamily and with ``RefSAM`` below, our own transcription of that
optimizer's behaviour (per parameter: perturb by rho_group * T^2 g / ||T g|| with T = |p| when
adaptive, else 1, the norm over all groups; restore; base step), in float64, and names the wrong
implementation it rejects.
"""
import warnings

import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine

from convergence.deepnet.optim import SAMFamily  # noqa: E402
from convergence.errors import InputError  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64


class RefSAM(torch.optim.Optimizer):
    """The widely used SAM's behaviour, transcribed: first_step climbs from the gradients in p.grad,
    second_step restores and lets the base optimizer step, step(closure) = first_step, the closure's
    backward, second_step."""

    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **kwargs):
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self, zero_grad=False):
        with_grad = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        total = torch.stack([((p.abs() if g["adaptive"] else 1.0) * p.grad).norm() for g, p in with_grad]).norm()
        for g, p in with_grad:
            self.state[p]["x"] = p.detach().clone()
            p.add_((p * p if g["adaptive"] else 1.0) * p.grad * (g["rho"] / (total + 1e-12)))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad=False):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.data = self.state[p]["x"]
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure):
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step()


def ref_bn_bypass(model, on: bool):
    """Its BatchNorm bypass: momentum 0 on the perturbed pass (running statistics kept)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            if not on:
                m.backup_momentum, m.momentum = m.momentum, 0
            elif hasattr(m, "backup_momentum"):
                m.momentum = m.backup_momentum


def _net(bn=False, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(4, 6)] + ([torch.nn.BatchNorm1d(6)] if bn else []) + [torch.nn.Tanh(),
                                                                                  torch.nn.Linear(6, 3)]
    return torch.nn.Sequential(*layers).double()


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g, dtype=F64), torch.randint(0, 3, (16,), generator=g)


X, Y = _data()


def _loss(net):
    return torch.nn.functional.cross_entropy(net(X), Y)


def _two_call(net, opt, steps, **first):
    for _ in range(steps):
        _loss(net).backward()
        opt.first_step(zero_grad=True, **first)
        _loss(net).backward()
        opt.second_step(zero_grad=True)


def _same(a, b, atol=1e-12):
    return all(torch.allclose(p, q, rtol=0, atol=atol) for p, q in zip(a.parameters(), b.parameters()))


KW = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)


# --------------------------------------------------------------------------------------------- ASAM
def test_adaptive_true_is_asam_as_the_widely_used_sam_does_it():
    """Rejects an ASAM that scales the gradient by |x| once (d = T g / ||T g||) or that is plain SAM."""
    ours, ref, sam = _net(), _net(), _net()
    _two_call(ours, SAMFamily(ours.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, **KW), 5)
    _two_call(ref, RefSAM(ref.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, **KW), 5)
    _two_call(sam, SAMFamily(sam.parameters(), torch.optim.SGD, rho=0.5, **KW), 5)
    assert _same(ours, ref)
    assert not _same(ours, sam, atol=1e-4)                    # adaptive changes the iterates
    assert SAMFamily(ours.parameters(), torch.optim.SGD, adaptive=True).rule.name == "asam"
    with pytest.raises(ValueError, match="adaptive=True selects ASAM"):
        SAMFamily(ours.parameters(), torch.optim.SGD, adaptive=True, method="fsam")
    with pytest.raises(ValueError, match="param group 1 sets adaptive=True"):
        SAMFamily([{"params": ours[0].parameters()}, {"params": ours[2].parameters(), "adaptive": True}],
                  torch.optim.SGD, lr=0.1)


# ----------------------------------------------------------------------------------- per-group rho
def test_per_group_rho_is_honoured():
    """Rejects replacing every group's rho by group 0's (the perturbation of group 1 would be 10x smaller)."""
    def groups(net):
        return [{"params": net[0].parameters(), "rho": 0.05}, {"params": net[2].parameters(), "rho": 0.5}]
    ours, ref, first = _net(), _net(), _net()
    _two_call(ours, SAMFamily(groups(ours), torch.optim.SGD, **KW), 4)
    _two_call(ref, RefSAM(groups(ref), torch.optim.SGD, **KW), 4)
    _two_call(first, SAMFamily(first.parameters(), torch.optim.SGD, rho=0.05, **KW), 4)
    assert _same(ours, ref)
    assert not _same(ours, first, atol=1e-6)
    # the closure API honours it too
    closure_net = _net()
    opt = SAMFamily(groups(closure_net), torch.optim.SGD, **KW)
    for _ in range(4):
        opt.step(lambda: _loss(closure_net).backward())
    assert _same(closure_net, ref)


# ------------------------------------------------------------------- loss.backward(); opt.step(closure)
@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads-None", "grads-zeroed-in-place"])
def test_backward_then_step_closure_runs_two_passes_as_the_widely_used_sam(set_to_none):
    """Its README loop: loss.backward(); opt.step(closure); opt.zero_grad(). Rejects an optimizer that
    ignores the gradients already computed and runs the closure twice (three passes), also when the
    backward adds into zeroed gradient tensors (zero_grad(set_to_none=False): same tensors, new version)."""
    ours, ref = _net(), _net()
    o, r = SAMFamily(ours.parameters(), torch.optim.SGD, **KW), RefSAM(ref.parameters(), torch.optim.SGD, **KW)
    calls = []

    def closure():
        calls.append(1)
        loss = _loss(ours)
        loss.backward()
        return loss

    for _ in range(3):
        _loss(ours).backward()
        o.step(closure)
        o.zero_grad(set_to_none)
        _loss(ref).backward()
        r.step(lambda: _loss(ref).backward())
        r.zero_grad(set_to_none)
    assert len(calls) == 3                                    # one closure pass per step
    assert _same(ours, ref)
    # without a backward before it step(closure) runs both passes itself
    calls.clear()
    o.step(closure)
    assert len(calls) == 2


def test_backward_then_step_closure_is_refused_for_rules_taking_gradients_elsewhere():
    net = _net()
    for method in ("rsam", "msam"):
        opt = SAMFamily(net.parameters(), torch.optim.SGD, method=method, lr=0.1)
        before = [p.detach().clone() for p in net.parameters()]
        _loss(net).backward()
        grad = net[0].weight.grad
        with pytest.raises(InputError, match="opt.zero_grad\\(\\) after loss.backward\\(\\)"):
            opt.step(lambda: _loss(net).backward(), batch=(X, Y) if method == "msam" else None)
        assert net[0].weight.grad is grad                     # nothing consumed
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
        opt.zero_grad()


# ------------------------------------------------------------------------------ BatchNorm, two calls
def test_model_argument_keeps_batchnorm_statistics_in_the_two_call_api():
    """The reference with its BN bypass (momentum 0 on the perturbed pass) and ours with model=: the
    same running statistics. Rejects ignoring model= in first_step/second_step (the perturbed pass
    would move them too)."""
    ours, ref, ignored = _net(bn=True), _net(bn=True), _net(bn=True)
    o = SAMFamily(ours.parameters(), torch.optim.SGD, model=ours, **KW)
    r = RefSAM(ref.parameters(), torch.optim.SGD, **KW)
    _two_call(ours, o, 5)
    for _ in range(5):
        ref_bn_bypass(ref, True)
        _loss(ref).backward()
        r.first_step(zero_grad=True)
        ref_bn_bypass(ref, False)
        _loss(ref).backward()
        r.second_step(zero_grad=True)
    _two_call(ignored, SAMFamily(ignored.parameters(), torch.optim.SGD, **KW), 5)
    bn, bn_ref, bn_ignored = ours[1], ref[1], ignored[1]
    assert _same(ours, ref)
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, rtol=0, atol=1e-12)
    assert (bn_ignored.running_mean - bn_ref.running_mean).abs().max() > 1e-3
    assert bn.num_batches_tracked.item() == 5               # one update per step (the reference counts 10)
    assert bn.track_running_stats


# --------------------------------------------------------------------------------------- GradScaler
def _usam_fp32(steps):
    net = _net()
    _two_call(net, SAMFamily(net.parameters(), torch.optim.SGD, method="usam", rho=0.3, **KW), steps)
    return net


def test_grad_scaler_unscales_before_the_rule():
    """USAM's d = g is not scale-invariant: with scale 2^10 the perturbation would be 1024 times too
    large if the optimizer used the scaled gradient (the rejected implementation). Powers of two
    unscale exactly, so both forms equal the unscaled run."""
    want = _usam_fp32(4)
    a, b = _net(), _net()
    scaler_a = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=10 ** 6)
    scaler_b = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=10 ** 6)
    oa = SAMFamily(a.parameters(), torch.optim.SGD, method="usam", rho=0.3, **KW)
    ob = SAMFamily(b.parameters(), torch.optim.SGD, method="usam", rho=0.3, **KW)

    def closure():
        loss = _loss(b)
        scaler_b.scale(loss).backward()
        return loss

    for _ in range(4):
        scaler_a.scale(_loss(a)).backward()
        oa.first_step(zero_grad=True, scaler=scaler_a)
        scaler_a.scale(_loss(a)).backward()
        scaler_a.step(oa)
        scaler_a.update()
        oa.zero_grad()
        ob.step(closure, scaler=scaler_b)
        scaler_b.update()
    assert _same(a, want) and _same(b, want)
    with pytest.raises(RuntimeError, match="opt.step\\(closure, scaler=scaler\\)"):
        scaler_b.step(ob, closure)


@pytest.mark.parametrize("api", ["two-call", "closure"])
def test_grad_scaler_skips_a_step_with_inf_and_lowers_the_scale(api):
    """An inf in the perturbed pass of step 2: that step leaves parameters, rule state and step count
    as they were, the scale halves, and training goes on. Rejects stepping on inf (NaN parameters)."""
    net = _net()
    opt = SAMFamily(net.parameters(), torch.optim.SGD, method="fsam", rho=0.1, **KW)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=10 ** 6)
    for step in range(4):
        blow = step == 2
        before = [p.detach().clone() for p in net.parameters()]
        state = opt.rule_state.flat().clone() if opt.rule_state is not None else None
        if api == "two-call":
            scaler.scale(_loss(net)).backward()
            opt.first_step(zero_grad=True, scaler=scaler)
            scaler.scale(_loss(net) * (float("inf") if blow else 1.0)).backward()
            scaler.step(opt)
        else:
            passes = []

            def closure():
                passes.append(1)
                loss = _loss(net) * (float("inf") if blow and len(passes) == 2 else 1.0)
                scaler.scale(loss).backward()
                return loss
            opt.step(closure, scaler=scaler)
        scaler.update()
        opt.zero_grad()
        if blow:
            assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
            assert opt.k == 2 and torch.equal(opt.rule_state.flat(), state)
            assert scaler.get_scale() == 2.0 ** 7
        else:
            assert opt.k == (step + 1 if step < 2 else step)
            assert all(torch.isfinite(p).all() for p in net.parameters())
    assert opt.k == 3 and not _same(net, _net())


# ------------------------------------------------------------------------------ hooks, LR scheduler
def test_two_call_steps_run_step_hooks_and_satisfy_the_scheduler_order_check():
    """Rejects a second_step that bypasses step(): hooks would not fire and StepLR would warn that
    lr_scheduler.step() came before optimizer.step()."""
    net = _net()
    opt = SAMFamily(net.parameters(), torch.optim.SGD, **KW)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            _two_call(net, opt, 1)
            sched.step()
    assert seen == ["pre", "post"] * 3
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 8)
    assert opt.k == 3
