"""Problem formulas against sympy and finite differences; metadata against the truth it claims."""
import numpy as np
import pytest
import sympy as sp
from scipy.optimize import minimize_scalar

from conftest import small_problems
from convergence.errors import InputError
from problems import PROBLEMS, SinPL, make_problem
from problems.toy import Quadratic


@pytest.mark.parametrize("problem", small_problems(), ids=lambda p: p.name)
def test_f_and_grad_match_sympy(problem, rng):
    xs = sp.symbols(f"x0:{problem.dim}")
    expr = problem.sympy_f(list(xs))
    f_sym = sp.lambdify(xs, expr, "numpy")
    g_sym = sp.lambdify(xs, [sp.diff(expr, x) for x in xs], "numpy")
    lo, hi = problem.box
    X = rng.uniform(lo, hi, size=(5, problem.dim))
    np.testing.assert_allclose(problem.f(X), [f_sym(*x) for x in X], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(problem.grad(X), [g_sym(*x) for x in X], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("problem", small_problems(), ids=lambda p: p.name)
def test_grad_matches_central_differences(problem, rng):
    X = rng.uniform(*problem.box, size=(4, problem.dim))
    h = 1e-6
    fd = np.stack([(problem.f(X + h * e) - problem.f(X - h * e)) / (2 * h)
                   for e in np.eye(problem.dim)], axis=1)
    scale = 1 + np.abs(problem.grad(X)).max()
    np.testing.assert_allclose(problem.grad(X), fd, atol=1e-6 * scale)


@pytest.mark.parametrize("problem", small_problems(), ids=lambda p: p.name)
def test_optimum_metadata(problem):
    if problem.x_star is None:
        return
    g = problem.grad(problem.x_star[None])
    assert np.linalg.norm(g) < 1e-5 * max(1.0, problem.L)       # x* is stationary
    if problem.f_star is not None:
        assert problem.f(problem.x_star[None])[0] == pytest.approx(problem.f_star, abs=1e-9)


@pytest.mark.parametrize("problem", [p for p in small_problems() if p.smoothness_note == "global"],
                         ids=lambda p: p.name)
def test_gradient_lipschitz_constant_holds(problem, rng):
    """||grad f(x) - grad f(y)|| <= L ||x - y|| on random pairs, including close ones."""
    X = rng.uniform(*problem.box, size=(2000, problem.dim)) * 2
    Y = X + rng.standard_normal(X.shape) * rng.choice([1e-3, 1e-1, 1.0], size=(len(X), 1))
    ratio = np.linalg.norm(problem.grad(X) - problem.grad(Y), axis=1) / np.linalg.norm(X - Y, axis=1)
    assert ratio.max() <= problem.L * (1 + 1e-9)


def _hessians(problem, X, h=1e-5):
    """Hessians at the rows of X by central differences of grad, shaped (len(X), dim, dim)."""
    H = np.stack([(problem.grad(X + h * e) - problem.grad(X - h * e)) / (2 * h) for e in np.eye(problem.dim)],
                 axis=2)
    return (H + H.transpose(0, 2, 1)) / 2


@pytest.mark.parametrize("problem", [p for p in small_problems() if p.smoothness_note.startswith("on the box")],
                         ids=lambda p: p.name)
def test_box_smoothness_bounds_hold(problem, rng):
    """L bounds the Hessian's spectral norm on the box the note names (the starting box); a smaller L
    fails where the Hessian peaks (the box's corners for the power sums, where the bound is tight)."""
    lo, hi = problem.box
    assert problem.smoothness_note.startswith(f"on the box [{lo:g}, {hi:g}]^d")
    X = np.vstack([rng.uniform(lo, hi, size=(3000, problem.dim)), np.full((1, problem.dim), hi)])
    peak = np.abs(np.linalg.eigvalsh(_hessians(problem, X))).max()
    assert peak <= problem.L * (1 + 1e-8)                 # 1e-8: the error of the differences
    if problem.name in ("quartic", "sextic"):
        assert peak == pytest.approx(problem.L, rel=1e-6)


KL = [p for p in small_problems() if p.kl_constant is not None]


def _near(problem, rng, radii):
    """Points x* + r u for each r in radii and random unit directions u, shaped (len(radii), 50, dim)."""
    U = rng.standard_normal((50, problem.dim))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    return problem.x_star + np.asarray(radii)[:, None, None] * U


def _gap_and_grad(problem, X):
    flat = X.reshape(-1, problem.dim)
    gap = (problem.f(flat) - problem.f_star).reshape(X.shape[:-1])
    return gap, np.linalg.norm(problem.grad(flat), axis=1).reshape(X.shape[:-1])


@pytest.mark.parametrize("problem", KL, ids=lambda p: p.name)
def test_lojasiewicz_inequality_holds_with_the_stated_constant(problem, rng):
    """|f - f*|^theta <= c ||grad f|| at random points at distances 1e-4..1 of x*; on the diagonal of
    the power sums (equality there) a c 1 % smaller fails."""
    gap, gnorm = _gap_and_grad(problem, _near(problem, rng, np.geomspace(1e-4, 1, 30)))
    ratio = gap**problem.kl_exponent / (problem.kl_constant * gnorm)
    assert ratio.max() <= 1 + 1e-9
    if problem.name in ("quartic", "sextic"):
        diag = np.full((1, problem.dim), 0.3)
        g = problem.f(diag) ** problem.kl_exponent / np.linalg.norm(problem.grad(diag))
        assert g == pytest.approx(problem.kl_constant, rel=1e-12)


@pytest.mark.parametrize("problem", [p for p in small_problems() if p.kl_exponent is not None
                                     and p.x_star is not None and p.f_star is not None], ids=lambda p: p.name)
def test_kl_exponent_is_the_slope_of_log_gradient_against_log_gap(problem, rng):
    """Along rays into x*, ||grad f|| ~ (f - f*)^theta: the fitted log-log slope is the stated exponent
    (a theta off by 0.01 fails; 1/2 for the PL problems, 3/4 and 5/6 for the KL ones)."""
    gap, gnorm = _gap_and_grad(problem, _near(problem, rng, np.geomspace(1e-4, 1e-2, 9)))
    slopes = [np.polyfit(np.log(gap[:, j]), np.log(gnorm[:, j]), 1)[0] for j in range(gap.shape[1])]
    assert np.abs(np.array(slopes) - problem.kl_exponent).max() < 0.01


@pytest.mark.parametrize("problem", KL, ids=lambda p: p.name)
def test_kl_problems_are_not_pl(problem, rng):
    """With the PL exponent 1/2 no constant works: sqrt(f - f*) / ||grad f|| grows without bound as x
    nears x* (like r^(1 - p/2) for the power sums, 1/(16 r) for sinpl_squared), so mu = None is right."""
    gap, gnorm = _gap_and_grad(problem, _near(problem, rng, [1e-1, 1e-2, 1e-3, 1e-4]))
    worst = (np.sqrt(gap) / gnorm).max(axis=1)
    assert np.all(worst[1:] > 5 * worst[:-1]) and worst[-1] > 500
    assert problem.mu is None


def test_sinpl_squared_is_nonconvex():
    """The docstring's witness: in d = 1, f''(1.5) = 2 h'^2 + 2 h h'' is about -18."""
    from problems import SinPLSquared
    assert _hessians(SinPLSquared(1), np.array([[1.5]]))[0, 0, 0] == pytest.approx(-17.9, abs=0.1)


@pytest.mark.parametrize("problem", small_problems(), ids=lambda p: p.name)
def test_every_problem_passes_the_contract_check_of_user_problems(problem):
    """The on-load check of user classes accepts every shipped problem (steep ones included): its
    finite-difference tolerance does not reject correct gradients."""
    from problems.user import check_problem
    if problem.name != "saddle":                  # its x_star is the saddle point, not a minimizer
        assert check_problem(problem, problem.name) is problem


def test_sinpl_is_nonconvex_and_pl_with_the_stated_mu():
    p = SinPL(1)
    x = np.linspace(-20, 20, 400001)[:, None]
    x = x[np.abs(x[:, 0]) > 1e-6]
    pl = (p.grad(x)[:, 0] ** 2 / (2 * p.f(x))).min()
    assert p.mu <= pl < p.mu + 1e-3                  # mu ~ 0.1755 is (just below) the true constant
    assert (2 + 6 * np.cos(2 * x)).min() < 0         # f'' < 0 somewhere: nonconvex


def test_styblinski_tang_global_minimum():
    p = make_problem("styblinski_tang", 4)
    res = minimize_scalar(lambda t: 0.5 * (t**4 - 16 * t**2 + 5 * t), bounds=(-5, 0), method="bounded",
                          options={"xatol": 1e-12})
    assert 4 * res.fun == pytest.approx(p.f_star, abs=1e-9)
    assert res.x == pytest.approx(-2.903534, abs=1e-6)


def test_quadratic_condition_number():
    p = make_problem("quadratic", 5)
    assert p.L / p.mu == pytest.approx(10.0)


@pytest.mark.parametrize("name,dim", [("rosenbrock", 1), ("saddle", 1), ("quadratic", 0)])
def test_unsupported_dimension_is_rejected_with_the_range(name, dim):
    with pytest.raises(InputError, match=f"does not support dim={dim}: use --dim between"):
        make_problem(name, dim)


def test_unknown_problem_suggests_the_closest_name():
    with pytest.raises(InputError, match="did you mean 'rosenbrock'"):
        make_problem("rosenbrok")
    assert set(PROBLEMS) >= {"quadratic", "sinpl", "rosenbrock", "robust_regression", "saddle",
                             "styblinski_tang"}


def test_the_quadratics_kept_rows_follow_its_eigenvalues_and_stay_out_of_pickles_and_estimates():
    """The quadratic keeps eigs repeated for the batch's shape (a faster product than broadcasting):
    a caller writing to its own array, or a new eigs, must not leave the gradient behind, and the
    kept rows are neither pickled to sweep workers nor counted as the problem's data."""
    import pickle

    from convergence.runner import run
    from convergence.spec import toy_run
    mine = np.array([1.0, 4.0])
    q = Quadratic(2, eigs=mine)
    X = np.ones((3, 2))
    assert np.array_equal(q.grad(X), [[1.0, 4.0]] * 3)
    mine[1] = 9.0
    assert np.array_equal(q.grad(X), [[1.0, 4.0]] * 3) and q.f(X)[0] == 2.5
    q.eigs = np.array([2.0, 3.0])
    assert np.array_equal(q.grad(X), [[2.0, 3.0]] * 3)
    q.grad(np.ones((100000, 2)))
    assert len(pickle.dumps(q)) < 10_000
    spec = toy_run(problem="quadratic", runs=1000, iters=10)
    before = spec.memory_estimate()
    run(spec)
    assert spec.memory_estimate() == before
