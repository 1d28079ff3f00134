"""Kurdyka-Lojasiewicz problems that are not PL: a known Lojasiewicz exponent theta in (1/2, 1).

Convention: |f(x) - f*|^theta <= c ||grad f(x)|| (``kl_exponent`` theta, ``kl_constant`` c). Each
class proves its inequality for every x (so in any neighbourhood of x*), and proves the exponent
sharp: for every theta' < theta, |f - f*|^theta' / ||grad f|| is unbounded near x*, in particular
for theta' = 1/2, so none of these functions is PL. Near x* the gradient vanishes faster than
sqrt(f - f*), which is what slows gradient methods from linear to sublinear rates.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from convergence.vec import array_namespace
from problems.base import Problem
from problems.toy import SinPL


class PowerSum(Problem):
    """f(x) = (1/p) sum_i x_i^p, p even >= 4: convex, f* = 0 at x* = 0, theta = 1 - 1/p.

    Proof. grad f = (x_i^(p-1)), so ||grad f|| = ||x||_q^(p-1) with q = 2p - 2 >= p, and
    f^theta = p^-theta ||x||_p^(p-1). The power-mean inequality ||x||_p <= d^(1/p - 1/q) ||x||_q
    gives f^theta <= c ||grad f|| with c = p^-theta d^(theta - 1/2), for all x (equality on the
    diagonal x_1 = ... = x_d). Sharp: at x = t e_1, f^theta' / ||grad f|| = p^-theta' t^(p theta'
    - p + 1) -> infinity as t -> 0 when theta' < theta. L = p - 1 bounds f'' = (p-1) x^(p-2) on
    the box [-1, 1]^d only: f is not globally smooth.
    """

    p = 4
    convex = True
    f_star = 0.0
    box = (-1.0, 1.0)
    smoothness_note = "on the box [-1, 1]^d"

    def __init__(self, dim: int = 2):
        super().__init__(dim)
        self.x_star = np.zeros(dim)
        self.L = float(self.p - 1)
        self.kl_exponent = 1.0 - 1.0 / self.p
        self.kl_constant = self.p ** -self.kl_exponent * dim ** (self.kl_exponent - 0.5)

    def f(self, X):
        return array_namespace(X).sum(X**self.p, axis=-1) / self.p

    def grad(self, X):
        return X ** (self.p - 1)

    def sympy_f(self, xs):
        return sum(x**self.p for x in xs) / self.p


class Quartic(PowerSum):
    """f(x) = (1/4) sum_i x_i^4: theta = 3/4, c = 4^(-3/4) d^(1/4), L = 3 on [-1, 1]^d (proof: PowerSum)."""

    name = "quartic"
    citation = "Lojasiewicz exponent of |x|^p is 1 - 1/p (e.g. Attouch & Bolte 2009, Sec. 4)"
    p = 4


class Sextic(PowerSum):
    """f(x) = (1/6) sum_i x_i^6: theta = 5/6, c = 6^(-5/6) d^(1/3), L = 5 on [-1, 1]^d (proof: PowerSum)."""

    name = "sextic"
    citation = Quartic.citation
    p = 6


class SinPLSquared(Problem):
    """f(x) = h(x)^2 with h(x) = sum_i x_i^2 + 3 sin^2 x_i (``sinpl``): nonconvex, theta = 3/4.

    f* = 0 at x* = 0 only (h = 0 iff x = 0). Proof of the inequality: h is PL with mu = 0.1755,
    ||grad h||^2 >= 2 mu h (Karimi et al. 2016), and grad f = 2 h grad h, so for all x
    ||grad f|| = 2 h ||grad h|| >= 2 sqrt(2 mu) h^(3/2) = 2 sqrt(2 mu) f^(3/4):
    c = 1 / (2 sqrt(2 mu)). Sharp: near 0, h = 4 ||x||^2 + O(||x||^4) and grad h = 8 x + O(||x||^3),
    so f^theta' / ||grad f|| ~ 4^(2 theta') ||x||^(4 theta' - 3) / 64 -> infinity for theta' < 3/4. Nonconvex: in
    d = 1, f'' = 2 h'^2 + 2 h h'' is about -18 at x = 1.5 (h'' = 2 + 6 cos 2x < 0 there).
    L on the box [-a, a]^d (a = 2): ||hess f|| <= 2 ||grad h||^2 + 2 h ||hess h|| <= 2 d (G^2 + 8 H)
    with G = max |h_1'| = arccos(-1/3) + 2 sqrt 2 (at cos 2x = -1/3) and H = max h_1 = 4 + 3 sin^2 2
    (h_1 = x^2 + 3 sin^2 x increases on [0, 2]); a bound, not the supremum.
    """

    name = "sinpl_squared"
    citation = "the square of the PL function of Karimi, Nutini & Schmidt (2016); exponent: this docstring"
    f_star, kl_exponent = 0.0, 0.75
    kl_constant = 1.0 / (2.0 * math.sqrt(2.0 * SinPL.mu))
    box = (-2.0, 2.0)
    smoothness_note = "on the box [-2, 2]^d"

    def __init__(self, dim: int = 2):
        super().__init__(dim)
        self.x_star = np.zeros(dim)
        G, H = math.acos(-1.0 / 3.0) + 2.0 * math.sqrt(2.0), 4.0 + 3.0 * math.sin(2.0) ** 2
        self.L = 2.0 * dim * (G * G + 8.0 * H)

    def _h(self, X):
        xp = array_namespace(X)
        return xp.sum(X * X + 3.0 * xp.sin(X) ** 2, axis=-1)

    def f(self, X):
        return self._h(X) ** 2

    def grad(self, X):
        return 2.0 * self._h(X)[:, None] * (2.0 * X + 3.0 * array_namespace(X).sin(2.0 * X))

    def sympy_f(self, xs):
        return sum(x**2 + 3 * sp.sin(x) ** 2 for x in xs) ** 2
