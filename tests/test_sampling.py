"""Samplers: unbiased gradients, per-run reproducibility, expected-residual constants, theory steps."""
import itertools

import numpy as np
import pytest

from convergence.methods import make_method
from convergence.random import Streams
from convergence.runner import iterate
from convergence.sampling import make_sampler
from convergence.schedules import constant
from convergence.theory import unified_pl_steps
from problems import LeastSquares, Logistic, Ridge, RobustRegression

PROBLEMS = [LeastSquares(5, n=12, data_seed=2), Ridge(5, n=12), Logistic(5, n=12),
            RobustRegression(5, n=12)]


@pytest.mark.parametrize("name,batch", [("tau-nice", 3), ("importance", 1), ("importance", 4),
                                        ("single", 1), ("single", 5)])
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_sampled_gradients_are_unbiased(problem, name, batch):
    sampler = make_sampler(name, batch, problem)
    x = problem.x0(1, 0)
    draws = 20_000
    X = np.repeat(x, draws, axis=0)
    g = sampler.oracle(problem, Streams(11, np.arange(draws), 3)).grad(X)
    mean, sem = g.mean(axis=0), g.std(axis=0) / np.sqrt(draws)
    assert np.all(np.abs(mean - problem.grad(x)[0]) <= 5 * sem + 1e-12)


def test_importance_without_weights_would_be_biased():
    """The 1/(n p_i) weight matters: dropping it moves the mean away from grad f."""
    p = PROBLEMS[0]
    sampler = make_sampler("importance", 1, p)
    idx, w = sampler.draw(p, Streams(0, np.arange(20_000), 0))
    x = np.repeat(p.x0(1, 0), 20_000, axis=0)
    weighted = p.sample_grad(x, idx, w).mean(axis=0)
    unweighted = p.sample_grad(x, idx).mean(axis=0)
    true = p.grad(x[:1])[0]
    assert np.linalg.norm(unweighted - true) > 10 * np.linalg.norm(weighted - true)


def test_tau_nice_draws_distinct_indices_uniformly():
    p = PROBLEMS[0]
    idx, _ = make_sampler("tau-nice", 4, p).draw(p, Streams(1, np.arange(30_000), 0))
    assert all(len(set(row)) == 4 for row in idx[:500])
    counts = np.bincount(idx.ravel(), minlength=p.n) / idx.size
    assert np.abs(counts - 1 / p.n).max() < 0.005


def test_samples_of_a_run_do_not_depend_on_the_number_of_runs():
    p = PROBLEMS[1]
    s = make_sampler("tau-nice", 3, p)
    a, _ = s.draw(p, Streams(4, np.arange(3), 9))
    b, _ = s.draw(p, Streams(4, np.arange(50), 9))
    assert np.array_equal(a, b[:3])


def _expected_sq_norm(problem, sampler_name, tau, x):
    """E||grad f_S(x)||^2 by enumerating every sample (tau-nice) or every index (importance/single)."""
    n = problem.n
    if sampler_name == "tau-nice":
        subsets = np.array(list(itertools.combinations(range(n), tau)))
        X = np.repeat(x, len(subsets), axis=0)
        return np.mean(np.sum(problem.sample_grad(X, subsets) ** 2, axis=1))
    p = problem.L_i / problem.L_i.sum() if sampler_name == "importance" else np.full(n, 1 / n)
    X = np.repeat(x, n, axis=0)
    g = problem.sample_grad(X, np.arange(n)[:, None], (1 / (n * p))[:, None])
    return np.sum(p * np.sum(g**2, axis=1))


@pytest.mark.parametrize("name,tau", [("tau-nice", 1), ("tau-nice", 3), ("tau-nice", 8),
                                      ("importance", 1), ("single", 1)])
@pytest.mark.parametrize("problem", [PROBLEMS[0], PROBLEMS[1]], ids=lambda p: p.name)
def test_expected_residual_inequality_holds(problem, name, tau):
    """E||grad f_S||^2 <= 2A (f - f*) + B ||grad f||^2 + C at random points (exact expectations)."""
    c = make_sampler(name, tau, problem).constants(problem)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = problem.x_star[None] + rng.standard_normal((1, problem.dim)) * rng.choice([0.01, 1, 10])
        lhs = _expected_sq_norm(problem, name, tau, x)
        rhs = (2 * c["A"] * (problem.f(x)[0] - problem.f_star) + c["B"] * np.sum(problem.grad(x) ** 2)
               + c["C"])
        assert lhs <= rhs * (1 + 1e-10) + 1e-12


def test_tau_nice_constants_at_the_extremes():
    p = PROBLEMS[0]
    assert make_sampler("tau-nice", p.n, p).constants(p)["A"] == 0.0
    assert make_sampler("tau-nice", p.n, p).constants(p)["B"] == 1.0
    one = make_sampler("tau-nice", 1, p).constants(p)
    assert one["A"] == pytest.approx(p.L_max) and one["B"] == 0.0


def test_theory_steps_deterministic_usam_converges_linearly_and_sam_stalls():
    """Oikonomou & Loizou, PL least squares (n = d = 100, cond 10), deterministic, at the authors'
    gamma* = 1/(8L): USAM (lam = 0) converges linearly to f*; SAM (lam = 1) ends in the 2-cycle
    e -> -e along the top eigenvector of H = A^T A/n, e_1+ = (1 - tL) e_1 - t rho L sign(e_1), of
    amplitude a = t rho L/(2 - tL), so f - f* = L a^2/2: a neighbourhood of size exactly ~ rho^2.

    Rejected: USAM in place of SAM (converges to f*), anti-SAM (fixed point at distance rho:
    level L rho^2/2, 15^2 times higher), SAM at twice the radius (4 times higher)."""
    from experiments.mutants import AntiSAM, ScaledRadius
    p = LeastSquares(100)
    gamma, rho = unified_pl_steps(p.L, p.mu, 0.0, 1.0, 0.0)
    usam = iterate(p, make_method("usam"), constant(gamma), constant(rho), 3000, 2, seed=0)
    its, gap = usam.column("f_gap", 0)
    ok = gap > 1e-25
    slope = np.polyfit(its[ok], np.log(gap[ok]), 1)[0]
    assert gap[-1] <= 1e-20 * gap[0] and slope < -0.005          # log-linear: a linear rate

    def plateau(rule, r):
        trace = iterate(p, rule, constant(gamma), constant(r), 6000, 2, seed=0)
        its, g = trace.column("f_gap", 0)
        return np.median(g[its > 3000])

    rhos = np.array([0.2, 0.05, 0.0125])
    predicted = 0.5 * p.L * (gamma * rhos * p.L / (2 - gamma * p.L)) ** 2
    levels = np.array([plateau(make_method("sam"), r) for r in rhos])
    np.testing.assert_allclose(levels, predicted, rtol=1e-6)
    assert np.polyfit(np.log(rhos), np.log(levels), 1)[0] == pytest.approx(2.0, abs=1e-6)
    for wrong in (make_method("usam"), AntiSAM(), ScaledRadius(make_method("sam"), 2.0)):
        level = plateau(wrong, rhos[1])
        assert not np.isclose(level, predicted[1], rtol=0.1), wrong.name


def test_stochastic_runs_leave_err_bound_empty_and_full_batch_runs_fill_it():
    """With sampled gradients err = ||g_S(x + rho d) - grad f(x)|| holds the sampling noise, which
    L rho ||d|| does not bound: a runner that kept USAM's sampled bound L rho ||grad f_S|| would show
    err/err_bound > 1 here, so the column must stay empty; full-batch runs record it."""
    from convergence.runner import run
    from convergence.spec import toy_run
    for method in ("usam", "sam"):
        noisy = run(toy_run("least_squares", method, iters=300, runs=2, sampling="tau-nice", batch=5))
        assert np.all(np.isnan(noisy.data["err_bound"])) and np.nanmax(noisy.data["err"]) > 0
        exact = run(toy_run("least_squares", method, iters=300, runs=2))
        ratio = exact.data["err"] / exact.data["err_bound"]
        assert np.isfinite(ratio).all() and ratio.max() <= 1 + 1e-9
