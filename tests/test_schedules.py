"""Schedules: named rules, the safe expression parser, numeric values."""
import math

import pytest
import sympy as sp

from convergence.errors import InputError
from convergence.schedules import k, make_schedule, parse_expression


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
    with pytest.raises(InputError, match="cannot parse schedule"):
        parse_expression(text)
