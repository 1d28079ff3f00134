"""Step sizes and radii that the theorems prescribe.

Oikonomou & Loizou (2025), Unified SAM on mu-PL finite sums under the expected-residual condition
(A, B): the constant pair (gamma*, rho*) and the decreasing rule. The formulas are those of the
authors' experiment code; the theorem's own statement could not be read offline (labelled
"derived from the authors' code" in reports).
"""
from __future__ import annotations

import sympy as sp

from convergence.errors import InputError
from convergence.schedules import Schedule, k


def unified_pl_steps(L: float, mu: float, A: float, B: float, lam: float) -> tuple[float, float]:
    """(gamma*, rho*) of Unified SAM with mixing lam on an L-smooth mu-PL function."""
    s = B * mu + A
    if s <= 0:
        raise InputError("the expected-residual constants give B mu + A = 0: no theory step exists")
    spread = mu + 2 * s * (1 - lam) ** 2
    rho = 0.5 * mu / (L * spread)
    gamma = (mu - L * rho * spread) / (2 * L * s * (2 * L**2 * rho**2 * (1 - lam) ** 2 + 1))
    return gamma, rho


def pl_decreasing(gamma: float, rho: float, mu: float) -> tuple[Schedule, Schedule]:
    """gamma_k = min{gamma*, (2k+1)/((k+1)^2 mu)}, rho_k = min{rho*, 1/(2k+1)} (k = 0, 1, ...)."""
    g = sp.Min(sp.Float(gamma), (2 * k + 1) / ((k + 1) ** 2 * sp.Float(mu)))
    r = sp.Min(sp.Float(rho), 1 / (2 * k + 1))
    return (Schedule(g, f"min({gamma:.3g}, (2k+1)/((k+1)^2 mu))"),
            Schedule(r, f"min({rho:.3g}, 1/(2k+1))"))
