"""Test problems with known truth, by name: ``make_problem("quadratic", dim=2)``; and the user's own:
a formula (``"expr:..."``), a Problem class (``"file.py:Class"``), or data for a finite sum."""
from __future__ import annotations

from convergence.errors import InputError, unknown
from problems.base import Problem
from problems.data import load_data
from problems.expression import ExpressionProblem
from problems.finite_sum import FiniteSum, LeastSquares, Logistic, Ridge, RobustRegression
from problems.kl import Quartic, Sextic, SinPLSquared
from problems.toy import Quadratic, Rosenbrock, Saddle, SinPL, StyblinskiTang
from problems.user import build, check_options, check_problem, load_class

PROBLEMS: dict[str, type[Problem]] = {cls.name: cls for cls in (
    Quadratic, SinPL, Rosenbrock, RobustRegression, Saddle, StyblinskiTang,
    LeastSquares, Ridge, Logistic, Quartic, Sextic, SinPLSquared)}
DATA_PROBLEMS = [name for name, cls in PROBLEMS.items() if issubclass(cls, FiniteSum)]


def make_problem(name: str, dim: int | None = None, **options) -> Problem:
    """Build a problem; bad input raises InputError (one line; ``param`` names the option at fault).

    * a registered name (``PROBLEMS``), with its constructor's options; dim=None takes the
      problem's default dimension. The finite sums (``DATA_PROBLEMS``) also run on the user's data:
      ``data="file.npz" | "file.csv" | "file.svm" | "sklearn:NAME"``, or arrays ``A=..., b=...``
      (dim then comes from the data; ``reg`` where the problem has one);
    * ``"expr:<formula in x1..xd>"`` with options ``box=(lo, hi)``, ``f_star``, ``x_star``;
    * ``"path/to/file.py:Class"`` or ``"module:Class"``: the user's Problem subclass, built as
      Class(dim, **options) (Class(**options) without dim).

    Expressions and classes are checked on load (``problems.user.check_problem``).
    """
    if name.startswith("expr:"):
        check_options(ExpressionProblem, f"problem '{name}'", options, taken=("text", "dim"))
        problem = ExpressionProblem(name[len("expr:"):], dim, **options)
        return check_problem(problem, f"problem '{name}'", truth_as_options=True)
    if ":" in name:
        problem = build(load_class(name), f"problem '{name}'", dim, options)
        problem.source = name
        return check_problem(problem, f"problem '{name}'")
    if name not in PROBLEMS:
        raise unknown("problem", name, PROBLEMS)
    cls = PROBLEMS[name]
    if {"data", "A", "b"} & set(options):
        return _on_data(cls, dim, options)
    check_options(cls, f"problem '{name}'", options)
    return cls(**options) if dim is None else cls(dim, **options)


def _on_data(cls, dim, options) -> FiniteSum:
    """The finite sum ``cls`` on the data of ``options`` (a data spec, or arrays A and b)."""
    options = dict(options)
    if cls.name not in DATA_PROBLEMS:
        raise InputError(f"data applies to the finite sums ({', '.join(DATA_PROBLEMS)}), not to "
                         f"'{cls.name}'", "data")
    if "data" in options:
        if {"A", "b"} & set(options):
            raise InputError("data and arrays A, b were both given: give one of them", "data")
        A, b, source = load_data(str(options.pop("data")))
    elif {"A", "b"} <= set(options):
        A, b, source = options.pop("A"), options.pop("b"), "data (A, b)"
    else:
        raise InputError("data arrays need both A (n x d) and b (n,)", "data")
    check_options(cls.from_data, f"problem '{cls.name}' on data", options, taken=("A", "b", "source"))
    problem = cls.from_data(A, b, source=source, **options)
    if dim is not None and dim != problem.dim:
        raise InputError(f"dim {dim} does not match the {problem.dim} features of {source}: leave dim out",
                         "dim")
    return problem


__all__ = ["PROBLEMS", "DATA_PROBLEMS", "Problem", "FiniteSum", "ExpressionProblem", "make_problem"] + [
    c.__name__ for c in PROBLEMS.values()]
