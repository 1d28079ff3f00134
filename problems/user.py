"""A user's Problem class by reference (``path/to/file.py:ClassName`` or ``module:ClassName``), and
the contract check every problem from outside the toolkit passes on load (classes, expressions).

The check evaluates f and grad at a few points of the box (shapes, finite values), compares grad
with central differences of f along random directions, and tests the stated truth: L > 0, f* no
larger than f at those points, x* stationary with f(x*) = f*. Each failure is one InputError line.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np

from convergence.errors import InputError
from problems.base import Problem, one_line

POINTS, DIRECTIONS = 4, 3      # gradient check: directional derivatives at points of the box
FD_RTOL = 1e-5                 # allowed |grad.v - difference| relative to 1 + ||grad||


def load_class(spec: str) -> type[Problem]:
    """The Problem subclass named by ``spec``; InputError (param "problem") when it is not one."""
    where, _, name = spec.rpartition(":")
    label = f"problem '{spec}'"
    if not where or not name.isidentifier():
        raise InputError(f"{label} must read path/to/file.py:ClassName or module:ClassName", "problem")
    try:
        if where.endswith(".py") or "/" in where:
            path = Path(where)
            if not path.is_file():
                raise InputError(f"{label}: there is no file '{where}'", "problem")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(f"samconv_user_{path.stem}_{digest}", path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module          # dataclasses and pickle look classes up there
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except InputError:
        raise
    except Exception as err:                               # the user's code: any error it raises
        raise InputError(f"{label}: importing '{where}' failed: {type(err).__name__}: {one_line(err)}",
                         "problem")
    cls = getattr(module, name, None)
    if cls is None:
        raise InputError(f"{label}: '{where}' defines no '{name}'", "problem")
    if not (isinstance(cls, type) and issubclass(cls, Problem)):
        raise InputError(f"{label}: {name} is not a subclass of problems.Problem: write "
                         f"'class {name}(Problem)' with f and grad (README, 'Your own problem')", "problem")
    return cls


def build(cls, label: str, dim: int | None, options: dict):
    """cls(dim, **options) (cls(**options) without dim), named after the class where it has no name."""
    check_options(cls, label, options)
    try:
        problem = cls(**options) if dim is None else cls(dim, **options)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{label}: {cls.__name__}({'' if dim is None else dim}) failed: "
                         f"{type(err).__name__}: {one_line(err)}", "problem")
    problem.name = problem.name or cls.__name__
    return problem


def check_options(func, label: str, options: dict, taken=("dim",)) -> None:
    """Refuse options that ``func`` (a class or function) does not take, naming those it does;
    ``taken`` are its parameters that make_problem fills itself."""
    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n not in taken and p.kind is not p.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            raise InputError(f"{label} takes no option '{key}'; its options: {', '.join(valid) or 'none'}",
                             "problem")


def check_problem(problem: Problem, label: str, truth_as_options: bool = False) -> Problem:
    """Reject ``problem`` with one line when it breaks the contract (module docstring).

    ``truth_as_options``: f_star and x_star were options (an expression's), so their errors name
    those options (param "f_star", "x_star"); otherwise they name the problem (param "problem").
    """
    def fail(msg, fix):
        raise InputError(f"{label}: {msg}: {fix}", "problem")

    def wrong_truth(what, msg, fix):
        if truth_as_options:
            raise InputError(f"{what} {msg} for {label}: {fix}", what)
        fail(f"its {what} {msg}", fix)

    dim = getattr(problem, "dim", None)
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        fail(f"dim is {dim!r}", "call super().__init__(dim) in __init__")
    lo, hi = problem.box
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        fail(f"box is {problem.box!r}", "give box = (lo, hi), two finite numbers with lo < hi")
    X = problem.x0(POINTS, seed=0)
    fx, G = _evaluate(problem, X, fail)
    _check_gradient(problem, X, fx, G, fail)
    if not (isinstance(problem.L, (int, float, np.number)) and problem.L > 0):
        fail(f"L is {problem.L!r}", "give the gradient's Lipschitz constant (np.inf when unknown)")
    scale = 1.0 + np.abs(fx).max()
    if problem.x_star is not None:
        x_star = np.asarray(problem.x_star, dtype=float)
        if x_star.shape != (dim,) or not np.all(np.isfinite(x_star)):
            wrong_truth("x_star", f"has shape {x_star.shape}", f"give {dim} finite numbers")
        (f_at,), g_at = _evaluate(problem, x_star[None], fail)
        g_norm = np.linalg.norm(g_at)
        if g_norm > 1e-6 * (1.0 + np.linalg.norm(G, axis=1).max()):
            wrong_truth("x_star", f"{_short(x_star)} is not stationary: ||grad f|| = {g_norm:.3g} there",
                        "give a minimizer, or leave x_star out")
        i = int(np.argmin(fx))
        if fx[i] < f_at - 1e-9 * scale:
            wrong_truth("x_star", f"{_short(x_star)} is not a minimizer: f = {f_at:.6g} there, but "
                        f"{fx[i]:.6g} at x = {_short(X[i])}", "give a global minimizer, or leave x_star out")
        if problem.f_star is not None and abs(f_at - problem.f_star) > 1e-9 * scale:
            wrong_truth("f_star", f"= {problem.f_star:g} differs from f(x_star) = {f_at:.12g}",
                        "give both of the same minimizer")
    if problem.f_star is not None:
        f_star = problem.f_star
        if not np.isfinite(f_star):
            wrong_truth("f_star", f"is {f_star!r}", "give a finite number or None")
        i = int(np.argmin(fx))
        if fx[i] < f_star - 1e-9 * scale:
            wrong_truth("f_star", f"= {f_star:g} is above f(x) = {fx[i]:.6g} at x = {_short(X[i])}",
                        "f_star must be the minimum value of f")
    return problem


def _evaluate(problem, X, fail):
    """f(X), grad(X), with their shapes and finiteness checked."""
    runs, dim = X.shape
    try:
        fx, G = np.asarray(problem.f(X.copy()), float), np.asarray(problem.grad(X.copy()), float)
    except Exception as err:                              # the user's code: any error it raises
        fail(f"evaluating f or grad at x = {_short(X[0])} raised {type(err).__name__}: {one_line(err)}",
             "f and grad must evaluate there, for X of shape (runs, dim)")
    if fx.shape != (runs,) or G.shape != (runs, dim):
        fail(f"f returned shape {fx.shape} and grad {G.shape} for X of shape {X.shape}",
             f"f must return ({runs},) and grad ({runs}, {dim}): one row per point")
    bad = np.flatnonzero(~(np.isfinite(fx) & np.all(np.isfinite(G), axis=1)))
    if len(bad):
        fail(f"f or grad is not finite at x = {_short(X[bad[0]])}", "choose a box where f is defined")
    return fx, G


def _check_gradient(problem, X, fx, G, fail) -> None:
    """grad . v against (f(x + h v) - f(x - h v)) / 2h for random unit directions v."""
    V = np.random.default_rng(0).standard_normal((DIRECTIONS,) + X.shape)
    V /= np.linalg.norm(V, axis=2, keepdims=True)
    h = 6e-6 * (1.0 + np.abs(X).max(axis=1))[:, None]          # about eps^(1/3): least total error
    for v in V:
        fd = (problem.f(X + h * v) - problem.f(X - h * v)) / (2 * h[:, 0])
        exact = np.sum(G * v, axis=1)
        tol = FD_RTOL * (1.0 + np.linalg.norm(G, axis=1)) + 1e3 * np.finfo(float).eps * (1.0 + np.abs(fx)) / h[:, 0]
        bad = np.flatnonzero(~(np.abs(fd - exact) <= tol))
        if len(bad):
            i = bad[0]
            fail(f"grad disagrees with central differences of f at x = {_short(X[i])}: the derivative "
                 f"along a direction is {exact[i]:.6g} by grad, {fd[i]:.6g} by differences",
                 "correct grad (or f)")


def _short(x) -> str:
    return np.array2string(np.asarray(x), precision=4, separator=", ", threshold=6, edgeitems=3)
