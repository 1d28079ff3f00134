"""Deterministic test functions with analytic gradients and known f*, x*, L, PL constants."""
from __future__ import annotations

import numpy as np
import sympy as sp

from convergence.vec import array_namespace
from problems.base import Problem


def _read_only(values) -> np.ndarray:
    """A float copy that cannot change under the problem (the caller may go on writing its array)."""
    out = np.array(values, dtype=float)
    out.flags.writeable = False
    return out


class Quadratic(Problem):
    """f(x) = 1/2 sum_i lam_i (x_i - x*_i)^2 with eigenvalues log-spaced in [1/kappa, 1].

    Strongly convex: L = max lam = 1, mu = min lam = 1/kappa (PL with the same mu), x* = 0.
    ``eigs`` overrides the spectrum (it must be positive).
    """

    name = "quadratic"
    citation = "strongly convex quadratic; Khanh et al. (2024), Sec. 3 (constant-step SAM fails)"
    convex = strongly_convex_quadratic = True
    kl_exponent = 0.5
    box = (-1.0, 1.0)

    def __init__(self, dim: int = 2, kappa: float = 10.0, eigs=None):
        super().__init__(dim)
        if eigs is None:
            eigs = np.geomspace(1.0 / kappa, 1.0, dim) if dim > 1 else np.ones(1)
        self.eigs = _read_only(eigs)
        if self.eigs.shape != (dim,) or np.any(self.eigs <= 0):
            raise ValueError(f"quadratic eigenvalues must be {dim} positive numbers")
        self.L, self.mu = float(self.eigs.max()), float(self.eigs.min())
        self.f_star, self.x_star = 0.0, np.zeros(dim)

    def f(self, X):
        return 0.5 * (X * X) @ self.eigs

    def grad(self, X):
        return X * self._eigs_in_rows(X.shape)

    def _eigs_in_rows(self, shape):
        """eigs repeated in every row, kept for the batch's shape: a product of two arrays of one shape
        is one numpy loop, X * eigs one per row (1 us against 8 us at 1536 runs x 2)."""
        eigs, rows = vars(self).get("_rows_of", (None, None))
        if eigs is not self.eigs or rows.shape != shape:
            rows = np.broadcast_to(self.eigs, shape).copy()
            self._rows_of = (self.eigs, rows)       # a tuple: not the problem's data (memory_estimate)
        return rows

    def __getstate__(self):          # pickled to sweep workers without the rows, rebuilt there
        return {key: v for key, v in vars(self).items() if key != "_rows_of"}

    def sympy_f(self, xs):
        return sum(sp.Rational(1, 2) * sp.nsimplify(float(l)) * x**2 for l, x in zip(self.eigs, xs))


class Saddle(Quadratic):
    """f(x) = 1/2 sum_i lam_i x_i^2 with some lam_i < 0: a strict saddle at 0, unbounded below.

    Default spectrum: +1 on the first ceil(d/2) coordinates, -1/2 on the rest. Used to study
    whether SAM/USAM are attracted by saddles (Compagnoni et al. 2023, Sec. 4).
    """

    name = "saddle"
    citation = "indefinite quadratic; Compagnoni et al. (2023), saddle analysis"
    min_dim = 2
    convex = strongly_convex_quadratic = False
    lower_bounded = False
    kl_exponent = None

    def __init__(self, dim: int = 2, eigs=None):
        Problem.__init__(self, dim)
        if eigs is None:
            eigs = np.where(np.arange(dim) < (dim + 1) // 2, 1.0, -0.5)
        self.eigs = _read_only(eigs)
        if self.eigs.shape != (dim,) or not np.any(self.eigs < 0):
            raise ValueError(f"saddle eigenvalues must be {dim} numbers, at least one negative")
        self.L, self.mu = float(np.abs(self.eigs).max()), None
        self.f_star, self.x_star = None, np.zeros(dim)   # x_star: the saddle point itself


class SinPL(Problem):
    """f(x) = sum_i x_i^2 + 3 sin^2(x_i): nonconvex yet PL (mu ~ 0.1755), L = 8, f* = 0 at 0.

    f'' = 2 + 6 cos(2x) lies in [-4, 8]; the sum of 1-d PL functions is PL with the same mu.
    """

    name = "sinpl"
    citation = "Karimi, Nutini & Schmidt (2016), the PL example x^2 + 3 sin^2 x"
    mu, L, f_star, kl_exponent = 0.1755, 8.0, 0.0, 0.5
    box = (-4.0, 4.0)

    def __init__(self, dim: int = 1):
        super().__init__(dim)
        self.x_star = np.zeros(dim)

    def f(self, X):
        xp = array_namespace(X)
        return xp.sum(X * X + 3.0 * xp.sin(X) ** 2, axis=-1)

    def grad(self, X):
        return 2.0 * X + 3.0 * array_namespace(X).sin(2.0 * X)

    def sympy_f(self, xs):
        return sum(x**2 + 3 * sp.sin(x) ** 2 for x in xs)


class Rosenbrock(Problem):
    """f(x) = sum_{i<d} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2, f* = 0 at (1, ..., 1).

    Not globally L-smooth; L = 7402 bounds the Hessian on [-2, 2]^d (Gershgorin).
    """

    name = "rosenbrock"
    citation = "Rosenbrock (1960), n-dimensional chained form"
    min_dim = 2
    f_star, L, smoothness_note = 0.0, 7402.0, "on the box [-2, 2]^d"
    box = (-2.0, 2.0)

    def __init__(self, dim: int = 2):
        super().__init__(dim)
        self.x_star = np.ones(dim)

    def f(self, X):
        head, tail = X[:, :-1], X[:, 1:]
        return array_namespace(X).sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)

    def grad(self, X):
        head, tail = X[:, :-1], X[:, 1:]
        r = 200.0 * (tail - head * head)
        a = -2.0 * head * r - 2.0 * (1.0 - head)
        # G_i = a_i + r_{i-1}: the first coordinate a_0, the last 0 + r_{d-2} (as an in-place sum would)
        return array_namespace(X).concatenate([a[:, :1], a[:, 1:] + r[:, :-1], 0.0 + r[:, -1:]], axis=1)

    def sympy_f(self, xs):
        return sum(100 * (b - a**2) ** 2 + (1 - a) ** 2 for a, b in zip(xs[:-1], xs[1:]))


class StyblinskiTang(Problem):
    """f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i); global minimum -39.16616570377 d at -2.903534.

    Many local minima (2^d); L = 134 bounds f'' = 6x^2 - 16 on the box [-5, 5]^d.
    """

    name = "styblinski_tang"
    citation = "Styblinski & Tang (1990)"
    L, smoothness_note = 134.0, "on the box [-5, 5]^d"
    box = (-5.0, 5.0)

    def __init__(self, dim: int = 2):
        super().__init__(dim)
        self.f_star = -39.16616570377 * dim
        self.x_star = np.full(dim, -2.903534)

    def f(self, X):
        return 0.5 * array_namespace(X).sum(X**4 - 16.0 * X**2 + 5.0 * X, axis=-1)

    def grad(self, X):
        return 2.0 * X**3 - 16.0 * X + 2.5

    def sympy_f(self, xs):
        return sp.Rational(1, 2) * sum(x**4 - 16 * x**2 + 5 * x for x in xs)
