"""Wrong implementations of the methods, as rule objects: what a claim must be able to reject.

Each mutant is the kind of bug a SAM implementation ships with (a flipped sign, the wrong
normalization, a frozen buffer, a radius off by a factor). They are built from the real rules of
convergence/methods.py, overriding one thing, so a claim that passes for one of them cannot tell that
bug from the method.
"""
from __future__ import annotations

import copy

from convergence.methods import SAM, Rule, make_method
from convergence.vec import normalize


class AntiSAM(SAM):
    """d_k = -g/||g||: SAM descending instead of ascending (a flipped sign)."""

    name = "anti-sam"

    def direction(self, k, x, oracle, state, rng):
        d, state = super().direction(k, x, oracle, state, rng)
        return -d, state


class RandomUnit(Rule):
    """d_k a uniformly random unit vector: any unit perturbation, no gradient information."""

    name, normalized = "random-unit", True

    def direction(self, k, x, oracle, state, rng):
        return normalize(rng.normal_like(x, stream=13)), state


class WrongRadius(Rule):
    """A rule run at a wrong radius, ``radius(rho_k)`` in place of the rho_k it is given."""

    def __init__(self, rule: Rule, radius, label: str):
        self.rule, self.radius = rule, radius
        self.name = f"{rule.name}({label})"
        self.stateful = rule.stateful

    def init(self, x):
        return self.rule.init(x)

    def gradient(self, k, x, oracle, state, rho, rng, bound=True):
        return self.rule.gradient(k, x, oracle, state, self.radius(rho), rng, bound)


def ScaledRadius(rule: Rule, factor: float) -> WrongRadius:        # noqa: N802 (reads as a class)
    """rho off by a factor: factor * rho_k."""
    return WrongRadius(rule, lambda rho: factor * rho, f"rho x {factor:g}")


def OffsetRadius(rule: Rule, offset: float) -> WrongRadius:        # noqa: N802
    """A radius with a constant offset: rho_k + offset."""
    return WrongRadius(rule, lambda rho: rho + offset, f"rho + {offset:.2g}")


def FrozenRadius(rule: Rule, rho0: float) -> WrongRadius:          # noqa: N802
    """The radius schedule never applied: rho0 at every step (shaped like rho_k)."""
    return WrongRadius(rule, lambda rho: rho0 + 0 * rho, f"rho frozen at {rho0:.2g}")


def InvertedRadius(rule: Rule, rho0: float) -> WrongRadius:        # noqa: N802
    """The radius schedule inverted: rho0^2 / rho_k, growing where it should shrink."""
    return WrongRadius(rule, lambda rho: rho0 ** 2 / rho, "rho0^2/rho_k")


def unchecked(name: str, **hyper) -> Rule:
    """A registered rule with hyper-parameters set past its validation (sigma = -1, beta = 1, ...)."""
    rule = copy.copy(make_method(name))
    for key, value in hyper.items():
        setattr(rule, key, value)
    rule.name = f"{name}({', '.join(f'{k}={v:g}' for k, v in hyper.items())})"
    return rule
