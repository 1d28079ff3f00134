"""A problem typed as a formula: ``make_problem("expr:x1**2 + 3*sin(x1)**2 + x2**4", box=(-2, 2))``.

The formula is read by the schedules' grammar (``convergence.schedules.parse_expression``, never
eval) with the variables x1..xd and smooth functions only; its gradient is sympy's, compiled to
numpy over a batch of points. L on the box is

* exact and global when the Hessian is constant (a quadratic);
* else a bound: each Hessian entry enclosed on the box by interval arithmetic (``problems.interval``,
  in floats), then the largest Gershgorin row sum, which bounds the spectral norm;
* else, where an entry has no finite enclosure (1/x1 on a box holding 0, a formula too large to take
  a second derivative of), the largest Hessian norm at SAMPLES points of the box, by central
  differences of the gradient, marked ``L_estimated``.

The work is bounded by MAX_TEXT characters and MAX_VARIABLES variables.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
import sympy as sp

from convergence.errors import InputError
from convergence.schedules import parse_expression
from problems.base import Problem, check_dim
from problems.interval import Unbounded, enclose

MAX_TEXT = 1000              # characters of a formula
MAX_VARIABLES = 20           # x1..x20 (the symbolic gradient and Hessian grow with d)
MAX_NODES = 2000             # gradient size (sympy tree nodes) up to which the Hessian is symbolic
SAMPLES = 1000               # points of the box where the Hessian is sampled for an estimate
SMOOTH = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "exp": sp.exp, "log": sp.log, "ln": sp.log,
          "sqrt": lambda a: sp.sqrt(a), "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh, "atan": sp.atan}
NOT_SMOOTH = ("abs", "sign", "min", "max", "floor", "ceil")


class ExpressionProblem(Problem):
    """f given as a formula in x1..xd; dim defaults to the largest index used.

    ``box`` is where starting points are drawn and where L holds; ``f_star`` and ``x_star`` are
    the user's claims, checked on load (``problems.user.check_problem``); ``f_star`` defaults to
    f(x_star) when only x_star is given. Unknown truth stays None (mu and the KL exponent always).
    """

    name = "expr"
    citation = "a formula given by the user"
    max_dim = MAX_VARIABLES

    def __init__(self, text: str, dim: int | None = None, box=(-1.0, 1.0), f_star=None, x_star=None):
        if len(text) > MAX_TEXT:
            raise InputError(f"problem expression has {len(text)} characters; at most {MAX_TEXT} are read: "
                             f"write a Problem class for larger functions", "problem")
        if dim is not None:
            check_dim(type(self), dim)
        self.source = f"expr:{text}"
        label = f"problem '{self.source}'"
        rough = re.search(rf"\b({'|'.join(NOT_SMOOTH)})\s*\(", text)
        if rough:
            raise InputError(f"{label}: {rough[1]}() is not differentiable everywhere, and the theory needs a "
                             f"smooth f: use a smooth stand-in (e.g. sqrt(x1**2 + 1e-8) for abs(x1))", "problem")
        variables = {f"x{i}": sp.Symbol(f"x{i}", real=True) for i in range(1, (dim or MAX_VARIABLES) + 1)}
        expr = parse_expression(text, "problem", variables, SMOOTH)
        if expr.has(sp.zoo, sp.nan, sp.oo):
            raise InputError(f"{label} is undefined (a division by zero or an infinity in it)", "problem")
        used = [i for i, x in enumerate(variables.values(), 1) if x in expr.free_symbols]
        if not used and dim is None:
            raise InputError(f"{label} uses none of the variables x1, x2, ...: write f in x1..xd", "problem")
        super().__init__(dim or max(used))
        self.symbols = list(variables.values())[:self.dim]
        self.expr = expr
        self.box = _box(box)
        grads = [sp.diff(expr, x) for x in self.symbols]
        self._f = sp.lambdify(self.symbols, expr, "numpy")
        self._grad = sp.lambdify(self.symbols, grads, "numpy")
        self.L, self.smoothness_note, self.L_estimated = self._smoothness(grads)
        self.x_star = None if x_star is None else _point(x_star, self.dim)
        self.f_star = _number("f_star", f_star)
        if self.f_star is None and self.x_star is not None:    # check_problem reports a failing f
            with contextlib.suppress(Exception):
                self.f_star = float(self.f(self.x_star[None])[0])

    def f(self, X):
        with np.errstate(all="ignore"):
            return np.broadcast_to(self._f(*X.T), (len(X),)).astype(X.dtype)

    def grad(self, X):
        with np.errstate(all="ignore"):
            return np.stack([np.broadcast_to(g, (len(X),)) for g in self._grad(*X.T)], axis=1).astype(X.dtype)

    def sympy_f(self, xs):
        return self.expr.subs(dict(zip(self.symbols, xs)), simultaneous=True)

    def _smoothness(self, grads):
        """(L, smoothness_note, L_estimated) on the box; see the module docstring."""
        lo, hi = self.box
        note = f"on the box [{lo:g}, {hi:g}]^d"
        estimate = self._sampled_hessian_norm()
        if np.isfinite(estimate) and sum(1 for g in grads for _ in sp.preorder_traversal(g)) <= MAX_NODES:
            hessian = [[None] * self.dim for _ in range(self.dim)]
            for i in range(self.dim):
                for j in range(i, self.dim):
                    hessian[i][j] = hessian[j][i] = sp.diff(grads[i], self.symbols[j])
            try:
                entries = np.array([[enclose(h, lo, hi) for h in row] for row in hessian])   # (d, d, 2)
            except Unbounded:
                entries = None
            if entries is not None and not any(h.free_symbols for row in hessian for h in row):
                H = entries.mean(axis=2)                 # a quadratic: L exact, and global
                eigs = np.linalg.eigvalsh(H)
                L = float(np.abs(eigs).max())
                if L == 0:
                    raise InputError(f"problem '{self.source}' is affine: it has no minimum (SAM's theory "
                                     f"needs f bounded below)", "problem")
                g0 = self.grad(np.zeros((1, self.dim)))[0]        # bounded below iff H >= 0, g0 in range H
                residual = g0 - H @ np.linalg.lstsq(H, g0, rcond=1e-12)[0]
                self.lower_bounded = bool(eigs[0] >= -1e-12 * L and
                                          np.linalg.norm(residual) <= 1e-9 * (1 + np.linalg.norm(g0)))
                return L, "global", False
            if entries is not None:
                bound = float(np.abs(entries).max(axis=2).sum(axis=1).max())   # Gershgorin row sums
                if bound >= estimate * (1 - 1e-6):
                    return bound, note, False
        return estimate, f"{note}, estimated from Hessians at {SAMPLES} points", True

    def _sampled_hessian_norm(self) -> float:
        """max ||hess f(x)||_2 over SAMPLES points x of the box and its two diagonal corners (central
        differences of grad); inf where the compiled formula fails or overflows there."""
        lo, hi = self.box
        X = np.vstack([self.x0(SAMPLES, seed=0), np.full((1, self.dim), lo), np.full((1, self.dim), hi)])
        h = 1e-5 * (1 + max(abs(lo), abs(hi)))
        try:
            with np.errstate(all="ignore"):
                H = np.stack([(self.grad(X + e) - self.grad(X - e)) / (2 * h) for e in h * np.eye(self.dim)], axis=2)
                norms = np.abs(np.linalg.eigvalsh((H + H.transpose(0, 2, 1)) / 2)).max(axis=1)
        except Exception:                  # the compiled formula (e.g. an integer too large for a float)
            return np.inf
        return float(np.max(norms)) if np.all(np.isfinite(norms)) else np.inf


def _box(box) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in box)
    except (TypeError, ValueError):
        lo = hi = np.nan
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InputError(f"box must be two finite numbers lo < hi, got {box!r}", "box")
    return lo, hi


def _number(name: str, value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = np.nan
    if not np.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}", name)
    return number


def _point(x, dim: int) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"x_star must be {dim} numbers, got {x!r}", "x_star")
    if x.ndim == 0 and dim == 1:
        x = x.reshape(1)
    if x.shape != (dim,) or not np.all(np.isfinite(x)):
        raise InputError(f"x_star must be {dim} finite number(s), one per variable x1..x{dim}, got "
                         f"{np.array2string(x, separator=', ')}", "x_star")
    return x
