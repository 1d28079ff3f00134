"""Derived bounds that every iterate of a deterministic run must satisfy.

Derived descent lemma. For x+ = x - t g with ||g - grad f(x)|| <= eps, f L-smooth and t <= 1/L,
    f(x+) <= f(x) - (t/2) ||grad f(x)||^2 + (t/2) eps^2.
Proof: f(x+) <= f - t<grad f, g> + (L t^2/2)||g||^2; write g = grad f + e and use
-(t - L t^2)<grad f, e> <= (t - L t^2)(||grad f||^2 + ||e||^2)/2 with t - L t^2 >= 0.
With a rule's error model eps_k <= L rho_k (a ||grad f(x_k)|| + b) and c = 2 if a, b > 0 else 1:
    min_{j<k} ||grad f(x_j)||^2 <= (2 (f(x_0) - f*) + c L^2 b^2 sum_{j<k} t_j rho_j^2)
                                   / sum_{j<k} t_j (1 - c L^2 a^2 rho_j^2)                 (MIN-GRAD)
and, if f is mu-PL,
    f(x_{k+1}) - f* <= (1 - t_k mu (1 - c L^2 a^2 rho_k^2)) (f(x_k) - f*) + (t_k/2) c L^2 b^2 rho_k^2.  (PL)
"""
from __future__ import annotations

import hashlib
from itertools import accumulate

import numpy as np

_FORCED: dict = {}      # digest of (contraction, forcing) -> the PL bound's forced part Q: the cells
MAX_FORCED = 2**22      # of a sweep that differ only in seed share it; at most this many values (32 MiB)
                        # are kept, the oldest dropped first


def _terms(ctx, K):
    a, b = ctx.error_model
    c = 2.0 if a > 0 and b > 0 else 1.0
    return a, b, c, ctx.t.values(K), ctx.rho.values(K)


def min_grad_bound(ctx, f_gap0: np.ndarray, K: int):
    """MIN-GRAD: the bound on min_{j<k} ||grad f(x_j)||, as a function of k (ints, 1 <= k <= K)
    and the runs (an index of f_gap0, default all) giving the bounds shaped (len(k), len(runs))."""
    a, b, c, t, r = _terms(ctx, K)
    num = c * ctx.L**2 * b**2 * np.cumsum(t * r**2)
    den = np.cumsum(t * (1 - c * ctx.L**2 * a**2 * r**2))
    gap0 = np.asarray(f_gap0)
    return lambda k, runs=slice(None): np.sqrt((2 * gap0[None, runs] + num[k - 1, None]) / den[k - 1, None])


def pl_bound(ctx, f_gap0: np.ndarray, K: int):
    """PL: the bound on f(x_k) - f*, as a function of k (ints, 0 <= k <= K) and the runs, as
    min_grad_bound. The recursion is linear in f(x_0) - f*, so bound_k = P_k (f(x_0) - f*)
    + Q_k with P the product of contractions and Q the forced part."""
    a, b, c, t, r = _terms(ctx, K)
    contraction = 1 - t * ctx.mu * (1 - c * ctx.L**2 * a**2 * r**2)
    forcing = 0.5 * t * c * ctx.L**2 * b**2 * r**2
    P = np.concatenate([[1.0], np.cumprod(contraction)])
    Q = _forced_part(contraction, forcing)
    gap0 = np.asarray(f_gap0)
    return lambda k, runs=slice(None): P[k, None] * gap0[None, runs] + Q[k, None]


def _forced_part(contraction: np.ndarray, forcing: np.ndarray) -> np.ndarray:
    """Q_0 = 0, Q_{j+1} = contraction_j Q_j + forcing_j: a scalar recursion, in Python floats (as exact
    as numpy's, 1.5 to 3 times as fast as indexing arrays), computed once for equal inputs."""
    key = hashlib.sha1(contraction.tobytes() + forcing.tobytes()).digest()
    Q = _FORCED.get(key)
    if Q is None:
        steps = zip(contraction.tolist(), forcing.tolist())
        Q = np.fromiter(accumulate(steps, lambda q, cf: cf[0] * q + cf[1], initial=0.0), float,
                        count=len(forcing) + 1)
        Q.flags.writeable = False
        if len(Q) <= MAX_FORCED:
            while sum(map(len, _FORCED.values())) + len(Q) > MAX_FORCED:
                del _FORCED[next(iter(_FORCED))]
            _FORCED[key] = Q
    return Q


PREDICTS = ("bound_min_grad", "bound_pl")     # the predictions with a derived bound


def bound_at(predicts: str, ctx, trace):
    """The derived bound of a theorem's prediction (one of PREDICTS) as a function of recorded
    iterates ``its`` (ints: grid points or last iterates) and ``runs`` (an index, default all) giving
    their bounds, shaped (len(its), len(runs)), evaluated there only; None where the grid does not
    record x_0 (the bounds start from f(x_0) - f*)."""
    if trace.grid[0] != 0:
        return None
    K = int(trace.final_iter.max())
    gap0 = trace.data["f_gap"][0]
    if predicts == "bound_min_grad":
        # min over j < k bounds the iterate k-1 onwards: the running min up to iterate it is compared
        # with the bound at it + 1 (the bound counts the iterates seen)
        bound = min_grad_bound(ctx, gap0, K)
        return lambda its, runs=slice(None): bound(np.minimum(its + 1, K), runs)
    if predicts == "bound_pl":
        bound = pl_bound(ctx, gap0, K)
        return lambda its, runs=slice(None): bound(np.minimum(its, K), runs)
    return None
