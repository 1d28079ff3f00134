"""SAM-family methods as rules for the ascent direction d_k of inexact gradient descent

    x_{k+1} = x_k - t_k g_k,    g_k = grad f_S(x_k + rho_k d_k).

A rule defines only d_k, from the gradient oracle of this step's sample S and its own state. The
runner (numpy) and the torch optimizers (convergence.deepnet) execute the same rule objects.

Oracle contract: ``oracle.grad(y)`` is the gradient of this step's sampled function at y,
``oracle.full_grad(y)`` the gradient of f, ``oracle.L`` the smoothness of the sampled function
(None when unknown) and ``oracle.split(m)`` the oracles of m-sized chunks of the sample.
"""
from __future__ import annotations

from convergence.errors import unknown
from convergence.vec import norm, normalize


class Rule:
    """Base rule: stateless, one ascent direction per step."""

    name = ""
    paper = ""
    stateful = False

    def init(self, x):
        return None

    def direction(self, k, x, oracle, state, rng):
        raise NotImplementedError

    def gradient(self, k, x, oracle, state, rho, rng):
        """g_k = grad f_S(x_k + rho_k d_k), and the bound L_S rho_k ||d_k|| >= ||g_k - grad f_S(x_k)||
        that L_S-smoothness of the sampled function gives (None when L_S is unknown)."""
        d, state = self.direction(k, x, oracle, state, rng)
        g = oracle.grad(x + rho * d)
        bound = None if oracle.L is None else oracle.L * rho * norm(d)
        return g, bound, state

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{self.name}({args})"


class GD(Rule):
    """Plain (stochastic) gradient descent: d_k = 0."""

    name, paper = "gd", "Cauchy (1847); Robbins & Monro (1951) for SGD"

    def direction(self, k, x, oracle, state, rng):
        return 0.0 * x, state


class SAM(Rule):
    """SAM, Foret et al. (2021), eq. (2) of Khanh et al. (2024): d_k = g / ||g||, g = grad f_S(x_k)."""

    name, paper = "sam", "Foret et al. (2021); Khanh et al. (2024) eq. (2)"

    def direction(self, k, x, oracle, state, rng):
        return normalize(oracle.grad(x)), state


class USAM(Rule):
    """Unnormalized SAM, Andriushchenko & Flammarion (2022), eq. (3): d_k = g = grad f_S(x_k)."""

    name, paper = "usam", "Andriushchenko & Flammarion (2022) eq. (3)"

    def direction(self, k, x, oracle, state, rng):
        return oracle.grad(x), state


METHODS: dict[str, type[Rule]] = {cls.name: cls for cls in (GD, SAM, USAM)}


def make_method(name: str, **hyper) -> Rule:
    """Build a registered rule by name; unknown names get the closest valid one suggested."""
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name](**hyper)
