"""The torch optimizers run the rules of convergence.methods: same iterates as the numpy runner,
one SAM step by hand, BatchNorm handling, state_dict round trip, bf16 autocast and clipping."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine

from convergence.deepnet.optim import (SAMFamily, disable_running_stats, enable_running_stats,  # noqa: E402
                                       freeze_bn_stats)
from convergence.deepnet.paramvec import ParamVec  # noqa: E402
from convergence.errors import InputError  # noqa: E402
from convergence.methods import make_method  # noqa: E402
from convergence.runner import iterate as run  # noqa: E402
from convergence.schedules import diminishing  # noqa: E402
from convergence.vec import norm, normalize  # noqa: E402
from problems import Quadratic  # noqa: E402
from problems.finite_sum import RobustRegression  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


# ----------------------------------------------------------------------------------------- ParamVec
def test_paramvec_ops_match_flat_arithmetic():
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal(7), rng.standard_normal(7)
    split = lambda v: ParamVec([torch.tensor(v[:3]), torch.tensor(v[3:]).reshape(2, 2)])  # noqa: E731
    a, b = split(a_np), split(b_np)
    two = torch.tensor(2.0, dtype=F64)
    cases = {"a+b": (a + b, a_np + b_np), "a-b": (a - b, a_np - b_np), "a*b": (a * b, a_np * b_np),
             "a/b": (a / b, a_np / b_np), "3*a": (3 * a, 3 * a_np), "a*0.5": (a * 0.5, a_np * 0.5),
             "1-a": (1 - a, 1 - a_np), "a+1": (1 + a, a_np + 1), "-a": (-a, -a_np),
             "a/t": (a / two, a_np / 2), "t*a": (two * a, 2 * a_np), "a-t": (a - two, a_np - 2),
             "t-a": (two - a, 2 - a_np), "a/|a|": (normalize(a), a_np / np.linalg.norm(a_np))}
    for name, (got, want) in cases.items():
        assert isinstance(got, ParamVec), name
        np.testing.assert_allclose(got.flat().numpy(), want, rtol=1e-15, atol=1e-15, err_msg=name)
    assert abs(norm(a).item() - np.linalg.norm(a_np)) < 1e-14
    assert norm(a).dim() == 0                                    # a 0-d tensor: no host sync
    zero = 0 * a
    assert torch.equal(normalize(zero).flat(), torch.zeros(7, dtype=F64))      # 0 at ||g|| = 0
    with pytest.raises(TypeError):
        a * torch.ones(3)


def test_paramvec_lazy_combinations_evaluate_exactly_once_into_one_buffer(monkeypatch):
    """x + rho g/||g|| (the perturbed point) and (1-lam) g + lam g/||g|| (Unified SAM) evaluate to the
    flat arithmetic with one parameter-sized out-of-place result, and leave their operands as they were."""
    rng = np.random.default_rng(1)
    x_np, g_np = rng.standard_normal(7), rng.standard_normal(7)
    split = lambda v: ParamVec([torch.tensor(v[:3]), torch.tensor(v[3:]).reshape(2, 2)])  # noqa: E731
    x, g = split(x_np), split(g_np)
    rho, lam = 0.05, torch.tensor(0.3, dtype=F64)
    unit = g_np / np.linalg.norm(g_np)
    outputs = []
    for name in ("_foreach_mul", "_foreach_add", "_foreach_sub", "_foreach_div", "_foreach_neg"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, **k: outputs.append(1) or _real(*a, **k))
    cases = {"x + rho g/|g|": (lambda: x + rho * normalize(g), x_np + rho * unit),
             "(1-lam) g + lam g/|g|": (lambda: (1 - lam) * g + lam * normalize(g), 0.7 * g_np + 0.3 * unit),
             "x - 2 (g - x) / 4": (lambda: x - 2 * (g - x) / 4, x_np - (g_np - x_np) / 2)}
    for name, (expr, want) in cases.items():
        outputs.clear()
        got = expr().tensors
        assert len(outputs) == 1, name                       # one new buffer for the whole expression
        np.testing.assert_allclose(torch.cat([t.reshape(-1) for t in got]).numpy(), want,
                                   rtol=1e-15, atol=1e-15, err_msg=name)
    assert np.array_equal(x.flat().numpy(), x_np) and np.array_equal(g.flat().numpy(), g_np)
    v = 2 * g
    buffer = [torch.empty_like(t) for t in g.tensors]
    assert v.evaluate_into(buffer) is buffer and not v.evaluated  # written into the buffer, not kept
    np.testing.assert_array_equal(torch.cat([t.reshape(-1) for t in buffer]).numpy(), 2 * g_np)
    assert v.tensors is v.tensors and v.evaluated            # evaluated once, then kept
    assert abs(norm(-3 * g).item() - 3 * np.linalg.norm(g_np)) < 1e-14


# ------------------------------------------------------------------------- torch vs numpy iterates
class _Linear(torch.nn.Module):
    """x in R^d split into two parameter tensors, so the global norm spans tensors."""

    def __init__(self, x0):
        super().__init__()
        x0 = torch.tensor(x0)
        self.w1 = torch.nn.Parameter(x0[:2].clone())
        self.w2 = torch.nn.Parameter(x0[2:].clone())

    def x(self):
        return torch.cat([self.w1, self.w2])


def _torch_run(model, loss, rule_name, options, t, r, iters, batch, dnsam=False):
    opt = SAMFamily(model.parameters(), torch.optim.SGD, method=rule_name, method_options=options,
                    rho=r(0), lr=t(0), exact_random=True)

    def closure(*b):
        value = loss(model.x(), *b)
        value.backward()
        return value

    full = (lambda: closure(*batch)) if dnsam else None
    for k in range(iters):
        opt.set_lr(t(k))
        opt.set_rho(r(k))
        opt.step(closure, batch=batch, full_closure=full)
    return model.x().detach().numpy()


METHODS = [("gd", {}), ("sam", {}), ("usam", {}), ("unified", {"lam": 0.3}), ("fsam", {}),
           ("vasso", {}), ("rsam", {"noise": 0.05}), ("dnsam", {}), ("asam", {}), ("msam", {"m": 2}),
           ("msam", {"m": 5, "base": "usam"})]


@pytest.mark.parametrize("name,options", METHODS, ids=[f"{n}{o.get('m', '')}" for n, o in METHODS])
def test_torch_optimizer_equals_numpy_runner_robust_regression(name, options):
    problem = RobustRegression(4, n=10)
    A, b = torch.tensor(problem.A), torch.tensor(problem.b)
    x0 = np.random.default_rng(3).standard_normal((1, 4))
    t, r, iters = diminishing(0.5, 0.6), diminishing(0.1, 0.6), 200
    trace = run(problem, make_method(name, **options), t, r, iters, runs=1, x0=x0)

    def loss(x, Ab, bb):
        return torch.log1p((Ab @ x - bb) ** 2).mean()

    got = _torch_run(_Linear(x0[0]), loss, name, options, t, r, iters, (A, b), dnsam=name == "dnsam")
    np.testing.assert_allclose(got, trace.final_x[0], rtol=0, atol=1e-12)
    assert np.abs(got - x0[0]).max() > 1e-3                    # it did move


@pytest.mark.parametrize("name", ["gd", "sam", "usam", "vasso"])
def test_torch_optimizer_equals_numpy_runner_quadratic(name):
    problem = Quadratic(4, kappa=10.0)
    eigs = torch.tensor(problem.eigs)
    x0 = np.array([[0.9, -0.4, 0.3, -0.8]])
    t, r, iters = diminishing(1.0, 0.6), diminishing(0.05, 0.6), 300
    trace = run(problem, make_method(name), t, r, iters, runs=1, x0=x0)
    got = _torch_run(_Linear(x0[0]), lambda x: 0.5 * (eigs * x * x).sum(), name, {}, t, r, iters, None)
    np.testing.assert_allclose(got, trace.final_x[0], rtol=0, atol=1e-12)


def test_stationary_point_stays():
    """At grad f = 0 the normalized direction is 0: SAM stays put exactly."""
    model = _Linear(np.zeros(4))
    opt = SAMFamily(model.parameters(), torch.optim.SGD, method="sam", rho=0.1, lr=0.5)
    for _ in range(3):
        opt.step(lambda: (0.5 * (model.x() ** 2).sum()).backward())
    assert torch.equal(model.x().detach(), torch.zeros(4, dtype=F64))


# -------------------------------------------------------------------------------- one step by hand
def test_one_sam_step_by_hand_linear_model():
    """Linear model z = W u + c, loss (1/n) sum ||z - v||^2: gradients in closed form."""
    g = torch.Generator().manual_seed(0)
    U, V = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    lin = torch.nn.Linear(3, 2).double()
    W0, c0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    rho, lr, n = 0.07, 0.3, len(U)

    def grads(W, c):
        R = U @ W.T + c - V                       # (n, 2)
        return 2 / n * R.T @ U, 2 / n * R.sum(0)

    gW, gc = grads(W0, c0)
    gnorm = torch.sqrt((gW ** 2).sum() + (gc ** 2).sum())
    W1, c1 = W0 + rho * gW / gnorm, c0 + rho * gc / gnorm
    hW, hc = grads(W1, c1)
    want_W, want_c = W0 - lr * hW, c0 - lr * hc

    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="sam", rho=rho, lr=lr)

    def closure():
        loss = ((lin(U) - V) ** 2).sum(1).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert abs(loss.item() - ((U @ W0.T + c0 - V) ** 2).sum(1).mean().item()) < 1e-14
    torch.testing.assert_close(lin.weight.detach(), want_W, rtol=0, atol=1e-14)
    torch.testing.assert_close(lin.bias.detach(), want_c, rtol=0, atol=1e-14)

    # the two-call API gives the same step
    lin2 = torch.nn.Linear(3, 2).double()
    lin2.load_state_dict({"weight": W0, "bias": c0})
    opt2 = SAMFamily(lin2.parameters(), torch.optim.SGD, method="sam", rho=rho, lr=lr)
    ((lin2(U) - V) ** 2).sum(1).mean().backward()
    opt2.first_step(zero_grad=True)
    ((lin2(U) - V) ** 2).sum(1).mean().backward()
    opt2.second_step(zero_grad=True)
    assert torch.equal(lin2.weight, lin.weight) and torch.equal(lin2.bias, lin.bias)


def test_perturbed_points_reuse_one_buffer_and_x_k_is_restored_exactly():
    """Every step evaluates x_k + rho d_k into the same storage (no parameter-sized allocation per
    step); after the step the parameters are x_k's own tensors again, updated by the base step."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2).double()
    U, V = torch.randn(8, 4, dtype=F64), torch.randn(8, 2, dtype=F64)
    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="sam", rho=0.1, lr=0.1)
    seen = []

    def closure():
        seen.append(lin.weight.data)           # kept alive, so a fresh allocation gets a new address
        ((lin(U) - V) ** 2).sum().backward()

    own = lin.weight.data_ptr()
    for _ in range(3):
        opt.step(closure)
    ptrs = [t.data_ptr() for t in seen]
    assert ptrs[0::2] == [own] * 3                           # first pass: at x_k, in place
    assert len(set(ptrs[1::2])) == 1 and ptrs[1] != own      # second pass: one reused buffer
    assert lin.weight.data_ptr() == own


def test_first_step_twice_is_refused_and_moves_nothing():
    lin = torch.nn.Linear(3, 1)
    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="sam", lr=0.1)
    w0 = lin.weight.detach().clone()
    lin(torch.ones(2, 3)).sum().backward()
    opt.first_step(zero_grad=True)
    w_perturbed = lin.weight.detach().clone()
    lin(torch.ones(2, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="second_step"):
        opt.first_step()
    assert torch.equal(lin.weight, w_perturbed)
    opt.second_step()
    assert not torch.equal(lin.weight, w0)                   # the step went on as usual


def test_first_step_refuses_rules_that_need_step_closure():
    lin = torch.nn.Linear(3, 1)
    w = lin.weight.detach().clone()
    for name in ("rsam", "msam"):
        opt = SAMFamily(lin.parameters(), torch.optim.SGD, method=name, lr=0.1)
        lin(torch.ones(2, 3)).sum().backward()
        with pytest.raises(InputError, match="step\\(closure"):
            opt.first_step()
        assert torch.equal(lin.weight, w)                    # nothing moved
    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="msam", lr=0.1)
    with pytest.raises(InputError, match="batch"):
        opt.step(lambda: lin(torch.ones(2, 3)).sum().backward())
    with pytest.raises(InputError, match="full_closure"):
        SAMFamily(lin.parameters(), torch.optim.SGD, method="dnsam", lr=0.1).step(
            lambda: lin(torch.ones(2, 3)).sum().backward())


# ------------------------------------------------------------------------------------ state, BN, amp
def _bn_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3))


def test_batchnorm_running_stats_updated_on_first_pass_only():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    ref = _bn_net()
    ref(x)                                                       # one pass at x_k
    net = _bn_net()
    opt = SAMFamily(net.parameters(), torch.optim.SGD, method="sam", lr=0.1, model=net)
    opt.step(lambda: torch.nn.functional.cross_entropy(net(x), y).backward())
    bn, bn_ref = net[1], ref[1]
    assert bn.num_batches_tracked.item() == 1
    assert torch.equal(bn.running_mean, bn_ref.running_mean) and torch.equal(bn.running_var, bn_ref.running_var)
    assert bn.track_running_stats                                # restored after the step
    # without model=, the perturbed pass updates them too
    net2 = _bn_net()
    opt2 = SAMFamily(net2.parameters(), torch.optim.SGD, method="sam", lr=0.1)
    opt2.step(lambda: torch.nn.functional.cross_entropy(net2(x), y).backward())
    assert net2[1].num_batches_tracked.item() == 2
    # the helpers
    before = bn.running_mean.clone()
    with freeze_bn_stats(net):
        net(x)
    disable_running_stats(net)
    net(x)
    enable_running_stats(net)
    assert torch.equal(bn.running_mean, before) and bn.num_batches_tracked.item() == 1
    net(x)
    assert bn.num_batches_tracked.item() == 2


@pytest.mark.parametrize("name", ["fsam", "vasso", "rsam"])
def test_state_dict_round_trip_continues_identically(name):
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))

    def make():
        net = _bn_net()
        return net, SAMFamily(net.parameters(), torch.optim.SGD, method=name, lr=0.1, momentum=0.9,
                              weight_decay=1e-3, model=net, seed=5)

    def steps(net, opt, n):
        for _ in range(n):
            opt.step(lambda: torch.nn.functional.cross_entropy(net(x), y).backward())

    net_a, opt_a = make()
    steps(net_a, opt_a, 3)
    sd_net, sd_opt = net_a.state_dict(), opt_a.state_dict()
    if name != "rsam":                                                # the EMA is saved, flat
        n = sum(p.numel() for p in net_a.parameters())
        assert isinstance(sd_opt["samconv"]["rule_state"], torch.Tensor)
        assert sd_opt["samconv"]["rule_state"].shape == (n,)
    import io
    buf = io.BytesIO()
    torch.save({"net": sd_net, "opt": sd_opt}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    net_b, opt_b = make()
    net_b.load_state_dict(loaded["net"])
    opt_b.load_state_dict(loaded["opt"])
    assert opt_b.k == 3
    steps(net_a, opt_a, 2)
    steps(net_b, opt_b, 2)
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="state_dict"):
        SAMFamily(net_b.parameters(), torch.optim.SGD, method="sam", lr=0.1).load_state_dict(sd_opt)


def test_bf16_autocast_and_clipping():
    from convergence.deepnet.models import TinyCNN
    torch.manual_seed(0)
    net = TinyCNN()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    lr, clip = 0.5, 1e-3
    opt = SAMFamily(net.parameters(), torch.optim.SGD, method="sam", lr=lr, model=net, max_grad_norm=clip)
    before = ParamVec([p.detach().clone() for p in net.parameters()])

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        assert logits.dtype == torch.bfloat16
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.isfinite(loss)
    after = ParamVec([p.detach().clone() for p in net.parameters()])
    moved = (after - before).norm().item()
    assert 0 < moved <= lr * clip * (1 + 1e-5)                   # the clipped g_k was used
    assert all(p.dtype == torch.float32 for p in net.parameters())


# ------------------------------------------------------------------------ precision, ownership, misuse
def test_norm_is_taken_in_float32_or_wider():
    """Half-precision gradients of norm 1e-6: 1/||g|| overflows float16, the direction must not."""
    g = ParamVec([torch.full((4,), 5e-7, dtype=torch.float16), torch.full((2, 2), -5e-7, dtype=torch.float16)])
    d = normalize(g)
    assert all(t.dtype == torch.float16 and torch.isfinite(t).all() for t in d.tensors)
    assert abs(norm(d).item() - 1) < 2e-3
    mixed = ParamVec([torch.tensor([1e-3], dtype=F64), torch.tensor([3.0, 4.0])])
    assert norm(mixed).dtype == F64 and abs(norm(mixed).item() - np.sqrt(25 + 1e-6)) < 1e-15


class _WithUnused(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.used(x)


def test_parameters_without_gradient_are_skipped_by_the_base_step():
    """As with plain SGD, weight decay must not move a parameter that got no gradient."""
    torch.manual_seed(0)
    for two_call in (False, True):
        net = _WithUnused()
        w = net.unused.weight.detach().clone()
        opt = SAMFamily(net.parameters(), torch.optim.SGD, method="sam", lr=0.1, weight_decay=0.5)
        x = torch.randn(4, 3)
        if two_call:
            net(x).sum().backward()
            opt.first_step(zero_grad=True)
            net(x).sum().backward()
            opt.second_step()
        else:
            opt.step(lambda: net(x).sum().backward())
        assert torch.equal(net.unused.weight, w) and net.unused.weight.grad is None
        assert net.used.weight.grad is not None


def test_gradients_in_shared_storage_are_copied_before_the_next_pass():
    """DDP's gradient_as_bucket_view leaves p.grad as views of one bucket that every backward
    overwrites; F-SAM, DNSAM and m-SAM keep gradients across passes and must see their own."""
    import torch.distributed as dist
    import tempfile
    torch.manual_seed(0)
    U, V = torch.randn(8, 3, dtype=F64), torch.randn(8, dtype=F64)
    w0 = torch.randn(3, dtype=F64)
    store = tempfile.NamedTemporaryFile(delete=False).name
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        for name, options in (("fsam", {"beta": 0.6}), ("dnsam", {}), ("msam", {"m": 2})):
            finals = []
            for wrap in (False, True):
                net = torch.nn.Linear(3, 1, bias=False).double()
                with torch.no_grad():
                    net.weight.copy_(w0)
                module = torch.nn.parallel.DistributedDataParallel(net, gradient_as_bucket_view=True) \
                    if wrap else net
                opt = SAMFamily(net.parameters(), torch.optim.SGD, method=name, method_options=options,
                                rho=0.1, lr=0.05)

                def loss(u, v):
                    ((module(u).squeeze(1) - v) ** 2).mean().backward()

                for _ in range(3):
                    opt.step(loss, batch=(U, V), full_closure=lambda: loss(U, V))
                finals.append(net.weight.detach().clone())
                del module
            torch.testing.assert_close(finals[1], finals[0], rtol=0, atol=1e-15, msg=name)
    finally:
        dist.destroy_process_group()


def test_global_reduce_keeps_each_parameters_dtype():
    import torch.distributed as dist
    import tempfile
    store = tempfile.NamedTemporaryFile(delete=False).name
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        a = torch.nn.Parameter(torch.ones(2, dtype=F64))
        b = torch.nn.Parameter(torch.ones(3, dtype=torch.float32))
        opt = SAMFamily([a, b], torch.optim.SGD, method="sam", lr=0.1, distributed="global")
        opt.step(lambda: ((a ** 2).sum() + (b ** 2).sum().double()).backward())
        assert a.dtype == F64 and b.dtype == torch.float32 and torch.isfinite(b).all()
    finally:
        dist.destroy_process_group()


def test_refused_first_step_and_pending_load_leave_everything_as_it_was():
    lin = torch.nn.Linear(3, 1)
    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="rsam", lr=0.1)
    lin(torch.ones(2, 3)).sum().backward()
    grad = lin.weight.grad
    with pytest.raises(InputError, match="step\\(closure"):
        opt.first_step()
    assert lin.weight.grad is grad                           # the user's gradient is still there
    opt = SAMFamily(lin.parameters(), torch.optim.SGD, method="fsam", lr=0.1)
    saved = opt.state_dict()
    opt.step(lambda: lin(torch.ones(2, 3)).sum().backward())
    lin(torch.ones(2, 3)).sum().backward()
    opt.first_step(zero_grad=True)
    with pytest.raises(RuntimeError, match="second_step"):
        opt.load_state_dict(saved)
    with pytest.raises(RuntimeError, match="second_step"):
        opt.state_dict()
    assert opt.k == 1 and opt.rule_state is not None


def test_from_flat_keeps_each_tensors_layout():
    """A flattened vector put back into channels_last tensors gets their strides (a fused optimizer
    pairs parameter and gradient by memory order) and their values in logical order."""
    conv = torch.randn(4, 3, 2, 2).to(memory_format=torch.channels_last)
    bias = torch.randn(4, dtype=F64)
    v = ParamVec([conv, bias])
    back = ParamVec.from_flat(v.flat(), v.tensors)
    assert back.tensors[0].stride() == conv.stride() and back.tensors[1].dtype == F64
    assert torch.equal(back.tensors[0], conv) and torch.equal(back.tensors[1], bias)
