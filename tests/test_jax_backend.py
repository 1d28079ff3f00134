"""The compiled backend (convergence.jax_runner) against the numpy runner: the same rule objects, the
same streams, every recorded value within 1e-12 relative, for every method and sampler (issue 21);
and the engine choice of the sweep and the reproductions."""
import csv
import json

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason='the jax backend needs JAX: pip install -e ".[jax]"')

from convergence import jax_runner, runner  # noqa: E402
from convergence.errors import InputError  # noqa: E402
from convergence.spec import toy_run  # noqa: E402
from convergence.trace import NUMERIC, read_csv  # noqa: E402

RTOL = 1e-12
# Two columns are differences of nearly equal numbers: err = ||g_k - grad f(x_k)|| (0 for GD, tiny
# for small rho) and f_gap = f - f*. Their round-off is relative to what they are computed from, so
# they are compared relative to ||grad f|| + err and |f| + |f*|; all else relative to itself.
SCALE = {"err": lambda c, r: c["grad_norm"][r] + c["err"][r],
         "f_gap": lambda c, r: np.abs(c["f"][r]) + np.abs(c["f"][r] - c["f_gap"][r])}


def assert_agree(a, b, rtol=RTOL):
    """Every recorded value (the grid and each run's last iterate) within rtol; NaN where NaN."""
    assert np.array_equal(a.final_iter, b.final_iter)
    assert np.array_equal(a.diverged, b.diverged)
    assert_columns_agree(a.data, b.data, rtol)
    assert_columns_agree(a.final, b.final, rtol)
    np.testing.assert_allclose(b.final_x, a.final_x, rtol=rtol, atol=0)
    assert np.array_equal(a.final_runs, b.final_runs)


def assert_columns_agree(cols_a, cols_b, rtol=RTOL):
    """The numeric columns (arrays of any shape) within rtol, err and f_gap as SCALE says."""
    for name in NUMERIC:
        x, y = cols_a[name], cols_b[name]
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.array_equal(np.isinf(x), np.isinf(y)), name
        ok = np.isfinite(x)
        scale = np.abs(x[ok]) if name not in SCALE else SCALE[name](cols_a, ok)
        worst = np.max(np.abs(y[ok] - x[ok]) - rtol * scale, initial=0.0)
        assert worst <= 0, f"{name}: {np.max(np.abs(y[ok] - x[ok]) / scale)} relative"


def both(spec):
    """The spec's trace from the numpy runner and from the jax backend."""
    args = (spec.problem, spec.rule, spec.stepsize, spec.radius, spec.iters, spec.runs, spec.seed)
    kw = dict(x0=spec.x0, sampler=spec.sampler, grid=spec.grid)
    return runner.iterate(*args, **kw), jax_runner.iterate(*args, **kw)


METHODS = [("gd", {}), ("sam", {}), ("usam", {}), ("unified", {"lam": 0.3}), ("unified", {"lam": "1/t"}),
           ("fsam", {}), ("vasso", {}), ("rsam", {}), ("dnsam", {}), ("asam", {})]


@pytest.mark.parametrize("method,options", METHODS, ids=[f"{m}{o}" for m, o in METHODS])
def test_every_method_agrees_on_rosenbrock(method, options):
    spec = toy_run("rosenbrock", method, "diminishing", lr=1e-3, dim=3, iters=300, runs=3, seed=2,
                   method_options=options)
    assert_agree(*both(spec))


@pytest.mark.parametrize("problem", ["quadratic", "saddle", "sinpl", "styblinski_tang", "quartic", "sextic",
                                     "sinpl_squared", "robust_regression", "logistic"])
def test_every_problem_agrees(problem):
    spec = toy_run(problem, "sam", "diminishing", lr=0.05, iters=200, runs=2, dim=3, seed=1)
    a, b = both(spec)
    if problem == "styblinski_tang":
        # near a minimizer grad = 2x^3 - 16x + 2.5 and x - x* are differences of far larger terms:
        # numpy's x**3 is pow(x, 3), XLA's x*x*x (an ulp apart), so ||grad f||, err and ||x - x*||
        # agree to 1e-12 only relative to those terms (here 1e-9 of themselves); the iterates to 1e-12
        np.testing.assert_allclose(b.final_x, a.final_x, rtol=RTOL, atol=0)
        assert_agree(a, b, rtol=1e-9)
        return
    assert_agree(a, b)


SAMPLED = [("sam", {}), ("fsam", {}), ("vasso", {}), ("rsam", {}), ("dnsam", {}), ("asam", {}),
           ("msam", {"m": 2, "base": "usam"}), ("unified", {"lam": "1-1/t"})]


# the quick suite: every method under tau-nice sampling and SAM under every sampler (each case is
# mostly its own compilation, ~2 s); the rest of the table is slow-marked
SAMPLER_CASES = [pytest.param(sampling, method, options, id=f"{method}-{sampling}",
                              marks=() if sampling == "tau-nice" or method == "sam" else pytest.mark.slow)
                 for sampling in ("tau-nice", "importance", "single") for method, options in SAMPLED]


@pytest.mark.parametrize("sampling,method,options", SAMPLER_CASES)
def test_every_method_agrees_under_every_sampler(sampling, method, options):
    spec = toy_run("least_squares", method, "diminishing", lr=0.05, iters=200, runs=3, dim=5, seed=4,
                   sampling=sampling, batch=4, method_options=options)
    assert_agree(*both(spec))


@pytest.mark.parametrize("problem", ["ridge", pytest.param("logistic", marks=pytest.mark.slow),
                                     pytest.param("robust_regression", marks=pytest.mark.slow)])
def test_m_sharpness_on_the_full_batch_agrees_with_its_bound(problem):
    spec = toy_run(problem, "msam", "constant", lr=0.05, rho=0.1, iters=150, runs=2, dim=4, seed=3,
                   method_options={"m": 2})
    a, b = both(spec)
    assert np.isfinite(a.data["err_bound"]).any()
    assert_agree(a, b)


def test_divergence_freezes_runs_at_their_first_diverged_iterate():
    spec = toy_run("rosenbrock", "sam", "constant", lr=2.5e-3, rho=0.05, iters=400, runs=12, seed=0)
    a, b = both(spec)
    assert 0 < a.diverged.sum() < a.runs                 # some diverge, the others finish
    # the same first diverged step; the iterates that leave the box grow exponentially, and with them
    # the round-off of both backends: their last records agree to 1e-8, the other runs' to 1e-12
    gone = np.flatnonzero(a.diverged)
    assert np.array_equal(np.isnan(a.data["f"]), np.isnan(b.data["f"]))
    for name in NUMERIC:
        x, y = a.final[name][gone], b.final[name][gone]
        assert np.array_equal(np.isfinite(x), np.isfinite(y))
        np.testing.assert_allclose(y[np.isfinite(x)], x[np.isfinite(x)], rtol=1e-8, err_msg=name)
    kept = np.flatnonzero(~a.diverged)
    assert_agree(a.take(kept), b.take(kept))


def test_run_batch_of_several_specs_agrees():
    """Batched specs: per-run schedules (a PerRun table), per-run rule parameters, several seeds."""
    cells = ((0.05, 0.05, 0, 0.01), (0.1, 0.02, 1, 0.03), (0.05, 0.05, 5, 0.02))
    specs, jspecs = ([toy_run("sinpl", "rsam", "diminishing", lr=lr, rho=rho, iters=120, runs=2, dim=3, seed=s,
                              method_options={"noise": noise}, backend=backend) for lr, rho, s, noise in cells]
                     for backend in ("numpy", "jax"))
    for a, b in zip(runner.run_batch(specs), runner.run_batch(jspecs)):
        assert_agree(a, b)
        assert a.status == b.status


def test_custom_grid_and_no_grid():
    spec = toy_run("sinpl", "vasso", "constant", lr=0.05, iters=50, runs=2, seed=1)
    args = (spec.problem, spec.rule, spec.stepsize, spec.radius, spec.iters, spec.runs, spec.seed)
    for grid in (np.array([], dtype=np.int64), np.array([3, 7, 49]), np.arange(50)):
        assert_agree(runner.iterate(*args, x0=spec.x0, grid=grid), jax_runner.iterate(*args, x0=spec.x0, grid=grid))


@pytest.mark.slow
def test_cli_backend_jax_writes_the_same_numbers(tmp_path, capsys):
    from experiments.run_toy import main
    flags = ["--method", "fsam", "--problem", "sinpl", "--dim", "2", "--iters", "500", "--runs", "3",
             "--no-progress"]
    assert main(flags + ["--out", str(tmp_path / "np")]) == 0
    assert main(flags + ["--out", str(tmp_path / "jax"), "--backend", "jax"]) == 0
    assert "backend jax: compile" in capsys.readouterr().out
    assert_same_csv(tmp_path / "np" / "trace.csv", tmp_path / "jax" / "trace.csv")


def assert_same_csv(path_a, path_b):
    """Two trace.csv files: the same rows and verdicts, every number as assert_agree wants it (the
    bytes may differ)."""
    a, b = read_csv(path_a), read_csv(path_b)
    assert list(a["status"]) == list(b["status"]) and np.array_equal(a["iter"], b["iter"])
    assert_columns_agree(a, b)


@pytest.mark.slow
def test_sweep_engine_jax_gives_numpys_cells_and_verdicts(tmp_path):
    """A small batched sweep with --engine jax: the same cells and verdict counts (sweep.json) as numpy,
    and each cell's trace within RTOL."""
    from experiments import sweep
    flags = ["--methods", "sam,fsam", "--problems", "quadratic,rosenbrock", "--rhos", "0.02,0.05", "--seeds", "0-1",
             "--iters", "200", "--runs", "3", "--no-figure"]
    for engine in ("numpy", "jax"):
        assert sweep.main(flags + ["--engine", engine, "--out", str(tmp_path / engine)]) == 0
    a, b = (json.loads((tmp_path / engine / "sweep.json").read_text()) for engine in ("numpy", "jax"))
    assert a == b and len(a["cells"]) == 16
    for cell in a["cells"]:
        assert_same_csv(*(tmp_path / engine / "cells" / cell["cell"] / "trace.csv" for engine in ("numpy", "jax")))


@pytest.mark.slow                        # a paper's claims (as test_reproduce.py): 25-45 s on 2 shared cores
def test_reproduce_engine_jax_passes_with_every_mutant_rejected(tmp_path, capsys):
    """khanh2024 --quick --engine jax: every claim PASS with all its mutants rejected, every run on jax."""
    from experiments import reproduce
    assert reproduce.main(["khanh2024", "--quick", "--engine", "jax", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7
    for row in rows:
        rejected, total = row["mutants_rejected"].split(" ")[0].split("/")
        assert row["result"] == "PASS" and rejected == total, (row["claim"], row["mutants_rejected"])
    report = (tmp_path / "report.md").read_text()
    assert '"engine": "jax"' in report and "ran_on_numpy" not in report
    assert "ran on numpy" not in capsys.readouterr().out


def test_engine_jax_reaches_runner_iterate_and_runs_what_it_refuses_on_numpy():
    """runner.iterate within Engine("jax") (how the paper modules reach the backend): a shipped problem
    runs compiled, one whose formulas do not run on jax arrays on numpy (the same numbers), its
    refusal noted once."""
    from convergence.methods import make_method
    from convergence.runner import Engine
    from convergence.schedules import constant
    from problems import make_problem
    runs = {name: (make_problem(name), make_method("sam"), constant(0.05), constant(0.05), 50, 2)
            for name in ("sinpl", "expr:x1**2 + x2**4")}
    with Engine("jax") as engine:
        traces = {name: runner.iterate(*args) for name, args in runs.items()}
        runner.iterate(*runs["expr:x1**2 + x2**4"])
    assert len(engine.fallbacks) == 1 and "backend jax cannot run" in engine.fallbacks[0]
    assert_agree(runner.iterate(*runs["sinpl"]), traces["sinpl"])
    assert_agree(runner.iterate(*runs["expr:x1**2 + x2**4"]), traces["expr:x1**2 + x2**4"], rtol=0)
    assert runner._ENGINE.get() is None                 # the setting ends with the block


@pytest.mark.parametrize("kw,message", [
    (dict(problem="expr:x1**2 + x2**4"), "backend jax cannot run"),
    (dict(dtype="float32"), "float64 only"),
    (dict(problem="least_squares", data="sparse"), "backend jax cannot run"),
])
def test_what_jax_cannot_run_is_refused_in_one_line(kw, message):
    if kw.get("data") == "sparse":
        from scipy import sparse

        from problems import make_problem
        A = sparse.random(8, 3, density=0.5, format="csr", random_state=1) + sparse.eye(8, 3, format="csr")
        problem = make_problem("least_squares", A=A, b=np.arange(8.0))
        from convergence.methods import make_method
        from convergence.sampling import make_sampler
        with pytest.raises(InputError, match=message) as err:
            jax_runner.check(problem, make_method("sam"), make_sampler("single", 2, problem))
    else:
        with pytest.raises(InputError, match=message) as err:
            toy_run(backend="jax", iters=10, **kw)
    assert "\n" not in str(err.value)


def test_normalize_on_jax_arrays_is_the_numpy_one():
    """0 at a zero gradient, g/||g||, NaN on a NaN gradient: the same on both backends (to RTOL: XLA
    divides through a reciprocal)."""
    from convergence.vec import normalize
    cases = np.array([[0.0, 0.0], [3.0, -4.0], [np.nan, 1.0]])
    jnp = jax_runner.require_jax().numpy                 # float64, as the backend runs
    np.testing.assert_allclose(np.asarray(normalize(jnp.asarray(cases))), normalize(cases), rtol=RTOL, atol=0)
