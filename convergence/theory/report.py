"""The theory report of a run: which theorems cover it and hold (hypotheses.py), and for those,
their predictions against every run of the trace.

A prediction is judged per run as "agrees", "consistent" (what a finite run can show of an
asymptotic statement: still decreasing when the iterations ran out) or a mismatch.
"""
from __future__ import annotations

import numpy as np

from convergence.schedules import SCAN
from convergence.theory import bounds
from convergence.theory.catalogue import CONVERGENCE, HYPOTHESES, KL, THEOREMS
from convergence.theory.hypotheses import Context, assess, check, problem_lacks
from convergence.verdicts import tail_fit


def context(spec) -> Context:
    """The hypotheses' context of a run spec: its schedules, the problem's constants, the rule's
    error model (as the run's sampling sees the rule) and its theory steps (gamma*, rho*)."""
    rule = spec.rule.on_full_batch() if spec.deterministic else spec.rule
    return Context(spec.stepsize, spec.radius, spec.problem.L, spec.problem.mu, rule.error_model,
                   spec.theory_steps, horizon=max(SCAN, spec.iters))


def assessments(spec) -> list:
    """Every theorem of the catalogue assessed for the run spec (computed once per spec)."""
    return assess(spec.rule, spec.problem, spec.theory_context, spec.deterministic)


def applicability(spec) -> str:
    """'' when a convergence theorem covers the run and its hypotheses hold, else why not (one line,
    the theorem and its first failing hypothesis)."""
    rows = [a for a in spec.assessments if a.theorem.predicts in CONVERGENCE + KL and a.covered]
    if any(a.holds for a in rows):
        return ""
    if not rows:
        kind = "deterministic" if spec.deterministic else "stochastic"
        seen = spec.rule.on_full_batch() if spec.deterministic else spec.rule
        near = [f"{th.key} assumes {problem_lacks(spec.problem, th.assumptions)}" for th in THEOREMS
                if th.predicts in CONVERGENCE and th.covers(seen) and (spec.deterministic or not th.deterministic)]
        return (f"no convergence theorem covers {spec.rule.name} on {spec.problem.name} ({kind})"
                + (": " + "; ".join(near) if near else ""))
    return "; ".join(f"{a.theorem.key} needs {_hypothesis(*a.failures[0])}" for a in rows)


def _hypothesis(key, detail):
    return f"{HYPOTHESES.get(key, key)} ({detail})"


SCHEDULE_ONLY = {"sum_t_inf", "sum_t2_fin", "sum_trho_fin", "t_to_0"}


def schedule_verdict(rule, stepsize, radius, horizon: int = SCAN) -> str:
    """'' when a convergence theorem covering ``rule`` has hypotheses on the schedules alone and
    they hold for these (deep nets: no smoothness constant known, k counting epochs), else why not."""
    ctx = Context(stepsize, radius, 1.0, None, rule.error_model, None, horizon)
    found = []
    for th in THEOREMS:
        if th.predicts in CONVERGENCE and th.covers(rule.on_full_batch()) and set(th.hypotheses) <= SCHEDULE_ONLY:
            failing = [h for h in th.hypotheses if not check(h, ctx)]
            if not failing:
                return ""
            found.append(f"{th.key} needs " + ", ".join(_hypothesis(h, check(h, ctx).detail) for h in failing))
    return "; ".join(found) or f"no convergence theorem with hypotheses on the schedules alone covers {rule.name}"


def path_tail(trace, r: int, start: float = 0.1) -> dict:
    """Run r's path over its last decade [start K, K]: the length P(K) - P(start K) it added, its share of
    the total P(K), and the distance it gained towards x*, dist(start K) - dist(K); their ratio
    ``efficiency`` (1: straight towards x*; 0: wandering or oscillating without getting closer).
    Under finite length the added length shrinks to 0 and stays comparable to the distance gained
    (which telescopes to a finite sum); a path of infinite length keeps adding length without
    getting closer."""
    its, P = trace.column("path_length", r)
    _, D = trace.column("dist_to_opt", r)
    K = float(its[-1])
    p0, p1 = np.interp([start * K, K], its, P)
    d0, d1 = np.interp([start * K, K], its, D)
    added = p1 - p0
    return {"length": float(p1), "added": float(added), "share": float(added / p1) if p1 > 0 else 0.0,
            "gained": float(d0 - d1), "efficiency": float((d0 - d1) / added) if added > 0 else 1.0,
            "dist_ratio": float(D[-1] / D[0]) if D[0] > 0 else 0.0}


def kl_rate_exponent(theta: float) -> float:
    """-(1 - theta)/(2 theta - 1): ||x_k - x*|| = O(k^this) under the Lojasiewicz exponent theta in (1/2, 1)."""
    return -(1.0 - theta) / (2.0 * theta - 1.0)


EFFICIENCY = 0.8          # finite_length agrees: the last decade's length <= 1/0.8 x the distance it gained
RATE_TOL = 0.1            # kl_rate agrees: the fitted exponent's CI reaches below the prediction + 10 %


def observe(prediction: str, trace, r: int, bound=None, theta=None) -> tuple[str, str]:
    """('agrees' | 'consistent' | 'mismatch', what was observed) for one run and one prediction
    (``theta``: the problem's Lojasiewicz exponent, for kl_rate)."""
    status = trace.status[r]
    its, g = trace.column("grad_norm", r)
    _, gap = trace.column("f_gap", r)
    if prediction == "grad_to_zero":
        ratio = trace.details[r].get("ratio", float("nan"))
        judged = {"converged": "agrees", "max_iter": "consistent"}.get(status, "mismatch")
        return judged, f"{status}, ||grad f|| ratio {ratio:.1e}"
    if prediction == "no_convergence":            # a plateau or a blow-up; still decreasing is no evidence
        judged = "agrees" if status in ("stalled", "diverged") else "mismatch"
        return judged, f"{status}, final ||grad f|| {g[-1]:.2e}"
    if prediction == "linear":                    # log(f - f*) a line in k, better than a power of k
        fit = tail_fit(its, gap, start_fraction=0.0, log_x=False)
        power = tail_fit(its, gap, start_fraction=0.0, log_x=True)
        agree = status == "converged" or (fit["hi"] < 0 and fit["r2"] > power["r2"])
        return ("agrees" if agree else "mismatch"), (
            f"{status}, log(f - f*) slope {fit['slope']:.2e}/iter [{fit['lo']:.2e}, {fit['hi']:.2e}], "
            f"R² {fit['r2']:.3f} (in k) vs {power['r2']:.3f} (in log k)")
    if prediction == "neighbourhood":             # a plateau above f*, reached from above: not f* itself
        _, f = trace.column("f", r)
        roundoff = 1e3 * trace.eps * (abs(f[-1]) + abs(f[-1] - gap[-1]))
        agree = status == "stalled" and roundoff < gap[-1] < gap[0]
        return ("agrees" if agree else "mismatch"), (
            f"{status}, f - f*: {gap[0]:.2e} -> {gap[-1]:.2e} (round-off level {roundoff:.1e})")
    if prediction == "rate_1_over_k":
        fit = tail_fit(its, gap)
        agree = status == "converged" or fit["slope"] <= -0.9
        return ("agrees" if agree else "mismatch"), (
            f"{status}, f - f* ~ k^{fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]")
    if prediction == "finite_length":
        tail = path_tail(trace, r)
        stopped = tail["added"] <= 1e-12 * max(tail["length"], 1e-300)
        decreasing = tail["dist_ratio"] < 1
        if status == "diverged" or not decreasing:
            judged = "mismatch"
        elif stopped or tail["efficiency"] >= EFFICIENCY:
            judged = "agrees"
        else:
            judged = "mismatch"
        return judged, (f"{status}, path length {tail['length']:.3g} (+{tail['share']:.1%} over the last decade, "
                        f"{tail['efficiency']:.2f} of it towards x*), ||x_K - x*||/||x_0 - x*|| "
                        f"{tail['dist_ratio']:.1e}")
    if prediction == "kl_rate":
        _, dist = trace.column("dist_to_opt", r)
        fit = tail_fit(its, dist)
        pred = kl_rate_exponent(theta)
        tight = fit["lo"] - RATE_TOL * abs(pred) <= pred <= fit["hi"] + RATE_TOL * abs(pred)
        if status == "converged" or fit["lo"] <= pred + RATE_TOL * abs(pred):
            judged = "agrees"
        elif fit["hi"] < 0 and status != "stalled":
            judged = "consistent"             # decreasing more slowly: a finite run's transient
        else:
            judged = "mismatch"
        return judged, (f"{status}, ||x_k - x*|| ~ k^{fit['slope']:.3f} [{fit['lo']:.3f}, {fit['hi']:.3f}] vs "
                        f"O(k^{pred:.3f}) (theta = {theta:g}){', tight' if tight else ''}")
    if prediction in ("bound_min_grad", "bound_pl"):
        if prediction == "bound_min_grad":
            observed, slack = np.minimum.accumulate(g), 0.0
        else:       # f - f* is known to round-off only: eps (|f| + |f*|), and eps^2 f(x_0) where f is
            _, f = trace.column("f", r)          # a sum of squares of residuals that vanish at x*
            slack = 16 * trace.eps * (np.abs(f) + np.abs(f - gap)) + 16 * trace.eps ** 2 * abs(f[0])
            observed = gap
        ratio = np.max((observed - slack) / np.maximum(bound, 1e-300))
        return ("agrees" if ratio <= 1 + 1e-9 else "mismatch"), (
            f"max observed/bound {ratio:.3f} over {len(observed)} iterates")
    raise KeyError(prediction)


def report(spec, trace) -> list[dict]:
    """One row per theorem: whether it covers the run and holds, and for those that hold, the
    prediction against each run (with the derived bound's median curve for the figure)."""
    ctx = spec.theory_context
    rows = []
    for a in spec.assessments:
        th = a.theorem
        row = {"theorem": th.key, "paper": th.paper, "where": th.where, "source": th.source,
               "conclusion": th.conclusion, "covered": a.covered, "holds": a.holds,
               "failures": [f"{HYPOTHESES.get(h, h)} fails ({d})" for h, d in a.failures],
               "checks": {h: {"holds": d.holds, "method": d.method, "detail": d.detail}
                          for h, d in a.checks.items()}}
        observable = a.holds and trace is not None and (
            spec.problem.f_star is not None or th.predicts in ("grad_to_zero", "no_convergence"))
        bound_of = bounds.bound_at(th.predicts, ctx, trace) if observable else None
        if th.predicts in bounds.PREDICTS and bound_of is None:
            observable = False                   # e.g. a grid that does not start at x_0
        unreached = _unreached(th, ctx, trace) if observable else None
        if unreached:
            row.update(predicts=th.predicts, unreached=unreached)
        elif observable:
            judged, notes = [], []
            for r in range(trace.runs):
                bound = None
                if bound_of is not None:
                    its, _ = trace.column("grad_norm", r)
                    bound = bound_of(its, [r])[:, 0]
                verdict, note = observe(th.predicts, trace, r, bound, spec.problem.kl_exponent)
                judged.append(verdict)
                notes.append(note)
            row.update(predicts=th.predicts, runs_agree=judged.count("agrees"),
                       runs_consistent=judged.count("consistent"), runs=trace.runs,
                       mismatch="mismatch" in judged, observed=notes)
            if bound_of is not None:
                row["bound_curve"] = {"iter": trace.grid.tolist(),
                                      "median": np.median(bound_of(trace.grid), axis=1).tolist()}
        rows.append(row)
    return rows


def _unreached(th, ctx, trace) -> str | None:
    """Why the run is too short to show a theorem's asymptotic prediction, or None. O(1/k) is the
    regime of decreasing steps: a slope needs a decade of it (t_k < t_0 from k_s on, 10 k_s <= K)."""
    if th.predicts != "rate_1_over_k":
        return None
    K = int(trace.final_iter.max())
    t = ctx.t.values(K)
    below = np.flatnonzero(t < t[0])
    if len(below) and 10 * below[0] <= K:
        return None
    start = f"k = {below[0]}" if len(below) else f"beyond the run's K = {K}"
    return f"not reached: the steps decrease from {start}; the O(1/k) regime needs K >= 10 times that"
