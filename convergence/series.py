"""Symbolic decisions about schedules: does sum a_k converge, does a_k tend to 0, where does it end up.

Each answer carries how it was reached: "symbolic" (sympy limits of the asymptotic order
a_k ~ C k^-p (log k)^-q) or "numerical" (the order fitted on k = 10^6 ... 10^12), reported as such.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from convergence.schedules import SCAN, Schedule, k

_BIG = 10**12


@dataclass(frozen=True)
class Decision:
    holds: bool | None      # None: undecided
    method: str             # "symbolic" or "numerical"
    detail: str

    def __bool__(self):
        return bool(self.holds)


def tail(expr: sp.Expr, side: int = 0) -> sp.Expr:
    """An expression with the same behaviour as k -> oo: Piecewise -> its last branch, Min/Max ->
    the branch that wins as k -> oo, floor(u) -> u - side and ceiling(u) -> u + side.

    u - 1 <= floor(u) <= u: an answer that is the same for side 0 and side 1 holds for the floor
    too; where they differ (e.g. k/2 - floor(k/2), which does not tend to 0) nothing is decided."""
    expr = sp.sympify(expr)
    if isinstance(expr, sp.Piecewise):
        return tail(expr.args[-1][0], side)
    if isinstance(expr, (sp.Min, sp.Max)):
        branches = [tail(a, side) for a in expr.args]
        win = branches[0]
        for other in branches[1:]:
            win = _winner(win, other, smaller=isinstance(expr, sp.Min))
        return win
    if isinstance(expr, sp.floor):
        return tail(expr.args[0], side) - side
    if isinstance(expr, sp.ceiling):
        return tail(expr.args[0], side) + side
    if expr.args:
        return expr.func(*[tail(a, side) for a in expr.args])
    return expr


def _winner(a, b, smaller: bool):
    """The branch of min (smaller) or max that wins as k -> oo: by the limit of a/b, else (no
    limit found) by the values at k = 10^12."""
    try:
        ratio = _limit(a / b)
        a_smaller = ratio < 1
    except (ValueError, NotImplementedError, TypeError, RecursionError):
        a_smaller = float(a.subs(k, _BIG).evalf()) < float(b.subs(k, _BIG).evalf())
    return a if a_smaller == smaller else b


def _sides(expr) -> tuple:
    """The sides of the floor/ceiling bounds to decide on: (0,) without floor or ceiling."""
    return (0, 1) if sp.sympify(expr).has(sp.floor, sp.ceiling) else (0,)


def _limit(expr):
    value = sp.limit(expr, k, sp.oo)
    if value.has(sp.AccumBounds, sp.Limit) or value is sp.nan or not (value.is_real or value.is_infinite):
        raise ValueError(f"no limit found for {expr}")
    return value


def order(expr: sp.Expr, side: int = 0) -> tuple[sp.Expr, sp.Expr, str]:
    """(p, q, method) with a_k ~ C k^-p (log k)^-q for positive a_k; q is only used when p = 1."""
    a = tail(expr, side)
    try:
        p = sp.nsimplify(_limit(-sp.log(a) / sp.log(k)), rational=True)
        q = sp.Integer(0)
        if p == 1:
            q = sp.nsimplify(_limit(-sp.log(a * k) / sp.log(sp.log(k))), rational=True)
        return p, q, "symbolic"
    except (ValueError, NotImplementedError, TypeError, RecursionError):
        return _numeric_order(expr)


def _numeric_order(expr):
    f = sp.lambdify(k, expr, modules=[{"floor": math.floor, "ceiling": math.ceil}, "math"])
    ks = [10.0**e for e in range(6, 13)]
    logs = [math.log(f(x)) for x in ks]
    p = -(logs[-1] - logs[0]) / (math.log(ks[-1]) - math.log(ks[0]))
    q = 0.0
    if abs(p - 1) < 0.02:
        lk = [math.log(math.log(x)) for x in ks]
        q = -((logs[-1] + math.log(ks[-1])) - (logs[0] + math.log(ks[0]))) / (lk[-1] - lk[0])
        p = 1
    return sp.Float(p, 4), sp.Float(q, 4), "numerical"


def sum_converges(expr: sp.Expr) -> Decision:
    """Decide sum_{k>=0} a_k < oo for positive a_k (integral/Cauchy test on the asymptotic order)."""
    decisions = [_sum_converges(expr, side) for side in _sides(expr)]
    if len({d.holds for d in decisions}) > 1:
        return Decision(None, "symbolic", "floor/ceiling: the bounds u - 1 <= floor(u) <= u decide "
                                          "differently (" + "; ".join(d.detail for d in decisions) + ")")
    return decisions[0]


def _sum_converges(expr, side) -> Decision:
    p, q, method = order(expr, side)
    text = f"a_k ~ k^-{p}" + (f" (log k)^-{q}" if p == 1 else "")
    if p.is_infinite or p > 1:
        return Decision(True, method, f"{text}: p > 1")
    if p < 1:
        return Decision(False, method, f"{text}: p < 1")
    if method == "numerical" and abs(float(q) - 1) < 0.1:
        return Decision(None, method, f"{text}: too close to the border to tell numerically")
    if q == 1:                  # a_k k log k -> r: r > 0 diverges (comparison); r = 0 could go either way
        try:
            r = _limit(tail(expr, side) * k * sp.log(k))
        except (ValueError, NotImplementedError, TypeError, RecursionError):
            r = sp.Integer(0)
        if r == 0:
            return Decision(None, method, f"{text}: p = q = 1 with a slower factor (a_k k log k -> 0): "
                                          "cannot decide")
        return Decision(False, method, f"{text}: p = q = 1, a_k k log k -> {r}")
    return Decision(bool(q > 1), method, f"{text}: p = 1 and q {'>' if q > 1 else '<'} 1")


def limit(expr: sp.Expr) -> tuple[float | None, str]:
    """lim a_k as k -> oo, and how it was found; None where the floor/ceiling bounds disagree."""
    values = [_limit_one(expr, side) for side in _sides(expr)]
    if len({v for v, _ in values}) > 1:
        return None, "symbolic"
    return values[0]


def _limit_one(expr, side) -> tuple[float, str]:
    try:
        return float(_limit(tail(expr, side))), "symbolic"
    except (ValueError, NotImplementedError, TypeError):
        f = sp.lambdify(k, expr, modules=[{"floor": math.floor, "ceiling": math.ceil}, "math"])
        return float(f(_BIG)), "numerical"


def tends_to_zero(expr: sp.Expr) -> Decision:
    value, method = limit(expr)
    if value is None:
        return Decision(None, method, "no limit decided (floor/ceiling bounds disagree)")
    return Decision(value == 0.0, method, f"lim = {value:g}")


def eventually_below(expr: sp.Expr, bound: float, label: str) -> Decision:
    """a_k < bound for all large k (strictly: the limit is below the bound)."""
    value, method = limit(expr)
    if value is None or value == bound:
        return Decision(None, method, f"lim = {value} equals {label}" if value is not None
                        else "no limit decided (floor/ceiling bounds disagree)")
    return Decision(value < bound, method, f"lim = {value:g} {'<' if value < bound else '>'} {label} = {bound:g}")


def always_at_most(expr: sp.Expr, bound: float, label: str, first: int = SCAN) -> Decision:
    """a_k <= bound for every k: checked on k < first, and the tail through the limit/monotone order.
    InputError when a_k is undefined or not finite at some k < first."""
    worst = float(Schedule(expr).values(first).max())
    value, method = limit(expr)
    method = "numerical" if method == "numerical" else "symbolic+scan"
    if value is None:
        return Decision(None, method, f"max over k < {first} is {worst:g}, no limit decided; {label} = {bound:g}")
    ok = worst <= bound * (1 + 1e-12) and value <= bound
    return Decision(ok, method, f"max over k < {first} is {worst:g}, lim = {value:g}; {label} = {bound:g}")
