"""Khanh, Luong, Mordukhovich & Tran (NeurIPS 2024), "Fundamental Convergence Analysis of SAM"."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convergence.methods import make_method
from convergence.runner import run as simulate
from convergence.schedules import constant, diminishing
from convergence.trace import table
from convergence.verdicts import assess, tail_slope
from experiments.claims import Claim
from figures.convergence import plot_tables, save
from problems import make_problem

TITLE = "Khanh et al. (2024): Fundamental Convergence Analysis of SAM"
VARIANTS = ["sam", "usam", "fsam", "vasso", "rsam"]


def _ratio(trace, column):
    """Per-run final / initial value of a column."""
    return trace.final[column] / trace.data[column][0]


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    runs = 8 if quick else 32
    claims, inexact = [], []

    # 1-2. constant vs diminishing steps on a strongly convex quadratic
    quad = make_problem("quadratic", 2)
    t, rho, iters = 0.5, 0.05, 5000 if quick else 50_000
    const = simulate(quad, make_method("sam"), constant(t), constant(rho), iters, runs, seed=0,
                grid=np.arange(iters))
    dimin = simulate(quad, make_method("sam"), diminishing(1.0, 0.6), diminishing(rho, 0.6),
                100_000 if quick else 1_000_000, runs, seed=0)
    assess(const), assess(dimin)
    inexact += [const, dimin]
    floor = t * rho * quad.mu / 2
    pair = np.maximum(const.data["dist_to_opt"][:-1], const.data["dist_to_opt"][1:])
    claims.append(Claim(
        "constant-step-sam-does-not-converge",
        "SAM with constant step and radius on a strongly convex quadratic does not converge to x* "
        "(Sec. 3 example): max(||x_k - x*||, ||x_{k+1} - x*||) >= t rho mu / 2 at every k",
        bool(pair.min() >= floor and "converged" not in const.status),
        {"floor": floor, "min_pair_distance": float(pair.min()), "statuses": sorted(set(const.status))},
        "constant-vs-diminishing.png"))
    g = _ratio(dimin, "grad_norm")
    claims.append(Claim(
        "diminishing-step-sam-converges",
        "with diminishing t_k, rho_k (sum t = oo, sum t^2 < oo, sum t rho < oo) SAM converges: "
        "||grad f|| -> 0, x_k -> x* (Thm 3.2/3.3)",
        bool(g.max() <= 1e-6 and _ratio(dimin, "dist_to_opt").max() <= 1e-5),
        {"max_grad_ratio": float(g.max()), "max_dist_ratio": float(_ratio(dimin, "dist_to_opt").max())},
        "constant-vs-diminishing.png"))
    save(plot_tables([("SAM, constant t = 0.5, rho = 0.05", table([const])),
                      ("SAM, diminishing t, rho", table([dimin]))],
                     "SAM on a strongly convex quadratic (d = 2, kappa = 10)"),
         out / "constant-vs-diminishing")

    # 3. "almost constant" radius rho_k = C/(k+1)^p behaves like the constant radius (Remark 3.6)
    dims = [2, 20] if quick else [2, 20, 50, 100]
    rows, tables = {}, []
    for n in dims:
        rr = make_problem("robust_regression", n)
        step = diminishing(1.9 / rr.L, 0.95)
        pair = {}
        for label, radius in (("constant", constant(0.05)), ("almost constant", diminishing(0.05, 0.1))):
            trace = simulate(rr, make_method("sam"), step, radius, 20_000 if quick else 200_000, runs, seed=1)
            inexact.append(trace)
            pair[label] = float(np.exp(np.mean(np.log(_ratio(trace, "grad_norm")))))
            if n == dims[-1]:
                tables.append((f"rho {label} (n = {n})", table([trace])))
        rows[n] = pair
    similar = all(max(p.values()) / min(p.values()) < 10 and max(p.values()) < 1 for p in rows.values())
    claims.append(Claim(
        "almost-constant-radius",
        "robust regression sum log(1 + (Ax - b)_i^2): SAM with rho_k = C/k^p (p = 0.1, which meets "
        "sum t_k rho_k < oo for t_k ~ 1/k^0.95) behaves like constant rho = C (Remark 3.6, appendix)",
        bool(similar), {f"n{n}_{label.replace(' ', '_')}_grad_ratio": v for n, pair in rows.items()
                        for label, v in pair.items()}, "almost-constant-radius.png"))
    save(plot_tables(tables, f"SAM on robust regression, n = {dims[-1]}"), out / "almost-constant-radius")

    # 4. the normalized variants and USAM with diminishing steps
    rr = make_problem("robust_regression", 10)
    iters = 30_000 if quick else 1_000_000
    tol = 1e-2 if quick else 1e-5
    traces, measured, ok = [], {}, True
    for m in VARIANTS:
        trace = simulate(rr, make_method(m), diminishing(1.9 / rr.L, 0.6), diminishing(0.05, 0.6), iters, runs,
                    seed=2)
        assess(trace)
        traces.append((m, table([trace])))
        inexact.append(trace)
        g, gap, dist = (_ratio(trace, c).max() for c in ("grad_norm", "f_gap", "dist_to_opt"))
        its, gn = trace.column("grad_norm", 0)
        measured[m] = [float(g), float(gap), float(dist)]
        ok &= bool(g <= tol and gap <= tol**2 and dist <= tol and tail_slope(its, gn) < 0)
    claims.append(Claim(
        "variants-converge",
        "SAM, USAM, F-SAM, VaSSO and RSAM with diminishing steps on a nonconvex robust regression: "
        "||grad f|| -> 0, f -> f*, x_k -> x* (Sec. 3-4)",
        ok, {"tolerance": tol, **{f"{m}_grad_gap_dist": v for m, v in measured.items()}}, "variants.png"))
    save(plot_tables(traces, "SAM-family, diminishing steps, robust regression (d = 10)"), out / "variants")

    # 5. inexactness ||g_k - grad f(x_k)|| <= L rho_k ||d_k|| at every recorded iterate
    worst = max(float(np.nanmax(tr.data["err"] / np.where(tr.data["err_bound"] > 0, tr.data["err_bound"], np.inf)))
                for tr in inexact)
    checked = sum(int(np.isfinite(tr.data["err"]).sum()) for tr in inexact)
    claims.append(Claim(
        "inexactness-bounds",
        "SAM-type methods are inexact gradient descent: ||g_k - grad f(x_k)|| <= L rho_k (normalized), "
        "<= L rho_k ||grad f(x_k)|| (USAM) at every iterate",
        bool(worst <= 1 + 1e-9), {"max_err_over_bound": worst, "iterates_checked": checked}))
    return claims
