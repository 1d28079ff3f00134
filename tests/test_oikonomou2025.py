"""The predictions and wrong implementations the Oikonomou & Loizou (2025) claims are decided with
(experiments/papers/oikonomou2025.py); the claims themselves run in tests/test_reproduce.py."""
import numpy as np
import pytest

from convergence.methods import make_method
from convergence.runner import iterate
from convergence.sampling import make_sampler
from convergence.schedules import constant
from experiments import mutants
from experiments.papers import oikonomou2025 as paper
from problems import LeastSquares, Ridge


def test_authors_steps_are_the_default():
    ls = paper.least_squares(100)
    assert paper.VARIANT == "authors"
    gamma, rho = paper.steps(ls, paper.FULL, 1.0)
    assert gamma == pytest.approx(1 / (8 * ls.L)) and rho == pytest.approx(1 / (4 * ls.L))


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_deterministic_plateau_is_the_two_cycle(lam):
    """Unified SAM on a quadratic settles on the 2-cycle along the top eigenvector (any start)."""
    ls = LeastSquares(10)
    gamma, rho = paper.steps(ls, paper.FULL, lam)
    trace = iterate(ls, paper.unified(lam), constant(gamma), constant(rho), 3000, 3, seed=4)
    assert trace.final["f_gap"] == pytest.approx(paper.cycle_gap(ls, gamma, rho, lam), rel=1e-6)


def test_usam_reaches_roundoff_not_a_neighbourhood():
    ls = LeastSquares(10)
    gamma, rho = paper.steps(ls, paper.FULL, 0.0)
    trace = iterate(ls, make_method("usam"), constant(gamma), constant(rho), 3000, 2, seed=0)
    assert np.all(trace.final["f_gap"] < paper.ABOVE_ROUNDOFF * paper.roundoff(ls))


def test_sgd_plateau_solves_the_covariance_recursion():
    """tr(H C)/2 from the Lyapunov solve equals the fixed point of C <- E[(I - g M) C (I - g M)^T] + g^2 Sigma
    iterated by enumerating the samples, for uniform and importance sampling."""
    ridge = Ridge(4, row_spread=5.0)
    A, n, d = ridge.A, ridge.n, ridge.dim
    g_i = A * (A @ ridge.x_star - ridge.b)[:, None] + ridge.reg * ridge.x_star
    H_i = np.einsum("ij,ik->ijk", A, A) + ridge.reg * np.eye(d)
    H = H_i.mean(axis=0)
    for name in ("single", "importance"):
        sampler = make_sampler(name, 1, ridge)
        p = ridge.L_i / ridge.L_i.sum() if name == "importance" else np.full(n, 1 / n)
        w = 1 / (n * p)
        gamma = 0.05
        C = np.zeros((d, d))
        for _ in range(5000):
            C = sum(p[i] * ((np.eye(d) - gamma * w[i] * H_i[i]) @ C @ (np.eye(d) - gamma * w[i] * H_i[i]).T
                            + gamma**2 * w[i] ** 2 * np.outer(g_i[i], g_i[i])) for i in range(n))
        assert paper.sgd_plateau(ridge, sampler, gamma) == pytest.approx(np.trace(H @ C) / 2, rel=1e-8)


def test_radius_mutants():
    ls = LeastSquares(10)
    x = ls.x0(2, 0)
    oracle = paper.FULL.oracle(ls, None)
    rule = paper.unified(0.5)
    g = lambda r, rho: r.gradient(0, x, oracle, None, rho, None)[0]
    assert np.allclose(g(mutants.OffsetRadius(rule, 0.1), 0.2), g(rule, 0.3))
    assert np.allclose(g(mutants.FrozenRadius(rule, 0.1), 0.7), g(rule, 0.1))
    assert np.allclose(g(mutants.InvertedRadius(rule, 0.1), 0.05), g(rule, 0.2))


def test_unweighted_importance_is_biased():
    """Importance sampling without its weights averages to sum_i p_i grad f_i, not grad f."""
    ridge = Ridge(5, row_spread=10.0)
    from convergence.random import Streams
    x = ridge.x0(1, 0)
    for sampler, unbiased in ((make_sampler("importance", 1, ridge), True), (paper.UnweightedImportance(1), False)):
        G = np.mean([sampler.oracle(ridge, Streams(0, np.arange(4000), k)).grad(np.repeat(x, 4000, axis=0))
                     for k in range(5)], axis=(0, 1))
        err = np.linalg.norm(G - ridge.grad(x)[0]) / np.linalg.norm(ridge.grad(x)[0])
        assert (err < 0.05) == unbiased, err
