"""Counter-based random numbers: every draw is a pure function of (seed, run, stream, k, index).

A run's random numbers therefore do not depend on how many runs share its batch, on the order in
which runs are computed, on which other seeds share the batch (a batched sweep), or on whether a
sweep was interrupted and resumed. The one hash is SplitMix64's finalizer, on numpy uint64 arrays.
"""
from __future__ import annotations

import numpy as np

from convergence.vec import array_namespace

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (Steele, Lea & Flood 2014): a bijective avalanche on uint64."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stream_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``parts`` (a SplitMix64 chain), for
    generators that take one integer seed (torch)."""
    z = np.zeros(1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            z = mix(z + np.uint64(int(p) & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN)
    return int(z[0] >> np.uint64(1))


def _bits(seed, runs, stream: int, k, shape: tuple):
    """uint64 bits shaped (len(runs),) + shape; ``seed`` is one seed or one per run. ``k`` (or the
    seeds, the runs) may be jax values: the same hash then runs in jax.numpy (compiled backend)."""
    xp = array_namespace(k, seed, runs)
    runs = xp.asarray(runs, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = mix(xp.asarray(seed, dtype=np.uint64).reshape(-1) + _GOLDEN)     # (1,) or (runs,)
        key = mix(key + np.uint64(stream) * _GOLDEN + (np.uint64(k) if xp is np else xp.asarray(k, dtype=np.uint64)))
        key = mix(key ^ runs)                                                   # (runs,)
        n = int(np.prod(shape, dtype=np.int64))
        idx = np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN                    # (n,)
        return mix(key[:, None] + idx[None, :]).reshape((len(key),) + tuple(shape))


def uniform(seed, runs, stream: int, k, shape: tuple = ()):
    """Uniform numbers in the open interval (0, 1), shaped ``(len(runs),) + shape``."""
    bits = _bits(seed, runs, stream, k, shape) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0 ** -53


def normal(seed, runs, stream: int, k, shape: tuple = ()):
    """Standard normal numbers (Box-Muller on two independent uniform streams)."""
    u1 = uniform(seed, runs, 2 * stream + 1, k, shape)
    u2 = uniform(seed, runs, 2 * stream + 2, k, shape)
    xp = array_namespace(u1)
    return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)


class Streams:
    """The random numbers of one batch of runs at step k, handed to methods and samplers.

    ``seed`` is one seed, or one per run (runs of several seeds batched together); ``runs`` are the
    runs' indices within their seed. ``at(k)`` and ``take(rows)`` give the streams of another step
    and of a subset of the runs.
    """

    def __init__(self, seed, runs, k: int = 0):
        self.seed, self.runs, self.k = seed, runs if hasattr(runs, "dtype") else np.asarray(runs), k

    def at(self, k: int) -> "Streams":
        return Streams(self.seed, self.runs, k)

    def take(self, rows) -> "Streams":
        seed = self.seed[rows] if np.ndim(self.seed) else self.seed
        return Streams(seed, self.runs[rows], self.k)

    def uniform(self, stream: int, shape: tuple = ()) -> np.ndarray:
        return uniform(self.seed, self.runs, stream, self.k, shape)

    def normal_like(self, x: np.ndarray, stream: int = 7) -> np.ndarray:
        return normal(self.seed, self.runs, stream, self.k, x.shape[1:]).astype(x.dtype, copy=False)
