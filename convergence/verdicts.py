"""A verdict per run: converged / max_iter / stalled / diverged, with the reason and the numbers."""
from __future__ import annotations

import numpy as np

RTOL = 1e-6          # converged: ||grad f(x_K)|| <= RTOL * ||grad f(x_0)||
DECREASING = -0.2    # tail log-log slope below this: still decreasing when the budget ran out


def tail_slope(iters: np.ndarray, values: np.ndarray, start_fraction: float = 0.1) -> float:
    """Least-squares slope of log(value) against log(k) over k >= start_fraction * K (k >= 1)."""
    ok = (iters >= max(1, start_fraction * iters.max())) & np.isfinite(values) & (values > 0)
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(iters[ok]), np.log(values[ok]), 1)[0])


def judge(iters: np.ndarray, grad_norm: np.ndarray, diverged: bool, rtol: float = RTOL):
    """(status, reason, details) for one run's recorded gradient norms."""
    g0, gK = float(grad_norm[0]), float(grad_norm[-1])
    details = {"grad_norm_0": g0, "grad_norm_final": gK, "final_iter": int(iters[-1])}
    if diverged:
        return "diverged", f"diverged at iteration {int(iters[-1])} (NaN, inf or |x| > 1e12)", details
    ratio = gK / g0 if g0 > 0 else 0.0
    slope = tail_slope(iters, grad_norm)
    details.update(ratio=ratio, tail_slope=slope)
    if ratio <= rtol:
        return "converged", f"||grad f|| fell by {ratio:.1e} <= {rtol:g}", details
    if slope < DECREASING:
        return "max_iter", (f"||grad f|| still decreasing (tail ~ k^{slope:.2f}) at ratio "
                            f"{ratio:.1e} when the iterations ran out"), details
    tail = grad_norm[iters >= 0.1 * iters[-1]]
    details["stall_level"] = float(np.median(tail))
    return "stalled", (f"||grad f|| plateaued near {details['stall_level']:.2e} "
                       f"(tail slope {slope:.2f}, ratio {ratio:.1e})"), details


def assess(trace, rtol: float = RTOL):
    """Fill the per-run status, reason and details of a Trace; return the status counts."""
    trace.status, trace.reason, trace.details = [], [], []
    for r in range(trace.runs):
        its, g = trace.column("grad_norm", r)
        status, reason, details = judge(its, g, bool(trace.diverged[r]), rtol)
        trace.status.append(status)
        trace.reason.append(reason)
        trace.details.append(details)
    return {s: trace.status.count(s) for s in sorted(set(trace.status))}


# --- rate fits ----------------------------------------------------------------------------------
def fit_rate(x: np.ndarray, values: np.ndarray, log_x: bool = True) -> dict:
    """Least-squares slope of log(values) against log(x) (log_x) or x, with a 95 % confidence
    interval (Student t). A power law k^s gives slope s; a linear rate q^k gives log q per step."""
    from scipy import stats
    ok = np.isfinite(values) & (values > 0) & (x > 0 if log_x else np.isfinite(x))
    X = np.log(x[ok]) if log_x else x[ok].astype(float)
    Y = np.log(values[ok])
    n = len(X)
    if n < 3 or np.ptp(X) == 0:
        return {"slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": n, "r2": float("nan")}
    fit = stats.linregress(X, Y)
    half = stats.t.ppf(0.975, n - 2) * fit.stderr if n > 2 else float("inf")
    return {"slope": float(fit.slope), "lo": float(fit.slope - half), "hi": float(fit.slope + half), "n": n,
            "r2": float(fit.rvalue ** 2)}


def tail_fit(its, values, start_fraction=0.1, log_x=True, floor=1e-13) -> dict:
    """fit_rate on k >= start_fraction K, leaving out values at round-off level (< floor * start)."""
    keep = (its >= max(1, start_fraction * its.max())) & (values > floor * values[0])
    return fit_rate(its[keep], values[keep], log_x)


# --- theory against observation ----------------------------------------------------------------
def observe(prediction: str, trace, r: int, bound=None) -> tuple[bool, str]:
    """(agrees, what was observed) for one run and one theorem's prediction."""
    status = trace.status[r]
    its, g = trace.column("grad_norm", r)
    _, gap = trace.column("f_gap", r)
    if prediction == "grad_to_zero":
        ratio = trace.details[r].get("ratio", float("nan"))
        return status in ("converged", "max_iter"), f"{status}, ||grad f|| ratio {ratio:.1e}"
    if prediction == "no_convergence":            # a plateau or a blow-up; still decreasing is no evidence
        return status in ("stalled", "diverged"), f"{status}, final ||grad f|| {g[-1]:.2e}"
    if prediction == "linear":                    # log(f - f*) a line in k, better than a power of k
        fit = tail_fit(its, gap, start_fraction=0.0, log_x=False)
        power = tail_fit(its, gap, start_fraction=0.0, log_x=True)
        agree = status == "converged" or (fit["hi"] < 0 and fit["r2"] > power["r2"])
        return agree, (f"{status}, log(f - f*) slope {fit['slope']:.2e}/iter [{fit['lo']:.2e}, {fit['hi']:.2e}], "
                       f"R^2 {fit['r2']:.3f} (in k) vs {power['r2']:.3f} (in log k)")
    if prediction == "neighbourhood":
        return status != "diverged" and gap[-1] < gap[0], f"{status}, f - f*: {gap[0]:.2e} -> {gap[-1]:.2e}"
    if prediction == "rate_1_over_k":
        fit = tail_fit(its, gap)
        agree = status == "converged" or fit["slope"] <= -0.9
        return agree, f"{status}, f - f* ~ k^{fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]"
    if prediction in ("bound_min_grad", "bound_pl"):
        if prediction == "bound_min_grad":
            observed, slack = np.minimum.accumulate(g), 0.0
        else:       # f - f* is known to round-off only: eps (|f| + |f*|), and eps^2 f(x_0) where f is
            _, f = trace.column("f", r)          # a sum of squares of residuals that vanish at x*
            slack = 16 * trace.eps * (np.abs(f) + np.abs(f - gap)) + 16 * trace.eps ** 2 * abs(f[0])
            observed = gap
        ratio = np.max((observed - slack) / np.maximum(bound, 1e-300))
        return bool(ratio <= 1 + 1e-9), f"max observed/bound {ratio:.3f} over {len(observed)} iterates"
    raise KeyError(prediction)


def bound_at(theorem_key: str, ctx, trace) -> np.ndarray | None:
    """The derived bound of a theorem at every recorded iterate of every run, shaped (points, runs),
    aligned with Trace.column (recorded grid points, then the last iterate)."""
    from convergence import theory
    if trace.grid[0] != 0:                       # the bounds start from f(x_0) - f*: not recorded
        return None
    K = int(trace.final_iter.max())
    gap0 = trace.data["f_gap"][0]
    if theorem_key == "derived-min-grad-bound":
        full = theory.min_grad_bound(ctx, gap0, K)                 # row k-1: bound at k
        full = np.vstack([np.full((1, trace.runs), np.inf), full])  # k = 0: nothing yet
    elif theorem_key == "derived-pl-bound":
        full = theory.pl_bound(ctx, gap0, K)
    else:
        return None
    # min over j < k is a bound for the iterate k-1 onwards: compare the running min up to k with
    # the bound at k + 1 (the bound indexes the number of iterates seen)
    return full


def theory_report(problem, rule, lam, t, rho, sampler, trace, ol_steps=None, iters: int = 0) -> list[dict]:
    """Which theorems cover the run and hold (schedules scanned over the run's ``iters`` steps, at
    least SCAN); for those, theory's prediction against each run."""
    from convergence import theory
    from convergence.schedules import SCAN
    deterministic = sampler is None or sampler.name == "full"
    ctx = theory.Context(t.expr, rho.expr, problem.L, problem.mu, rule.error_model, ol_steps,
                         horizon=max(SCAN, iters))
    rows = []
    for a in theory.assess_theorems(rule.name, lam, problem, ctx, deterministic):
        th = a.theorem
        row = {"theorem": th.key, "paper": th.paper, "where": th.where, "source": th.source,
               "conclusion": th.conclusion, "covered": a.covered, "holds": a.holds,
               "failures": [f"{theory.HYPOTHESES.get(h, h)} fails ({d})" for h, d in a.failures],
               "checks": {h: {"holds": d.holds, "method": d.method, "detail": d.detail}
                          for h, d in a.checks.items()}}
        observable = problem.f_star is not None or th.predicts in ("grad_to_zero", "no_convergence")
        full = bound_at(th.key, ctx, trace) if a.holds and trace is not None and observable else None
        if th.predicts in ("bound_min_grad", "bound_pl") and full is None:
            observable = False                   # e.g. a grid that does not start at x_0
        unreached = _unreached(th, ctx, trace) if a.holds and trace is not None and observable else None
        if unreached:
            row.update(predicts=th.predicts, unreached=unreached)
        elif a.holds and trace is not None and observable:
            agree, notes = [], []
            for r in range(trace.runs):
                bound = None
                if full is not None:
                    its, _ = trace.column("grad_norm", r)
                    idx = np.minimum(its + (1 if th.predicts == "bound_min_grad" else 0), len(full) - 1)
                    bound = full[idx, r]
                ok, note = observe(th.predicts, trace, r, bound)
                agree.append(ok)
                notes.append(note)
            row.update(predicts=th.predicts, runs_agree=int(sum(agree)), runs=trace.runs,
                       mismatch=not all(agree), observed=notes)
            if full is not None:
                shift = 1 if th.predicts == "bound_min_grad" else 0
                idx = np.minimum(trace.grid + shift, len(full) - 1)
                row["bound_curve"] = {"iter": trace.grid.tolist(),
                                      "median": np.median(full[idx], axis=1).tolist()}
        rows.append(row)
    return rows


def _unreached(th, ctx, trace) -> str | None:
    """Why the run is too short to show a theorem's asymptotic prediction, or None. O(1/k) is the
    regime of decreasing steps: a slope needs a decade of it (t_k < t_0 from k_s on, 10 k_s <= K)."""
    if th.predicts != "rate_1_over_k":
        return None
    from convergence.schedules import Schedule
    K = int(trace.final_iter.max())
    below = np.flatnonzero(Schedule(ctx.t).values(K) < Schedule(ctx.t).values(1)[0])
    if len(below) and 10 * below[0] <= K:
        return None
    start = f"k = {below[0]}" if len(below) else f"beyond the run's K = {K}"
    return f"not reached: the steps decrease from {start}; the O(1/k) regime needs K >= 10 times that"
