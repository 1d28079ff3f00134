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
