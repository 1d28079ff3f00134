"""SDE models of the SAM family (Compagnoni et al., ICML 2023, arXiv 2301.08203) and their
Euler-Maruyama simulation, batched over paths: every state is an array shaped (paths, dim).

The discrete method of a rule of convergence.methods on f = (1/B) sum_g f_g, batch g drawn uniformly
each step, is

    x_{k+1} = x_k - eta g_k,   g_k = grad f_g(x_k + rho d_k)

with d_k the rule's ascent direction from batch g's gradient (SGD: d = 0, USAM: grad f_g, SAM:
grad f_g / ||grad f_g||, DNSAM: grad f_g / ||grad f||). ``discrete`` runs it with the engine
(convergence.runner.run) through an adapter (``ObjectiveProblem``, ``BatchSampler``: the oracle of
step k is batch g = ``draw_batches(seed, path, k, B)``).

The SDE model (``SDE``) replaces grad f_g(x + rho d) by its first-order expansion in rho,

    s_g(x) = grad f_g(x) + rho H_g(x) d_g(x),

obtained by running the rule's own ``gradient`` on an oracle whose batch gradients are linearized at
x (``LinearizedOracle``): no formula of a method is written here. The model is the weak order-1
stochastic modified equation of Li, Tai & E (2017) for that step,

    dX = -E_g[s_g(X)] dt + sqrt(eta) Cov_g[s_g(X)]^{1/2} dW.

For USAM, SAM and DNSAM this is the mini-batch SDE of Compagnoni et al. (their Sec. 3; theorem
numbers could not be read offline): the drift is -grad of the implicitly regularized losses

    USAM : f + (rho/2) E||grad f_g||^2        (E[H_g grad f_g] = (1/2) grad E||grad f_g||^2)
    SAM  : f + rho E||grad f_g||              (H_g grad f_g/||grad f_g|| = grad ||grad f_g||)
    DNSAM: f + rho ||grad f||                 (when H_g = H)

and, where H_g = H, the diffusion is (I + rho H) Sigma (I + rho H) for USAM and
(I + rho H/||grad f||) Sigma (I + rho H/||grad f||) for DNSAM, Sigma the SGD gradient covariance.
The step from the expansion is derived here (first-order Taylor expansion; with the paper's scaling
rho = O(sqrt(eta)) the remainder O(eta rho^2) = O(eta^2) per step); tests/test_sde.py checks the
closed forms above. Expectations are exact sums over the B batches, and the diffusion factor is the
(dim, B) matrix of centred steps / sqrt(B) (its product with its transpose is the covariance), so no
matrix square root is formed.

Batch objectives follow the contract of convergence/objectives.py.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import expm, solve_continuous_lyapunov, solve_discrete_lyapunov

from convergence.errors import InputError
from convergence.methods import Rule
from convergence.random import Streams, normal, uniform
from convergence.runner import iterate as engine
from convergence.sampling import FullBatch

NOISE_STREAM = 41        # Brownian increments of the SDE
SAMPLE_STREAM = 42       # batch draws of the discrete method


def _per_run(rho, P: int, B: int = 1):
    """rho as a number, or (one value per path, repeated for the path's B batches) as a column."""
    r = np.asarray(rho, dtype=float)
    if r.ndim == 0:
        return r
    if r.shape != (P,):
        raise InputError(f"rho must be a number or one value per path ({P}), got shape {r.shape}")
    return np.repeat(r, B)[:, None]


class LinearizedOracle:
    """The oracle of the SDE's expanded step at X (P, dim), every (path p, batch g) pair one run
    (run p B + g): grad(y) = grad f_g(X_p) + H_g(X_p)(y - X_p), full_grad(y) the mean over the path's
    batches (methods.py oracle contract)."""

    L = None

    def __init__(self, obj, X):
        self.obj, self.X = obj, X
        self.G = obj.grads(X)                                          # (P, B, dim)
        self.x = np.repeat(X, self.G.shape[1], axis=0)                 # (P B, dim)

    def grad(self, y):
        delta = y - self.x
        if not delta.any():
            return self.G.reshape(self.x.shape)
        return (self.G + self.obj.hvps(self.X, delta.reshape(self.G.shape))).reshape(self.x.shape)

    def full_grad(self, y):
        P, B, d = self.G.shape
        return np.repeat(self.grad(y).reshape(P, B, d).mean(axis=1), B, axis=0)

    def split(self, m):
        raise InputError("m-sharpness splits the batch: it has no SDE model here")


class SDE:
    """The SDE model of a rule: drift -E_g[s_g], diffusion sqrt(eta) Cov_g[s_g]^{1/2}, s_g the rule's
    step with batch g's gradient linearized at X. Rules whose direction keeps state, draws random
    numbers or splits the batch have no such model (InputError)."""

    def __init__(self, rule: Rule):
        for prop, why in (("stateful", "keeps state between steps"), ("draws_random", "draws random numbers"),
                          ("splits_batch", "splits the batch into chunks")):
            if getattr(rule, prop):
                raise InputError(f"method '{rule.name}' {why}: the SDE models cover ascent directions "
                                 f"that are functions of the step's gradients", "method")
        self.rule, self.name = rule, rule.name

    def steps(self, obj, rho, X, k: int = 0) -> np.ndarray:
        """s_g(X) for every batch g: (P, B, dim)."""
        oracle = LinearizedOracle(obj, X)
        P, B, d = oracle.G.shape
        S, _, _ = self.rule.gradient(k, oracle.x, oracle, None, _per_run(rho, P, B),
                                     Streams(0, np.arange(P * B), k))
        return S.reshape(P, B, d)

    def coefficients(self, obj, rho, X):
        """(drift b (P, dim), factor F (P, B, dim)) of dX = b dt + sqrt(eta) F^T dW_B, F^T F = Cov_g[s_g]."""
        S = self.steps(obj, rho, X)
        mean = S.mean(axis=1)
        return -mean, (S - mean[:, None, :]) / np.sqrt(S.shape[1])


def drift_and_covariance(model, obj, rho, X):
    """The drift and the full diffusion matrix Sigma_method (P, dim, dim) (for checks and tests)."""
    b, F = model.coefficients(obj, rho, X)
    return b, np.einsum("pbi,pbj->pij", F, F)


def _grid(times, steps, dt):
    """Step indices at which each requested time is reached (rounded to the nearest step)."""
    idx = np.rint(np.asarray(times, dtype=float) / dt).astype(int)
    return np.clip(idx, 0, steps)


def _noise(F, eta, h, xi):
    """sqrt(eta h) F^T xi for every path: the Brownian term of one step of length h."""
    return np.sqrt(eta * h) * np.einsum("pb,pbd->pd", xi, F)


def simulate(model, obj, eta: float, rho, X0: np.ndarray, T: float, dt: float | None = None,
             seed: int = 0, runs=None, times=None, observe=None):
    """Euler-Maruyama paths of ``model`` up to time T with step dt (default eta).

        X_{j+1} = X_j + b(X_j) dt + sqrt(eta dt) F(X_j)^T xi_j,   xi_j ~ N(0, I_B)

    xi_j comes from the counter-based stream (seed, run, NOISE_STREAM, j): path r's noise depends on
    (seed, runs[r]) only. Returns (times, values, X_T) where values[i] = observe(X at times[i])
    (observe defaults to obj.loss), shaped (len(times), P, ...).
    """
    dt = eta if dt is None else dt
    steps = int(round(T / dt))
    X = np.array(X0, dtype=float)
    runs = np.arange(len(X)) if runs is None else np.asarray(runs)
    observe = observe or obj.loss
    times = np.linspace(0, T, 21) if times is None else np.asarray(times, dtype=float)
    at = _grid(times, steps, dt)
    out = [None] * len(at)
    for j in range(steps + 1):
        for i in np.flatnonzero(at == j):
            out[i] = observe(X)
        if j == steps:
            break
        b, F = model.coefficients(obj, rho, X)
        X = X + dt * b
        if F.shape[1] > 1 and eta > 0:                  # one batch: no noise (F = 0)
            X = X + _noise(F, eta, dt, normal(seed, runs, NOISE_STREAM, j, (F.shape[1],)))
    return at * dt, np.array(out), X


def simulate_richardson(model, obj, eta: float, rho, X0: np.ndarray, T: float, dt: float,
                        observe, seed: int = 0, runs=None) -> np.ndarray:
    """Per-path 2 g(X^{dt/2}_T) - g(X^{dt}_T): Richardson extrapolation of the Euler-Maruyama weak
    error (O(dt) -> O(dt^2)). The coarse path uses the sums of the fine path's Brownian increments,
    so the two are coupled and the extrapolation adds little variance."""
    steps = int(round(T / dt))
    Xc = np.array(X0, dtype=float)
    Xf = Xc.copy()
    runs = np.arange(len(Xc)) if runs is None else np.asarray(runs)
    h = dt / 2
    for j in range(steps):
        xi_sum = 0.0
        for half in range(2):
            b, F = model.coefficients(obj, rho, Xf)
            xi = normal(seed, runs, NOISE_STREAM, 2 * j + half, (F.shape[1],))
            Xf = Xf + h * b + _noise(F, eta, h, xi)
            xi_sum = xi_sum + xi
        b, F = model.coefficients(obj, rho, Xc)
        Xc = Xc + dt * b + _noise(F, eta, h, xi_sum)       # sqrt(h) (xi_1 + xi_2) ~ sqrt(dt) N(0, I)
    return 2 * observe(Xf) - observe(Xc)


def draw_batches(seed: int, runs, k: int, B: int) -> np.ndarray:
    """The batch index of step k for every path, uniform on {0, ..., B-1}, from (seed, run, k)."""
    return np.minimum((uniform(seed, runs, SAMPLE_STREAM, k) * B).astype(int), B - 1)


# --- the discrete methods, run by the engine (convergence.runner) with the rules of methods.py -------

class ObjectiveProblem:
    """A batch objective seen as a Problem by the runner: f = obj.loss, grad f = mean of the batch
    gradients (no f*, x* or smoothness constant)."""

    name, f_star, L = "batch_objective", None, None

    def __init__(self, obj):
        self.obj, self.dim = obj, obj.dim

    def f(self, X):
        return self.obj.loss(X)

    def grad(self, X):
        return self.obj.grads(X).mean(axis=1)

    def dist_to_opt(self, X):
        return None


class BatchOracle:
    """The oracle of a step whose sample is batch g[p] for path p (methods.py contract)."""

    L = None

    def __init__(self, obj, g):
        self.obj, self.g = obj, g

    def grad(self, Y):
        return self.obj.grad_at(Y, self.g)

    def full_grad(self, Y):
        return self.obj.grads(Y).mean(axis=1)

    def split(self, m):
        raise InputError("m-sharpness is not defined on a batch objective")


class BatchSampler:
    """Step k of the runner sees batch draw_batches(seed, paths[r], start + k, B) for its run r:
    ``paths`` are the global path ids of the runner's runs and ``start`` the global index of its
    first step, so a run split into segments draws the same batches as one run."""

    name = "batch"

    def __init__(self, obj, paths, start=0):
        self.obj, self.paths, self.start = obj, np.asarray(paths), start

    def oracle(self, problem, streams):
        paths, B = self.paths[streams.runs], self.obj.n_batches
        g = draw_batches(streams.seed, paths, self.start + streams.k, B) if B > 1 else np.zeros(len(paths), int)
        return BatchOracle(self.obj, g)


class PerRunRadius(Rule):
    """A rule of methods.py with its own radius per run: the runner's (scalar) rho_k times
    ``scale[r]`` for run r. Only the radius changes; the ascent direction is the wrapped rule's."""

    def __init__(self, rule, scale):
        self.rule, self.scale = rule, np.asarray(scale, dtype=float)
        self.name, self.stateful = rule.name, rule.stateful

    def init(self, x):
        return self.rule.init(x)

    def gradient(self, k, x, oracle, state, rho, rng, bound=True):
        return self.rule.gradient(k, x, oracle, state, rho * self.scale[rng.runs][:, None], rng, bound)


def run_recorded(problem, rule, step: float, rho, X0: np.ndarray, record, observe, seed: int = 0,
                 sampler=None):
    """convergence.runner.run from X0 (P, dim) with constant step size ``step`` and radius ``rho``
    (a number or one value per run), returning ([observe(x_k) for k in record], x_K), K = max(record).

    The run is split into segments between recording steps, each continuing from the last iterate;
    ``sampler(start, runs)`` builds the sampler of the segment that starts at step ``start`` with the
    global run ids ``runs`` (default: full batch). This is exact for rules without state or random
    numbers of their own (gd, sam, usam, dnsam, msam) and samplers that use the global step and run
    ids only. Runs the runner retires as diverged (|x| > 1e12, NaN) become NaN.
    """
    if rule.stateful:
        raise InputError(f"run_recorded restarts the runner between records: '{rule.name}' keeps state")
    X = np.array(X0, dtype=float)
    scale = np.broadcast_to(np.asarray(rho, dtype=float), (len(X),))
    sampler = sampler or (lambda start, runs: FullBatch())
    alive, k, seen = np.arange(len(X)), 0, {}
    for stop in np.unique(record):
        if stop > k and len(alive):
            trace = engine(problem, PerRunRadius(rule, scale[alive]), lambda j: step, lambda j: 1.0,
                           int(stop - k), len(alive), seed, x0=X[alive], sampler=sampler(k, alive),
                           grid=np.zeros(0, dtype=np.int64))
            X[alive] = np.nan
            alive = alive[trace.final_runs]
            X[alive] = trace.final_x
            k = stop
        seen[stop] = observe(X)
    return [seen[r] for r in record], X


def discrete(rule, obj, eta: float, rho, X0: np.ndarray, steps: int, seed: int = 0, runs=None,
             times=None, observe=None):
    """The discrete method of ``rule`` (run by the engine, batch g drawn by ``draw_batches``) for
    ``steps`` steps; values recorded at times t = k eta like ``simulate``. ``rho`` is a number or
    one value per path."""
    X0 = np.asarray(X0, dtype=float)
    paths = np.arange(len(X0)) if runs is None else np.asarray(runs)
    times = np.linspace(0, steps * eta, 21) if times is None else np.asarray(times, dtype=float)
    at = _grid(times, steps, eta)
    values, X = run_recorded(ObjectiveProblem(obj), rule, eta, rho, X0, np.append(at, steps),
                             observe or obj.loss, seed, lambda start, ids: BatchSampler(obj, paths[ids], start))
    return at * eta, np.array(values[:-1]), X


def batch_steps(rule, obj, rho, X) -> np.ndarray:
    """The discrete method's exact step direction g_k for every batch g at every X[p]: (P, B, dim)
    (the engine's oracle, no expansion), e.g. for the covariance of one step."""
    P, B = len(X), obj.n_batches
    Xr = np.repeat(X, B, axis=0)
    g = np.tile(np.arange(B), P)
    G, _, _ = rule.gradient(0, Xr, BatchOracle(obj, g), None, _per_run(rho, P, B), Streams(0, np.arange(P * B)))
    return G.reshape(P, B, -1)


# --- exact moments where the step is affine in x (gd and usam on a quadratic) ---------------------

def affine_fit(fun, dim: int, what: str):
    """(M, u) with fun(x) = x M^T + u, x (P, dim) -> (P, ...), read off at 0 and the unit vectors;
    checked at random points (InputError when ``fun`` is not affine)."""
    E = np.vstack([np.zeros(dim), np.eye(dim)])
    V = fun(E)
    u, M = V[0], V[1:] - V[0]
    Z = np.random.default_rng(0).standard_normal((3, dim))
    if not np.allclose(fun(Z), u + np.einsum("pi,i...->p...", Z, M), rtol=1e-9, atol=1e-9 * (1 + np.abs(V).max())):
        raise InputError(f"{what} is not affine in x: no closed-form moments")
    return M, u


def discrete_moments(rule, obj, eta: float, rho: float, x0, steps: int):
    """Exact (mean, covariance) of the discrete method after ``steps`` steps from x0, when its step
    is affine in x for every batch: x' = x - eta (A_g x + u_g), g uniform (the second moment follows
    E_g[(I - eta A_g) S (I - eta A_g)^T + ...], exact for any affine step)."""
    d = obj.dim
    A, u = affine_fit(lambda X: batch_steps(rule, obj, rho, X), d, f"the step of '{rule.name}'")
    Ag = np.eye(d)[None] - eta * np.moveaxis(A, 0, -1)            # (B, d, d): x' = Ag x + cg
    cg = -eta * u                                                   # (B, d)
    m = np.asarray(x0, float)
    S = np.outer(m, m)
    for _ in range(steps):
        Am = np.einsum("bij,j->bi", Ag, m)
        S = np.mean(np.einsum("bij,jk,blk->bil", Ag, S, Ag) + np.einsum("bi,bj->bij", Am, cg)
                    + np.einsum("bi,bj->bij", cg, Am) + np.einsum("bi,bj->bij", cg, cg), axis=0)
        m = np.mean(Am + cg, axis=0)
    return m, S - np.outer(m, m)


def stationary_covariances(rule, obj, eta: float, rho: float):
    """(C_discrete, C_sde): the stationary covariances of the discrete method and of its SDE when every
    batch's step is A x + u_g (a common A): the discrete x' = (I - eta A) x - eta u_g solves
    C = (I - eta A) C (I - eta A)^T + eta^2 Q, its SDE dX = -(A X + mean u) dt + sqrt(eta) Q^{1/2} dW solves
    A C + C A^T = eta Q, with Q = Cov_g[u_g] (derived: the Lyapunov equations of both linear systems)."""
    A, u = affine_fit(lambda X: batch_steps(rule, obj, rho, X), obj.dim, f"the step of '{rule.name}'")
    if not np.allclose(A, A[:, :1]):
        raise InputError(f"the step of '{rule.name}' has a batch-dependent linear part: no Lyapunov equation")
    A = A[:, 0].T
    D = u - u.mean(axis=0)
    Q = D.T @ D / len(u)
    return (solve_discrete_lyapunov(np.eye(obj.dim) - eta * A, eta**2 * Q), solve_continuous_lyapunov(A, eta * Q))


def sde_moments(model, obj, eta: float, rho: float, x0, T):
    """Exact (mean, covariance) at time T (a number or an array of times) of ``model`` when its drift is
    affine and its diffusion constant, dX = -(M X + u) dt + sqrt(eta) Q^{1/2} dW (an Ornstein-Uhlenbeck
    process, or a linear flow where Q = 0; M need not be stable), by matrix exponentials (Van Loan
    1978): the mean from exp([[-M, -u], [0, 0]] T), the covariance int_0^T e^{-Ms} eta Q e^{-M^T s} ds
    from exp([[M, eta Q], [0, -M^T]] T) = [[., F12], [0, F22]] as F22^T F12 (accurate while ||M|| T is
    moderate: the product cancels e^{MT} against e^{-MT})."""
    d = obj.dim
    M, u = affine_fit(lambda X: -model.coefficients(obj, rho, X)[0], d, f"the drift of '{model.name}'")
    M = M.T
    Q = drift_and_covariance(model, obj, rho, np.zeros((1, d)))[1][0]
    if not np.allclose(Q, drift_and_covariance(model, obj, rho, np.ones((1, d)))[1][0], rtol=1e-9, atol=1e-12):
        raise InputError(f"the diffusion of '{model.name}' depends on x: no closed-form moments")
    Z = np.zeros((d + 1, d + 1))
    Z[:d, :d], Z[:d, d] = -M, -u
    W = np.block([[M, eta * Q], [np.zeros((d, d)), -M.T]])
    means, covs = [], []
    for t in np.atleast_1d(T):
        E = expm(Z * t)
        means.append(E[:d, :d] @ np.asarray(x0, float) + E[:d, d])
        if eta * np.abs(Q).max() > 0:                       # (a flow: no covariance, and e^{Mt} may overflow)
            F = expm(W * t)
            covs.append(F[d:, d:].T @ F[:d, d:])
        else:
            covs.append(np.zeros((d, d)))
    return (means[0], covs[0]) if np.ndim(T) == 0 else (np.array(means), np.array(covs))
