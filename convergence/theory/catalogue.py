"""The theorem catalogue: convergence theorems written down as data.

A theorem names the rules it covers by a scope (a predicate on the properties a rule declares in
convergence/methods.py, never on its name), the properties of f it assumes, its schedule hypotheses
(decided in hypotheses.py) and what it predicts (compared with the runs in report.py).

Provenance labels: "quoted" (read in the paper), "recalled" (the paper's statement as we know it;
its text could not be read offline, so the theorem number is marked unverified) and "derived" (a
sufficient condition proved here from the inexact-gradient-descent argument, see bounds.py, and
tested).
"""
from __future__ import annotations

from dataclasses import dataclass

# scope -> (what it means, predicate on a rule as seen on the run's sampling: rule.on_full_batch()
# for deterministic runs)
SCOPES = {
    "unit": ("rules with a unit ascent direction (SAM, F-SAM, VaSSO, RSAM, DNSAM on full batches, "
             "Unified SAM with lambda = 1)", lambda r: bool(r.normalized)),
    "normalized-gradient": ("d_k = grad f/||grad f|| (SAM, DNSAM on full batches, Unified lambda = 1)",
                            lambda r: r.unified_lambda == 1),
    "unit-other": ("unit directions other than the normalized gradient (F-SAM, VaSSO, RSAM)",
                   lambda r: bool(r.normalized) and r.unified_lambda != 1),
    "usam": ("USAM (Unified SAM with lambda = 0)", lambda r: r.unified_lambda == 0),
    "unified-positive": ("Unified SAM with a constant lambda > 0 (SAM included)",
                         lambda r: r.unified_lambda is not None and r.unified_lambda > 0),
    "unified": ("Unified SAM with a constant lambda (SAM and USAM included)",
                lambda r: r.unified_lambda is not None),
    "error-model": ("rules with an error model ||d_k|| <= a ||grad f(x_k)|| + b (all but m-SAM, ASAM)",
                    lambda r: r.error_model is not None),
    "relative-error": ("rules with a relative error ||g_k - grad f(x_k)|| <= a L rho_k ||grad f(x_k)|| (GD, USAM, "
                       "Unified SAM with lambda = 0)", lambda r: r.error_model is not None and r.error_model[1] == 0),
}


@dataclass(frozen=True)
class Theorem:
    key: str
    paper: str
    where: str               # theorem number, with "(unverified)" where recalled
    source: str              # "quoted", "recalled" or "derived"
    scope: str               # key of SCOPES
    assumptions: tuple       # properties of f: smooth, smooth_on_box, lower_bounded, convex, pl, kl, quadratic
    hypotheses: tuple        # schedule hypotheses (keys of HYPOTHESES)
    conclusion: str
    predicts: str            # grad_to_zero | no_convergence | linear | neighbourhood | rate_1_over_k | bound_* |
    #                          finite_length | kl_rate
    deterministic: bool = True

    def covers(self, rule) -> bool:
        return SCOPES[self.scope][1](rule)


CONVERGENCE = ("grad_to_zero", "linear", "rate_1_over_k")      # predictions of convergence theorems
KL = ("finite_length", "kl_rate")       # predictions about the iterates under the KL property

THEOREMS = [
    Theorem("khanh2024-sam-nonconvex", "Khanh et al. (2024)", "Thm 3.3 (unverified)", "recalled", "unit",
            ("smooth", "lower_bounded"), ("sum_t_inf", "sum_t2_fin", "sum_trho_fin"),
            "every accumulation point is stationary, ||grad f(x_k)|| -> 0, f(x_k) converges",
            "grad_to_zero"),
    Theorem("khanh2024-sam-convex", "Khanh et al. (2024)", "Thm 3.2 (unverified)", "recalled", "unit",
            ("smooth", "convex"), ("sum_t_inf", "t_to_0", "sum_trho_fin"),
            "liminf ||grad f(x_k)|| = 0; x_k -> x* when the minimizer is unique", "grad_to_zero"),
    Theorem("khanh2024-usam", "Khanh et al. (2024)", "Sec. 4 (unverified)", "derived", "usam",
            ("smooth", "lower_bounded"), ("rho_below_1_over_L", "usam_step", "sum_t_inf"),
            "IGD with relative error nu = L sup rho < 1 and t_k <= (1 - nu)/(L (1 + nu)^2): "
            "||grad f(x_k)|| -> 0", "grad_to_zero"),
    Theorem("khanh2024-constant-sam-fails", "Khanh et al. (2024)", "Sec. 3 example (unverified)", "derived",
            "normalized-gradient", ("quadratic",), ("t_const", "rho_const"),
            "constant t, rho on a strongly convex quadratic, x_k != 0: max(||x_k||, ||x_{k+1}||) >= "
            "t rho mu / 2 (d = Ax/||Ax|| pushes every coordinate the way the gradient step does)",
            "no_convergence"),
    Theorem("derived-constant-unit-direction-fails", "this toolkit", "Sec. 3 example, any unit d", "derived",
            "unit-other", ("quadratic",), ("t_const", "rho_const", "t_at_most_2_over_L"),
            "constant t <= 2/L, rho on a strongly convex quadratic, any ascent direction of norm 1: "
            "||x_{k+1}|| >= t rho mu - ||I - tA|| ||x_k|| >= t rho mu - ||x_k||, so "
            "max(||x_k||, ||x_{k+1}||) >= t rho mu / 2", "no_convergence"),
    Theorem("oikonomou2025-pl-constant-usam", "Oikonomou & Loizou (2025)", "PL theorem, constant steps",
            "recalled", "usam", ("smooth", "pl"), ("t_const", "rho_const", "ol_constant"),
            "deterministic USAM at gamma <= gamma*, rho <= rho*: linear convergence to f*", "linear"),
    Theorem("oikonomou2025-pl-constant", "Oikonomou & Loizou (2025)", "PL theorem, constant steps",
            "recalled", "unified-positive", ("smooth", "pl"), ("t_const", "rho_const", "ol_constant"),
            "Unified SAM (lambda > 0) at gamma <= gamma*, rho <= rho*: linear convergence to a "
            "neighbourhood of f* whose size grows with rho", "neighbourhood", deterministic=False),
    Theorem("oikonomou2025-pl-decreasing", "Oikonomou & Loizou (2025)", "PL theorem, decreasing steps",
            "recalled", "unified", ("smooth", "pl"), ("ol_decreasing",),
            "gamma_k = min{gamma*, (2k+1)/((k+1)^2 mu)}, rho_k = min{rho*, 1/(2k+1)}: "
            "E[f(x_k) - f*] = O(1/k)", "rate_1_over_k", deterministic=False),
    Theorem("derived-min-grad-bound", "this toolkit", "MIN-GRAD (bounds.py)", "derived", "error-model",
            ("smooth", "lower_bounded"), ("t_at_most_1_over_L", "usam_factor_positive"),
            "min_{j<k} ||grad f(x_j)|| below the MIN-GRAD bound at every k", "bound_min_grad"),
    Theorem("derived-pl-bound", "this toolkit", "PL (bounds.py)", "derived", "error-model",
            ("smooth", "pl"), ("t_at_most_1_over_L", "usam_factor_positive"),
            "f(x_k) - f* below the PL recursion at every k", "bound_pl"),
    # Under the KL property |f - f*|^theta <= c ||grad f|| (theta in (1/2, 1): not PL) the iterates
    # themselves converge. Judged from path_length = sum_{j<k} ||x_{j+1} - x_j|| and dist_to_opt.
    Theorem("khanh2024-sam-kl-iterates", "Khanh et al. (2024)", "Thm 3.3, KL part (unverified)", "recalled",
            "unit", ("smooth_on_box", "kl"), ("sum_t_inf", "sum_t2_fin", "sum_trho_fin"),
            "if f has the KL property at an accumulation point, x_k converges to it with finite length "
            "sum ||x_{k+1} - x_k|| < oo", "finite_length"),
    Theorem("attouch-bolte2009-kl-length", "Attouch & Bolte (2009)", "Thm 1; Attouch, Bolte & Svaiter (2013) "
            "Thm 2.9", "recalled", "relative-error", ("smooth_on_box", "kl"), ("t_const", "relative_step"),
            "sufficient decrease f(x_{k+1}) <= f(x_k) - a ||x_{k+1} - x_k||^2 and relative error "
            "||grad f(x_{k+1})|| <= b ||x_{k+1} - x_k|| (both hold for t <= (1 - nu)/(L (1 + nu)^2), derived): "
            "finite length, x_k -> x*", "finite_length"),
    Theorem("attouch-bolte2009-kl-rate", "Attouch & Bolte (2009)", "Thm 2", "recalled", "relative-error",
            ("smooth_on_box", "kl"), ("t_const", "relative_step"),
            "the same descent methods with Lojasiewicz exponent theta in (1/2, 1): ||x_k - x*|| = "
            "O(k^-(1-theta)/(2 theta-1)) (tight for sum x_i^p)", "kl_rate"),
]

HYPOTHESES = {
    "sum_t_inf": "Σ t_k = ∞", "sum_t2_fin": "Σ t_k² < ∞", "sum_trho_fin": "Σ t_k ρ_k < ∞",
    "sum_rho2_fin": "Σ ρ_k² < ∞", "t_to_0": "t_k → 0", "t_below_2_over_L": "t_k < 2/L eventually",
    "t_at_most_1_over_L": "t_k ≤ 1/L for all k", "t_at_most_2_over_L": "t_k ≤ 2/L for all k",
    "t_const": "t_k constant", "rho_const": "ρ_k constant",
    "rho_below_1_over_L": "L ρ_k ≤ ν < 1 for all k",
    "usam_step": "t_k ≤ (1 − ν)/(L (1 + ν)²) for all k, ν = L sup ρ_k",
    "relative_step": "t_k ≤ (1 − ν)/(L (1 + ν)²) for all k, ν = a L sup ρ_k < 1 (a: the rule's relative error)",
    "usam_factor_positive": "c L² a² ρ_k² < 1 for all k",
    "ol_constant": "t_k ≤ γ*, ρ_k ≤ ρ* (Oikonomou & Loizou)",
    "ol_decreasing": "t_k = min{γ*, (2k+1)/((k+1)² μ)}, ρ_k = min{ρ*, 1/(2k+1)}",
}


def theorem(key: str) -> Theorem:
    return next(th for th in THEOREMS if th.key == key)
