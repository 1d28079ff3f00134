"""The Problem contract: a smooth function with known truth, vectorized over a batch of runs.

Every array argument ``X`` has shape ``(runs, dim)``; ``f`` returns ``(runs,)`` and ``grad``
returns ``(runs, dim)``. The metadata (f*, x*, L, PL/KL constants) is what the theory needs.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from convergence.errors import InputError
from convergence.vec import array_namespace


class Problem:
    """Base class of all test problems; subclasses set the metadata and the three formulas."""

    name: str = ""
    citation: str = ""
    min_dim: int = 1
    max_dim: int | None = None
    f_star: float | None = None          # optimal value, None when unknown / unbounded
    x_star: np.ndarray | None = None     # a minimizer (dim,), None when unknown
    L: float = np.inf                    # gradient Lipschitz constant (see smoothness_note)
    smoothness_note: str = "global"      # "global" or where L holds, e.g. "on the box [-2, 2]^d"
    L_estimated: bool = False            # True: L is sampled on the box, not a proven bound
    mu: float | None = None              # PL constant: ||grad f||^2 >= 2 mu (f - f*)
    kl_exponent: float | None = None     # Lojasiewicz exponent theta: |f - f*|^theta <= c ||grad f||
    kl_constant: float | None = None     # its c, for every x unless the docstring says where
    convex: bool = False
    strongly_convex_quadratic: bool = False   # f = 1/2 (x - x*)^T A (x - x*) with A positive definite
    lower_bounded: bool = True
    box: tuple[float, float] = (-1.0, 1.0)   # default box for random starting points
    # grad computes each run's row by itself (elementwise numpy), so a run's steps do not depend on the
    # other runs in its batch; False where it uses matrix products (BLAS blocks rows). f may use them:
    # the numpy runner records f spec by spec in a batch (convergence.runner.iterate's cells)
    batch_invariant: bool = True
    source: str | None = None            # a problem not shipped: its expression, class or data

    def __init__(self, dim: int):
        check_dim(type(self), dim)
        self.dim = dim

    # --- formulas -------------------------------------------------------------------------
    def f(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def grad(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sympy_f(self, xs: list[sp.Symbol]) -> sp.Expr:
        """The same function as a sympy expression, the independent check of ``f`` and ``grad``."""
        raise NotImplementedError

    # --- derived quantities ---------------------------------------------------------------
    @property
    def theory_applies(self) -> bool:
        """True when f is globally L-smooth and bounded below: the standing assumptions of the
        convergence theorems of Khanh et al. (2024)."""
        return self.smoothness_note == "global" and np.isfinite(self.L) and self.lower_bounded

    def dist_to_opt(self, X: np.ndarray) -> np.ndarray | None:
        if self.x_star is None:
            return None
        return array_namespace(X).linalg.norm(X - self.x_star, axis=-1)

    def f_gap(self, X: np.ndarray) -> np.ndarray | None:
        return None if self.f_star is None else self.f(X) - self.f_star

    def x0(self, runs: int, seed: int) -> np.ndarray:
        """Starting points drawn uniformly from ``box``; run r's point depends on (seed, r) only."""
        from convergence.random import uniform
        lo, hi = self.box
        return lo + (hi - lo) * uniform(seed, np.arange(runs), stream=0, k=0, shape=(self.dim,))

    def metadata(self) -> dict:
        return {"name": self.name, "dim": self.dim, "f_star": self.f_star,
                "x_star": None if self.x_star is None else np.asarray(self.x_star).tolist(),
                "L": self.L, "smoothness": self.smoothness_note, "L_estimated": self.L_estimated,
                "mu": self.mu, "kl_exponent": self.kl_exponent, "kl_constant": self.kl_constant,
                "convex": self.convex, "box": list(self.box), "citation": self.citation,
                "source": self.source}


def check_dim(cls, dim) -> None:
    """Reject a dimension the problem does not support with a message naming the valid range."""
    upper = "any" if cls.max_dim is None else cls.max_dim
    if not isinstance(dim, (int, np.integer)) or dim < cls.min_dim or (
            cls.max_dim is not None and dim > cls.max_dim):
        raise InputError(f"problem '{cls.name}' does not support dim={dim}: "
                         f"use --dim between {cls.min_dim} and {upper}")


def one_line(err) -> str:
    """An exception's message on one line (error messages of this package are single lines)."""
    return " ".join(str(err).split())
