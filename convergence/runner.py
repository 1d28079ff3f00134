"""The one engine: inexact gradient descent for a batch of runs, arrays shaped (runs, dim).

    x_{k+1} = x_k - t_k g_k,   g_k = grad f_S(x_k + rho_k d_k),   d_k from the method's rule.

The runner knows no method: it asks the rule for g_k (and the bound on ||g_k - grad f_S(x_k)||),
records the DESIGN.md columns on a geometric grid, and retires runs that diverge.

``run(spec)`` runs one run spec (convergence.spec.ToyRun); ``run_batch(specs)`` runs specs that
differ only in seed, schedule constants or a rule's scalar hyper-parameters as one array run, whose
per-run results are bit-for-bit those of running the specs one at a time (tested);
``iterate`` is the loop itself, for callers with their own objectives (the SDE models); within
``with Engine("jax"):`` it runs on the compiled backend (convergence.jax_runner).
"""
from __future__ import annotations

import contextvars
import functools
import time
from dataclasses import dataclass

import numpy as np

from convergence.errors import InputError, unknown
from convergence.random import Streams
from convergence.sampling import FullBatch
from convergence.trace import Trace, geometric_grid
from convergence.vec import norm, row_dots, tree_map

BLOWUP = 1e12      # |x| beyond this counts as divergence (as do NaN and inf)
PROGRESS_EVERY = 1000


@dataclass(frozen=True)
class PerRun:
    """Schedules of a batch of runs: run r follows ``schedules[index[r]]``."""

    schedules: tuple
    index: np.ndarray


def _per_step(schedule, iters: int):
    """step k, alive rows -> the schedule's value: a float, or (alive, 1) values for a PerRun."""
    if isinstance(schedule, PerRun):
        table = np.stack([s.values(iters) for s in schedule.schedules], axis=1)     # (iters, distinct)
        index, last = np.asarray(schedule.index), [None, None]     # the alive runs seen last, their columns

        def at(k, alive):
            if last[0] is not alive:
                last[:] = alive, index[alive]
            return table[k][last[1]][:, None]
        return at
    values = schedule.values(iters) if hasattr(schedule, "values") else [schedule(k) for k in range(iters)]
    return lambda k, alive: float(values[k])


_ENGINE = contextvars.ContextVar("engine", default=None)


class Engine:
    """``with Engine("jax"):`` makes ``iterate`` run on the compiled backend within the block: one
    scoped setting through which callers of ``iterate`` (the paper modules of experiments.reproduce,
    the SDE models) reach it without an argument in every call. Built, it refuses an unknown name, or
    jax without JAX installed (InputError, before any work). A run jax refuses (jax_runner.check: a
    formula that does not run on jax arrays, float32) runs on numpy, and ``fallbacks`` holds each
    refusal once."""

    def __init__(self, name: str = "numpy"):
        from convergence.spec import BACKENDS
        if name not in BACKENDS:
            raise unknown("engine", name, BACKENDS, "engine")
        if name == "jax":
            from convergence.jax_runner import require_jax
            require_jax()
        self.name, self.fallbacks = name, []

    def __enter__(self):
        self._token = _ENGINE.set(self)
        return self

    def __exit__(self, *exc):
        _ENGINE.reset(self._token)

    def compiles(self, problem, rule, sampler, dtype) -> bool:
        """Whether ``iterate`` runs this (problem, rule, sampler, dtype) on the compiled backend; a
        refusal is noted in ``fallbacks``."""
        if self.name != "jax":
            return False
        from convergence.jax_runner import check
        try:
            check(problem, rule, sampler, np.dtype(dtype).name)
        except InputError as err:        # a genuine input error is raised again by the numpy loop
            if str(err) not in self.fallbacks:
                self.fallbacks.append(str(err))
            return False
        return True


@np.errstate(over="ignore")     # an overflowing run is reported as diverged, not by numpy warnings
def iterate(problem, rule, stepsize, radius, iters: int, runs: int = 1, seed=0, x0: np.ndarray | None = None,
            sampler=None, dtype=np.float64, grid=None, progress=None, run_ids=None, cells=None) -> Trace:
    """Run ``runs`` copies of the method for ``iters`` steps and return their (unassessed) Trace.

    ``stepsize``/``radius``: a Schedule (or callable of k) shared by all runs, or a PerRun. Run r
    starts at ``x0[r]`` (default: the problem's box, drawn from (seed, r)) and draws its random
    numbers from (seed[r], run_ids[r]) only (``seed`` one integer or one per run; ``run_ids``
    default 0..runs-1), so results depend neither on the batch size nor on the other runs.
    ``cells`` (one per run, nondecreasing) groups the runs of a batch by spec: the recorded f is then
    evaluated cell by cell, as each spec's own run evaluates it (a problem's f may use a matrix
    product, which BLAS rounds by the batch's shape; its gradient, which moves the runs, may not:
    Problem.batch_invariant). ``progress(steps_done)`` is called every PROGRESS_EVERY steps.
    Within ``with Engine("jax")`` the compiled backend runs it where it can.
    """
    engine = _ENGINE.get()
    if engine is not None and engine.compiles(problem, rule, sampler, dtype):
        from convergence import jax_runner
        return jax_runner.iterate(problem, rule, stepsize, radius, iters, runs, seed, x0=x0, sampler=sampler,
                                  dtype=dtype, grid=grid, progress=progress, run_ids=run_ids)
    sampler = sampler or FullBatch()
    X = np.array(problem.x0(runs, seed) if x0 is None else x0, dtype=dtype)
    if X.shape != (runs, problem.dim):
        raise ValueError(f"x0 has shape {X.shape}, expected ({runs}, {problem.dim})")
    seeds = np.asarray(seed)
    run_ids = np.arange(runs) if run_ids is None else np.asarray(run_ids)
    grid = geometric_grid(iters) if grid is None else np.asarray(grid)
    t_at, rho_at = _per_step(stepsize, iters), _per_step(radius, iters)
    trace = Trace(rule.name, problem.name, grid, runs, eps=float(np.finfo(dtype).eps))
    alive = np.arange(runs)                 # indices (into the batch) of the runs still going
    state = rule.init(X)
    rec, next_record = 0, int(grid[0]) if len(grid) else -1     # the next grid row to fill, and its step
    length = np.zeros(runs)                 # sum of ||x_{j+1} - x_j|| so far, per alive run
    run_seeds = seeds if seeds.ndim else seed
    cells = np.zeros(runs, int) if cells is None else np.asarray(cells)

    for step in range(iters):
        t, rho = t_at(step, alive), rho_at(step, alive)
        streams = Streams(run_seeds, run_ids, step)
        G, bound, state = rule.gradient(step, X, sampler.oracle(problem, streams), state, rho, streams,
                                        step == next_record)
        if step == next_record:
            _record(trace, rec, alive, cells[alive], problem, X, G, bound, t, rho)
            trace.data["path_length"][rec, alive] = length
            rec += 1
            next_record = int(grid[rec]) if rec < len(grid) else -1
        move = t * G
        X -= move
        length += np.sqrt(row_dots(move))
        if not np.maximum.reduce(np.abs(X), axis=None) <= BLOWUP:     # also catches NaN
            bad = ~np.all(np.abs(X) <= BLOWUP, axis=1)
            trace.diverged[alive[bad]] = True
            _record_final(trace, alive[bad], cells[alive[bad]], problem, X[bad], step + 1)
            trace.final["path_length"][alive[bad]] = length[bad]
            keep = ~bad
            X, alive, length, run_ids = X[keep], alive[keep], length[keep], run_ids[keep]
            run_seeds = run_seeds[keep] if np.ndim(run_seeds) else run_seeds
            state = tree_map(lambda s: s[keep] if isinstance(s, np.ndarray) and s.ndim >= 1 else s, state)
            rule = rule.take(keep)
            if not len(alive):
                break
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(step + 1)
    if len(alive):
        _record_final(trace, alive, cells[alive], problem, X, iters)
        trace.final["path_length"][alive] = length
    trace.final_x = X
    trace.final_runs = alive
    return trace


def run(spec, progress=None, timings=None) -> Trace:
    """Run one spec; returns its Trace with verdicts and theory report."""
    return run_batch([spec], progress, timings)[0]


def run_batch(specs, progress=None, timings=None) -> list[Trace]:
    """Run specs that can share a batch (convergence.spec.batch_key equal) as one array run and
    return each spec's assessed Trace, identical to running it alone. Specs of backend jax run on
    the compiled backend (convergence.jax_runner). ``timings``, when given, receives the seconds of
    'iterations', 'theory report' and, on jax, 'compile'."""
    from convergence import theory
    from convergence.methods import stack
    from convergence.spec import batch_key
    from convergence.verdicts import assess
    first = specs[0]
    if len({batch_key(s) for s in specs}) > 1:
        raise ValueError("these run specs cannot share a batch (batch_key differs)")
    sizes = [s.runs for s in specs]
    cells = np.repeat(np.arange(len(specs)), sizes)
    one = len(specs) == 1
    engine, extra, seconds = iterate, {"cells": cells}, {}
    if getattr(first, "backend", "numpy") == "jax":
        from convergence import jax_runner
        engine, extra = jax_runner.iterate, {"timings": seconds}     # its compile and iteration seconds
    clock = time.perf_counter()
    trace = engine(
        first.problem, first.rule if one else stack([s.rule for s in specs], sizes),
        _schedules([s.stepsize for s in specs], cells), _schedules([s.radius for s in specs], cells),
        first.iters, sum(sizes), first.seed if one else np.repeat([s.seed for s in specs], sizes),
        x0=np.concatenate([s.x0 for s in specs]), sampler=first.sampler, dtype=np.dtype(first.dtype).type,
        grid=first.grid, progress=progress, run_ids=np.concatenate([np.arange(n) for n in sizes]), **extra)
    seconds.setdefault("iterations", time.perf_counter() - clock)
    clock = time.perf_counter()
    out = []
    for i, spec in enumerate(specs):
        part = trace.take(np.flatnonzero(cells == i), rule=spec.rule.name)
        assess(part)
        part.theory = theory.report(spec, part)
        out.append(part)
    if timings is not None:
        timings.update(seconds, **{"theory report": time.perf_counter() - clock})
    return out


def _schedules(schedules, cells):
    """One schedule for every run when they are all the same, else a PerRun table."""
    distinct = list({id(s): s for s in schedules}.values())
    if len({s.expr for s in distinct}) == 1:
        return distinct[0]
    position = {id(s): i for i, s in enumerate(distinct)}
    return PerRun(tuple(distinct), np.array([position[id(schedules[c])] for c in cells]))


def _record(trace, row, alive, cells, problem, X, G, bound, t, rho):
    """Record iterate x_k and step k: f, gaps, ||grad f(x_k)||, and err = ||g_k - grad f(x_k)||."""
    d = trace.data
    true_grad = _record_point(d, row, alive, cells, problem, X)
    d["step"][row, alive] = np.ravel(t) if np.ndim(t) else t
    d["rho"][row, alive] = np.ravel(rho) if np.ndim(rho) else rho
    d["err"][row, alive] = norm(G - true_grad)[:, 0]
    if bound is not None:
        d["err_bound"][row, alive] = np.broadcast_to(bound, (len(alive), 1))[:, 0]


def _record_final(trace, alive, cells, problem, X, at):
    """Record the last iterate of the runs ``alive``: x_iters, or the first diverged iterate."""
    trace.final_iter[alive] = at
    _record_point(trace.final, (), alive, cells, problem, X)


@functools.cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries numpy loaded (made once, on first use)."""
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def _record_point(d, row, alive, cells, problem, X):
    """Write f, f - f*, ||grad f||, ||x - x*|| at X into the columns ``d[name][row, alive]``; f cell
    by cell (``cells``: the cell of each row of X, or None: one cell), on one BLAS thread: a problem's
    f may call BLAS (the quadratic's gemv), which splits a long dot product across its threads, and
    run_toy uses them all where sweep workers use one."""
    idx = row + (alive,) if isinstance(row, tuple) else (row, alive)
    with np.errstate(all="ignore"), _blas().limit(limits=1, user_api="blas"):
        fx = problem.f(X) if cells is None or cells[0] == cells[-1] else np.concatenate(
            [problem.f(part) for part in np.split(X, np.flatnonzero(np.diff(cells)) + 1)])
        true_grad = problem.grad(X)
        d["f"][idx] = fx
        d["grad_norm"][idx] = norm(true_grad)[:, 0]
        if problem.f_star is not None:
            d["f_gap"][idx] = fx - problem.f_star
        dist = problem.dist_to_opt(X)
        if dist is not None:
            d["dist_to_opt"][idx] = dist
    return true_grad
