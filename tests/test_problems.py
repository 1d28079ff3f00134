"""Problem formulas against sympy and finite differences; metadata against the truth it claims."""
import numpy as np
import pytest
import sympy as sp
from scipy.optimize import minimize_scalar

from conftest import small_problems
from convergence.errors import InputError
from problems import PROBLEMS, SinPL, make_problem


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


def test_box_smoothness_bounds_hold(rng):
    """Rosenbrock and Styblinski-Tang: L bounds the Hessian spectral norm on their boxes."""
    for problem in (make_problem("rosenbrock", 4), make_problem("styblinski_tang", 3)):
        X = rng.uniform(*problem.box, size=(300, problem.dim))
        h = 1e-5
        for x in X:
            H = np.stack([(problem.grad((x + h * e)[None]) - problem.grad((x - h * e)[None]))[0] / (2 * h)
                          for e in np.eye(problem.dim)])
            assert np.abs(np.linalg.eigvalsh((H + H.T) / 2)).max() <= problem.L


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
