"""Oikonomou & Loizou (2025), "Sharpness-Aware Minimization: General Analysis and Improved Rates":
Unified SAM, d_k = (1 - lam) g + lam g/||g|| (lam = 0: USAM, lam = 1: SAM), on mu-PL finite sums (least
squares and ridge with condition number 10, ridge regularizer 3/n, as in their Sec. 6), each claim
decided against wrong implementations it must reject (experiments.claims.check).

Step sizes: the authors' (gamma*, rho*), ``theory_steps(..., variant="authors")`` (the lines their
numpy_exps/exp_script.py ran: rho* = 1/(4L) for lam = 1, else min(1, mu/(2(B mu + A)(1 - lam)^2))/(4L);
gamma* = min(2, mu/(8(B mu + A)))/L, with L = L_max and (A, B) the sampler's expected-residual
constants when stochastic), and their decreasing rule ``pl_decreasing``. ``VARIANT`` switches to the
commented-out lines of that script.

Predictions used besides the paper's (derived here, stated where used):
* deterministic Unified SAM on a quadratic with top Hessian eigenvalue h settles on the 2-cycle
  x - x* = +-a v_1 along the top eigenvector, a = gamma rho lam h / (2 - gamma h (1 + rho (1 - lam) h)),
  so its neighbourhood is f - f* = h a^2 / 2 (exactly ~ rho^2 up to the O(rho) term in the denominator);
* with lam_t = 1/t the iterates follow that 2-cycle adiabatically: f - f* = h a(lam_t)^2/2 ~ t^-2;
* constant-step SGD on a quadratic finite sum has a stationary covariance C solving the discrete
  Lyapunov equation H C + C H - gamma E[M C M] = gamma Sigma (M = w_i H_i, Sigma the covariance of the
  weighted gradients at x*), so f - f* -> tr(H C)/2 (~ gamma tr(Sigma)/4 for small gamma): the
  neighbourhood of importance and uniform sampling, predicted from their own gamma* (rho* moves it
  little: within the tolerance).

Claims (each with the mutants it rejects):
1. unified-lambda-deterministic: lam = 0 linear to f*, lam = 0.5 and 1 to the predicted 2-cycle
   neighbourhood (lambda swapped/ignored/wrong, rho x 2, anti-SAM, GD, random direction at lam = 1);
2. neighbourhood-shrinks-with-rho: the plateau scales like rho^2: deterministic plateau = the 2-cycle
   prediction at every rho of the grid, stochastic (tau-nice) exponent fitted with a 95 % CI containing 2
   (rho x 2, rho + constant offset, USAM in place of Unified SAM, anti-SAM, random direction);
3. lambda-schedules: lam_t = 1/t tracks the shrinking 2-cycle, f - f* ~ t^-2 -> 0; lam_t = 1 - 1/t
   stays in SAM's neighbourhood (schedules swapped, frozen at lam_0, 1/t^2, rho x 2);
4. decreasing-rule-beats-constant: stochastic, constant steps stall, the decreasing rule converges at
   about O(1/k) (radius schedule ignored: rho frozen at rho*, which stalls at the rho-shifted point;
   radius growing instead of shrinking);
5. importance-sampling: p_i ~ L_i allows a larger gamma*, reaches its neighbourhood sooner, and both
   plateaus match the predicted neighbourhood (importance without its 1/(n p_i) weights; p_i ~ 1/L_i).
"""
from __future__ import annotations

from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np

from convergence.methods import make_method
from convergence.runner import PerRun, iterate
from convergence.sampling import Importance, make_sampler
from convergence.schedules import constant
from convergence.theory.steps import pl_decreasing, theory_steps
from convergence.trace import geometric_grid, table
from convergence.verdicts import fit_rate, tail_fit, tail_slope
from experiments.claims import Claim, Outcome, check
from experiments.mutants import (AntiSAM, FrozenRadius, InvertedRadius, OffsetRadius, RandomUnit, ScaledRadius,
                                 unchecked)
from figures import oikonomou as figures
from figures.convergence import plot_tables, save
from problems import LeastSquares, Ridge

TITLE = "Oikonomou & Loizou (2025): SAM, General Analysis and Improved Rates"
PAPER = "oikonomou2025"
VARIANT = "authors"
FULL = make_sampler("full")
ABOVE_ROUNDOFF = 1e6        # a neighbourhood counts only this far above the round-off level of f - f*
STALL = 0.5                 # |log-log slope| of f - f* (mean over runs) over the last 3/4 of a run below this:
                            # stalled (converging runs have <= -1, or sit at round-off)


# --- helpers -----------------------------------------------------------------------------------------

@cache
def least_squares(dim: int):
    """LeastSquares(dim) (n = d, cond 10), built once: claims 1 and 2 share it."""
    return LeastSquares(dim)


def unified(lam):
    return make_method("unified", lam=lam)


def steps(problem, sampler, lam: float) -> tuple[float, float]:
    """The authors' (gamma*, rho*) of Unified SAM with mixing lam (VARIANT)."""
    return theory_steps(problem, sampler, unified(lam), VARIANT)


def roundoff(problem) -> float:
    """The round-off level of f - f* near x*: eps |f*| plus the squared rounding error of a residual,
    (eps max_i (||a_i|| ||x*|| + |b_i|))^2 (the level that exact convergence reaches)."""
    eps = np.finfo(float).eps
    A = problem.A.toarray() if getattr(problem, "is_sparse", False) else problem.A
    scale = np.max(np.linalg.norm(A, axis=1) * np.linalg.norm(problem.x_star) + np.abs(problem.b))
    return float(eps * abs(problem.f_star) + (eps * scale) ** 2)


def cycle_gap(problem, gamma, rho, lam) -> float:
    """f - f* on the 2-cycle of deterministic Unified SAM along the top eigenvector (module docstring)."""
    h = problem.L
    a = gamma * rho * lam * h / (2 - gamma * h * (1 + rho * (1 - lam) * h))
    return float(h * a * a / 2)


def gaps(trace) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, f - f* (runs, points)) at the recorded steps and the last one; a run that diverged
    counts as inf from then on."""
    its = np.append(trace.grid, trace.final_iter.max())
    G = np.vstack([trace.data["f_gap"], trace.final["f_gap"][None]]).T.copy()
    G[trace.diverged] = np.inf
    return its, G


def tail_grid(iters: int, start: float = 0.5, points: int = 200) -> np.ndarray:
    """The geometric grid plus ``points`` evenly spaced steps over [start K, K): tail averages."""
    return np.unique(np.r_[geometric_grid(iters), np.linspace(start * iters, iters - 1, points).astype(np.int64)])


def per_run(values, R: int) -> PerRun:
    """A PerRun table: each value of ``values`` for R consecutive runs."""
    return PerRun(tuple(constant(float(v)) for v in values), np.repeat(np.arange(len(values)), R))


def stalled(its, series, start=0.25) -> float:
    """The log-log slope of ``series`` over k >= start K: ~ 0 on a plateau, <= -1 while converging."""
    return tail_slope(its, series, start)


class UnweightedImportance(Importance):
    """Importance sampling p_i ~ L_i without the unbiasing weights 1/(n p_i): a biased gradient."""

    name = "importance"

    def draw(self, problem, streams):
        idx, _ = super().draw(problem, streams)
        return idx, None


class InverseImportance(Importance):
    """Sampling p_i ~ 1/L_i (the probabilities inverted), with the matching weights 1/(n p_i)."""

    name = "importance"

    def probabilities(self, problem) -> np.ndarray:
        return (1 / problem.L_i) / np.sum(1 / problem.L_i)


# --- 1. lambda, deterministic ----------------------------------------------------------------------

LAMS = (0.0, 0.5, 1.0)


def claim_lambda_deterministic(out: Path, quick: bool) -> Claim:
    ls = least_squares(100)
    iters, runs = (2000, 2) if quick else (20_000, 16)
    floor = roundoff(ls)
    cache = {}

    def simulate(lam, rule):
        gamma, rho = steps(ls, FULL, lam)
        key = (gamma, rho, id(rule))        # the mutants reuse the right rule objects: their runs are shared
        if key not in cache:
            cache[key] = iterate(ls, rule, constant(gamma), constant(rho), iters, runs, seed=0)
        return gamma, rho, cache[key]

    def measure(rules: dict) -> Outcome:
        ok, measured, tables, overlays = True, {"roundoff": floor}, [], []
        for lam, rule in rules.items():
            gamma, rho, trace = simulate(lam, rule)
            its, G = gaps(trace)
            tables.append((f"λ = {lam:g}", table([trace])))
            if lam == 0:
                ratio = G[:, -1] / G[:, 0]
                med = np.median(G, axis=0)
                keep = med > ABOVE_ROUNDOFF * floor
                fit = fit_rate(its[keep].astype(float), med[keep], log_x=False)
                good = bool(np.all(ratio <= 1e-20) and fit["hi"] < 0)
                measured["lam0"] = {"max_gap_ratio": float(np.max(ratio)), "log_rate_per_step": fit["slope"],
                                    "rate_ci": [fit["lo"], fit["hi"]]}
            else:
                pred = cycle_gap(ls, gamma, rho, lam)
                rel = np.abs(G[:, -1] / pred - 1)
                slope = stalled(its, np.median(G, axis=0))
                good = bool(np.all(rel <= 0.01) and pred >= ABOVE_ROUNDOFF * floor and abs(slope) < 0.05)
                measured[f"lam{lam:g}"] = {"predicted": pred, "final_gap_median": float(np.median(G[:, -1])),
                                           "max_rel_error": float(np.max(rel)), "tail_slope": slope}
                overlays.append(({"iter": [0, iters], "median": [pred, pred]}, "f_gap",
                                 f"2-cycle, λ = {lam:g}"))
            ok &= good
        return Outcome(bool(ok), measured, (tables, overlays))

    right = {lam: unified(lam) for lam in LAMS}
    u0, u5, u1 = right.values()
    mutants = {
        "1 - lambda in place of lambda": {0.0: u1, 0.5: u5, 1.0: u0},
        "lambda ignored (0.5 for every lambda)": {0.0: u5, 0.5: u5, 1.0: u5},
        "lambda = 0.25 in place of 0.5": {0.0: u0, 0.5: unchecked("unified", lam=0.25), 1.0: u1},
        "rho x 2": {lam: ScaledRadius(rule, 2) for lam, rule in right.items()},
        "anti-SAM at lambda = 1": {0.0: u0, 0.5: u5, 1.0: AntiSAM()},
        "GD at lambda = 1": {0.0: u0, 0.5: u5, 1.0: make_method("gd")},
        "random unit direction at lambda = 1": {0.0: u0, 0.5: u5, 1.0: RandomUnit()},
    }
    claim, (tables, overlays) = check(
        "unified-lambda-deterministic",
        "Deterministic Unified SAM at the authors' (gamma*, rho*) on PL least squares (n = d = 100, cond 10; "
        "Oikonomou & Loizou 2025, PL theorem with constant steps): lambda = 0 (USAM) converges linearly to f* "
        "(f - f* falls by >= 1e20, fitted log-rate CI < 0); lambda = 0.5 and 1 converge to a neighbourhood, "
        "stalled at the 2-cycle size h a^2/2, a = gamma rho lam h/(2 - gamma h (1 + rho (1 - lam) h)), within 1 % "
        f"in every run and >= {ABOVE_ROUNDOFF:.0e} x round-off ({runs} runs, {iters} iterations)",
        measure, right, mutants, "lambda-deterministic.png")
    save(plot_tables(tables, "Unified SAM, least squares n = d = 100, authors' steps", overlays),
         out / "lambda-deterministic")
    return claim


# --- 2. the neighbourhood scales like rho^2 -------------------------------------------------------

def claim_neighbourhood(out: Path, quick: bool) -> Claim:
    lam = 0.5
    det = least_squares(100)
    gamma_d, rho_d = steps(det, FULL, lam)
    stoch = least_squares(10)
    tau = make_sampler("tau-nice", 5, stoch)
    gamma_s, rho_s = steps(stoch, tau, lam)
    scales = 2.0 ** -np.arange(6 if quick else 8)
    R_det, R_st = (1, 8) if quick else (4, 16)
    it_det, it_st = (1500, 2000) if quick else (10_000, 30_000)
    floor_d, floor_s = roundoff(det), roundoff(stoch)
    # starts scaled with rho, so that every rho reaches its plateau as soon as rho* does: deterministic
    # x* + (rho/rho*)(x0 - x*) from the problem's box; stochastic x* + (rho/rho*) 1e-4 z (the neighbourhood's
    # scale), z a fixed random unit vector per run
    x0_det = det.x_star + np.repeat(scales, R_det)[:, None] * (np.tile(det.x0(R_det, 0), (len(scales), 1)) - det.x_star)
    z = np.random.default_rng(5).standard_normal((R_st, stoch.dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    x0_st = stoch.x_star + np.repeat(scales, R_st)[:, None] * np.tile(z, (len(scales), 1)) * 1e-4
    grid_st = tail_grid(it_st)

    def measure(rule) -> Outcome:
        rhos_d = rho_d * scales
        trace = iterate(det, rule, constant(gamma_d), per_run(rhos_d, R_det), it_det, len(scales) * R_det, seed=0,
                        x0=x0_det)
        its, G = gaps(trace)
        pred = np.array([cycle_gap(det, gamma_d, r, lam) for r in rhos_d])
        final_d = G[:, -1].reshape(len(scales), R_det)
        rel = np.abs(final_d / pred[:, None] - 1)
        det_ok = bool(np.all(rel <= 0.01) and pred.min() >= ABOVE_ROUNDOFF * floor_d)
        rhos_s = rho_s * scales
        trace = iterate(stoch, rule, constant(gamma_s), per_run(rhos_s, R_st), it_st, len(scales) * R_st, seed=1,
                        x0=x0_st, sampler=tau, grid=grid_st)
        its, G = gaps(trace)
        tail = its >= it_st // 2
        plateau = G[:, tail].mean(axis=1).reshape(len(scales), R_st)
        means = G.reshape(len(scales), R_st, -1).mean(axis=1)      # over runs
        slopes = [stalled(its, m) for m in means]
        fit = fit_rate(np.repeat(rhos_s, R_st), plateau.ravel())
        lo, hi = min(fit["lo"], fit["slope"] - 0.02), max(fit["hi"], fit["slope"] + 0.02)
        st_ok = bool(np.all(np.isfinite(plateau)) and lo <= 2 <= hi and plateau.min() >= ABOVE_ROUNDOFF * floor_s
                     and np.all(np.abs(slopes) < STALL))
        measured = {"deterministic": {"rho": rhos_d.tolist(), "predicted": pred.tolist(),
                                      "max_rel_error": float(np.max(rel)), "plateau_over_rho2": (pred / rhos_d**2).tolist()},
                    "stochastic": {"rho": rhos_s.tolist(), "plateau_mean": plateau.mean(axis=1).tolist(),
                                   "exponent": fit["slope"], "exponent_ci": [fit["lo"], fit["hi"]],
                                   "tail_slopes": slopes, "roundoff": floor_s, "runs": R_st, "iters": it_st}}
        data = [("deterministic, least squares d = 100", rhos_d, final_d, pred, None),
                ("stochastic, τ-nice (τ = 5), d = 10", rhos_s, plateau, None, fit)]
        return Outcome(det_ok and st_ok, measured, data)

    rule = unified(lam)
    mutants = {"rho x 2": ScaledRadius(rule, 2), "rho + rho*/8 (constant offset)": OffsetRadius(rule, rho_s / 8),
               "USAM in place of Unified SAM": make_method("usam"), "anti-SAM": AntiSAM(),
               "random unit direction": RandomUnit()}
    claim, data = check(
        "neighbourhood-shrinks-with-rho",
        "Unified SAM (lambda = 0.5) with constant gamma* and rho = rho* 2^-j converges to a neighbourhood whose "
        "size (plateau of f - f*) scales like rho^2 (Oikonomou & Loizou 2025, PL theorem: the neighbourhood "
        "term in rho). Deterministic (least squares d = 100): the plateau equals the 2-cycle size at every rho "
        "(within 1 %); stochastic (tau-nice, tau = 5, least squares d = 10, interpolating): the exponent "
        "fitted over the rho grid has a 95 % CI (widened to >= +-0.02) containing 2, the plateau is stalled "
        f"(|tail slope| < {STALL}) and >= {ABOVE_ROUNDOFF:.0e} x round-off",
        measure, rule, mutants, "neighbourhood-rho.png")
    save(figures.neighbourhood(data, r"Unified SAM ($\lambda$ = 0.5): neighbourhood against $\rho$"),
         out / "neighbourhood-rho")
    return claim


# --- 3. lambda schedules --------------------------------------------------------------------------

def claim_lambda_schedules(out: Path, quick: bool) -> Claim:
    ridge = Ridge(100)
    gamma, rho = steps(ridge, FULL, 1.0)
    iters, runs = (2500, 3) if quick else (20_000, 16)
    floor = roundoff(ridge)
    cache = {}

    def simulate(rule):
        if id(rule) not in cache:             # the mutants reuse the right rule objects: their runs are shared
            cache[id(rule)] = iterate(ridge, rule, constant(gamma), constant(rho), iters, runs, seed=0)
        return cache[id(rule)]

    def measure(rules: dict) -> Outcome:
        traces = {label: simulate(rule) for label, rule in rules.items()}
        its, G = gaps(traces["1/t"])
        med = np.median(G, axis=0)
        fit = tail_fit(its, med, 0.3, floor=1e-30)      # past the transient
        lam_K = 1 / (iters + 1)
        pred_to_zero = cycle_gap(ridge, gamma, rho, lam_K)
        rel0 = float(np.max(np.abs(G[:, -1] / pred_to_zero - 1)))
        ok0 = bool(abs(fit["slope"] + 2) <= 0.1 and np.all(G[:, -1] <= 1e-8 * G[:, 0]) and rel0 <= 0.05)
        its1, G1 = gaps(traces["1-1/t"])
        pred = cycle_gap(ridge, gamma, rho, 1 - 1 / (iters + 1))
        rel1 = float(np.max(np.abs(G1[:, -1] / pred - 1)))
        slope1 = stalled(its1, np.median(G1, axis=0))
        ok1 = bool(rel1 <= 0.01 and pred >= ABOVE_ROUNDOFF * floor and abs(slope1) < 0.05)
        measured = {"1/t": {"tail_slope": fit["slope"], "tail_slope_ci": [fit["lo"], fit["hi"]],
                            "max_gap_ratio": float(np.max(G[:, -1] / G[:, 0])), "final_predicted": pred_to_zero,
                            "max_rel_error": rel0},
                    "1-1/t": {"predicted": pred, "final_gap_median": float(np.median(G1[:, -1])),
                              "max_rel_error": rel1, "tail_slope": slope1}}
        tables = [(rf"$\lambda_t$ = {label}", table([t])) for label, t in traces.items()]
        k = np.unique(np.geomspace(1, iters, 200).astype(int))
        overlays = [({"iter": k, "median": [cycle_gap(ridge, gamma, rho, 1 / (j + 1)) for j in k]}, "f_gap",
                     r"2-cycle of $\lambda_t$ = 1/t"),
                    ({"iter": [0, iters], "median": [pred, pred]}, "f_gap", "2-cycle of λ = 1")]
        return Outcome(ok0 and ok1, measured, (tables, overlays))

    right = {"1/t": unified("1/t"), "1-1/t": unified("1-1/t")}
    mutants = {"schedules swapped": {"1/t": right["1-1/t"], "1-1/t": right["1/t"]},
               "lambda_t frozen at lambda_0": {"1/t": unified(1.0), "1-1/t": unified(0.0)},
               "1/t^2 in place of 1/t": {"1/t": unified("1/(k+1)**2"), "1-1/t": right["1-1/t"]},
               "rho x 2": {label: ScaledRadius(r, 2) for label, r in right.items()}}
    claim, (tables, overlays) = check(
        "lambda-schedules",
        "Deterministic Unified SAM with lambda schedules on ridge (n = d = 100, regularizer 3/n) at gamma*, rho* "
        "of lambda = 1 (Oikonomou & Loizou 2025, Sec. 6): lambda_t = 1/t (tending to USAM) drives f - f* to 0, "
        "following the 2-cycle of lambda_t, f - f* ~ t^-2 (tail slope -2 +- 0.1, final within 5 % of the "
        "2-cycle of lambda_K, fallen by >= 1e8); lambda_t = 1 - 1/t (tending to SAM) stays in SAM's "
        f"neighbourhood (the 2-cycle size within 1 %, stalled) ({runs} runs, {iters} iterations)",
        measure, right, mutants, "lambda-schedules.png")
    save(plot_tables(tables, "Unified SAM with λ schedules, ridge n = d = 100", overlays),
         out / "lambda-schedules")
    return claim


# --- 4. decreasing rule against constant steps ------------------------------------------------------

def window_means(its, series, lo, hi, n=6):
    """(geometric centres, means of ``series``) over n log-spaced windows of [lo, hi]: a rate fit that the
    fluctuations of single iterates do not swamp."""
    edges = np.geomspace(lo, hi, n + 1)
    sel = [(its >= a) & (its < b) for a, b in pairwise(edges)]
    return np.sqrt(edges[:-1] * edges[1:]), np.array([series[s].mean() for s in sel])


def claim_decreasing(out: Path, quick: bool) -> Claim:
    lam = 0.5
    ridge = Ridge(6)
    tau = make_sampler("tau-nice", 3, ridge)
    gamma, rho = steps(ridge, tau, lam)
    t_dec, r_dec = pl_decreasing(gamma, rho, ridge.mu)
    iters, runs = (10_000, 32) if quick else (200_000, 64)
    switch = 2 / (ridge.mu * gamma)
    floor = roundoff(ridge)
    grid = np.unique(np.r_[geometric_grid(iters), np.linspace(0, iters - 1, 2000).astype(np.int64)])

    def measure(rule) -> Outcome:
        stepsize = PerRun((constant(gamma), t_dec), np.repeat([0, 1], runs))
        radius = PerRun((constant(rho), r_dec), np.repeat([0, 1], runs))
        trace = iterate(ridge, rule, stepsize, radius, iters, 2 * runs, seed=1, sampler=tau, grid=grid)
        its, G = gaps(trace)
        const, dec = np.mean(G[:runs], axis=0), np.mean(G[runs:], axis=0)   # E[f - f*], what the theorems bound
        plateau = float(np.mean(const[its >= iters // 2]))
        slope_c = stalled(its, const)
        centres, means = window_means(its, dec, 4 * switch, iters)
        fit_d = fit_rate(centres, means)
        final = float(np.mean(dec[its >= 0.8 * iters]))
        ok = bool(abs(slope_c) < STALL and plateau >= ABOVE_ROUNDOFF * floor and fit_d["slope"] <= -0.7
                  and final < 0.1 * plateau)
        measured = {"constant_plateau": plateau, "constant_tail_slope": slope_c, "decreasing_slope": fit_d["slope"],
                    "decreasing_slope_ci": [fit_d["lo"], fit_d["hi"]], "decreasing_final_gap": final,
                    "final_over_plateau": final / plateau, "switch_iteration": switch,
                    "gamma_star": gamma, "rho_star": rho}
        tables = [("constant (γ*, ρ*)", table([trace.take(np.arange(runs))])),
                  ("decreasing rule", table([trace.take(np.arange(runs, 2 * runs))]))]
        return Outcome(ok, measured, tables)

    rule = unified(lam)
    mutants = {"radius schedule ignored (rho frozen at rho*)": FrozenRadius(rule, rho),
               "radius schedule inverted (rho*^2/rho_k, growing)": InvertedRadius(rule, rho)}
    claim, tables = check(
        "decreasing-rule-beats-constant",
        "Stochastic Unified SAM (lambda = 0.5, tau-nice, tau = n/2) on ridge (n = d = 6, regularizer 3/n; "
        "Oikonomou & Loizou 2025, PL theorems): at constant (gamma*, rho*) E[f - f*] stalls in a neighbourhood "
        f"(|tail slope| < {STALL}); the decreasing rule gamma_k = min(gamma*, (2k+1)/((k+1)^2 mu)), rho_k = "
        "min(rho*, 1/(2k+1)) keeps converging at about O(1/k) (log-log slope of E[f - f*], averaged over 6 "
        "log-spaced windows from 4x the switch 2/(mu gamma*) to K, <= -0.7) and ends (mean over the last 20 %) "
        f"below 0.1 x the constant plateau ({runs} runs each, {iters} iterations)",
        measure, rule, mutants, "constant-vs-decreasing.png")
    save(plot_tables(tables, "Unified SAM (λ = 0.5), ridge n = d = 6, τ-nice, τ = 3"),
         out / "constant-vs-decreasing")
    return claim


# --- 5. importance sampling ---------------------------------------------------------------------

def sgd_plateau(problem, sampler, gamma) -> float:
    """tr(H C)/2 for the stationary covariance C of constant-step SGD on the quadratic finite sum
    ``problem`` with ``sampler`` (single element, weights w_i = 1/(n p_i)): H C + C H - gamma E[M C M]
    = gamma Sigma, M = w_i H_i, Sigma = E[w_i^2 g_i g_i^T], g_i = grad f_i(x*)."""
    n, d = problem.n, problem.dim
    A = problem.A.toarray() if getattr(problem, "is_sparse", False) else problem.A
    p = problem.L_i / problem.L_i.sum() if isinstance(sampler, Importance) else np.full(n, 1 / n)
    w = 1 / (n * p)
    Hs = np.einsum("ij,ik->ijk", A, A) + problem.reg * np.eye(d)            # H_i
    r = A @ problem.x_star - problem.b
    g = A * r[:, None] + problem.reg * problem.x_star                        # grad f_i(x*)
    H = np.einsum("i,ijk->jk", p * w, Hs)
    Sigma = np.einsum("i,ij,ik->jk", p * w**2, g, g)
    I = np.eye(d)
    op = np.kron(H, I) + np.kron(I, H) - gamma * np.einsum("i,ijk,ilm->jlkm", p * w**2, Hs, Hs).reshape(d * d, d * d)
    C = np.linalg.solve(op, gamma * Sigma.ravel()).reshape(d, d)
    return float(np.trace(H @ C) / 2)


def claim_importance(out: Path, quick: bool) -> Claim:
    lam = 0.5
    ridge = Ridge(5, row_spread=10.0)
    uniform = make_sampler("single", 1, ridge)
    horizon, runs = (16, 32) if quick else (40, 64)       # iterations = horizon / (gamma* mu): past the transient
    floor = roundoff(ridge)

    def simulate(sampler):
        gamma, rho = steps(ridge, sampler, lam)
        iters = int(horizon / (gamma * ridge.mu))
        trace = iterate(ridge, unified(lam), constant(gamma), constant(rho), iters, runs, seed=2, sampler=sampler,
                        grid=tail_grid(iters))
        its, G = gaps(trace)
        tail = its >= iters // 2
        plateau = float(np.mean(G[:, tail]))
        med = np.median(G, axis=0)
        reach = int(its[np.argmax(med <= 3 * plateau)]) if np.any(med <= 3 * plateau) else iters
        pred = sgd_plateau(ridge, sampler, gamma)
        return {"gamma_star": gamma, "rho_star": rho, "iters": iters, "plateau": plateau, "predicted": pred,
                "plateau_over_predicted": plateau / pred, "tail_slope": stalled(its, np.mean(G, axis=0)),
                "reach_3x_plateau": reach}, trace

    base, base_trace = simulate(uniform)

    def measure(sampler) -> Outcome:
        mine, trace = simulate(sampler)
        ok = True
        for r in (base, mine):
            ok &= bool(0.6 <= r["plateau_over_predicted"] <= 1.6 and abs(r["tail_slope"]) < STALL
                       and r["plateau"] >= ABOVE_ROUNDOFF * floor)
        speed = base["reach_3x_plateau"] / mine["reach_3x_plateau"]
        ratio = mine["gamma_star"] / base["gamma_star"]
        ok &= bool(ratio > 1 and speed >= ratio / 1.5)
        measured = {"importance": mine, "uniform": base, "gamma_ratio": ratio, "speedup_to_neighbourhood": speed,
                    "plateau_ratio": mine["plateau"] / base["plateau"]}
        tables = [(f"uniform (γ* = {base['gamma_star']:.2e})", table([base_trace])),
                  (f"importance (γ* = {mine['gamma_star']:.2e})", table([trace]))]
        overlays = [({"iter": [0, r["iters"]], "median": [r["predicted"]] * 2}, "f_gap", f"predicted, {name}")
                    for name, r in (("uniform", base), ("importance", mine))]
        return Outcome(ok, measured, (tables, overlays))

    mutants = {"importance without its 1/(n p_i) weights (biased)": UnweightedImportance(1),
               "p_i ~ 1/L_i in place of L_i": InverseImportance(1)}
    for m in mutants.values():
        m.check(ridge)
    claim, (tables, overlays) = check(
        "importance-sampling",
        "Single-element importance sampling p_i ~ L_i (Oikonomou & Loizou 2025): A = mean L_i instead of "
        "L_max gives a larger theory step gamma*, and the run reaches its neighbourhood (3 x its plateau) "
        "sooner, by at least gamma* ratio / 1.5; run past the transient (horizon "
        f"{horizon}/(gamma* mu) iterations each, the plateau the mean over the second half), both stall "
        f"(|tail slope| < {STALL} over the last 3/4) at the neighbourhood "
        "predicted for constant-step SGD, tr(H C)/2 with C the stationary covariance (within [0.6, 1.6] x): "
        "importance's is higher, in proportion to its larger step (ridge n = d = 5, rows of norms spread 10x, "
        f"lambda = 0.5, {runs} runs)",
        measure, Importance(1), mutants, "importance-sampling.png")
    save(plot_tables(tables, "Unified SAM (λ = 0.5), ridge n = d = 5, rows of unequal norm", overlays),
         out / "importance-sampling")
    return claim


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [claim_lambda_deterministic(out, quick), claim_neighbourhood(out, quick), claim_lambda_schedules(out, quick),
            claim_decreasing(out, quick), claim_importance(out, quick)]
