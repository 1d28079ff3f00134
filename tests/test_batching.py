"""Run specs batched into one array run give, run by run, the bytes of running them one at a time."""
import pytest

from convergence.errors import InputError
from convergence.methods import make_method, stack
from convergence.runner import run, run_batch
from convergence.spec import batch_key, toy_run
from convergence.trace import csv_text, json_text


def _same(batched, alone):
    assert csv_text([batched]) == csv_text([alone])
    assert batched.status == alone.status and batched.reason == alone.reason
    assert json_text(batched.theory) == json_text(alone.theory)


@pytest.mark.parametrize("method,options", [("sam", {}), ("fsam", {}), ("vasso", {}), ("rsam", {}),
                                            ("unified", {"lam": 0.3})])
def test_cells_differing_in_seed_lr_and_rho_run_as_one_batch(method, options):
    """Per-run seeds, step-size and radius tables, stateful and random rules: bit-for-bit equal."""
    specs = [toy_run(problem="sinpl", dim=2, method=method, method_options=options, lr=lr, rho=rho,
                     seed=seed, iters=1500, runs=3)
             for lr in (0.05, 0.1) for rho in (0.01, 0.2) for seed in (0, 5)]
    assert len({batch_key(s) for s in specs}) == 1
    for batched, spec in zip(run_batch(specs), specs):
        _same(batched, run(spec))


def test_a_rule_hyper_parameter_is_stacked_per_run():
    specs = [toy_run(problem="sinpl", method="unified", method_options={"lam": lam}, iters=800, runs=2)
             for lam in (0.0, 0.25, 1.0)]
    assert len({batch_key(s) for s in specs}) == 1
    rule = stack([s.rule for s in specs], [2, 2, 2])
    assert rule.lam.shape == (6, 1) and list(rule.lam[:, 0]) == [0.0, 0.0, 0.25, 0.25, 1.0, 1.0]
    for batched, spec in zip(run_batch(specs), specs):
        _same(batched, run(spec))


def test_diverging_runs_leave_the_batch_without_changing_the_others():
    """Rosenbrock with a large constant step: some runs blow up and are retired (the batch is
    compacted, per-run tables and rule arrays with it); every cell still equals its own run."""
    specs = [toy_run(problem="rosenbrock", method="usam", stepsize="constant", lr=lr, seed=seed, iters=3000, runs=4)
             for lr in (1e-5, 1e-4, 5e-4) for seed in (0, 1)]
    traces = run_batch(specs)
    statuses = [s for t in traces for s in t.status]
    assert "diverged" in statuses and any(s != "diverged" for s in statuses)
    for batched, spec in zip(traces, specs):
        _same(batched, run(spec))


def test_what_cannot_share_a_batch_gets_its_own_key():
    """Finite sums use BLAS (rows blocked differently in a larger batch): never batched; float32 only
    with identical schedules (a per-run float64 table would round differently); other methods apart."""
    ls = [toy_run(problem="least_squares", dim=5, seed=s, iters=10, runs=2) for s in (0, 1)]
    assert batch_key(ls[0]) != batch_key(ls[1])
    f32 = [toy_run(dtype="float32", lr=lr, seed=s, iters=10, runs=2) for lr in (0.1, 0.2) for s in (0, 1)]
    assert batch_key(f32[0]) == batch_key(f32[1]) != batch_key(f32[2])
    assert batch_key(toy_run(method="sam", iters=10)) != batch_key(toy_run(method="usam", iters=10))
    with pytest.raises(ValueError, match="cannot share a batch"):
        run_batch([toy_run(method="sam", iters=10), toy_run(method="usam", iters=10)])
    with pytest.raises(InputError, match="differs between the rules of a batch"):
        stack([make_method("unified", lam=0.5), make_method("unified", lam="1/t")], [1, 1])


def test_sweep_batched_and_cell_by_cell_write_the_same_bytes(tmp_path):
    from experiments import sweep
    flags = ["--methods", "sam,fsam", "--stepsizes", "constant,diminishing", "--problems", "quadratic,sinpl",
             "--lrs", "0.1,0.3", "--rhos", "0.02,0.1", "--seeds", "0-1", "--iters", "400", "--runs", "2",
             "--no-figure"]
    assert sweep.main(flags + ["--out", str(tmp_path / "a")]) == 0
    assert sweep.main(flags + ["--no-batch", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a/combined.csv").read_bytes() == (tmp_path / "b/combined.csv").read_bytes()
    assert len((tmp_path / "a/combined.csv").read_text().splitlines()) > 64 * 2 * 10


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "saddle", "styblinski_tang", "quartic",
                                     "sextic", "sinpl_squared"])
def test_single_run_cells_of_every_batch_invariant_problem_batch_bit_for_bit(problem):
    """Cells of one run each, batched two and seven at a time. The quadratic's f, (X * X) @ eigs, is a
    BLAS gemv, which rounds a single row differently from a row of a batch: this fails unless the
    runner records f cell by cell (shown by evaluating f on the whole batch)."""
    specs = [toy_run(problem=problem, seed=seed, iters=60, runs=1) for seed in range(7)]
    alone = [run(spec) for spec in specs]
    for group in (specs[:2], specs):
        for batched, one in zip(run_batch(group), alone):
            _same(batched, one)
