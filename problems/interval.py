"""Interval arithmetic in floats over the sympy trees of ``problems.expression``: an enclosure of the
values an expression takes while every variable ranges over [lo, hi], widened outward by a few
units in the last place at every operation so that float rounding cannot make it too tight.

Only float operations run, so the work is linear in the tree's size: sympy's own evaluation of a
constant such as exp(exp(exp(exp(exp(1))))) (or its AccumBounds) can take unbounded time. A node
without a rule here, a possibly undefined value (log of an interval reaching 0) or an enclosure that
is not finite raises Unbounded.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp


ULPS = 4        # outward widening of every operation's result: enclosures hold despite rounding


class Unbounded(ValueError):
    """No finite enclosure by these rules."""


def enclose(expr, lo: float, hi: float) -> tuple[float, float]:
    """(a, b) with a <= expr(x) <= b for every x in [lo, hi]^d."""
    with np.errstate(all="ignore"):
        return _enclose(expr, float(lo), float(hi))


def _enclose(e, lo, hi):
    if e.is_Symbol:
        return lo, hi
    if e.is_Number or e.is_NumberSymbol:             # 3, 1/2, 0.1, pi, E (atoms only: never exp(1))
        try:
            value = float(e)
        except (TypeError, OverflowError):              # zoo, a 10**999 written out
            raise Unbounded(str(e)) from None
        if not math.isfinite(value):
            raise Unbounded(str(e))
        return value, value
    args = [_enclose(a, lo, hi) for a in e.args]
    if e.is_Add:
        return _finite(sum(a for a, _ in args), sum(b for _, b in args))
    if e.is_Mul:
        return functools.reduce(_times, args)
    if e.is_Pow:
        return _power(args[0], args[1], e.exp)
    rule = _FUNCTIONS.get(type(e))
    if rule is None:
        raise Unbounded(type(e).__name__)
    return _finite(*rule(*args[0]))


def _finite(a, b):
    """The result of an operation, widened by ULPS units in the last place (rounding, libm error)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        raise Unbounded("not finite")
    return a - ULPS * abs(float(np.spacing(a))), b + ULPS * abs(float(np.spacing(b)))


def _times(x, y):
    products = [x[0] * y[0], x[0] * y[1], x[1] * y[0], x[1] * y[1]]
    return _finite(min(products), max(products))


def _power(base, exponent, exp_expr):
    """base ** exponent: integer powers of any base, other powers of a nonnegative base."""
    (a, b), (p, q) = base, exponent
    if exp_expr.is_Integer:
        n = int(exp_expr)
        if n < 0:
            if a <= 0 <= b:
                raise Unbounded("a negative power of an interval holding 0")
            u, v = _power(base, (-n, -n), sp.Integer(-n))
            return _finite(1 / v, 1 / u)
        lo_abs = 0.0 if a <= 0 <= b else min(abs(a), abs(b))
        if n % 2 == 0:
            return _finite(float(np.power(lo_abs, n)), float(np.power(max(abs(a), abs(b)), n)))
        return _finite(float(np.power(a, n)), float(np.power(b, n)))
    if a >= 0 and exp_expr.is_number and p > 0:          # x^p, p > 0 constant: increasing on [0, inf)
        return _finite(float(np.power(a, p)), float(np.power(b, p)))
    if a <= 0:
        raise Unbounded("a non-integer power of an interval reaching 0 or below")
    return _exp(*_times((math.log(a), math.log(b)), (p, q)))


def _exp(a, b):
    return float(np.exp(a)), float(np.exp(b))


def _log(a, b):
    if a <= 0:
        raise Unbounded("log of an interval reaching 0 or below")
    return math.log(a), math.log(b)


def _sin(a, b):
    """sin on [a, b]: the endpoint values, widened to +-1 where a peak pi/2 + 2 pi k lies inside."""
    if b - a >= 2 * math.pi:
        return -1.0, 1.0
    ends = (math.sin(a), math.sin(b))

    def holds(peak):
        return math.ceil((a - peak) / (2 * math.pi)) <= math.floor((b - peak) / (2 * math.pi))
    return (-1.0 if holds(-math.pi / 2) else min(ends)), (1.0 if holds(math.pi / 2) else max(ends))


def _tan(a, b):
    if math.floor((a - math.pi / 2) / math.pi) != math.floor((b - math.pi / 2) / math.pi) or b - a >= math.pi:
        raise Unbounded("tan across a pole")
    return math.tan(a), math.tan(b)


def _cosh(a, b):
    low = 0.0 if a <= 0 <= b else min(abs(a), abs(b))
    return float(np.cosh(low)), float(np.cosh(max(abs(a), abs(b))))


def _increasing(f):
    return lambda a, b: (float(f(a)), float(f(b)))


_FUNCTIONS = {sp.exp: _exp, sp.log: _log, sp.sin: _sin, sp.cos: lambda a, b: _sin(a + math.pi / 2, b + math.pi / 2),
              sp.tan: _tan, sp.tanh: _increasing(np.tanh), sp.sinh: _increasing(np.sinh), sp.cosh: _cosh,
              sp.atan: _increasing(np.arctan)}
