"""The theory's quantities on CIFAR runs: F, ||grad F|| with weight decay, its standard error on a
subset, ||w_e - w_{e-1}||, rho schedules and the schedule check against the theorems; no host
synchronisation inside a step; checkpoints written off the training loop."""
import csv
import math
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine

from convergence.deepnet.data import Arrays, DeviceSplit  # noqa: E402
from convergence.deepnet.models import TinyCNN  # noqa: E402
from convergence.deepnet.optim import SAMFamily  # noqa: E402
from convergence.deepnet.train import (BackgroundWriter, TrainConfig, grad_subset_indices,  # noqa: E402
                                       theory_quantities, train, train_epoch)
from convergence.errors import InputError  # noqa: E402
from experiments import run_cifar  # noqa: E402

pytestmark = pytest.mark.torch
WD = 0.05


def _arrays(n=128, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = (rng.integers(0, 128, (n, 32, 32, 3)) + 12 * y[:, None, None, None]).astype(np.uint8)
    return Arrays("cifar10", x, y.astype(np.int64), x[:32], y[:32].astype(np.int64), tuple(map(str, range(10))))


def _split(n=128):
    data = _arrays(n)
    return DeviceSplit(data.x_train, data.y_train, data.mean_std, "cpu")


def _net(seed=0):
    torch.manual_seed(seed)
    net = TinyCNN()
    with torch.no_grad():                          # running statistics unlike a fresh BN's (0, 1)
        net.train()
        net(_split().normalize(_split().x[:64]))
    return net


def _by_hand(net, split, wd):
    """F(w) and its gradient by autograd on the whole set in one batch (BN in eval mode)."""
    net.eval()
    params = list(net.parameters())
    loss = torch.nn.functional.cross_entropy(net(split.normalize(split.x)), split.y)
    F = loss + wd / 2 * sum((p * p).sum() for p in params)
    gF = torch.autograd.grad(F, params, retain_graph=True)
    gf = torch.autograd.grad(loss, params)
    net.train()
    flat = lambda g: torch.cat([t.reshape(-1) for t in g])  # noqa: E731
    return F.item(), flat(gF).norm().item(), flat(gf).norm().item()


def test_objective_and_gradient_include_weight_decay():
    """F = mean loss + (wd/2)||w||^2 over the whole set, by hand. Rejects leaving the weight decay out
    of the gradient (then grad_norm = loss_grad_norm, here 20 % away)."""
    net, split = _net(), _split()
    params = list(net.parameters())
    idx, chunk = grad_subset_indices(len(split), None, 48, 1, 0)
    got = theory_quantities(net, params, split, idx, chunk, WD, amp=False)
    F, gF, gf = _by_hand(net, split, WD)
    assert got["objective"] == pytest.approx(F, rel=1e-5)
    assert got["grad_norm"] == pytest.approx(gF, rel=1e-5)
    assert got["loss_grad_norm"] == pytest.approx(gf, rel=1e-5)
    assert got["grad_norm_se"] == 0.0                                       # the whole set: exact
    assert abs(gF - gf) > 0.1 * gF
    assert net.training and all(p.grad is None for p in params)


def test_grad_norm_of_the_objective_goes_to_zero_where_the_loss_gradient_levels_off():
    """Gradient descent on F itself: ||grad F|| falls by orders of magnitude while ||grad f|| levels
    off at wd ||w|| (grad f = -wd w at the minimizer of F): what the loss gradient alone would show."""
    split = _split(64)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    params = list(net.parameters())
    x, y = split.normalize(split.x), split.y
    idx, chunk = grad_subset_indices(len(split), None, 64, 1, 0)
    start = theory_quantities(net, params, split, idx, chunk, WD, amp=False)
    opt = torch.optim.SGD(params, lr=0.2, weight_decay=WD)
    for _ in range(400):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    end = theory_quantities(net, params, split, idx, chunk, WD, amp=False)
    w = torch.cat([p.detach().reshape(-1) for p in params]).norm().item()
    assert end["grad_norm"] < 1e-2 * start["grad_norm"]
    assert end["grad_norm"] < 0.05 * end["loss_grad_norm"]
    assert end["loss_grad_norm"] == pytest.approx(WD * w, rel=0.05)


def _linear(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))


def test_subset_standard_error_matches_the_sampling_variance():
    """A subset of n = 32 of N = 64 images in 4 chunks: the mean reported se^2 over 40 subsets
    equals (1 - n/N) S^2/n, S^2 the variance of the 64 per-image gradients, within 35 %. Rejects
    leaving out the finite-population correction (factor 2) or the division by the chunk count (4)."""
    net, split = _linear(), _split(64)
    params = list(net.parameters())
    net.eval()
    per_image = []
    for i in range(len(split)):
        loss = torch.nn.functional.cross_entropy(net(split.normalize(split.x[i:i + 1])), split.y[i:i + 1])
        per_image.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    net.train()
    G = torch.stack(per_image).double()
    S2 = ((G - G.mean(0)) ** 2).sum().item() / (len(G) - 1)
    n = 32
    want = (1 - n / len(G)) * S2 / n
    reported, errors = [], []
    full = theory_quantities(net, params, split, *grad_subset_indices(len(split), None, 64, 1, 0), WD, False)
    for seed in range(40):
        idx, chunk = grad_subset_indices(len(split), n, 8, 1, seed)
        assert len(idx) == n and chunk == 8
        got = theory_quantities(net, params, split, idx, chunk, WD, amp=False)
        reported.append(got["grad_norm_se"] ** 2)
        errors.append((got["grad_norm"] - full["grad_norm"]) ** 2)
    assert np.mean(reported) == pytest.approx(want, rel=0.35)
    assert np.mean(errors) <= 2 * want                   # |error of the norm| <= error of the vector
    with pytest.raises(InputError, match="--grad-subset 3 is too small"):
        grad_subset_indices(128, 3, 16, 2, 0)


def _cfg(out, **kw):
    base = dict(model="tiny", method="sam", epochs=2, batch_size=32, lr=0.05, stepsize="diminish1",
                rho_schedule="diminish1", eval_batch=32, out=str(out), progress=False, tensorboard=False,
                device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _params(path):
    state = torch.load(path, weights_only=True)["model"]
    return torch.cat([v.reshape(-1) for k, v in state.items() if "running" not in k and "num_batches" not in k])


def test_rho_schedule_and_step_norm_per_epoch(tmp_path):
    """rho_e follows --rho-schedule; step_norm is ||w_e - w_{e-1}|| of the saved weights (w_{-1}: the
    seeded initialization)."""
    data = _arrays()
    train(_cfg(tmp_path / "a", epochs=1), data)
    w1 = _params(tmp_path / "a" / "checkpoint.pt")
    train(_cfg(tmp_path / "a", epochs=2, resume=True), data)
    w2 = _params(tmp_path / "a" / "checkpoint.pt")
    rows = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    assert [float(r["rho"]) for r in rows] == [0.05, 0.025] and [float(r["lr"]) for r in rows] == [0.05, 0.025]
    torch.manual_seed(0)
    w0 = torch.cat([p.detach().reshape(-1) for p in TinyCNN().parameters()])
    assert float(rows[0]["step_norm"]) == pytest.approx((w1 - w0).norm().item(), rel=1e-5)
    assert float(rows[1]["step_norm"]) == pytest.approx((w2 - w1).norm().item(), rel=1e-5)


def test_checkpoints_every_n_epochs_are_written_by_a_background_thread(tmp_path, monkeypatch):
    import convergence.deepnet.train as train_module
    written, real = [], train_module.atomic_write

    def recording(path, data):
        if path.name == "checkpoint.pt":
            written.append(threading.current_thread().name)
        real(path, data)
    monkeypatch.setattr(train_module, "atomic_write", recording)
    train(_cfg(tmp_path, epochs=3, checkpoint_every=2), _arrays())
    assert written == ["checkpoint-writer", "checkpoint-writer"]            # epochs 2 and 3 (the last)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_background_writer_saves_the_state_as_it_was_at_submission(tmp_path, monkeypatch):
    """Rejects a writer that serializes live tensors: training goes on while it writes."""
    import convergence.deepnet.train as train_module
    go = threading.Event()
    real = train_module.atomic_write
    monkeypatch.setattr(train_module, "atomic_write", lambda path, data: (go.wait(5), real(path, data)))
    w = torch.zeros(3)
    writer = BackgroundWriter()
    writer.submit(tmp_path / "c.pt", {"w": w, "rows": [{"epoch": 0}]})
    w.add_(1)                                                               # the next epoch's steps
    go.set()
    writer.wait()
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.zeros(3))


# ------------------------------------------------------------------------------ no host sync
SYNCS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize("method,options", [("sam", {}), ("asam", {}), ("fsam", {}), ("rsam", {}),
                                            ("dnsam", {}), ("msam", {"m": 16}), ("unified", {"lam": "1/t"})])
def test_a_training_step_reads_nothing_back_from_the_device(monkeypatch, method, options):
    """Every way a tensor's value reaches Python raises during train_epoch's steps (on CUDA the same
    is checked with torch.cuda.set_sync_debug_mode in the next test, which also catches host-to-device
    copies). Rejects, e.g., a running loss kept with loss.item() or a Python 'if' on a norm."""
    split = _split(64)
    net = _net()
    opt = SAMFamily(net.parameters(), torch.optim.SGD, method=method, method_options=options, model=net,
                    lr=0.05, momentum=0.9, weight_decay=5e-4, max_grad_norm=10.0)
    batches = list(split.train_batches(32, 0, 0))
    dn = batches[0]

    def full_closure():
        torch.nn.functional.cross_entropy(net(dn[0]), dn[1]).backward()

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor's value was read back to the host inside a step")
    with monkeypatch.context() as patch:
        for name in SYNCS:
            patch.setattr(torch.Tensor, name, refuse)
        sums = train_epoch(opt, net, batches, full_closure)
    assert opt.k == 2 and math.isfinite(sums[0].item()) and 0 <= sums[1].item() <= 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.set_sync_debug_mode)")
def test_a_training_step_makes_no_cuda_sync():
    split = DeviceSplit(_arrays(64).x_train, _arrays(64).y_train, _arrays().mean_std, "cuda", channels_last=True)
    torch.manual_seed(0)
    net = TinyCNN().cuda().to(memory_format=torch.channels_last)
    opt = SAMFamily(net.parameters(), torch.optim.SGD, model=net, lr=0.05, fused=True)
    batches = list(split.train_batches(16, 0, 0))
    train_epoch(opt, net, batches[:1], amp=True)                           # warm-up (cudnn autotuning)
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_epoch(opt, net, batches[1:], amp=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ------------------------------------------------------------------------------ schedules vs theory
def _configure(tmp_path, *argv):
    return run_cifar.configure(run_cifar.build_parser().parse_args(list(argv) + ["--out", str(tmp_path / "o")]))


def test_schedules_are_checked_against_the_theorems(tmp_path, capsys):
    """The fundamental-SAM setting (rho constant) fails sum t_k rho_k < oo for every step-size schedule;
    diminishing t and rho satisfy Khanh et al.'s hypotheses. --require-theory refuses the first."""
    assert "Σ t_k ρ_k < ∞" in _configure(tmp_path, "--stepsize", "diminish1").theory_verdict
    assert "Σ t_k² < ∞" in _configure(tmp_path, "--stepsize", "constant").theory_verdict
    assert _configure(tmp_path, "--stepsize", "diminish1", "--rho-schedule", "diminish1").theory_verdict == ""
    assert _configure(tmp_path, "--stepsize", "0.1/(k+1)**0.75", "--rho-schedule", "0.05/(k+1)**0.5",
                      "--require-theory").theory_verdict == ""
    assert run_cifar.main(["--stepsize", "diminish2", "--require-theory", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m experiments.run_cifar: error: --require-theory: khanh2024-sam-nonconvex needs "
                          "Σ t_k ρ_k < ∞") and err.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,message", [
    (["--rho-schedule", "diminish4"], "unknown rho-schedule 'diminish4'"),
    (["--rho-schedule", "0.05/(k+1)", "--rho", "0.1"], "--rho-schedule '0.05/(k+1)' is an expression in k"),
    (["--stepsize", "0.1/(k+1)", "--lr", "0.1"], "--stepsize '0.1/(k+1)' is an expression in k"),
    (["--rho-schedule", "0.05/(k-1)"], "--rho-schedule '0.05/(k-1) (k = epoch)' is"),
    (["--stepsize", "0.1 - 0.01*k", "--epochs", "20"], "--stepsize must stay positive at every k"),
    (["--grad-subset", "0"], "--grad-subset must be"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be"),
    (["--sync-bn"], "--sync-bn needs torchrun with CUDA devices"),
])
def test_bad_schedule_flags_are_one_line_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert run_cifar.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
