"""Step sizes t_k and radii rho_k: each schedule is a sympy expression in k (k = 0, 1, ...).

The expression is what the theory layer reasons about (sums, limits); a compiled copy gives the
numbers. User-written expressions are parsed by a small grammar here, never by ``eval``.
"""
from __future__ import annotations

import math
import re
import weakref

import numpy as np
import sympy as sp

from convergence.errors import InputError, unknown

k = sp.Symbol("k", integer=True, nonnegative=True)
e = sp.Symbol("e", integer=True, nonnegative=True)   # epoch counter of the CIFAR schedules
SCAN = 10_000           # a schedule is checked numerically on k < SCAN where no run length is known
MAX_DEPTH = 100         # nesting levels allowed in a user-written expression
MAX_VALUE = 1e30        # t_0, rho_0, L and mu within [1/MAX_VALUE, MAX_VALUE]: the theory's float64
                        # bounds square and multiply them (L^2 t^2 rho^2) and stay finite


# srepr(expr) -> the values computed so far, while a schedule holds them: equal schedules share them
# (a sweep builds the same few in every cell's spec, and each value costs a Python call)
_COMPUTED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Schedule:
    """A named sympy expression in k with a fast numeric evaluation."""

    def __init__(self, expr, label: str | None = None):
        self.expr = sp.sympify(expr)
        self.label = label or str(self.expr)
        self._values = np.empty(0)
        self._compile()

    def _compile(self):
        # evaluated in float64 only: k is passed as a float and floor/ceil return floats, so no step
        # computes an exact integer power (k**k**k**k at k = 3 would never finish)
        f = sp.lambdify(k, self.expr, modules=[{"floor": _float_floor, "ceiling": _float_ceil}, "math"])
        self._f = lambda step: f(float(step))

    def __getstate__(self):           # pickled to sweep workers: the compiled copy is rebuilt there
        return {key: v for key, v in vars(self).items() if key != "_f"}

    def __setstate__(self, state):
        vars(self).update(state)
        self._compile()

    def __call__(self, step: int) -> float:
        if not isinstance(step, (int, np.integer)):
            from convergence.vec import array_namespace
            xp = array_namespace(step)
            if xp is not np:        # a traced step of the compiled backend: the values computed up to it
                return xp.asarray(self._values)[step]
        return float(self._values[step] if step < len(self._values) else self._f(step))

    def values(self, n: int, name: str = "schedule") -> np.ndarray:
        """[s(0), ..., s(n-1)], read-only, computed once per expression (later calls, and equal
        schedules, read them); InputError at the first k where s is undefined (division by zero,
        overflow, log of a negative, ...) or not finite."""
        if len(self._values) < n:
            key = sp.srepr(self.expr)
            known = _COMPUTED.get(key)
            if known is not None and len(known) >= n:
                self._values = known
                return known[:n]
            out = np.full(n, np.nan)
            defined = np.fromiter(self._defined(n), float)    # up to the first k that fails
            out[:len(defined)] = defined                      # from there on NaN: undefined
            bad = np.flatnonzero(~np.isfinite(out))
            if len(bad):
                value = "undefined" if np.isnan(out[bad[0]]) else "infinite"
                raise InputError(f"{name} '{self.label}' is {value} at k={bad[0]}: give a schedule "
                                 f"defined and finite for every k >= 0", name)
            out.flags.writeable = False
            self._values = _COMPUTED[key] = out
        return self._values[:n]

    def _defined(self, n: int):
        """s(0), s(1), ... up to s(n-1) as floats, ending early at the first k where s fails (a
        complex value, such as (-1)**0.5, fails too)."""
        for step in range(n):
            try:
                yield float(self._f(step))
            except (ArithmeticError, ValueError, TypeError):
                return

    def check(self, name: str, n: int, ok, rule: str) -> np.ndarray:
        """values(n), each tested by ``ok`` (vectorised); InputError at the first k that fails."""
        values = self.values(n, name)
        bad = np.flatnonzero(~ok(values))
        if len(bad):
            raise InputError(f"{name} must {rule} at every k; '{self.label}' is "
                             f"{values[bad[0]]:g} at k={bad[0]}", name)
        return values

    def __repr__(self):
        return f"Schedule({self.label})"


def _float_floor(x):
    return float(math.floor(x))


def _float_ceil(x):
    return float(math.ceil(x))


def constant(value: float) -> Schedule:
    return Schedule(sp.Float(value), f"{value:g}")


def diminishing(value: float, power: float) -> Schedule:
    """value / (k+1)^power; the exponent exact (its decimal), so that the asymptotic decisions see
    1.0000000000001 above 1."""
    return Schedule(sp.Float(value) / (k + 1) ** sp.Rational(repr(float(power))), f"{value:g}/(k+1)^{power:g}")


# ---------------------------------------------------------------------------------------------
# A safe parser for schedule expressions typed by users, e.g. "0.1/(k+1)**0.6" or "0.1/(k*log(k+2))".
def _integer_part(fn):
    """sympy's floor or ceiling, refusing (OverflowError) a number beyond the float range, decided in
    floats first: sympy would find the integer part of exp(222337.5) exactly, for minutes."""
    def build(x):
        if x.is_number:
            try:
                size = abs(complex(sp.N(x, 17)))
            except TypeError:                         # zoo: no complex value
                size = math.inf
            if not math.isfinite(size):
                raise OverflowError(f"{x} lies beyond the float range")
        return fn(x)
    return build


_FUNCS = {"log": sp.log, "ln": sp.log, "sqrt": sp.sqrt, "exp": sp.exp, "floor": _integer_part(sp.floor),
          "ceil": _integer_part(sp.ceiling),
          # unevaluated: sympy's Min(k**93, k) compares its arguments under assumptions, for seconds
          "min": lambda *a: sp.Min(*a, evaluate=False), "max": lambda *a: sp.Max(*a, evaluate=False)}
_CONSTS = {"pi": sp.pi, "E": sp.E}
_TOKEN = re.compile(r"[ \t]*(?:([0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)|"
                    r"([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/^(),]))")     # ASCII only: no Unicode digits
MAX_LENGTH = 2000       # characters in a user-written expression
MAX_DIGITS = 60         # characters in one number literal
MAX_EXACT_POWER = 64    # number ** number beyond this exponent is kept as a float, not an exact integer


def _tokens(text: str, name: str, words: str):
    pos, out = 0, []
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise InputError(f"{name} is {len(text)} characters long: write an expression of at most "
                         f"{MAX_LENGTH}", name)
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"{name} '{text}' cannot be parsed at '{text[pos:]}': use numbers, "
                             f"{words}", name)
        num, word, op = m.groups()
        out.append(("num", num) if num else ("name", word) if word else ("op", op))
        pos = m.end()
    return out


def _listing(names) -> str:
    """'a, b, c', or 'first, ..., last' for a long list (the variables x1..xd)."""
    names = list(names)
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, ..., {names[-1]}"


def parse_expression(text: str, name: str = "schedule", variables: dict | None = None,
                     functions: dict | None = None) -> sp.Expr:
    """Parse an arithmetic expression with a recursive-descent grammar (no eval); errors name the
    parameter ``name`` the expression was given for.

    The variable is k and the functions are the schedules' own unless ``variables`` (name -> sympy
    symbol) and ``functions`` (name -> callable building a sympy expression) replace them: the
    objective functions of ``problems.expression`` use x1..xd and smooth functions only.
    """
    variables = {"k": k} if variables is None else variables
    functions = _FUNCS if functions is None else functions
    names = {**variables, **_CONSTS}
    toks = _tokens(text, name, f"{_listing(variables)}, + - * / ** ( ) and {', '.join(functions)}")
    pos = depth = 0

    def fail(msg):
        raise InputError(f"{name} '{text}' cannot be parsed: {msg}", name)

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take(value=None):
        nonlocal pos
        tok = peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            fail(f"expected '{value}'" if value else "unexpected end")
        pos += 1
        return tok

    def expr():
        node = term()
        while peek()[1] in ("+", "-"):
            node = _finite(node + term() if take()[1] == "+" else node - term(), fail)
        return node

    def term():
        node = unary()
        while peek()[1] in ("*", "/"):
            node = _finite(node * unary() if take()[1] == "*" else node / unary(), fail)
        return node

    def unary():                  # every nesting (brackets, arguments, signs, exponents) passes here
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            fail(f"nested more than {MAX_DEPTH} levels deep: simplify it")
        if peek()[1] in ("+", "-"):
            node = unary() if take()[1] == "+" else -unary()
        else:
            node = power()
        depth -= 1
        return node

    def power():
        base = atom()
        if peek()[1] in ("**", "^"):
            take()
            exponent = unary()
            if base.is_number and exponent.is_number:      # decided now, in floats: no exact towers
                return _number_power(base, exponent, fail)
            return base ** exponent
        return base

    def atom():
        kind, val = take()
        if kind == "num":
            return _literal(val, fail)
        if kind == "name":
            if val in functions:
                take("(")
                args = [expr()]
                while peek()[1] == ",":
                    take()
                    args.append(expr())
                take(")")
                try:
                    return functions[val](*args)
                except TypeError:            # a wrong number of arguments
                    fail(f"{val}() does not take {len(args)} argument(s)")
                except OverflowError as err:                # floor(exp(1e6))
                    fail(f"in {val}(): {err}")
                except (ValueError, ArithmeticError):      # min(k, log(0)): not comparable
                    fail(f"{val}({', '.join(map(str, args))}) is undefined")
            if val in names:
                return names[val]
            fail(f"unknown name '{val}' (variables: {_listing(variables)}; functions: "
                 f"{', '.join(functions)})")
        if val == "(":
            node = expr()
            take(")")
            return node
        fail(f"unexpected '{val}'")

    node = expr()
    if pos != len(toks):
        fail(f"unexpected '{toks[pos][1]}'")
    return node


def _literal(text: str, fail) -> sp.Expr:
    """A number literal as an exact rational (so that an exponent 1 + 1e-13 stays above 1 in the
    asymptotic decisions), refused when it has too many digits or lies beyond the float range."""
    if len(text) > MAX_DIGITS:
        fail(f"the number '{text[:20]}...' has more than {MAX_DIGITS} characters")
    value = float(text)
    if not math.isfinite(value):
        fail(f"the number {text} lies beyond the float range (about 1.8e308)")
    if value == 0 and any(c in "123456789" for c in text.lower().split("e")[0]):
        fail(f"the number {text} lies below the float range (about 5e-324): write 0 or a larger number")
    return sp.Rational(text)


def _finite(node: sp.Expr, fail) -> sp.Expr:
    """An exact number built from literals (1e300*1e300) refused beyond the float range, so that no
    exact integer grows without bound; other nodes pass unchanged."""
    if node.is_Rational:
        if abs(node.p) > _FLOAT_INT or abs(node.q) > _FLOAT_INT or not math.isfinite(float(node)):
            fail(f"the number {_short(node)} lies beyond the float range (about 1.8e308)")
    return node


_FLOAT_INT = 2 ** 1100      # numerators and denominators beyond this are far outside float range


def _short(node) -> str:
    text = str(node)
    return text if len(text) <= 30 else f"{text[:12]}...({len(text)} characters)"


def _number_power(base: sp.Expr, exponent: sp.Expr, fail) -> sp.Expr:
    """base ** exponent of two numbers, checked in floats before sympy evaluates it exactly (9**9**9
    would take sympy hours); large exponents are kept as the float value."""
    try:
        value = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError, TypeError, ValueError):
        value = math.inf
    if isinstance(value, complex) or not math.isfinite(value):
        fail(f"({base})**({exponent}) is not a finite real number")
    if abs(float(exponent)) > MAX_EXACT_POWER:
        return sp.Float(value)
    return base ** exponent


SHAPES = ("constant", "diminishing")     # schedules set by a value (and a decay); else an expression


def make_schedule(spec: str, value: float, power: float, name: str = "schedule",
                  words: tuple = SHAPES) -> Schedule:
    """``constant`` (t_k = value), ``diminishing`` (value/(k+1)^power) or an expression in k (errors
    name the parameter ``name``; a lone word that is not one of ``words`` gets the closest one)."""
    if spec == "constant":
        return constant(value)
    if spec == "diminishing":
        return diminishing(value, power)
    if re.fullmatch(r"[A-Za-z][A-Za-z_-]+", spec) and spec not in _CONSTS:
        raise unknown(f"`{name}`", spec, list(words) + ["an expression in k"], name)
    return Schedule(parse_expression(spec, name), spec)
