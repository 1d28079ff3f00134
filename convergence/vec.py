"""The few vector operations the method rules use, for numpy batches, jax batches and torch parameter lists.

A numpy (or jax) batch has shape (runs, dim) and every norm is per run, kept as (runs, 1) so that it
broadcasts. Any other vector type (the deep-net ``ParamVec``) supplies ``norm()`` itself and
supports +, -, * and / by numbers and by its own norms. Jax arrays (the compiled backend,
convergence.jax_runner) take the jax.numpy branch; jax is never imported here.
"""
from __future__ import annotations

import sys

import numpy as np


def array_namespace(*xs):
    """jax.numpy when one of ``xs`` is a jax array (or a tracer of one), else numpy: the module the
    formulas of problems and samplers call. Numpy users pay no jax import."""
    jax = sys.modules.get("jax")
    if jax is not None:
        for x in xs:
            if isinstance(x, jax.Array):
                return _jnp()
    return np


def _jnp():
    import jax.numpy
    return jax.numpy


def _is_jax(v) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(v, jax.Array)


try:        # np.einsum without its Python wrapper (argument dispatch: about 0.8 us of a 1.8 us call)
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:         # a numpy that moved it
    _einsum = np.einsum


def row_dots(v: np.ndarray) -> np.ndarray:
    """<v_r, v_r> for each row r of a numpy batch, by einsum's own loop: a row's bits depend on that
    row only (of a C-ordered batch, as the runner's are), neither on the batch nor on BLAS's threads
    (np.vecdot calls BLAS's ddot, which rounds differently and splits rows of over 10^4 terms across
    its threads)."""
    return _einsum("rd,rd->r", v, v)


def norm(v):
    """Euclidean norm of each run's vector, shaped to broadcast against ``v``."""
    if isinstance(v, np.ndarray):
        return np.sqrt(row_dots(v))[:, None]
    if _is_jax(v):
        xp = _jnp()
        return xp.sqrt(xp.einsum("rd,rd->r", v, v))[:, None]
    return v.norm()


def normalize(v, by=None):
    """v / ||by|| (by defaults to v), with 0 where ||by|| = 0 and NaN where it is NaN.

    At a stationary point the normalized ascent direction is undefined; taking d = 0 there makes
    every normalized SAM variant stay at the stationary point, as the paper's x_{k+1} = x_k does.
    A NaN gradient gives a NaN direction, so that its run is marked diverged rather than steered by 0.
    """
    n = norm(v if by is None else by)
    if isinstance(v, np.ndarray):
        if np.logical_and.reduce(n, axis=None):         # no zero norm (NaN counts as nonzero): the
            return v / n                                # common case, without where's two passes
        return v / np.where(n == 0, np.inf, n)        # finite v / inf = 0; NaN stays NaN
    if _is_jax(v):
        xp = _jnp()
        return v / xp.where(n == 0, xp.inf, n)
    return v.safe_div(n)


def tree_map(fn, tree):
    """``fn`` applied to every leaf of a rule's state: nested tuples, lists and dicts of leaves
    (arrays, parameter vectors, numbers, None). The one walker over rule state (retiring runs,
    moving state to a device, saving and loading it)."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, s) for s in tree)
    if isinstance(tree, dict):
        return {key: tree_map(fn, s) for key, s in tree.items()}
    return fn(tree)
