"""Schedule asymptotics: does sum a_k converge, does a_k tend to 0, where does it end up.

Each answer carries how it was reached: "symbolic" (sympy limits of the asymptotic order
a_k ~ C k^-p (log k)^-q, with exact rational exponents: user numbers are parsed as rationals) or
"numerical" (the order fitted on k = 10^6 ... 10^12), reported as such. A numerical order within
0.02 of the border p = 1 is left undecided (never decided in the unsafe direction), and so is a
sympy limit that takes longer than LIMIT_SECONDS.
"""
from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
from dataclasses import dataclass

import sympy as sp

from convergence.schedules import SCAN, Schedule, k

_BIG = 10**12
LIMIT_SECONDS = 10.0     # a sympy limit taking longer is given up (the decision left open)


class _GaveUp(ArithmeticError):
    """sympy did not find a limit within LIMIT_SECONDS."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _GaveUp inside the block after ``seconds`` (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def give_up(signum, frame):
        raise _GaveUp(f"no limit within {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, give_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    except (ValueError, NotImplementedError, TypeError, RecursionError, ArithmeticError):
        a_smaller = float(a.subs(k, _BIG).evalf()) < float(b.subs(k, _BIG).evalf())
    return a if a_smaller == smaller else b


def _sides(expr) -> tuple:
    """The sides of the floor/ceiling bounds to decide on: (0,) without floor or ceiling."""
    return (0, 1) if sp.sympify(expr).has(sp.floor, sp.ceiling) else (0,)


def _limit(expr):
    with _time_limit(LIMIT_SECONDS):
        value = sp.limit(expr, k, sp.oo)
    if value.has(sp.AccumBounds, sp.Limit) or value is sp.nan or not (value.is_real or value.is_infinite):
        raise ValueError(f"no limit found for {expr}")
    return value


def _scaled(expr) -> tuple[sp.Expr, sp.Expr]:
    """(c, a) with expr = c a and c a positive number: a has expr's asymptotic order, so the sympy
    work is shared by schedules that differ only in their constant (t_0, rho_0 of a sweep)."""
    expr = sp.sympify(expr)
    if not expr.is_Mul:
        return sp.Integer(1), expr
    c, a = expr.as_independent(k, as_Mul=True)
    return (c, a) if c.is_positive and c.is_number else (sp.Integer(1), expr)


def order(expr: sp.Expr, side: int = 0) -> tuple[sp.Expr, sp.Expr, str]:
    """(p, q, method) with a_k ~ C k^-p (log k)^-q for positive a_k (see _order)."""
    return _order(_scaled(tail(expr, side))[1])


@functools.lru_cache(maxsize=512)
def _order(a: sp.Expr) -> tuple[sp.Expr, sp.Expr, str]:
    """(p, q, method) with a_k ~ C k^-p (log k)^-q for positive a_k; q is only used when p = 1.

    p is exact where the exponents are (user numbers are parsed as rationals); where an exponent is
    a float, or sympy's limit is, a p within BORDER of 1 is returned with method "symbolic, inexact"
    and decides nothing (sympy rounds 1 + 1e-13 to 1)."""
    try:
        p = _limit(-sp.log(a) / sp.log(k))
        float_exponent = any(isinstance(x, sp.Pow) and x.exp.has(sp.Float) for x in sp.preorder_traversal(a))
        if float_exponent or not (p.is_Rational or p.is_infinite):
            if abs(float(p) - 1) < BORDER:
                return p, sp.Integer(0), "symbolic, inexact"
            p = sp.nsimplify(p, rational=True)
        q = sp.Integer(0)
        if p == 1:
            q = sp.nsimplify(_limit(-sp.log(a * k) / sp.log(sp.log(k))), rational=True)
        return p, q, "symbolic"
    except (ValueError, NotImplementedError, TypeError, RecursionError, ArithmeticError):
        return _numeric_order(a)


BORDER = 1e-6            # an inexact exponent this close to 1 is not decided
NUMERIC_BORDER = 0.02    # nor is a numerically fitted one this close


def _numeric_order(expr):
    f = sp.lambdify(k, expr, modules=[{"floor": math.floor, "ceiling": math.ceil}, "math"])
    ks = [10.0**e for e in range(6, 13)]
    logs = [math.log(f(x)) for x in ks]
    p = -(logs[-1] - logs[0]) / (math.log(ks[-1]) - math.log(ks[0]))
    return sp.Float(p, 4), sp.Integer(0), "numerical"


def sum_converges(expr: sp.Expr) -> Decision:
    """Decide sum_{k>=0} a_k < oo for positive a_k (integral/Cauchy test on the asymptotic order)."""
    decisions = [_sum_converges(expr, side) for side in _sides(expr)]
    if len({d.holds for d in decisions}) > 1:
        return Decision(None, "symbolic", "floor/ceiling: the bounds u - 1 <= floor(u) <= u decide "
                                          "differently (" + "; ".join(d.detail for d in decisions) + ")")
    return decisions[0]


def _sum_converges(expr, side) -> Decision:
    p, q, method = order(expr, side)
    text = f"a_k ~ k^-{p}" + (f" (log k)^-{q}" if p == 1 and q != 0 else "")
    near = {"numerical": NUMERIC_BORDER, "symbolic, inexact": BORDER}.get(method)
    if near is not None and not p.is_infinite and abs(float(p) - 1) < near:
        return Decision(None, method, f"{text}: within {near:g} of the border p = 1, where an "
                                      f"inexact exponent cannot tell convergence from divergence")
    if p.is_infinite or p > 1:
        return Decision(True, method, f"{text}: p > 1")
    if p < 1:
        return Decision(False, method, f"{text}: p < 1")
    if q == 1:                  # a_k k log k -> r: r > 0 diverges (comparison); r = 0 could go either way
        try:
            r = _limit(tail(expr, side) * k * sp.log(k))
        except (ValueError, NotImplementedError, TypeError, RecursionError, ArithmeticError):
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
    c, a = _scaled(tail(expr, side))
    value, method = _limit_of(a)
    if method == "numerical":
        f = sp.lambdify(k, expr, modules=[{"floor": math.floor, "ceiling": math.ceil}, "math"])
        return float(f(_BIG)), method
    return float(c) * value, method


@functools.lru_cache(maxsize=512)
def _limit_of(a: sp.Expr) -> tuple[float, str]:
    try:
        return float(_limit(a)), "symbolic"
    except (ValueError, NotImplementedError, TypeError, ArithmeticError):
        return math.nan, "numerical"


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


def always_at_most(schedule: Schedule, bound: float, label: str, first: int = SCAN) -> Decision:
    """a_k <= bound for every k: checked on k < first (the schedule's values, computed once), and
    the tail through the limit. InputError when a_k is undefined or not finite at some k < first."""
    worst = float(schedule.values(first).max())
    value, method = limit(schedule.expr)
    method = "numerical" if method == "numerical" else "symbolic+scan"
    if value is None:
        return Decision(None, method, f"max over k < {first} is {worst:g}, no limit decided; {label} = {bound:g}")
    ok = worst <= bound * (1 + 1e-12) and value <= bound
    return Decision(ok, method, f"max over k < {first} is {worst:g}, lim = {value:g}; {label} = {bound:g}")
