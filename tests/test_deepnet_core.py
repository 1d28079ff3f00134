"""The torch optimizers execute the rules of convergence.methods: same iterates as the numpy runner."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine

from convergence.deepnet.models import make_model  # noqa: E402
from convergence.deepnet.optim import SAMFamily  # noqa: E402
from convergence.methods import make_method  # noqa: E402
from convergence.runner import iterate as run  # noqa: E402
from convergence.schedules import constant  # noqa: E402
from problems import Quadratic  # noqa: E402

pytestmark = pytest.mark.torch

EIGS = [1.0, 2.0, 4.0]
X0 = np.array([[1.0, -0.5, 0.3]])


@pytest.mark.parametrize("method,options", [("gd", {}), ("sam", {}), ("usam", {}), ("unified", {"lam": 0.3}),
                                            ("fsam", {"beta": 0.6}), ("vasso", {"theta": 0.4})])
def test_torch_optimizer_matches_the_numpy_runner(method, options):
    steps, lr, rho = 25, 0.1, 0.2
    trace = run(Quadratic(3, eigs=EIGS), make_method(method, **options), constant(lr), constant(rho),
                steps, 1, x0=X0.copy())
    w = torch.nn.Parameter(torch.tensor(X0[0], dtype=torch.float64))
    eig = torch.tensor(EIGS, dtype=torch.float64)
    opt = SAMFamily([w], torch.optim.SGD, method=method, rho=rho, lr=lr, method_options=options)

    def closure():
        loss = 0.5 * (eig * w * w).sum()
        loss.backward()
        return loss
    for _ in range(steps):
        opt.step(closure)
    np.testing.assert_allclose(w.detach().numpy(), trace.final_x[0], rtol=0, atol=1e-12)


def test_one_sam_step_by_hand_on_a_linear_model():
    """Least squares l(w) = mean((Xw - y)^2)/2: g = X^T(Xw - y)/n, then the gradient at w + rho g/||g||."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64)
    w0 = torch.tensor([0.2, -0.1, 0.5], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = SAMFamily([w], torch.optim.SGD, method="sam", rho=0.05, lr=0.1)

    def closure():
        loss = 0.5 * ((X @ w - y) ** 2).mean()
        loss.backward()
        return loss
    opt.step(closure)
    grad = lambda v: X.T @ (X @ v - y) / len(y)  # noqa: E731
    g = grad(w0)
    expected = w0 - 0.1 * grad(w0 + 0.05 * g / g.norm())
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-14)


def test_two_call_api_equals_the_closure_api():
    eig = torch.tensor(EIGS, dtype=torch.float64)
    ws = [torch.nn.Parameter(torch.tensor(X0[0], dtype=torch.float64)) for _ in range(2)]
    a = SAMFamily([ws[0]], torch.optim.SGD, method="sam", rho=0.2, lr=0.1)
    b = SAMFamily([ws[1]], torch.optim.SGD, method="sam", rho=0.2, lr=0.1)
    for _ in range(5):
        a.step(lambda: (0.5 * (eig * ws[0] ** 2).sum()).backward())
        (0.5 * (eig * ws[1] ** 2).sum()).backward()
        b.first_step(zero_grad=True)
        (0.5 * (eig * ws[1] ** 2).sum()).backward()
        b.second_step(zero_grad=True)
    torch.testing.assert_close(ws[0].detach(), ws[1].detach(), rtol=0, atol=1e-15)


def test_state_dict_round_trip_keeps_the_rule_state():
    eig = torch.tensor(EIGS, dtype=torch.float64)

    def make():
        w = torch.nn.Parameter(torch.tensor(X0[0], dtype=torch.float64))
        return w, SAMFamily([w], torch.optim.SGD, method="fsam", rho=0.2, lr=0.1)
    w1, o1 = make()
    for _ in range(3):
        o1.step(lambda: (0.5 * (eig * w1 ** 2).sum()).backward())
    w2, o2 = make()
    w2.data.copy_(w1.data)
    o2.load_state_dict(o1.state_dict())
    for w, o in ((w1, o1), (w2, o2)):
        for _ in range(3):
            o.step(lambda w=w: (0.5 * (eig * w ** 2).sum()).backward())
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=0, atol=0)


def test_tiny_cnn_shapes():
    model = make_model("tiny", num_classes=10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_run_cifar_bad_input_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.run_cifar", "--model", "resnet81",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "resnet18" in proc.stderr and not (tmp_path / "x").exists()


def _tiny_data():
    from convergence.deepnet.data import Arrays
    rng = np.random.default_rng(0)
    return Arrays("cifar10", rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64),
                  rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 32),
                  tuple(str(i) for i in range(10)))


def _cfg(out, epochs, resume=False):
    from convergence.deepnet.train import TrainConfig
    return TrainConfig(model="tiny", epochs=epochs, batch_size=16, out=str(out), resume=resume, device="cpu",
                       grad_subset=32, eval_batch=8, dnsam_size=16, progress=False, tensorboard=False,
                       stepsize="diminish1")


def test_resume_is_bit_identical_and_a_corrupt_checkpoint_is_refused(tmp_path):
    from convergence.deepnet.train import train
    from convergence.errors import InputError
    straight = train(_cfg(tmp_path / "a", 2), data=_tiny_data())
    train(_cfg(tmp_path / "b", 1), data=_tiny_data())
    resumed = train(_cfg(tmp_path / "b", 2, resume=True), data=_tiny_data())
    assert (tmp_path / "a" / "metrics.csv").read_text().splitlines()[1:] != []
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert straight.keys() == resumed.keys()
    ckpt = tmp_path / "b" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])                     # truncated
    with pytest.raises(InputError, match="is corrupt or unreadable"):
        train(_cfg(tmp_path / "b", 3, resume=True), data=_tiny_data())
