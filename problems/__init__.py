"""Test problems with known truth, by name: ``make_problem("quadratic", dim=2)``."""
from __future__ import annotations

from convergence.errors import unknown
from problems.base import Problem
from problems.finite_sum import FiniteSum, LeastSquares, Logistic, Ridge, RobustRegression
from problems.toy import Quadratic, Rosenbrock, Saddle, SinPL, StyblinskiTang

PROBLEMS: dict[str, type[Problem]] = {cls.name: cls for cls in (
    Quadratic, SinPL, Rosenbrock, RobustRegression, Saddle, StyblinskiTang,
    LeastSquares, Ridge, Logistic)}



def make_problem(name: str, dim: int | None = None, **options) -> Problem:
    """Build a registered problem; dim=None takes the problem's default dimension."""
    if name not in PROBLEMS:
        raise unknown("problem", name, PROBLEMS)
    cls = PROBLEMS[name]
    return cls(**options) if dim is None else cls(dim, **options)


__all__ = ["PROBLEMS", "Problem", "FiniteSum", "make_problem"] + [
    c.__name__ for c in PROBLEMS.values()]
