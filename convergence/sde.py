"""SDE models of SGD, USAM, SAM and DNSAM (Compagnoni et al., ICML 2023) and their Euler-Maruyama
simulation, batched over paths: every state is an array shaped (paths, dim).

The discrete methods, on f = (1/B) sum_g f_g with a batch g drawn uniformly each step, are

    x_{k+1} = x_k - eta grad f_g(x_k + rho v_g(x_k)),   v_g = 0 (SGD), grad f_g (USAM),
              grad f_g / ||grad f_g|| (SAM), grad f_g / ||grad f|| (DNSAM: stochastic gradient,
              deterministic normalization).

They are not implemented here: ``discrete`` runs the rules gd, usam, sam and dnsam of
convergence.methods with the engine convergence.runner.run, through an adapter (``ObjectiveProblem``,
``BatchSampler``: the oracle of step k is batch g = ``draw_batches(seed, path, k, B)``).

Expanding grad f_g(x + rho v_g) = s_g(x) + O(rho^2) with s_g = grad f_g + rho H_g v_g, the SDE model
of each method is the weak order-1 (in eta) stochastic modified equation of Li, Tai & E (2017)

    dX = -E_g[s_g(X)] dt + sqrt(eta) Cov_g[s_g(X)]^{1/2} dW.

Its drift is the gradient of Compagnoni et al.'s implicitly regularized losses (Sec. 3; their SDE
theorems for USAM, DNSAM and SAM, mini-batch versions):

    USAM : f + (rho/2) E||grad f_g||^2        (E[H_g grad f_g] = (1/2) grad E||grad f_g||^2)
    SAM  : f + rho E||grad f_g||              (H_g grad f_g/||grad f_g|| = grad ||grad f_g||)
    DNSAM: f + rho ||grad f||                 (when H_g = H; in general the drift is
                                               grad f + rho E[H_g grad f_g] / ||grad f||)

and its diffusion is the covariance of the expanded step; where H_g = H (a quadratic with noisy
minimizers) that is (I + rho H) Sigma (I + rho H) for USAM and
(I + rho H/||grad f||) Sigma (I + rho H/||grad f||) for DNSAM, Sigma the SGD gradient covariance, as
in the paper. The expectations are exact sums over the B batches of the objective, and the
diffusion factor is taken as the (dim, B) matrix of centred steps / sqrt(B) (its product with its
transpose is the covariance), so no matrix square root is ever formed.

The theorem numbers of the paper could not be read offline; the formulas above are derived (first-
order Taylor expansion in rho, the paper's scaling rho = O(sqrt(eta)) makes the remainder
O(eta rho^2) = O(eta^2) per step) and checked numerically (tests/test_sde.py): the closed forms
above, and a weak error linear in eta.

Objective contract (``BatchObjective``): ``dim``, ``n_batches`` and, for X (P, dim),
``grads(X)`` -> (P, B, dim) gradients of every batch function, ``hvps(X, V)`` -> (P, B, dim) the
products H_g(X) V[:, g], ``grad_at(Y, g)`` -> (P, dim) the gradient of batch g[p] at Y[p], and
``loss(X)`` -> (P,) the full loss f.
"""
from __future__ import annotations

import numpy as np

from convergence.errors import InputError, unknown
from convergence.methods import Rule, make_method
from convergence.random import normal, uniform
from convergence.runner import iterate as engine
from convergence.sampling import FullBatch

METHODS = ("sgd", "usam", "sam", "dnsam")
NOISE_STREAM = 41        # Brownian increments of the SDE
SAMPLE_STREAM = 42       # batch draws of the discrete method


def check_method(method: str) -> str:
    if method not in METHODS:
        raise unknown("SDE method", method, METHODS)
    return method


def _rho(rho, P):
    r = np.asarray(rho, dtype=float)
    if r.ndim == 0:
        return r
    if r.shape != (P,):
        raise InputError(f"rho must be a number or one value per path ({P}), got shape {r.shape}")
    return r[:, None, None]


def _safe_div(a, n):
    return np.divide(a, n, out=np.zeros_like(a), where=n > 0)


def ascent(method: str, G: np.ndarray) -> np.ndarray | None:
    """v_g for every batch from the batch gradients G (P, B, dim); None for SGD."""
    if method == "sgd":
        return None
    if method == "usam":
        return G
    if method == "sam":
        return _safe_div(G, np.linalg.norm(G, axis=-1, keepdims=True))
    if method == "dnsam":
        return _safe_div(G, np.linalg.norm(G.mean(axis=1), axis=-1)[:, None, None])
    raise unknown("SDE method", method, METHODS)


def expanded_steps(obj, method: str, rho, X: np.ndarray) -> np.ndarray:
    """s_g(X) = grad f_g(X) + rho H_g(X) v_g(X) for every batch g: (P, B, dim)."""
    G = obj.grads(X)
    V = ascent(check_method(method), G)
    if V is None:
        return G
    return G + _rho(rho, len(X)) * obj.hvps(X, V)


def coefficients(obj, method: str, rho, X: np.ndarray):
    """(drift b (P, dim), factor F (P, B, dim)) of dX = b dt + sqrt(eta) F^T dW_B, F^T F = Cov_g[s_g]."""
    S = expanded_steps(obj, method, rho, X)
    mean = S.mean(axis=1)
    return -mean, (S - mean[:, None, :]) / np.sqrt(S.shape[1])


def drift_and_covariance(obj, method, rho, X):
    """The drift and the full diffusion matrix Sigma_method (P, dim, dim) (for checks and tests)."""
    b, F = coefficients(obj, method, rho, X)
    return b, np.einsum("pbi,pbj->pij", F, F)


def modified_loss(obj, method: str, rho, X: np.ndarray) -> np.ndarray:
    """The implicitly regularized loss whose negative gradient is the drift (Compagnoni et al. Sec. 3):
    f + rho/2 E||grad f_g||^2 (USAM), f + rho E||grad f_g|| (SAM), f + rho ||grad f|| (DNSAM; exact
    where H_g = H), f (SGD)."""
    G = obj.grads(X)
    rho = np.asarray(rho, dtype=float)
    norms = np.linalg.norm(G, axis=-1)
    extra = {"sgd": 0.0 * norms[:, 0], "usam": 0.5 * np.mean(norms**2, axis=1),
             "sam": np.mean(norms, axis=1),
             "dnsam": np.linalg.norm(G.mean(axis=1), axis=-1)}[check_method(method)]
    return obj.loss(X) + rho * extra


def _grid(times, steps, dt):
    """Step indices at which each requested time is reached (rounded to the nearest step)."""
    idx = np.rint(np.asarray(times, dtype=float) / dt).astype(int)
    return np.clip(idx, 0, steps)


def simulate(obj, method: str, eta: float, rho, X0: np.ndarray, T: float, dt: float | None = None,
             seed: int = 0, runs=None, times=None, observe=None):
    """Euler-Maruyama paths of the SDE of ``method`` up to time T with step dt (default eta).

        X_{j+1} = X_j + b(X_j) dt + sqrt(eta dt) F(X_j)^T xi_j,   xi_j ~ N(0, I_B)

    xi_j comes from the counter-based stream (seed, run, NOISE_STREAM, j): path r's noise depends on
    (seed, runs[r]) only. Returns (times, values, X_T) where values[i] = observe(X at times[i])
    (observe defaults to obj.loss), shaped (len(times), P, ...).
    """
    check_method(method)
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
        b, F = coefficients(obj, method, rho, X)
        X = X + dt * b
        if F.shape[1] > 1 and eta > 0:
            xi = normal(seed, runs, NOISE_STREAM, j, (F.shape[1],))
            X = X + np.sqrt(eta * dt) * np.einsum("pb,pbd->pd", xi, F)
    return at * dt, np.array(out), X


def simulate_richardson(obj, method: str, eta: float, rho, X0: np.ndarray, T: float, dt: float,
                        observe, seed: int = 0, runs=None) -> np.ndarray:
    """Per-path 2 g(X^{dt/2}_T) - g(X^{dt}_T): Richardson extrapolation of the Euler-Maruyama weak
    error (O(dt) -> O(dt^2)). The coarse path uses the sums of the fine path's Brownian increments,
    so the two are coupled and the extrapolation adds little variance."""
    check_method(method)
    steps = int(round(T / dt))
    Xc = np.array(X0, dtype=float)
    Xf = Xc.copy()
    runs = np.arange(len(Xc)) if runs is None else np.asarray(runs)
    h = dt / 2
    for j in range(steps):
        dW = 0.0
        for half in range(2):
            b, F = coefficients(obj, method, rho, Xf)
            Xf = Xf + h * b
            if F.shape[1] > 1 and eta > 0:
                xi = normal(seed, runs, NOISE_STREAM, 2 * j + half, (F.shape[1],))
                Xf = Xf + np.sqrt(eta * h) * np.einsum("pb,pbd->pd", xi, F)
                dW = dW + np.sqrt(h) * xi
        b, F = coefficients(obj, method, rho, Xc)
        Xc = Xc + dt * b
        if F.shape[1] > 1 and eta > 0:
            Xc = Xc + np.sqrt(eta) * np.einsum("pb,pbd->pd", dW, F)
    return 2 * observe(Xf) - observe(Xc)


def draw_batches(seed: int, runs, k: int, B: int) -> np.ndarray:
    """The batch index of step k for every path, uniform on {0, ..., B-1}, from (seed, run, k)."""
    return np.minimum((uniform(seed, runs, SAMPLE_STREAM, k) * B).astype(int), B - 1)


# --- the discrete methods, run by the engine (convergence.runner) with the rules of methods.py -------

RULES = {"sgd": "gd", "usam": "usam", "sam": "sam", "dnsam": "dnsam"}     # SDE method -> methods.py rule


class ObjectiveProblem:
    """A BatchObjective seen as a Problem by the runner: f = obj.loss, grad f = mean of the batch
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

    def gradient(self, k, x, oracle, state, rho, rng):
        return self.rule.gradient(k, x, oracle, state, rho * self.scale[rng.runs][:, None], rng)


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


def discrete(obj, method: str, eta: float, rho, X0: np.ndarray, steps: int, seed: int = 0, runs=None,
             times=None, observe=None):
    """The discrete method (methods.py rule "gd", "usam", "sam" or "dnsam", run by the engine with
    batch g drawn by ``draw_batches``) for ``steps`` steps; values recorded at times t = k eta like
    ``simulate``. ``rho`` is a number or one value per path."""
    X0 = np.asarray(X0, dtype=float)
    paths = np.arange(len(X0)) if runs is None else np.asarray(runs)
    times = np.linspace(0, steps * eta, 21) if times is None else np.asarray(times, dtype=float)
    at = _grid(times, steps, eta)
    values, X = run_recorded(ObjectiveProblem(obj), make_method(RULES[check_method(method)]), eta, rho, X0,
                             np.append(at, steps), observe or obj.loss, seed,
                             lambda start, ids: BatchSampler(obj, paths[ids], start))
    return at * eta, np.array(values[:-1]), X


# --- exact moments for linear dynamics (SGD and USAM on a quadratic with noisy minimizers) ----------

def linear_moments(H: np.ndarray, centres: np.ndarray, method: str, eta: float, rho: float,
                   x0: np.ndarray, T: float):
    """Exact (mean, covariance) at time T of the discrete method and of its SDE, for SGD and USAM on
    f_g(x) = 1/2 (x - c_g)^T H (x - c_g), g uniform over the rows of ``centres``.

    Both are linear in x: the step is x - eta M (x - c_g) with M = (I + rho H) H (rho = 0 for SGD),
    so the discrete moments follow m <- A m + eta M cbar, C <- A C A^T + eta^2 M Cov(c) M^T
    (A = I - eta M), and the SDE is the Ornstein-Uhlenbeck process dX = -M (X - cbar) dt +
    sqrt(eta) (M Cov(c) M^T)^{1/2} dW, solved in the eigenbasis of H (M commutes with H).
    Returns ((m_disc, C_disc), (m_sde, C_sde)). Requires T/eta to be an integer.
    """
    if method not in ("sgd", "usam"):
        raise InputError("linear_moments covers sgd and usam (the linear methods)")
    r = 0.0 if method == "sgd" else rho
    d = len(H)
    M = (np.eye(d) + r * H) @ H
    cbar = centres.mean(axis=0)
    Cc = np.cov(centres.T, bias=True).reshape(d, d)
    Q = M @ Cc @ M.T
    K = int(round(T / eta))
    A = np.eye(d) - eta * M
    m, C = np.array(x0, float), np.zeros((d, d))
    for _ in range(K):
        m = A @ m + eta * M @ cbar
        C = A @ C @ A.T + eta**2 * Q
    lam, U = np.linalg.eigh(H)
    mu = lam * (1 + r * lam)                         # eigenvalues of M
    e = np.exp(-mu * T)
    m_sde = cbar + U @ (e * (U.T @ (np.asarray(x0, float) - cbar)))
    Qt = U.T @ Q @ U
    s = mu[:, None] + mu[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kern = np.where(np.abs(s) > 1e-14, (1 - np.exp(-s * T)) / s, T)
    C_sde = eta * U @ (Qt * kern) @ U.T
    return (m, C), (m_sde, C_sde)


def fit_slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])
