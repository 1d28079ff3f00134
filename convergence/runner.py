"""The one engine: inexact gradient descent for a batch of runs, arrays shaped (runs, dim).

    x_{k+1} = x_k - t_k g_k,   g_k = grad f_S(x_k + rho_k d_k),   d_k from the method's rule.

The runner knows no method: it asks the rule for g_k (and the bound on ||g_k - grad f_S(x_k)||),
records the DESIGN.md columns on a geometric grid, and retires runs that diverge.
"""
from __future__ import annotations

import numpy as np

from convergence.random import Streams
from convergence.sampling import FullBatch
from convergence.trace import Trace, geometric_grid
from convergence.vec import norm

BLOWUP = 1e12      # |x| beyond this counts as divergence (as do NaN and inf)


def run(problem, rule, stepsize, radius, iters: int, runs: int = 1, seed: int = 0,
        x0: np.ndarray | None = None, sampler=None, dtype=np.float64, grid=None,
        progress: bool = False) -> Trace:
    """Run ``runs`` independent copies of the method for ``iters`` steps and return their Trace.

    Run r starts at ``x0[r]`` (default: the problem's box, drawn from (seed, r)) and draws its
    random numbers from (seed, r) only, so results do not depend on the batch size.
    """
    sampler = sampler or FullBatch()
    X = np.array(problem.x0(runs, seed) if x0 is None else x0, dtype=dtype)
    if X.shape != (runs, problem.dim):
        raise ValueError(f"x0 has shape {X.shape}, expected ({runs}, {problem.dim})")
    grid = geometric_grid(iters) if grid is None else np.asarray(grid)
    trace = Trace(rule.name, problem.name, grid, runs, eps=float(np.finfo(dtype).eps))
    alive = np.arange(runs)                 # global indices of the runs still in the batch
    state = rule.init(X)
    rec = 0                                 # next grid row to fill
    bar = _progress(iters) if progress else None

    for step in range(iters):
        t, rho = stepsize(step), radius(step)
        streams = Streams(seed, alive, step)
        oracle = sampler.oracle(problem, streams)
        G, bound, state = rule.gradient(step, X, oracle, state, rho, streams)
        if rec < len(grid) and grid[rec] == step:
            _record(trace, rec, alive, problem, X, G, bound, t, rho)
            rec += 1
        X -= t * G
        if not (X.max() <= BLOWUP and X.min() >= -BLOWUP):        # also catches NaN
            bad = ~np.all(np.abs(X) <= BLOWUP, axis=1)
            trace.diverged[alive[bad]] = True
            _record_final(trace, alive[bad], problem, X[bad], step + 1)
            keep = ~bad
            X, alive, state = X[keep], alive[keep], _compact(state, keep)
            if not len(alive):
                break
        if bar is not None and (step + 1) % 1000 == 0:
            bar.update(1000)
    if len(alive):
        _record_final(trace, alive, problem, X, iters)
    if bar is not None:
        bar.close()
    trace.final_x = X
    trace.final_runs = alive
    return trace


def _record(trace, row, alive, problem, X, G, bound, t, rho):
    """Record iterate x_k and step k: f, gaps, ||grad f(x_k)||, and err = ||g_k - grad f(x_k)||."""
    d = trace.data
    true_grad = _record_point(d, row, alive, problem, X)
    d["step"][row, alive] = t
    d["rho"][row, alive] = rho
    d["err"][row, alive] = norm(G - true_grad)[:, 0]
    if bound is not None:
        d["err_bound"][row, alive] = np.broadcast_to(bound, (len(alive), 1))[:, 0]


def _record_final(trace, alive, problem, X, at):
    """Record the last iterate of the runs ``alive``: x_iters, or the first diverged iterate."""
    trace.final_iter[alive] = at
    _record_point(trace.final, (), alive, problem, X)


def _record_point(d, row, alive, problem, X):
    """Write f, f - f*, ||grad f||, ||x - x*|| at X into the columns ``d[name][row, alive]``."""
    idx = row + (alive,) if isinstance(row, tuple) else (row, alive)
    with np.errstate(all="ignore"):
        fx = problem.f(X)
        true_grad = problem.grad(X)
        d["f"][idx] = fx
        d["grad_norm"][idx] = norm(true_grad)[:, 0]
        if problem.f_star is not None:
            d["f_gap"][idx] = fx - problem.f_star
        dist = problem.dist_to_opt(X)
        if dist is not None:
            d["dist_to_opt"][idx] = dist
    return true_grad


def _compact(state, keep):
    """Drop the retired runs from a rule's state (arrays with a leading run axis, nested in tuples)."""
    if isinstance(state, np.ndarray) and state.ndim >= 1:
        return state[keep]
    if isinstance(state, (tuple, list)):
        return type(state)(_compact(s, keep) for s in state)
    if isinstance(state, dict):
        return {key: _compact(s, keep) for key, s in state.items()}
    return state


def _progress(iters):
    from tqdm import tqdm
    return tqdm(total=iters, unit="it", mininterval=0.5, leave=False)
