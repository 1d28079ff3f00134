"""Theory steps: the step sizes and radii the theorems prescribe.

Oikonomou & Loizou (2025), Unified SAM on mu-PL finite sums under the expected-residual condition
(A, B): a constant pair (gamma*, rho*) and the decreasing rule. The formulas come from the authors'
experiment code (numpy_exps/exp_script.py); the theorem's own statement could not be read offline
(labelled "from the authors' code" in reports). That script holds two versions:

* ``authors`` (default): the lines the experiments ran,
      rho* = 1/(4L) for lam = 1, else min(1, mu/(2 (B mu + A)(1 - lam)^2)) / (4L),
      gamma* = min(2, mu/(8 (B mu + A))) / L;
* ``commented-out``: the lines left commented out in that script (this toolkit's default before),
      s = B mu + A, rho* = mu/(2 L (mu + 2 s (1 - lam)^2)),
      gamma* = (mu - L rho* (mu + 2 s (1 - lam)^2)) / (2 L s (2 L^2 rho*^2 (1 - lam)^2 + 1)).
"""
from __future__ import annotations

import sympy as sp

from convergence.errors import InputError
from convergence.schedules import Schedule, k


def _authors(L, mu, s, lam):
    rho = 1 / (4 * L) if lam == 1 else min(1.0, mu / (2 * s * (1 - lam) ** 2)) / (4 * L)
    return min(2.0, mu / (8 * s)) / L, rho


def _commented_out(L, mu, s, lam):
    spread = mu + 2 * s * (1 - lam) ** 2
    rho = 0.5 * mu / (L * spread)
    return (mu - L * rho * spread) / (2 * L * s * (2 * L**2 * rho**2 * (1 - lam) ** 2 + 1)), rho


VARIANTS = {"authors": _authors, "commented-out": _commented_out}


def unified_pl_steps(L: float, mu: float, A: float, B: float, lam: float,
                     variant: str = "authors") -> tuple[float, float]:
    """(gamma*, rho*) of Unified SAM with mixing lam on an L-smooth mu-PL function whose stochastic
    gradients satisfy the expected-residual condition with (A, B)."""
    s = B * mu + A
    if s <= 0:
        raise InputError("the expected-residual constants give B mu + A = 0: no theory step exists")
    return VARIANTS[variant](L, mu, s, lam)


def theory_steps(problem, sampler, rule, variant: str = "authors") -> tuple[float, float]:
    """(gamma*, rho*) for a run: the rule's Unified SAM lambda, the sampler's (A, B) and L (L_max
    when stochastic). InputError (parameter "lr") when the run has none."""
    lam = rule.unified_lambda
    if lam is None:
        raise InputError("lr 'theory' (and `rho` 'theory', `stepsize` pl-decreasing) needs a Unified SAM rule "
                         "with a constant lambda: sam, usam or unified with a numeric lam", "lr")
    if problem.mu is None:
        raise InputError(f"lr 'theory' (and `rho` 'theory', `stepsize` pl-decreasing) needs a PL constant; "
                         f"'{problem.name}' has none: use quadratic, sinpl, least_squares, ridge or "
                         f"logistic", "lr")
    consts = sampler.constants(problem)
    L = problem.L if sampler.name == "full" else problem.L_max
    return unified_pl_steps(L, problem.mu, consts["A"], consts["B"], lam, variant)


def pl_decreasing(gamma: float, rho: float, mu: float) -> tuple[Schedule, Schedule]:
    """gamma_k = min{gamma*, (2k+1)/((k+1)^2 mu)}, rho_k = min{rho*, 1/(2k+1)} (k = 0, 1, ...)."""
    g = sp.Min(sp.Float(gamma), (2 * k + 1) / ((k + 1) ** 2 * sp.Float(mu)))
    r = sp.Min(sp.Float(rho), 1 / (2 * k + 1))
    return (Schedule(g, f"min({gamma:.3g}, (2k+1)/((k+1)^2 mu))"),
            Schedule(r, f"min({rho:.3g}, 1/(2k+1))"))
