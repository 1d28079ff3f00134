"""Convergence theorems written down as data, their hypotheses checked on a run's schedules, and the
derived bounds that every iterate of a deterministic run must satisfy.

Provenance labels: "quoted" (read in the paper), "recalled" (the paper's statement as we know it;
its text could not be read offline, so the theorem number is marked unverified) and "derived" (a
sufficient condition proved here from the inexact-gradient-descent argument below, and tested).

Derived descent lemma. For x+ = x - t g with ||g - grad f(x)|| <= eps, f L-smooth and t <= 1/L,
    f(x+) <= f(x) - (t/2) ||grad f(x)||^2 + (t/2) eps^2.
Proof: f(x+) <= f - t<grad f, g> + (L t^2/2)||g||^2; write g = grad f + e and use
-(t - L t^2)<grad f, e> <= (t - L t^2)(||grad f||^2 + ||e||^2)/2 with t - L t^2 >= 0.
With a rule's error model eps_k <= L rho_k (a ||grad f(x_k)|| + b) and c = 2 if a, b > 0 else 1:
    min_{j<k} ||grad f(x_j)||^2 <= (2 (f(x_0) - f*) + c L^2 b^2 sum_{j<k} t_j rho_j^2)
                                   / sum_{j<k} t_j (1 - c L^2 a^2 rho_j^2)                 (MIN-GRAD)
and, if f is mu-PL,
    f(x_{k+1}) - f* <= (1 - t_k mu (1 - c L^2 a^2 rho_k^2)) (f(x_k) - f*) + (t_k/2) c L^2 b^2 rho_k^2.  (PL)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from convergence import series
from convergence.schedules import SCAN, Schedule, k

NORMALIZED = ("sam", "fsam", "vasso", "rsam", "dnsam")


@dataclass(frozen=True)
class Theorem:
    key: str
    paper: str
    where: str               # theorem number, with "(unverified)" where recalled
    source: str              # "quoted", "recalled" or "derived"
    methods: tuple           # method names it covers ("unified:0" = unified with lam = 0)
    assumptions: tuple       # properties of f: smooth, lower_bounded, convex, pl, quadratic
    hypotheses: tuple        # schedule hypotheses (keys of HYPOTHESES)
    conclusion: str
    predicts: str            # grad_to_zero | no_convergence | linear | neighbourhood | rate_1_over_k
    deterministic: bool = True


THEOREMS = [
    Theorem("khanh2024-sam-nonconvex", "Khanh et al. (2024)", "Thm 3.3 (unverified)", "recalled",
            NORMALIZED + ("unified:1",), ("smooth", "lower_bounded"),
            ("sum_t_inf", "sum_t2_fin", "sum_trho_fin"),
            "every accumulation point is stationary, ||grad f(x_k)|| -> 0, f(x_k) converges",
            "grad_to_zero"),
    Theorem("khanh2024-sam-convex", "Khanh et al. (2024)", "Thm 3.2 (unverified)", "recalled",
            NORMALIZED + ("unified:1",), ("smooth", "convex"), ("sum_t_inf", "t_to_0", "sum_trho_fin"),
            "liminf ||grad f(x_k)|| = 0; x_k -> x* when the minimizer is unique", "grad_to_zero"),
    Theorem("khanh2024-usam", "Khanh et al. (2024)", "Sec. 4 (unverified)", "derived",
            ("usam", "unified:0"), ("smooth", "lower_bounded"),
            ("rho_below_1_over_L", "usam_step", "sum_t_inf"),
            "IGD with relative error nu = L sup rho < 1 and t_k <= (1 - nu)/(L (1 + nu)^2): "
            "||grad f(x_k)|| -> 0", "grad_to_zero"),
    Theorem("khanh2024-constant-sam-fails", "Khanh et al. (2024)", "Sec. 3 example (unverified)", "derived",
            ("sam", "dnsam", "unified:1"), ("quadratic",), ("t_const", "rho_const"),
            "constant t, rho on a strongly convex quadratic, x_k != 0: max(||x_k||, ||x_{k+1}||) >= "
            "t rho mu / 2 (d = Ax/||Ax|| pushes every coordinate the way the gradient step does)",
            "no_convergence"),
    Theorem("derived-constant-unit-direction-fails", "this toolkit", "Sec. 3 example, any unit d", "derived",
            ("fsam", "vasso", "rsam"), ("quadratic",), ("t_const", "rho_const", "t_at_most_2_over_L"),
            "constant t <= 2/L, rho on a strongly convex quadratic, any ascent direction of norm 1: "
            "||x_{k+1}|| >= t rho mu - ||I - tA|| ||x_k|| >= t rho mu - ||x_k||, so "
            "max(||x_k||, ||x_{k+1}||) >= t rho mu / 2", "no_convergence"),
    Theorem("oikonomou2025-pl-constant-usam", "Oikonomou & Loizou (2025)", "PL theorem, constant steps",
            "recalled", ("usam", "unified:0"), ("smooth", "pl"), ("t_const", "rho_const", "ol_constant"),
            "deterministic USAM at gamma <= gamma*, rho <= rho*: linear convergence to f*", "linear"),
    Theorem("oikonomou2025-pl-constant", "Oikonomou & Loizou (2025)", "PL theorem, constant steps",
            "recalled", ("sam", "unified"), ("smooth", "pl"), ("t_const", "rho_const", "ol_constant"),
            "Unified SAM (lam > 0) at gamma <= gamma*, rho <= rho*: linear convergence to a "
            "neighbourhood of f* whose size grows with rho", "neighbourhood", deterministic=False),
    Theorem("oikonomou2025-pl-decreasing", "Oikonomou & Loizou (2025)", "PL theorem, decreasing steps",
            "recalled", ("sam", "usam", "unified"), ("smooth", "pl"), ("ol_decreasing",),
            "gamma_k = min{gamma*, (2k+1)/((k+1)^2 mu)}, rho_k = min{rho*, 1/(2k+1)}: "
            "E[f(x_k) - f*] = O(1/k)", "rate_1_over_k", deterministic=False),
    Theorem("derived-min-grad-bound", "this toolkit", "MIN-GRAD (module docstring)", "derived",
            ("gd", "usam", "unified") + NORMALIZED, ("smooth", "lower_bounded"), ("t_at_most_1_over_L",
                                                                              "usam_factor_positive"),
            "min_{j<k} ||grad f(x_j)|| below the MIN-GRAD bound at every k", "bound_min_grad"),
    Theorem("derived-pl-bound", "this toolkit", "PL (module docstring)", "derived",
            ("gd", "usam", "unified") + NORMALIZED, ("smooth", "pl"),
            ("t_at_most_1_over_L", "usam_factor_positive"),
            "f(x_k) - f* below the PL recursion at every k", "bound_pl"),
]

HYPOTHESES = {
    "sum_t_inf": "sum t_k = oo", "sum_t2_fin": "sum t_k^2 < oo", "sum_trho_fin": "sum t_k rho_k < oo",
    "sum_rho2_fin": "sum rho_k^2 < oo", "t_to_0": "t_k -> 0", "t_below_2_over_L": "t_k < 2/L eventually",
    "t_at_most_1_over_L": "t_k <= 1/L for all k", "t_at_most_2_over_L": "t_k <= 2/L for all k",
    "t_const": "t_k constant", "rho_const": "rho_k constant",
    "rho_below_1_over_L": "L rho_k <= nu < 1 for all k",
    "usam_step": "t_k <= (1 - nu)/(L (1 + nu)^2) for all k, nu = L sup rho_k",
    "usam_factor_positive": "c L^2 a^2 rho_k^2 < 1 for all k",
    "ol_constant": "t_k <= gamma*, rho_k <= rho* (Oikonomou & Loizou)",
    "ol_decreasing": "t_k = min{gamma*, (2k+1)/((k+1)^2 mu)}, rho_k = min{rho*, 1/(2k+1)}",
}


@dataclass
class Context:
    """What the hypotheses are checked against: the schedules and the problem's constants."""

    t: sp.Expr
    rho: sp.Expr
    L: float
    mu: float | None = None
    error_model: tuple | None = (0.0, 1.0)
    ol_steps: tuple | None = None        # (gamma*, rho*) for the run's sampler, when PL
    horizon: int = SCAN                  # k < horizon is scanned numerically (a run's length, at least SCAN)
    cache: dict = field(default_factory=dict)


def _sup(expr, ctx: Context) -> float:
    """sup_k of a schedule: the maximum over k < horizon and the limit (inf when undecided)."""
    value = series.limit(expr)[0]
    return max(float(Schedule(expr).values(ctx.horizon).max()), math.inf if value is None else value)


def check(key: str, ctx: Context) -> series.Decision:
    """Decide one schedule hypothesis (cached per context)."""
    if key not in ctx.cache:
        ctx.cache[key] = _check(key, ctx)
    return ctx.cache[key]


def _check(key, ctx):
    t, rho, L = ctx.t, ctx.rho, ctx.L
    D = series.Decision
    if key == "sum_t_inf":
        d = series.sum_converges(t)
        return D(None if d.holds is None else not d.holds, d.method, d.detail)
    if key == "sum_t2_fin":
        return series.sum_converges(t**2)
    if key == "sum_trho_fin":
        return series.sum_converges(t * rho)
    if key == "sum_rho2_fin":
        return series.sum_converges(rho**2)
    if key == "t_to_0":
        return series.tends_to_zero(t)
    if key == "t_below_2_over_L":
        return series.eventually_below(t, 2 / L, "2/L")
    if key in ("t_at_most_1_over_L", "t_at_most_2_over_L"):
        n = 1 if key == "t_at_most_1_over_L" else 2
        return series.always_at_most(t, n / L, f"{n}/L", ctx.horizon)
    if key in ("t_const", "rho_const"):
        expr = t if key == "t_const" else rho
        const = k not in sp.sympify(expr).free_symbols
        return D(const, "symbolic", f"{'constant' if const else 'depends on k'}: {expr}")
    if key == "rho_below_1_over_L":
        nu = L * _sup(rho, ctx)
        return D(nu < 1, "symbolic+scan", f"nu = L sup rho_k = {nu:.3g}")
    if key == "usam_step":
        nu = L * _sup(rho, ctx)
        if nu >= 1:
            return D(False, "symbolic+scan", f"nu = {nu:.3g} >= 1")
        return series.always_at_most(t, (1 - nu) / (L * (1 + nu) ** 2), "(1-nu)/(L(1+nu)^2)", ctx.horizon)
    if key == "usam_factor_positive":
        if ctx.error_model is None:
            return D(False, "symbolic", "the method has no error model (m-sharpness)")
        a, b = ctx.error_model
        c = 2.0 if a > 0 and b > 0 else 1.0
        worst = c * L**2 * a**2 * _sup(rho, ctx) ** 2
        return D(worst < 1, "symbolic+scan", f"c L^2 a^2 sup rho^2 = {worst:.3g}")
    if key in ("ol_constant", "ol_decreasing"):
        if ctx.ol_steps is None or ctx.mu is None:
            return D(False, "symbolic", "no (gamma*, rho*): they need a PL constant and a constant lam")
        gamma, rho_star = ctx.ol_steps
        ok_t = series.always_at_most(t, gamma * (1 + 1e-9), "gamma*", ctx.horizon)
        ok_r = series.always_at_most(rho, rho_star * (1 + 1e-9), "rho*", ctx.horizon)
        if key == "ol_constant" or not (ok_t and ok_r):
            return D(bool(ok_t and ok_r), ok_t.method, f"{ok_t.detail}; {ok_r.detail}")
        lt, _ = series.limit(t * ctx.mu * k)
        lr, _ = series.limit(rho * k)
        ok = lt is not None and lr is not None and abs(lt - 2) < 1e-9 and abs(lr - 0.5) < 1e-9
        return D(ok, "symbolic", f"t_k mu k -> {lt} (2), rho_k k -> {lr} (1/2)")
    raise KeyError(key)


def covers(theorem: Theorem, method: str, lam=None) -> bool:
    if method in theorem.methods:
        return True
    if method == "unified" and isinstance(lam, (int, float)):
        return f"unified:{lam:g}" in theorem.methods
    return False


def problem_has(problem, assumption: str) -> bool:
    return {"smooth": problem.smoothness_note == "global" and np.isfinite(problem.L),
            "lower_bounded": problem.lower_bounded, "convex": problem.convex,
            "pl": problem.mu is not None, "quadratic": problem.name == "quadratic"}[assumption]


@dataclass
class Assessment:
    theorem: Theorem
    covered: bool            # the method and problem are of the theorem's kind
    holds: bool              # covered, and every hypothesis holds
    failures: list           # (hypothesis, detail) that fail or are undecided
    checks: dict             # hypothesis -> Decision


def assess_theorems(method: str, lam, problem, ctx: Context, deterministic: bool) -> list[Assessment]:
    """For every theorem: does it cover the run, and which of its hypotheses hold."""
    out = []
    for th in THEOREMS:
        covered = (covers(th, method, lam) and (deterministic or not th.deterministic)
                   and all(problem_has(problem, a) for a in th.assumptions))
        checks, failures = {}, []
        if covered:
            for h in th.hypotheses:
                d = check(h, ctx)
                checks[h] = d
                if not d.holds:
                    failures.append((h, d.detail))
        else:
            failures.append(("scope", _scope_reason(th, method, lam, problem, deterministic)))
        out.append(Assessment(th, covered, covered and not failures, failures, checks))
    return out


def _scope_reason(th, method, lam, problem, deterministic):
    if not covers(th, method, lam):
        return f"covers {', '.join(th.methods)}, not {method}"
    if th.deterministic and not deterministic:
        return "deterministic (full-batch) runs only"
    missing = [a for a in th.assumptions if not problem_has(problem, a)]
    return f"{problem.name} is not {' and '.join(missing)}"


# --- derived bounds along a run -----------------------------------------------------------------
def min_grad_bound(ctx: Context, f_gap0: np.ndarray, K: int) -> np.ndarray:
    """MIN-GRAD: bound on min_{j<k} ||grad f(x_j)||, shaped (K, runs): row k-1 is the bound at k."""
    a, b = ctx.error_model
    c = 2.0 if a > 0 and b > 0 else 1.0
    t, r = Schedule(ctx.t).values(K), Schedule(ctx.rho).values(K)
    num = c * ctx.L**2 * b**2 * np.cumsum(t * r**2)
    den = np.cumsum(t * (1 - c * ctx.L**2 * a**2 * r**2))
    return np.sqrt((2 * np.asarray(f_gap0)[None, :] + num[:, None]) / den[:, None])


def pl_bound(ctx: Context, f_gap0: np.ndarray, K: int) -> np.ndarray:
    """PL: bound on f(x_k) - f*, shaped (K+1, runs). The recursion is linear in f(x_0) - f*, so
    bound_k = P_k (f(x_0) - f*) + Q_k with P the product of contractions and Q the forced part."""
    a, b = ctx.error_model
    c = 2.0 if a > 0 and b > 0 else 1.0
    t, r = Schedule(ctx.t).values(K), Schedule(ctx.rho).values(K)
    contraction = 1 - t * ctx.mu * (1 - c * ctx.L**2 * a**2 * r**2)
    forcing = 0.5 * t * c * ctx.L**2 * b**2 * r**2
    P = np.concatenate([[1.0], np.cumprod(contraction)])
    Q = np.zeros(K + 1)
    for j in range(K):                        # a scalar linear recursion, K multiply-adds
        Q[j + 1] = contraction[j] * Q[j] + forcing[j]
    return P[:, None] * np.asarray(f_gap0)[None, :] + Q[:, None]
