"""Each method's rule against steps computed by hand, its state, and its zero-gradient handling."""
import re

import numpy as np
import pytest

from convergence.errors import InputError
from convergence.methods import METHODS, make_method
from convergence.random import Streams
from convergence.runner import iterate
from convergence.sampling import FullOracle, make_sampler
from convergence.schedules import Schedule, constant, diminishing, k
from problems import LeastSquares, Quadratic, make_problem

A = np.array([1.0, 4.0])                  # f = (x1^2 + 4 x2^2)/2, grad f(x) = A x
QUAD = Quadratic(2, eigs=A)
X0 = np.array([[1.0, 1.0]])
T, RHO = 0.1, 0.3


def unit(v):
    return v / np.linalg.norm(v)


def one_step(method, **hyper):
    trace = iterate(QUAD, make_method(method, **hyper), constant(T), constant(RHO), 1, 1, x0=X0.copy())
    return trace.final_x[0]


def sam_like_step(x, d):
    """x - t grad f(x + rho d) for the quadratic."""
    return x - T * A * (x + RHO * d)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0])
def test_unified_step(lam):
    g = A * X0[0]
    expected = sam_like_step(X0[0], (1 - lam) * g + lam * unit(g))
    np.testing.assert_allclose(one_step("unified", lam=lam), expected, rtol=1e-15)


def test_unified_endpoints_are_usam_and_sam_exactly():
    p = make_problem("sinpl", 3)
    for lam, other in ((0.0, "usam"), (1.0, "sam")):
        a = iterate(p, make_method("unified", lam=lam), diminishing(0.1, 0.6), constant(0.2), 500, 4, seed=2)
        b = iterate(p, make_method(other), diminishing(0.1, 0.6), constant(0.2), 500, 4, seed=2)
        assert np.array_equal(a.final_x, b.final_x)


def test_unified_lambda_schedule_follows_k():
    lam = Schedule(1 / (k + 1), "1/t")
    x = X0[0].copy()
    for step in range(3):
        g = A * x
        lk = 1 / (step + 1)
        x = sam_like_step(x, (1 - lk) * g + lk * unit(g))
    trace = iterate(QUAD, make_method("unified", lam=lam), constant(T), constant(RHO), 3, 1, x0=X0.copy())
    np.testing.assert_allclose(trace.final_x[0], x, rtol=1e-14)


def test_fsam_three_steps_and_its_ema():
    sigma, beta = 1.0, 0.6
    x, m = X0[0].copy(), None
    for _ in range(3):
        g = A * x
        if m is None:
            u, m = g, g                                   # first step: m = g, plain SAM
        else:
            u, m = g - sigma * m, beta * m + (1 - beta) * g   # u uses the previous EMA
        x = sam_like_step(x, unit(u))
    rule = make_method("fsam", sigma=sigma, beta=beta)
    trace = iterate(QUAD, rule, constant(T), constant(RHO), 3, 1, x0=X0.copy())
    np.testing.assert_allclose(trace.final_x[0], x, rtol=1e-14)


def test_fsam_state_after_three_directions():
    rule = make_method("fsam", sigma=1.0, beta=0.9)
    oracle = FullOracle(QUAD)
    xs = [np.array([[1.0, 1.0]]), np.array([[0.5, -1.0]]), np.array([[2.0, 0.0]])]
    state = rule.init(xs[0])
    for i, x in enumerate(xs):
        d, state = rule.direction(i, x, oracle, state, None)
    g = [A * x[0] for x in xs]
    m = g[0]
    m = 0.9 * m + 0.1 * g[1]
    np.testing.assert_allclose(d[0], unit(g[2] - m))         # third direction uses m_1
    np.testing.assert_allclose(state[0], 0.9 * m + 0.1 * g[2])


def test_vasso_three_steps_and_its_average():
    theta = 0.4
    x, v = X0[0].copy(), None
    for _ in range(3):
        g = A * x
        v = g if v is None else (1 - theta) * v + theta * g
        x = sam_like_step(x, unit(v))
    trace = iterate(QUAD, make_method("vasso", theta=theta), constant(T), constant(RHO), 3, 1, x0=X0.copy())
    np.testing.assert_allclose(trace.final_x[0], x, rtol=1e-14)
    sam = iterate(QUAD, make_method("sam"), constant(T), constant(RHO), 3, 1, x0=X0.copy())
    vasso1 = iterate(QUAD, make_method("vasso", theta=1.0), constant(T), constant(RHO), 3, 1, x0=X0.copy())
    np.testing.assert_allclose(vasso1.final_x, sam.final_x, rtol=1e-15)   # theta = 1 is SAM


def test_rsam_step_with_its_random_point():
    lam_r, noise, seed = 2.0, 0.1, 5
    delta = noise * Streams(seed, [0], 0).normal_like(X0)[0]
    v = lam_r * A * (X0[0] + delta) + delta
    expected = sam_like_step(X0[0], unit(v))
    trace = iterate(QUAD, make_method("rsam", lam_r=lam_r, noise=noise), constant(T), constant(RHO), 1, 1,
                seed=seed, x0=X0.copy())
    np.testing.assert_allclose(trace.final_x[0], expected, rtol=1e-14)


def test_dnsam_normalizes_the_sample_gradient_by_the_full_gradient_norm():
    p = LeastSquares(4, n=6, data_seed=3)
    sampler = make_sampler("tau-nice", 2, p)
    streams = Streams(0, [0], 0)
    oracle = sampler.oracle(p, streams)
    x = p.x0(1, 0)
    d, _ = make_method("dnsam").direction(0, x, oracle, None, streams)
    np.testing.assert_allclose(d, oracle.grad(x) / np.linalg.norm(p.grad(x)), rtol=1e-14)


def test_msam_averages_chunk_gradients_each_at_its_own_ascent_point():
    p = LeastSquares(3, n=4, data_seed=1)
    x = np.array([[0.3, -0.2, 0.5]])
    rho, m = 0.2, 2
    grads = []
    for chunk in (np.array([0, 1]), np.array([2, 3])):
        def g_c(y, c=chunk):
            return p.sample_grad(y, c[None, :])
        grads.append(g_c(x + rho * unit(g_c(x)[0])))
    expected = x - T * np.mean(grads, axis=0)
    trace = iterate(p, make_method("msam", m=m), constant(T), constant(rho), 1, 1, x0=x.copy())
    np.testing.assert_allclose(trace.final_x, expected, rtol=1e-14)
    # m = n is plain SAM on the full batch
    full = iterate(p, make_method("msam", m=4), constant(T), constant(rho), 5, 1, x0=x.copy())
    sam = iterate(p, make_method("sam"), constant(T), constant(rho), 5, 1, x0=x.copy())
    np.testing.assert_allclose(full.final_x, sam.final_x, rtol=1e-13)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_gradient_start_is_handled(method):
    """At a stationary point: no NaN; every rule but RSAM (whose random point has a non-zero
    gradient) stays exactly at x*."""
    p = LeastSquares(3, n=4, data_seed=1)
    p._set_data(p.A, 0.0 * p.b)                 # b = 0: grad f(0) = 0 exactly, not up to round-off
    p.x_star = np.zeros(3)
    hyper = {"noise": 0.0} if method == "rsam" else {}
    trace = iterate(p, make_method(method, **hyper), constant(0.1), constant(0.5), 5, 2,
                x0=np.tile(p.x_star, (2, 1)))
    assert np.all(np.isfinite(trace.final_x))
    assert np.array_equal(trace.final_x, np.zeros((2, 3)))

def test_rsam_step_from_a_stationary_point_matches_the_hand_computed_step():
    """From x* (grad f = 0) RSAM still moves: delta = noise * xi (xi the run's normal draw of step
    0, stream 7), v = lam_r grad f(x* + delta) + delta, d = v/||v||, x_1 = x* - t grad f(x* + rho d),
    transcribed here from Liu et al. (2022) as analysed by Khanh et al. (2024). Wrong implementations
    rejected: delta re-added at the ascent point (gradient at x + delta + rho d), v without the delta
    term, d = grad f(x + delta)/||.|| unnormalized, or a rule that stays at x*."""
    p = LeastSquares(3, n=4, data_seed=1)
    p._set_data(p.A, 0.0 * p.b)
    p.x_star = np.zeros(3)
    t, rho, noise, lam_r = 0.1, 0.5, 0.1, 2.0
    x0 = np.tile(p.x_star, (2, 1))
    moved = iterate(p, make_method("rsam", noise=noise, lam_r=lam_r), constant(t), constant(rho), 1, 2, x0=x0)
    delta = noise * Streams(0, np.arange(2), 0).normal_like(x0)
    v = lam_r * p.grad(x0 + delta) + delta
    d = v / np.linalg.norm(v, axis=1, keepdims=True)
    expected = x0 - t * p.grad(x0 + rho * d)
    np.testing.assert_allclose(moved.final_x, expected, rtol=1e-13)
    readded = x0 - t * p.grad(x0 + delta + rho * d)
    assert not np.allclose(moved.final_x, readded, rtol=1e-6)
    assert np.all(np.linalg.norm(moved.final_x - x0, axis=1) > 1e-3)


@pytest.mark.parametrize("method,hyper,message", [
    ("unified", {"lam": 1.5}, "lam must lie in [0, 1]"),
    ("vasso", {"theta": 0.0}, "theta must lie in (0, 1]"),
    ("fsam", {"beta": 1.0}, "beta must lie in [0, 1)"),
    ("msam", {"m": 0}, "m must be an integer in [1, inf]"),
    ("msam", {"base": "vasso"}, "unknown base 'vasso'"),
    ("sam", {"m": 2}, "m does not apply to method 'sam'"),
])
def test_bad_hyper_parameters(method, hyper, message):
    with pytest.raises(InputError, match=re.escape(message)):
        make_method(method, **hyper)


NORMALIZE_CASES = np.array([[0.0, 0.0], [3.0, -4.0], [np.nan, 1.0]])


def test_normalize_is_zero_at_a_stationary_point_and_nan_on_a_nan_gradient():
    """d = g/||g||; 0 where g = 0 (SAM stays at a stationary point); NaN where g is NaN, so that the
    run is marked diverged (a rule steered by d = 0 there would go on as if nothing happened)."""
    from convergence.vec import normalize
    d = normalize(NORMALIZE_CASES)
    assert np.array_equal(d[:2], [[0.0, 0.0], [0.6, -0.8]]) and np.isnan(d[2]).all()
    by = normalize(np.ones((3, 2)), by=NORMALIZE_CASES)
    assert np.array_equal(by[:2], [[0.0, 0.0], [0.2, 0.2]]) and np.isnan(by[2]).all()
    trace = iterate(Quadratic(2), make_method("sam"), constant(0.1), constant(0.05), 5, 2,
                    x0=np.array([[1.0, 1.0], [np.nan, 1.0]]))
    assert list(trace.diverged) == [False, True]


@pytest.mark.parametrize("dim", [3, 100000])
def test_norms_do_not_depend_on_the_blas_thread_count(dim):
    """A row's norm has the same bits with one BLAS thread or two. Norms by np.vecdot, which calls
    BLAS's ddot (OpenBLAS splits it across threads for rows of over 10^4 terms), fail the 10^5-wide
    case (shown); vec.row_dots sums with einsum's own loop."""
    from conftest import with_one_and_two_blas_threads
    out = with_one_and_two_blas_threads(
        "import numpy as np; from convergence.vec import norm; "
        "v = np.random.default_rng(0).standard_normal((3, %d)); print(norm(v).ravel().tobytes().hex())" % dim)
    assert out[0] == out[1] and out[0]
