"""Diagonal linear networks (problems/diagonal_net.py) and the andriushchenko2022 claims."""
import numpy as np
import pytest

from convergence.methods import make_method
from convergence.sampling import FullOracle
from experiments.papers import andriushchenko2022 as paper
from problems.diagonal_net import DiagonalNet, train_diagonal_net


@pytest.fixture(scope="module")
def net():
    return DiagonalNet(alpha=0.1, notebook=True)


def test_data_and_init(net):
    assert net.A.shape == (20, 30) and net.A_test.shape == (1000, 30) and net.dim == 60
    assert np.count_nonzero(net.beta_star) == 3 and np.isclose(np.linalg.norm(net.beta_star), 1)
    X = net.x0(2)
    assert np.all(X[:, :30] == 0.1) and np.all(X[:, 30:] == 0)


def test_gradient_and_sample_gradients_match_finite_differences(net):
    X = np.random.default_rng(0).standard_normal((3, 60)) * 0.3
    eps = 1e-6
    fd = np.stack([(net.f(X + eps * e) - net.f(X - eps * e)) / (2 * eps) for e in np.eye(60)], axis=1)
    assert np.allclose(net.grad(X), fd, atol=1e-8)
    idx = np.tile(np.arange(20), (3, 1))
    assert np.allclose(net.sample_grad(X, idx), net.grad(X), atol=1e-12)
    one = np.array([[4], [4], [4]])
    r = X[:, :30] * X[:, 30:] @ net.A[4] - net.y[4]
    gb = r[:, None] * net.A[4]
    assert np.allclose(net.sample_grad(X, one), np.c_[gb * X[:, 30:], gb * X[:, :30]])


def test_one_sam_step_equals_the_engines_m_sharpness_rule(net):
    """1-SAM with the notebook's radius rho is the engine's msam(m=1, base=usam) at radius 2 rho;
    n-SAM is USAM with the full batch."""
    X = np.random.default_rng(1).standard_normal((2, 60)) * 0.3
    gamma, rho = 0.1, 0.05
    _, _, _, X1 = train_diagonal_net(net, "1sam", gamma, [rho, rho], 1, X0=X)
    g, _, _ = make_method("msam", m=1, base="usam").gradient(0, X, FullOracle(net), None, 2 * rho, None)
    assert np.allclose(X1, X - gamma * g, atol=1e-13)
    _, _, _, X1 = train_diagonal_net(net, "nsam", gamma, [rho, rho], 1, X0=X)
    g, _, _ = make_method("usam").gradient(0, X, FullOracle(net), None, rho, None)
    assert np.allclose(X1, X - gamma * g, atol=1e-13)


@pytest.mark.parametrize("method,rule,hyper,factor", [
    ("gd", "gd", {}, 0.0), ("nsam", "usam", {}, 1.0), ("1sam", "msam", {"m": 1, "base": "usam"}, 2.0)])
def test_training_is_the_engine_run(net, method, rule, hyper, factor):
    """train_diagonal_net is convergence.runner.run (full batch, methods.py rules), recorded exactly:
    its losses are f and the test loss of the engine's iterates at the record steps."""
    from convergence.runner import run
    from convergence.sampling import make_sampler
    rho = np.array([0.05, 0.2])
    it, tr, te, X = train_diagonal_net(net, method, 1 / 3, rho, 30, record=[0, 7, 30])
    assert list(it) == [0, 7, 30]
    for r in range(2):
        for j, k in enumerate(it):
            ref = run(net, make_method(rule, **hyper), lambda i: 1 / 3, lambda i: factor * rho[r], int(k), 1,
                      x0=net.x0(1), sampler=make_sampler("full"), grid=[]).final_x
            assert np.isclose(tr[j, r], net.f(ref)[0], rtol=1e-12) and np.isclose(te[j, r], net.test_loss(ref)[0], rtol=1e-12)
        assert np.allclose(X[r], ref[0], rtol=1e-12, atol=0)


def test_no_smoothness_bound_without_smoothness(net):
    """L = L_i = inf: the oracles report no bound (None), so the runner records none and warns nothing."""
    import warnings
    from convergence.runner import run
    assert FullOracle(net).L is None and all(c.L is None for c in FullOracle(net).split(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = run(net, make_method("gd"), lambda k: 0.1, lambda k: 0.1, 5, 1)
    assert np.all(np.isnan(tr.data["err_bound"]))


def test_reproduces_the_authors_notebook(net):
    """GD and 1-SAM (gamma = 10/d, alpha = 0.1, 10^4 steps) on the notebook's instance: its printed
    test losses 0.015747762611708224 and, at rho = 0.1, 0.0015235412218010903."""
    _, _, te, _ = train_diagonal_net(net, "gd", 10 / 30, [0.0], 10_000)
    assert np.isclose(te[-1][0], 0.015747762611708224, rtol=1e-6)
    _, _, te, _ = train_diagonal_net(net, "1sam", 10 / 30, [0.1], 10_000)
    assert np.isclose(te[-1][0], 0.0015235412218010903, rtol=1e-5)


def test_quick_claims_pass(tmp_path):
    claims = paper.run(tmp_path, quick=True)
    assert [c.name for c in claims] == ["1sam-beats-gd", "nsam-close-to-gd", "1sam-smaller-l1"]
    assert all(c.passed for c in claims), [(c.name, c.measured) for c in claims if not c.passed]
    assert (tmp_path / "diag_net_rho.png").exists() and (tmp_path / "diag_net_rho.pdf").exists()
