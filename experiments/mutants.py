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


class ScaledRadius(Rule):
    """A rule run at c times the radius it is given (rho off by a factor c)."""

    def __init__(self, rule: Rule, factor: float):
        self.rule, self.factor = rule, factor
        self.name = f"{rule.name}(rho x {factor:g})"
        self.stateful = rule.stateful

    def init(self, x):
        return self.rule.init(x)

    def gradient(self, k, x, oracle, state, rho, rng):
        return self.rule.gradient(k, x, oracle, state, self.factor * rho, rng)


def unchecked(name: str, **hyper) -> Rule:
    """A registered rule with hyper-parameters set past its validation (sigma = -1, beta = 1, ...)."""
    rule = copy.copy(make_method(name))
    for key, value in hyper.items():
        setattr(rule, key, value)
    rule.name = f"{name}({', '.join(f'{k}={v:g}' for k, v in hyper.items())})"
    return rule
