"""Oikonomou & Loizou (2025), "Sharpness-Aware Minimization: General Analysis and Improved Rates".

Unified SAM on PL finite sums (least squares and ridge, condition number 10, ridge regularizer 3/n)
at the theory step sizes (gamma*, rho*) and the decreasing rule of convergence/theorems.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convergence.methods import make_method
from convergence.runner import run as simulate
from convergence.sampling import make_sampler
from convergence.schedules import Schedule, constant, k
from convergence.theorems import pl_decreasing, unified_pl_steps
from convergence.trace import table
from convergence.verdicts import assess, fit_rate, tail_fit, tail_slope
from experiments.claims import Claim
from figures.convergence import plot_tables, save
from problems import LeastSquares, Ridge

TITLE = "Oikonomou & Loizou (2025): SAM, General Analysis and Improved Rates"


def _theory(problem, sampler, lam):
    c = sampler.constants(problem)
    L = problem.L if sampler.name == "full" else problem.L_max
    return unified_pl_steps(L, problem.mu, c["A"], c["B"], lam)


def _median_gap(trace):
    """(iterations, median over runs of f - f*) at the recorded points."""
    gaps = np.array([trace.column("f_gap", r)[1] for r in range(trace.runs)])
    return trace.column("f_gap", 0)[0], np.median(gaps, axis=0)


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    runs = 4 if quick else 16
    full = make_sampler("full")
    claims = []

    # 1. deterministic least squares (n = d = 100, cond 10): USAM linear, SAM-like neighbourhood
    ls = LeastSquares(100)
    iters = 3000 if quick else 20_000
    tables, measured, ok = [], {}, True
    for lam in (0.0, 0.5, 1.0):
        gamma, rho = _theory(ls, full, lam)
        trace = simulate(ls, make_method("unified", lam=lam), constant(gamma), constant(rho), iters, runs, seed=0)
        assess(trace)
        tables.append((f"lambda = {lam:g}", table([trace])))
        its, gap = _median_gap(trace)
        ratio = gap[-1] / gap[0]
        if lam == 0:
            fit = fit_rate(its[gap > 1e-25].astype(float), gap[gap > 1e-25], log_x=False)
            ok &= bool(ratio <= 1e-20 and fit["hi"] < 0)
            measured["lam0_gap_ratio"], measured["lam0_log_rate_per_step"] = float(ratio), fit["slope"]
        else:
            slope = tail_slope(its, gap)
            ok &= bool(1e-14 < ratio < 1 and abs(slope) < 0.05)
            measured[f"lam{lam:g}_gap_ratio"], measured[f"lam{lam:g}_tail_slope"] = float(ratio), slope
    claims.append(Claim(
        "unified-lambda-deterministic",
        "deterministic Unified SAM at (gamma*, rho*) on PL least squares: lambda = 0 (USAM) converges "
        "linearly to f*, lambda > 0 converges linearly to a neighbourhood of f* (PL theorem, constant steps)",
        ok, measured, "lambda-deterministic.png"))
    save(plot_tables(tables, "Unified SAM, least squares n = d = 100, theory steps"), out / "lambda-deterministic")

    # 2. the neighbourhood of SAM shrinks with rho
    gamma, rho_star = _theory(ls, full, 1.0)
    levels = []
    for scale in (1, 4, 16):
        trace = simulate(ls, make_method("sam"), constant(gamma), constant(rho_star / scale), iters, runs, seed=0)
        its, gap = _median_gap(trace)
        levels.append(float(np.median(gap[its >= iters // 2])))
    claims.append(Claim(
        "neighbourhood-shrinks-with-rho",
        "the neighbourhood SAM (lambda = 1) reaches at constant steps shrinks with rho",
        bool(levels[0] > levels[1] > levels[2] > 0), {"rho_star": rho_star, "plateaus_rho_over_1_4_16": levels}))

    # 3. lambda schedules on ridge: '1/t' (tends to USAM) vs '1-1/t' (tends to SAM)
    ridge = Ridge(100)
    gamma, rho = _theory(ridge, full, 1.0)
    schedules = {"1/t": Schedule(1 / (k + 1), "1/t"), "1-1/t": Schedule(1 - 1 / (k + 1), "1-1/t")}
    final, tables = {}, []
    for label, lam in schedules.items():
        trace = simulate(ridge, make_method("unified", lam=lam), constant(gamma), constant(rho),
                         5000 if quick else 50_000, runs, seed=0)
        tables.append((f"lambda_t = {label}", table([trace])))
        its, gap = _median_gap(trace)
        final[label] = float(gap[-1] / gap[0])
    claims.append(Claim(
        "lambda-schedules",
        "ridge (regularizer 3/n), deterministic: lambda_t = 1/t (tending to USAM) drives f - f* to 0, "
        "lambda_t = 1 - 1/t (tending to SAM) stays in a neighbourhood",
        bool(final["1/t"] <= 1e-8 and final["1/t"] < 1e-3 * final["1-1/t"]),
        {f"gap_ratio_{key}": v for key, v in final.items()}, "lambda-schedules.png"))
    save(plot_tables(tables, "Unified SAM with lambda schedules, ridge n = d = 100"), out / "lambda-schedules")

    # 4. stochastic (tau-nice): constant theory steps plateau, the decreasing rule keeps going at O(1/k)
    n = 30 if quick else 100
    ridge_s = Ridge(n)
    tau_nice = make_sampler("tau-nice", n // 2, ridge_s)
    gamma, rho = _theory(ridge_s, tau_nice, 0.5)
    iters = 50_000 if quick else 500_000
    const = simulate(ridge_s, make_method("unified", lam=0.5), constant(gamma), constant(rho), iters, runs,
                     seed=1, sampler=tau_nice)
    t_dec, r_dec = pl_decreasing(gamma, rho, ridge_s.mu)
    dec = simulate(ridge_s, make_method("unified", lam=0.5), t_dec, r_dec, iters, runs, seed=1, sampler=tau_nice)
    its, gap_c = _median_gap(const)
    _, gap_d = _median_gap(dec)
    fit_c, fit_d = tail_fit(its, gap_c, 0.3), tail_fit(its, gap_d, 0.3)
    claims.append(Claim(
        "decreasing-rule-beats-constant",
        f"stochastic Unified SAM (lambda = 0.5, tau-nice, tau = n/2) on ridge: constant (gamma*, rho*) "
        f"plateau in a neighbourhood; the decreasing rule keeps converging at O(1/k) (PL theorem)",
        bool(fit_d["slope"] <= -0.8 and fit_c["slope"] > -0.5 and gap_d[-1] < 0.1 * gap_c[-1]),
        {"constant_tail_slope": fit_c["slope"], "decreasing_tail_slope": fit_d["slope"],
         "constant_final_gap": float(gap_c[-1]), "decreasing_final_gap": float(gap_d[-1]),
         "switch_iteration": 2 / (ridge_s.mu * gamma)}, "constant-vs-decreasing.png"))
    save(plot_tables([("constant (gamma*, rho*)", table([const])), ("decreasing rule", table([dec]))],
                     f"Unified SAM (lambda = 0.5), ridge n = d = {n}, tau-nice tau = {n // 2}"),
         out / "constant-vs-decreasing")

    # 5. importance sampling: A = mean L_i instead of L_max, a larger step, faster progress
    ridge_h = Ridge(n, row_spread=10.0)
    rows, tables = {}, []
    for name in ("single", "importance"):
        sampler = make_sampler(name, 1, ridge_h)
        gamma, rho = _theory(ridge_h, sampler, 0.5)
        trace = simulate(ridge_h, make_method("unified", lam=0.5), constant(gamma), constant(rho), iters, runs,
                         seed=2, sampler=sampler)
        tables.append((f"{name} (gamma* = {gamma:.2e})", table([trace])))
        rows[name] = (gamma, float(_median_gap(trace)[1][-1]))
    claims.append(Claim(
        "importance-sampling",
        "single-element importance sampling p_i ~ L_i allows a larger theory step than uniform sampling "
        "(A = mean L_i vs L_max) and reaches a lower f - f* in the same number of steps",
        bool(rows["importance"][0] > rows["single"][0] and rows["importance"][1] < rows["single"][1]),
        {f"{name}_gamma_star": v[0] for name, v in rows.items()}
        | {f"{name}_final_gap": v[1] for name, v in rows.items()}, "importance-sampling.png"))
    save(plot_tables(tables, f"Unified SAM (lambda = 0.5), ridge n = d = {n}, rows of unequal norm"),
         out / "importance-sampling")
    return claims
