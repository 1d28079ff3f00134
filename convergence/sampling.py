"""Which sample S_k a step sees, and the gradient oracle over it (both gradients of a step share S_k).

Samplers of a finite sum f = (1/n) sum_i f_i draw, per run and step, indices and unbiased weights:
full batch, tau-nice (tau distinct indices, uniformly), importance (p_i = L_i / sum_j L_j, weight
1/(n p_i)) and single (uniform with replacement). Draws come from the counter-based streams, so a
run's samples depend on (seed, run, k) only.
"""
from __future__ import annotations

import numpy as np

from convergence.errors import InputError, unknown
from convergence.vec import array_namespace

SAMPLE_STREAM = 3


def _known(L):
    """A smoothness constant, or None where there is none (L = inf: no bound on ||g - grad f||)."""
    return L if L is not None and np.isfinite(L) else None


class FullOracle:
    """The deterministic oracle: the sample S is the whole function."""

    def __init__(self, problem):
        self.problem, self.L = problem, _known(problem.L)
        self.grad = self.full_grad = problem.grad

    def split(self, m):
        n = getattr(self.problem, "n", None)
        if n is None:
            raise InputError(f"msam needs a finite-sum problem; '{self.problem.name}' is not one "
                             f"(use least_squares, ridge, logistic or robust_regression)")
        return SampleOracle(self.problem, np.arange(n)[None, :], None, exact=True).split(m)


class SampleOracle:
    """Gradients of f_S = (1/|S|) sum_{i in S} w_i f_i for per-run index rows ``idx`` (runs, |S|).

    ``L`` (the smoothness of f_S, bounded by the mean of w_i L_i) is given only when ``exact``: the
    sample is deterministic, so ||g - grad f|| is bounded by it (m-SAM chunks of the full batch).
    """

    def __init__(self, problem, idx, weights, exact=False):
        self.problem, self.idx, self.weights, self.exact = problem, idx, weights, exact
        w = 1.0 if weights is None else weights
        self.L = _known(float(np.max(np.mean(w * problem.L_i[idx], axis=1)))) if exact else None

    def grad(self, y):
        idx = array_namespace(y, self.idx).broadcast_to(self.idx, (len(y), self.idx.shape[1]))
        return self.problem.sample_grad(y, idx, self.weights)

    def full_grad(self, y):
        return self.problem.grad(y)

    def split(self, m):
        size = self.idx.shape[1]
        if size % m:
            raise InputError(f"--m {m} must divide the sample size {size}: choose --batch a multiple of m")
        return [SampleOracle(self.problem, self.idx[:, j:j + m],
                             None if self.weights is None else self.weights[:, j:j + m], self.exact)
                for j in range(0, size, m)]


class FullBatch:
    """Every step sees the whole function (deterministic methods)."""

    name = "full"

    def __init__(self, batch=None):
        self._oracle = None

    def oracle(self, problem, streams):
        """The (stateless) full oracle of ``problem``, built once rather than at every step."""
        if self._oracle is None or self._oracle.problem is not problem:
            self._oracle = FullOracle(problem)
        return self._oracle

    def constants(self, problem):
        return {"A": 0.0, "B": 1.0, "C": 0.0}


class _FiniteSumSampler:
    def __init__(self, batch: int = 1):
        if not (isinstance(batch, (int, np.integer)) and batch >= 1):
            raise InputError(f"--batch must be a positive integer, got {batch}")
        self.batch = int(batch)

    def check(self, problem):
        if not hasattr(problem, "n"):
            raise InputError(f"--sampling {self.name} needs a finite-sum problem; '{problem.name}' "
                             f"is not one (use least_squares, ridge, logistic or robust_regression)")
        if self.batch > problem.n:
            raise InputError(f"--batch {self.batch} exceeds the n = {problem.n} samples of {problem.name}")

    def oracle(self, problem, streams):
        idx, weights = self.draw(problem, streams)
        return SampleOracle(problem, idx, weights)

    def constants(self, problem):
        """Expected-residual constants: E||grad f_S(x)||^2 <= 2A (f(x) - f_inf) + B ||grad f(x)||^2 + C
        (Khaled & Richtarik 2020; used by Oikonomou & Loizou 2025), with C = 2 A Delta_inf where
        Delta_inf = f_inf - (1/n) sum_i inf f_i, the infima from the problem's ``sample_infima()``
        (None where they have no closed form)."""
        A, B = self.residual(problem)
        inf_fi = problem.sample_infima() if hasattr(problem, "sample_infima") else None
        C = None if inf_fi is None or problem.f_star is None else 2 * A * (problem.f_star - inf_fi.mean())
        return {"A": A, "B": B, "C": C}


class TauNice(_FiniteSumSampler):
    """tau-nice sampling: tau distinct indices, every subset equally likely; weights 1."""

    name = "tau-nice"

    def draw(self, problem, streams):
        keys = streams.uniform(SAMPLE_STREAM, (problem.n,))
        xp = array_namespace(keys)
        order = np.argsort(keys, axis=1, kind="stable") if xp is np else xp.argsort(keys, axis=1, stable=True)
        return order[:, :self.batch], None

    def residual(self, problem):
        n, tau = problem.n, self.batch
        if n == 1:
            return 0.0, 1.0
        return (n - tau) / (tau * (n - 1)) * problem.L_max, n * (tau - 1) / (tau * (n - 1))


class Single(_FiniteSumSampler):
    """Uniform sampling with replacement (batch draws); single element when batch = 1."""

    name = "single"

    def draw(self, problem, streams):
        u = streams.uniform(SAMPLE_STREAM, (self.batch,))
        return array_namespace(u).minimum((u * problem.n).astype(np.int64), problem.n - 1), None

    def residual(self, problem):
        if self.batch != 1:
            raise InputError("expected-residual constants are implemented for single sampling with --batch 1")
        return problem.L_max, 0.0


class Importance(_FiniteSumSampler):
    """Importance sampling p_i = L_i / sum_j L_j with replacement, unbiased weight 1/(n p_i)."""

    name = "importance"

    def probabilities(self, problem) -> np.ndarray:
        """p_i = L_i / sum_j L_j (a wrong implementation overrides this alone)."""
        return problem.L_i / problem.L_i.sum()

    def draw(self, problem, streams):
        p = self.probabilities(problem)
        u = streams.uniform(SAMPLE_STREAM, (self.batch,))
        xp = array_namespace(u)
        idx = xp.minimum(xp.searchsorted(np.cumsum(p), u), problem.n - 1)
        return idx, 1.0 / (problem.n * xp.asarray(p)[idx])

    def residual(self, problem):
        if self.batch != 1:
            raise InputError("expected-residual constants are implemented for importance sampling with --batch 1")
        return float(np.mean(problem.L_i)), 0.0


SAMPLERS = {cls.name: cls for cls in (FullBatch, TauNice, Importance, Single)}


def make_sampler(name: str, batch: int | None = None, problem=None):
    """Build a sampler by name; checks it against the problem when one is given."""
    if name not in SAMPLERS:
        raise unknown("sampling", name, SAMPLERS)
    if name == "full":
        if batch is not None:
            raise InputError("--batch applies to stochastic sampling: add --sampling tau-nice, importance or single")
        return FullBatch()
    sampler = SAMPLERS[name](1 if batch is None else batch)
    if problem is not None:
        sampler.check(problem)
    return sampler

