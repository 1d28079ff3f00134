"""The user's own problems (issue #18): a formula, a Problem class, data for a finite sum; each against
a known answer, and bad input of each kind refused in one line that names the option at fault."""
import re
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import minimize

from convergence.errors import InputError
from convergence.methods import make_method
from convergence.runner import iterate as run
from convergence.sampling import make_sampler
from convergence.schedules import diminishing
from convergence.trace import NUMERIC
from problems import LeastSquares, Ridge, make_problem
from problems import data as data_module

README = Path(__file__).resolve().parents[1] / "README.md"


def sam_traces(p, q, iters=2000, runs=4, seed=0, lr=0.05):
    """SAM traces of p and q, same schedules, seed and starts: the one place that calls the engine."""
    t, rho = diminishing(lr, 0.6), diminishing(0.05, 0.6)
    return [run(problem, make_method("sam"), t, rho, iters, runs, seed) for problem in (p, q)]


def recorded(trace):
    """Every recorded number of a trace: the grid columns, then the last iterates."""
    return [trace.data[c] for c in NUMERIC] + [trace.final[c] for c in NUMERIC]


def refused(make, param, pattern):
    """make() raises one InputError line whose param is ``param`` and whose message starts with it."""
    with pytest.raises(InputError) as err:
        make()
    message = str(err.value)
    assert "\n" not in message and err.value.param == param and message.startswith(param), message
    assert re.search(pattern, message), message


# --- 1. formulas -------------------------------------------------------------------------------

SINPL_2D = "expr:x1**2 + 3*sin(x1)**2 + x2**2 + 3*sin(x2)**2"


def test_formula_of_sinpl_reproduces_the_sinpl_trace():
    """The formula gets sinpl's truth (L = 8 bounded on its box, f* = 0 at 0) and SAM's iterates
    agree to 1e-9: sympy differentiates 3 sin^2 x to 6 sin x cos x where sinpl computes 3 sin 2x,
    so the two round differently (not bit for bit); a wrong gradient or L would be off by far more."""
    shipped = make_problem("sinpl", 2)
    mine = make_problem(SINPL_2D, box=(-4, 4), x_star=[0, 0])
    assert (mine.dim, mine.f_star, mine.L_estimated) == (2, 0.0, False)
    assert mine.L == pytest.approx(8.0, rel=1e-14) and mine.L >= 8.0      # rounded outward
    assert np.array_equal(mine.x0(4, 0), shipped.x0(4, 0))
    for a, b in zip(*map(recorded, sam_traces(shipped, mine))):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-300)


def test_formula_L_is_exact_for_a_quadratic_and_a_proven_bound_elsewhere(rng):
    """x1^2 + x1 x2 + 5 x2^2: Hessian [[2, 1], [1, 10]], L = 6 + sqrt(17) everywhere, bounded below
    (the theorems apply; they do not to quadratics unbounded below). Rosenbrock in 2-d
    on [-2, 2]^2: interval arithmetic on each entry gives the hand-computed Gershgorin row sum
    |1200 x^2 - 400 y + 2| + |400 x| <= 5602 + 800 = 6402, above every Hessian norm sampled there."""
    quad = make_problem("expr:x1**2 + x1*x2 + 5*x2**2")
    assert quad.L == pytest.approx(6 + np.sqrt(17), rel=1e-14) and quad.smoothness_note == "global"
    assert quad.lower_bounded and quad.theory_applies
    for unbounded in ("x1**2 - x2**2", "x1**2 + x2"):                # indefinite; linear along a null direction
        assert not make_problem("expr:" + unbounded).theory_applies
    rosen = make_problem("expr:100*(x2 - x1**2)**2 + (1 - x1)**2", box=(-2, 2), f_star=0, x_star=[1, 1])
    assert rosen.L == pytest.approx(6402, rel=1e-14) and not rosen.L_estimated
    assert rosen.smoothness_note == "on the box [-2, 2]^d"
    X = rng.uniform(-2, 2, size=(2000, 2))
    H = np.stack([[1200 * X[:, 0] ** 2 - 400 * X[:, 1] + 2, -400 * X[:, 0]], [-400 * X[:, 0], np.full(len(X), 200.0)]])
    assert np.abs(np.linalg.eigvalsh(H.transpose(2, 0, 1))).max() <= rosen.L


def test_formula_L_is_estimated_and_labelled_where_intervals_cannot_bound_it():
    """log(x1^2 - 2 x1 + 2): on [-1, 1] the interval of x1^2 - 2 x1 + 2 is [0, 5] (the true range is
    [1, 5]), so log has no finite enclosure and L is sampled, and says so. f'' = 2(1 - u^2)/(1 + u^2)^2
    with u = x1 - 1 peaks at 2 at the corner x1 = 1, which the sample holds."""
    p = make_problem("expr:log(x1**2 - 2*x1 + 2)")
    assert p.L_estimated and p.smoothness_note == "on the box [-1, 1]^d, estimated from Hessians at 1000 points"
    assert p.L == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("text", ["sin(3*x1 + 1)", "cos(x1**2 - 2)", "tan(x1/2)", "tanh(4*x1)", "cosh(x1 - 0.5)",
                                  "atan(x1) - exp(-x1)", "log(x1 + 2.5)", "sqrt(x1 + 3) * x1**3",
                                  "(x1 + 3)**(-1.5)", "(3 + x1)**(x1 + 1)", "1/(x1**2 + 0.5)**3"])
def test_interval_enclosures_hold_every_sampled_value(text):
    """Each rule of problems.interval on [-2, 2] (a wrong rule, e.g. sin taken as increasing, leaves
    sampled values outside); a dense grid of the true values must lie in the enclosure."""
    from problems.interval import enclose
    p = make_problem("expr:" + text, box=(-2, 2))
    a, b = enclose(p.expr, -2.0, 2.0)
    values = p.f(np.linspace(-2, 2, 200_001)[:, None])
    assert a <= values.min() and values.max() <= b


def test_formula_gradient_is_the_analytic_one(rng):
    """grad of x1^2 + 3 sin^2 x1 + x2^4 + x1 x2 against the hand derivative; dim from the largest index."""
    p = make_problem("expr:x1**2 + 3*sin(x1)**2 + x2**4 + x1*x2")
    X = rng.uniform(-1, 1, size=(6, 2))
    x, y = X.T
    np.testing.assert_allclose(p.grad(X), np.stack([2 * x + 3 * np.sin(2 * x) + y, 4 * y**3 + x], 1), rtol=1e-13)
    assert make_problem("expr:x2**2 + x3**2", dim=4).dim == 4


@pytest.mark.parametrize("text,options,param,pattern", [
    ("x1 +", {}, "problem", "cannot be parsed: unexpected end"),
    ("x1 + y", {}, "problem", "unknown name 'y'"),
    ("x0**2", {}, "problem", "unknown name 'x0'"),
    ("x3**2", {"dim": 2}, "problem", r"unknown name 'x3' \(variables: x1, x2;"),
    ("__import__('os')", {}, "problem", "cannot be parsed at"),
    ("abs(x1)", {}, "problem", r"abs\(\) is not differentiable"),
    ("max(x1, 0)**2", {}, "problem", r"max\(\) is not differentiable"),
    ("sin(x1, x2)", {}, "problem", r"sin\(\) does not take 2 argument"),
    ("9**9**9 * x1", {}, "problem", "not a finite real number"),
    ("x1 " + "+ x1 " * 400, {}, "problem", "at most 1000 are read"),
    ("x21**2", {}, "problem", "unknown name 'x21'"),
    ("x1**2", {"dim": 21}, None, "does not support dim=21"),
    ("2*x1 + 1", {}, "problem", "is affine: it has no minimum"),
    ("log(x1)", {}, "problem", "not finite at x = .*choose a box where f is defined"),
    ("x1**2", {"box": (1, -1)}, "box", "box must be two finite numbers lo < hi"),
    ("x1**2", {"f_star": "low"}, "f_star", "f_star must be a finite number, got 'low'"),
    ("x1**2", {"f_star": 0.5}, "f_star", r"f_star = 0.5 is above f\(x\)"),
    ("x1**2", {"x_star": [0, 0]}, "x_star", "x_star must be 1 finite number"),
    ("(x1 - 1)**2", {"x_star": [0]}, "x_star", r"x_star \[0.\] is not stationary"),
    ("x1**2 - 3*x1**4", {"x_star": [0]}, "x_star", "is not a minimizer"),
    ("x1**2", {"x_star": [0], "f_star": 1e-3}, "f_star", r"differs from f\(x_star\)"),
    ("x1**2", {"cond": 3}, "problem", "takes no option 'cond'; its options: box, f_star, x_star"),
])
def test_bad_formulas_are_refused_in_one_line(text, options, param, pattern):
    options = dict(options)
    dim = options.pop("dim", None)
    if param is None:                                      # check_dim's message, as for every problem
        with pytest.raises(InputError, match=pattern):
            make_problem("expr:" + text, dim, **options)
        return
    refused(lambda: make_problem("expr:" + text, dim, **options), param, pattern)


def test_huge_powers_fail_fast():
    """9**9**9 has 370 million digits: the grammar refuses it instead of computing it."""
    start = time.perf_counter()
    with pytest.raises(InputError):
        make_problem("expr:x1**2 + 9**9**9")
    assert time.perf_counter() - start < 5


# --- 2. classes --------------------------------------------------------------------------------

def readme_example() -> str:
    """The Problem class of the README's 'Your own problem' section, as printed there."""
    section = README.read_text().split("## Your own problem", 1)[1]
    return re.search(r"```python\n(import numpy as np\n.*?)```", section, re.S)[1]


def test_readme_problem_class_runs_as_written(tmp_path):
    """The README's example, written to a file and loaded by path: checked on load, its truth carried
    over, and SAM with diminishing steps drives it to x* = 0."""
    path = tmp_path / "my_problem.py"
    path.write_text(readme_example())
    p = make_problem(f"{path}:MyQuartic", 3)
    assert (p.name, p.dim, p.L, p.f_star, p.source) == ("MyQuartic", 3, 4.0, 0.0, f"{path}:MyQuartic")
    trace = sam_traces(p, p, iters=3000, lr=0.2)[0]
    assert np.all(trace.final["dist_to_opt"] < 1e-2 * trace.data["dist_to_opt"][0])


def test_class_by_module_name(tmp_path, monkeypatch):
    (tmp_path / "mymod.py").write_text(readme_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    assert make_problem("mymod:MyQuartic").dim == 2


BROKEN = {     # the README's class with one fault each: file name -> (text replaced, replacement)
    "wrong_grad.py": ("return X**3 + X\n", "return X**3 + X * np.arange(1, X.shape[1] + 1)\n"),
    "wrong_shape.py": ("axis=1)", "axis=1, keepdims=True)"),
    "wrong_x_star.py": ("np.zeros(dim)", "np.full(dim, 0.5)"),
    "wrong_f_star.py": ("f_star = 0.0", "f_star = 1.0"),
    "wrong_min.py": ("self.x_star = np.zeros(dim)", "self.f_star = 1.0"),
    "raises.py": ("return np.sum(", "return 1 / 0 + np.sum("),
}


@pytest.mark.parametrize("spec,pattern", [
    ("wrong_grad.py:MyQuartic", r"grad disagrees with central differences of f at x = .*correct grad"),
    ("wrong_shape.py:MyQuartic", r"f returned shape \(4, 1\).*f must return \(4,\)"),
    ("wrong_x_star.py:MyQuartic", r"its x_star \[0.5, 0.5\] is not stationary"),
    ("wrong_f_star.py:MyQuartic", r"its f_star = 1 differs from f\(x_star\) = 0"),
    ("wrong_min.py:MyQuartic", r"its f_star = 1 is above f\(x\) = "),
    ("raises.py:MyQuartic", "raised ZeroDivisionError: division by zero"),
    ("missing.py:MyQuartic", "there is no file"),
    ("syntax.py:MyQuartic", "importing .* failed: SyntaxError"),
    ("not_problem.py:MyQuartic", "MyQuartic is not a subclass of problems.Problem"),
    ("wrong_grad.py:Other", "defines no 'Other'"),
    ("no_such_module_xyz:MyQuartic", "importing 'no_such_module_xyz' failed: ModuleNotFoundError"),
    ("wrong_grad.py:", "must read path/to/file.py:ClassName"),
])
def test_bad_classes_are_refused_in_one_line(tmp_path, monkeypatch, spec, pattern):
    """Each broken variant of the README's class (or a file that is no such class) fails on load."""
    for name, (old, new) in BROKEN.items():
        assert old in readme_example()
        (tmp_path / name).write_text(readme_example().replace(old, new))
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "not_problem.py").write_text("class MyQuartic:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    refused(lambda: make_problem(spec), "problem", pattern)


def test_class_options_go_to_its_constructor_and_unknown_ones_are_refused(tmp_path):
    path = tmp_path / "my_problem.py"
    path.write_text(readme_example())
    refused(lambda: make_problem(f"{path}:MyQuartic", scale=2), "problem", "takes no option 'scale'; its options: none")


# --- 3. data -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LeastSquares, Ridge])
def test_least_squares_from_an_npz_of_a_shipped_problem_reproduces_its_trace(tmp_path, cls):
    """The shipped problem's A and b saved and loaded: the same L, L_i, mu, x*, f* and a SAM trace
    equal number for number (the same arithmetic on the same data)."""
    shipped = cls(10, n=20)
    np.savez(tmp_path / "ls.npz", A=shipped.A, b=shipped.b)
    mine = make_problem(cls.name, data=str(tmp_path / "ls.npz"))
    assert (mine.L, mine.mu, mine.f_star, mine.reg) == (shipped.L, shipped.mu, shipped.f_star, shipped.reg)
    assert np.array_equal(mine.L_i, shipped.L_i) and np.array_equal(mine.x_star, shipped.x_star)
    for a, b in zip(*map(recorded, sam_traces(shipped, mine))):
        assert np.array_equal(a, b, equal_nan=True)


def test_csv_with_a_header_gives_the_same_problem_as_the_arrays(tmp_path):
    p = LeastSquares(4, n=9, data_seed=5)
    lines = ["a1,a2,a3,a4,target"] + [",".join(repr(float(v)) for v in row) for row in np.column_stack([p.A, p.b])]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    q = make_problem("least_squares", data=str(tmp_path / "d.csv"))
    assert np.array_equal(q.A, p.A) and np.array_equal(q.x_star, p.x_star) and q.f_star == p.f_star


def _sparse_data():
    A = sparse.random(40, 8, density=0.3, format="csr", random_state=1)
    A = (sparse.diags((np.arange(40) != 7).astype(float)) @ A).tocsr()   # row 7 zero: inf f_7 is not 0
    A.eliminate_zeros()
    return A, np.random.default_rng(0).standard_normal(40)


@pytest.mark.parametrize("name", ["least_squares", "ridge", "robust_regression", "logistic"])
def test_svmlight_data_stay_sparse_and_agree_with_the_dense_problem(tmp_path, name, rng):
    from sklearn.datasets import dump_svmlight_file
    A, b = _sparse_data()
    b = np.sign(b) if name == "logistic" else b
    dump_svmlight_file(A, b, str(tmp_path / "d.svm"))
    sp_, dense = make_problem(name, data=str(tmp_path / "d.svm")), make_problem(name, A=A.toarray(), b=b)
    assert sparse.issparse(sp_.A) and not sparse.issparse(dense.A)
    X, idx, w = rng.standard_normal((3, 8)), rng.integers(0, 40, (3, 5)), rng.random((3, 5))
    np.testing.assert_allclose(sp_.f(X), dense.f(X), rtol=1e-13)
    np.testing.assert_allclose(sp_.grad(X), dense.grad(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sp_.sample_grad(X, idx, w), dense.sample_grad(X, idx, w), rtol=1e-12, atol=1e-15)
    assert (sp_.L, sp_.f_star is None) == pytest.approx((dense.L, dense.f_star is None), rel=1e-12)
    if dense.x_star is not None:
        np.testing.assert_allclose(sp_.x_star, dense.x_star, rtol=1e-9)


def test_sklearn_diabetes_least_squares_matches_lstsq():
    """x* from the normal equations against numpy's SVD least-squares solution of the same data."""
    from sklearn.datasets import load_diabetes
    A, b = load_diabetes(return_X_y=True)
    p = make_problem("least_squares", data="sklearn:diabetes")
    np.testing.assert_allclose(p.x_star, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-8)
    assert p.mu == pytest.approx(np.linalg.eigvalsh(A.T @ A / len(b)).min(), rel=1e-8)


def test_sklearn_breast_cancer_logistic_matches_scikit_learn():
    """Newton's x* against scikit-learn's own regularized logistic regression (C = 1/(n reg), no
    intercept, labels 0/1 mapped to -1/+1): the same minimizer and minimum value."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    p = make_problem("logistic", data="sklearn:breast_cancer")
    A, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(C=1 / (len(y) * p.reg), fit_intercept=False, solver="newton-cholesky", tol=1e-12)
    w = model.fit(A, y).coef_[0]
    assert p.f_star <= p.f(w[None])[0] <= p.f_star + 1e-12
    np.testing.assert_allclose(p.x_star, w, rtol=1e-6, atol=1e-9)


def test_sample_infima_are_the_minima_of_each_sample(tmp_path):
    """inf_x f_i(x) of least squares (with and without reg), and robust regression, against a numerical
    minimization of each f_i, a zero row included (where inf f_i = phi(b_i), not 0); the sampling
    constant C follows from them on data-built problems."""
    A, b = _sparse_data()
    for name, options in (("least_squares", {}), ("least_squares", {"reg": 0.3}), ("robust_regression", {})):
        p = make_problem(name, A=A, b=b, **options)
        for i in (0, 7, 11):
            fi = lambda x: p.sample_grad(x[None], np.array([[i]]))[0]          # noqa: E731
            res = minimize(lambda x: p.phi(A[i] @ x - b[i])[0] + p.reg / 2 * x @ x, np.zeros(8), jac=lambda x: fi(x))
            assert p.sample_infima()[i] == pytest.approx(res.fun, abs=1e-8)
        c = make_sampler("tau-nice", 3, p).constants(p)
        assert (c["C"] is None) == (p.f_star is None)            # robust regression: f* unknown here


@pytest.mark.parametrize("content,pattern", [
    ("1,2,3\n4,5,6\n7,abc,9\n", r"line 3 holds 'abc', not a finite number"),
    ("x,y,t\n1,2,3\n4,nan,6\n", r"line 3 holds 'nan', not a finite number"),
    ("1,2,3\n4,5\n", r"line 2 has 2 columns, line 1 has 3"),
    ("1\n2\n3\n", "at least two columns .* found one column"),
    ("", "found no data"),
])
def test_bad_csv_is_refused_in_one_line(tmp_path, content, pattern):
    (tmp_path / "d.csv").write_text(content)
    refused(lambda: make_problem("least_squares", data=str(tmp_path / "d.csv")), "data", pattern)


@pytest.mark.parametrize("arrays,pattern", [
    ({"A": np.ones((3, 2))}, "holds A, not the arrays A and b"),
    ({"A": np.ones((3, 2, 2)), "b": np.ones(3)}, r"A must be 2-d .* shapes \(3, 2, 2\) and \(3,\)"),
    ({"A": np.ones((3, 2)), "b": np.ones(4)}, "b has 4 entries but A has 3 rows"),
    ({"A": np.array([[1.0, np.inf], [0, 1]]), "b": np.ones(2)}, r"A\[0, 1\] is inf: remove or fill in"),
    ({"A": np.array([["a", "b"]]), "b": np.ones(1)}, "A holds <U1 values, not numbers"),
    ({"A": np.array([[None, 1]]), "b": np.ones(1)}, "cannot be read .*allow_pickle"),
])
def test_bad_npz_is_refused_in_one_line(tmp_path, arrays, pattern):
    np.savez(tmp_path / "d.npz", **arrays)
    refused(lambda: make_problem("ridge", data=str(tmp_path / "d.npz")), "data", pattern)


@pytest.mark.parametrize("name,options,param,pattern", [
    ("least_squares", {"A": np.ones((2, 2)), "b": [1.0, np.nan]}, "data", r"b\[1\] is nan"),
    ("least_squares", {"A": np.ones((2, 2))}, "data", "need both A"),
    ("least_squares", {"A": np.ones((2, 2)), "b": np.ones(2), "data": "x.npz"}, "data", "both given"),
    ("least_squares", {"A": np.zeros((1, 2001)), "b": np.ones(1)}, "data", "at most 2000 are supported"),
    ("least_squares", {"A": np.ones((2, 2)), "b": np.ones(2), "cond": 3}, "problem", "takes no option 'cond'"),
    ("least_squares", {"A": np.ones((2, 2)), "b": np.ones(2), "reg": -1}, "reg", "reg must be a finite number >= 0"),
    ("robust_regression", {"A": np.ones((2, 2)), "b": np.ones(2), "reg": 1}, "problem", "takes no option 'reg'"),
    ("quadratic", {"data": "sklearn:diabetes"}, "data", "data applies to the finite sums"),
    ("logistic", {"data": "sklearn:iris"}, "data", "two classes, found 3 distinct values"),
    ("logistic", {"data": "sklearn:mnist"}, "data", "not a data set bundled with scikit-learn"),
    ("logistic", {"data": "nowhere.csv"}, "data", "is not a file"),
    ("logistic", {"data": "d.parquet"}, "data", "unknown format '.parquet'"),
    ("logistic", {"A": np.eye(2), "b": [-1.0, 1.0], "reg": 0.0}, "data", "Newton's method found no minimizer"),
])
def test_bad_data_options_are_refused_in_one_line(name, options, param, pattern):
    refused(lambda: make_problem(name, **options), param, pattern)


def test_dim_must_match_the_data():
    refused(lambda: make_problem("least_squares", 3, A=np.eye(2), b=np.ones(2)), "dim", "dim 3 does not match the 2")


def test_malformed_svmlight_and_oversized_files_are_refused(tmp_path, monkeypatch):
    (tmp_path / "d.svm").write_text("1 0:1.5 x:2\n")
    refused(lambda: make_problem("least_squares", data=str(tmp_path / "d.svm")), "data", "not LIBSVM/svmlight text")
    (tmp_path / "big.csv").write_text("1,2\n" * 100)
    monkeypatch.setattr(data_module, "MAX_BYTES", 100)
    refused(lambda: make_problem("least_squares", data=str(tmp_path / "big.csv")), "data", "at most 0 MiB are read")


# --- 4. the three ways in, from the command line -------------------------------------------------

def _toy(tmp_path, name, *flags):
    """run_toy with ``flags`` into tmp_path/name; returns (exit status, trace columns or None)."""
    from convergence.trace import read_csv
    from experiments import run_toy
    out = tmp_path / name
    status = run_toy.main([*flags, "--iters", "300", "--runs", "3", "--out", str(out), "--no-progress"])
    return status, (read_csv(out / "trace.csv") if (out / "trace.csv").exists() else None)


@pytest.mark.slow
def test_cli_formula_reproduces_the_shipped_sinpl_run(tmp_path):
    """--problem expr:... --box --f-star --x-star reach the problem: the trace agrees with sinpl's to
    1e-9 (a dropped --box changes L, hence t_0 = 1/L; a dropped --x-star leaves dist_to_opt empty)."""
    status, shipped = _toy(tmp_path, "shipped", "--problem", "sinpl", "--dim", "2")
    assert status == 0
    status, mine = _toy(tmp_path, "mine", "--problem", SINPL_2D, "--box", "-4", "4", "--x-star", "0", "0")
    assert status == 0
    for column in NUMERIC:
        np.testing.assert_allclose(mine[column], shipped[column], rtol=1e-9, atol=1e-300)


def test_cli_data_file_reproduces_the_shipped_least_squares_run(tmp_path):
    """--data FILE.npz of least_squares' own A and b gives its trace number for number."""
    shipped = LeastSquares(100)
    np.savez(tmp_path / "ls.npz", A=shipped.A, b=shipped.b)
    status, a = _toy(tmp_path, "shipped", "--problem", "least_squares")
    assert status == 0
    status, b = _toy(tmp_path, "mine", "--problem", "least_squares", "--data", str(tmp_path / "ls.npz"))
    assert status == 0
    for column in NUMERIC:
        assert np.array_equal(a[column], b[column], equal_nan=True), column


def test_cli_problem_class_runs_and_bad_input_is_one_line(tmp_path, capsys):
    """A Problem class from a file runs; a data file for a non-finite-sum, a missing data file and a
    wrong-length --x-star are refused in one line with exit 2 and nothing written."""
    path = tmp_path / "mine.py"
    path.write_text(readme_example())
    status, trace = _toy(tmp_path, "class", "--problem", f"{path}:MyQuartic")
    assert status == 0 and trace["grad_norm"][-1] < trace["grad_norm"][0]
    capsys.readouterr()
    for name, flags, pattern in [
            ("a", ["--problem", "quadratic", "--data", str(tmp_path / "x.npz")], "--data applies to the finite sums"),
            ("b", ["--problem", "ridge", "--data", str(tmp_path / "missing.npz")], "missing.npz"),
            ("c", ["--problem", SINPL_2D, "--x-star", "0"], "x.star")]:
        status, _ = _toy(tmp_path, name, *flags)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and re.search(pattern, err[0]), err
        assert not (tmp_path / name).exists()


def test_run_specs_on_different_arrays_get_different_problems():
    """Two least-squares specs on arrays whose reprs agree (numpy summarizes arrays beyond 1000
    numbers) must not share the cached problem built for the first."""
    from convergence.spec import toy_run
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2000, 3))
    B = A.copy()
    B[1000, 1] += 1.0                                      # hidden in the middle of the summary
    assert repr(A) == repr(B)
    b = rng.standard_normal(2000)
    first = toy_run("least_squares", problem_options={"A": A, "b": b}, iters=10, runs=1)
    second = toy_run("least_squares", problem_options={"A": B, "b": b}, iters=10, runs=1)
    assert not np.array_equal(first.problem.A, second.problem.A)
