"""Schedules: named rules, the safe expression parser, numeric values."""
import math
import re

import numpy as np
import pytest
import sympy as sp

from convergence.errors import InputError
from convergence.schedules import Schedule, k, make_schedule, parse_expression
from convergence.theory.asymptotics import always_at_most


def test_named_schedules():
    assert make_schedule("constant", 0.3, 0.6)(1000) == 0.3
    dim = make_schedule("diminishing", 0.5, 0.6)
    assert dim(0) == 0.5 and dim(9) == pytest.approx(0.5 / 10**0.6)
    assert sp.simplify(dim.expr - 0.5 / (k + 1) ** sp.Rational(3, 5)) == 0


@pytest.mark.parametrize("text,value_at_3", [
    ("0.1/(k+1)**0.6", 0.1 / 4**0.6), ("0.1/(k+1)^0.6", 0.1 / 4**0.6), ("1/(k+2)/log(k+2)", 1 / (5 * math.log(5))),
    ("min(0.5, 2/(k+1))", 0.5), ("sqrt(k+1)/10", 0.2), ("-(-2)*exp(-k)", 2 * math.exp(-3)),
    ("3/(3+floor((k-1)/5))", 1.0), ("2e-1", 0.2), (".5*k", 1.5)])
def test_parser_evaluates_like_python(text, value_at_3):
    assert make_schedule(text, 0, 0)(3) == pytest.approx(value_at_3)


@pytest.mark.parametrize("text", ["__import__('os')", "k.real", "lambda: 1", "1 +", "(k", "k k", "exp(", "x+1"])
def test_parser_rejects_anything_else(text):
    with pytest.raises(InputError, match="schedule '.*' cannot be parsed"):
        parse_expression(text)


@pytest.mark.parametrize("text,bad_k", [("1/(k-5)**2", 5), ("exp(k)", 710), ("log(k-2)", 0), ("(k-3)**0.5", 0),
                                        ("sqrt(4-k)", 5), ("(k-3)**0.6", 0)])   # the last: a complex value
def test_values_name_the_first_k_where_a_schedule_is_undefined(text, bad_k):
    with pytest.raises(InputError, match=rf"--stepsize '{re.escape(text)}' is undefined at k={bad_k}: give"):
        make_schedule(text, 0, 0).values(1000, "--stepsize")


def test_values_are_computed_once_and_read_by_calls():
    s = make_schedule("min(0.1,0.05*(k-2)*(k-5)+0.01)", 0, 0)
    assert [s(i) for i in range(8)] == list(s.values(8))
    with pytest.raises(InputError, match=r"--stepsize must stay positive at every k; .* is -0.09 at k=3"):
        s.check("--stepsize", 8, lambda v: v > 0, "stay positive")


def test_always_at_most_refuses_an_undefined_schedule():
    with pytest.raises(InputError, match="is undefined at k=5"):
        always_at_most(Schedule(parse_expression("1/(k-5)**2")), 1.0, "1/L")


def test_lambda_schedule_of_unified_must_lie_in_0_1():
    from convergence.methods import make_method
    with pytest.raises(InputError, match=r"lam must lie in \[0, 1\] at every k; '5\*k\+2' is 2 at k=0"):
        make_method("unified", lam="5*k+2")
    with pytest.raises(InputError, match="lam '1/k' is undefined at k=0"):
        make_method("unified", lam="1/k")


@pytest.mark.parametrize("text", ["(" * 900 + "k" + ")" * 900, "-" * 1500 + "k", "k**" * 600 + "k"])
def test_parser_refuses_deep_nesting_in_one_error(text):
    with pytest.raises(InputError, match="nested more than 100 levels deep"):
        parse_expression(text)
    assert parse_expression("(" * 50 + "k" + ")" * 50) == k


@pytest.mark.parametrize("text,message", [
    ("9**9**9", "is not a finite real number"), ("1e999999999", "beyond the float range"),
    ("\u0663/(k+1)", "cannot be parsed at"), ("\uff10.1", "cannot be parsed at"),
    ("1" * 5000, "is 5000 characters long"), ("1" * 100 + "/(k+1)", "more than 60 characters"),
    ("(-1)**0.5", "is not a finite real number"), ("1e-4300", "below the float range")])
def test_parser_refuses_in_bounded_time_what_float64_cannot_hold(text, message):
    """Towers, huge literals, non-ASCII digits and absurd lengths are refused before sympy sees them
    (sympy would compute 9**387420489 exactly, or parse Arabic-Indic digits)."""
    import time
    start = time.perf_counter()
    with pytest.raises(InputError, match=re.escape(message)):
        parse_expression(text, "stepsize")
    assert time.perf_counter() - start < 1.0


def test_number_literals_are_exact_rationals():
    """1.0000000000001 stays above 1 (a float exponent would be rounded to 1 by sympy's limits)."""
    assert parse_expression("k**1.0000000000001").exp == sp.Rational(10000000000001, 10000000000000)
    assert parse_expression("0.1") == sp.Rational(1, 10)


def test_equal_schedules_share_their_values_computed_once():
    """A sweep builds the same schedules in every cell's spec: the second of two equal expressions
    reads the first one's values instead of computing them again, and none can write into them. An
    expression that differs under the same label gets its own values."""
    first = Schedule(parse_expression("0.37/(k+1)**0.55"), "mine")
    values = first.values(500)
    again = Schedule(parse_expression("0.37/(k+1)**0.55"), "again")
    again._f = lambda step: pytest.fail("the values of an equal schedule were computed again")
    assert np.array_equal(again.values(500), values) and again.values(300).base is values.base
    with pytest.raises(ValueError, match="read-only"):
        values[0] = 1.0
    other = Schedule(parse_expression("0.37/(k+1)**0.56"), "mine")
    assert other.values(500)[1] == 0.37 / 2**0.56 != values[1]
