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
