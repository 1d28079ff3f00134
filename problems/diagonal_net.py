"""Diagonal linear networks (Andriushchenko & Flammarion, ICML 2022) and the batch objectives of the
SDE experiments of Compagnoni et al. (ICML 2023): a quadratic with noisy minimizers, a linear MLP on
Iris and a tanh MLP on breast cancer (scikit-learn's bundled data). numpy only, analytic gradients.

Diagonal linear network: beta = u * v (elementwise), x = (u, v) of dimension 2d, training loss
L(u, v) = (1/2n) ||A (u * v) - y||^2 = (1/n) sum_k l_k, l_k = 1/2 r_k^2, r_k = <a_k, u * v> - y_k.
The setup is that of the authors' notebook (tml-epfl/understanding-sam, diagonal_linear_nets):
n = 20, d = 30, a 3-sparse target with |N(0, 1)| entries normalized to unit norm, noiseless labels,
1000 test points, init u = alpha 1, v = 0.

* n-SAM is full-batch USAM: x - gamma grad L(x + rho grad L(x)).
* 1-SAM (m-sharpness, m = 1, unnormalized): every example k has its own ascent point
  x + rho grad (r_k^2) = x + 2 rho grad l_k (the notebook's u + 2 rho r_k a_k * v), and the step
  averages grad l_k at those points. With the engine's m-SAM rule this is
  ``make_method("msam", m=1, base="usam")`` at radius 2 rho (checked in tests).
"""
from __future__ import annotations

import numpy as np

from problems.base import Problem


class DiagonalNet(Problem):
    """Sparse regression with a diagonal linear network w = u * v; x = concat(u, v), dim = 2d."""

    name = "diagonal_net"
    citation = "Andriushchenko & Flammarion (2022), Sec. 4; Woodworth et al. (2020)"
    min_dim = 2
    f_star = 0.0
    L = np.inf
    smoothness_note = "not globally smooth (quartic in x)"
    lower_bounded = True
    batch_invariant = False        # matrix products with the data

    def __init__(self, dim: int = 60, n: int = 20, sparsity: int = 3, alpha: float = 0.1,
                 n_test: int = 1000, data_seed: int = 0, notebook: bool = False):
        super().__init__(dim)
        if dim % 2:
            from convergence.errors import InputError
            raise InputError(f"diagonal_net needs an even dim (u and v), got {dim}")
        d = dim // 2
        self.d, self.n, self.alpha, self.sparsity = d, n, alpha, sparsity
        if notebook:     # the authors' instance: legacy global seed 0, the same draws in the same order
            rs = np.random.RandomState(0)
            self.A = rs.multivariate_normal(np.zeros(d), np.eye(d), n)
            self.A_test = rs.multivariate_normal(np.zeros(d), np.eye(d), n_test)
            theta = np.abs(rs.randn(d))
        else:
            rng = np.random.default_rng(data_seed)
            self.A = rng.standard_normal((n, d))
            self.A_test = rng.standard_normal((n_test, d))
            theta = np.abs(rng.standard_normal(d))
        theta[sparsity:] = 0.0
        self.beta_star = theta / np.linalg.norm(theta)
        self.y, self.y_test = self.A @ self.beta_star, self.A_test @ self.beta_star
        self.L_i = np.full(n, np.inf)          # per-example losses are not globally smooth either
        self.L_max = np.inf

    # --- model ----------------------------------------------------------------------------------
    def beta(self, X):
        return X[:, :self.d] * X[:, self.d:]

    def residual(self, X):
        return self.beta(X) @ self.A.T - self.y                       # (runs, n)

    def f(self, X):
        return 0.5 * np.mean(self.residual(X) ** 2, axis=-1)

    def test_loss(self, X):
        return 0.5 * np.mean((self.beta(X) @ self.A_test.T - self.y_test) ** 2, axis=-1)

    def l1(self, X):
        return np.sum(np.abs(self.beta(X)), axis=-1)

    def grad(self, X):
        g_beta = self.residual(X) @ self.A / self.n                    # (runs, d)
        u, v = X[:, :self.d], X[:, self.d:]
        return np.concatenate([g_beta * v, g_beta * u], axis=1)

    def sample_grad(self, X, idx, weights=None):
        """(1/m) sum_j w_j grad l_{idx_j}(X) for per-run index rows idx (runs, m)."""
        rows = self.A[idx]                                             # (runs, m, d)
        r = np.einsum("rmd,rd->rm", rows, self.beta(X)) - self.y[idx]
        if weights is not None:
            r = r * weights
        g_beta = np.einsum("rm,rmd->rd", r, rows) / idx.shape[1]
        u, v = X[:, :self.d], X[:, self.d:]
        return np.concatenate([g_beta * v, g_beta * u], axis=1)

    def x0(self, runs, seed=0):
        """The paper's deterministic init u = alpha 1, v = 0 (the same for every run)."""
        return np.concatenate([np.full((runs, self.d), self.alpha), np.zeros((runs, self.d))], axis=1)

    def sympy_f(self, xs):
        import sympy as sp
        d = self.d
        terms = [(sum(sp.Float(a) * xs[j] * xs[d + j] for j, a in enumerate(row)) - sp.Float(y)) ** 2
                 for row, y in zip(self.A, self.y)]
        return sp.Add(*terms) / (2 * self.n)


METHODS = {"gd": ("gd", {}, 0.0), "nsam": ("usam", {}, 1.0), "1sam": ("msam", {"m": 1, "base": "usam"}, 2.0)}


def train_diagonal_net(problem: DiagonalNet, method: str, gamma: float, rho, iters: int,
                       record=None, X0=None):
    """GD, n-SAM or 1-SAM on the diagonal network, batched over runs: ``rho`` is one radius per run
    (runs = len(rho)). Returns (record iterations, train losses, test losses (len, runs), X_final).

    The steps are the engine's (convergence.runner) with the rules of convergence.methods on the full
    batch: gd, usam (n-SAM) and msam(m=1, base=usam) at radius 2 rho (1-SAM in the notebook's radius
    convention, see the module docstring). Runs that diverge (|x| > 1e12) end as NaN.
    """
    from convergence.methods import make_method
    from convergence.sde import run_recorded
    if method not in METHODS:
        raise ValueError(f"unknown diagonal-net method {method!r}: gd, nsam or 1sam")
    name, hyper, factor = METHODS[method]
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    X = problem.x0(len(rho)) if X0 is None else np.array(X0, float)
    record = np.unique(np.r_[0, np.geomspace(1, iters, 60).astype(int)]) if record is None else record
    it = np.unique(np.asarray(record, dtype=np.int64))
    it = it[it <= iters]
    values, X = run_recorded(problem, make_method(name, **hyper), gamma, factor * rho, X,
                             np.append(it, iters), lambda Y: (problem.f(Y), problem.test_loss(Y)))
    return it, np.array([v[0] for v in values[:-1]]), np.array([v[1] for v in values[:-1]]), X


# --- batch objectives for the SDE experiments (contract in convergence/sde.py) ---------------------

class NoisyQuadratic:
    """f_g(x) = 1/2 (x - c_g)^T H (x - c_g), g uniform over B centres: every batch has Hessian H, the
    SGD noise covariance is Sigma = H Cov(c) H, and f's stationary point is mean(c). With an
    indefinite H and centred c it is the noisy saddle; with B = 1 and c = 0 the deterministic one."""

    def __init__(self, H, centres):
        self.H = np.atleast_2d(np.asarray(H, float))
        self.centres = np.atleast_2d(np.asarray(centres, float))
        self.dim, self.n_batches = len(self.H), len(self.centres)

    @classmethod
    def diagonal(cls, eigenvalues, centres):
        return cls(np.diag(eigenvalues), centres)

    def grads(self, X):
        return (X[:, None, :] - self.centres[None]) @ self.H          # H symmetric

    def hvps(self, X, V):
        return V @ self.H

    def grad_at(self, Y, g):
        return (Y - self.centres[g]) @ self.H

    def loss(self, X):
        D = X[:, None, :] - self.centres[None]
        return 0.5 * np.mean(np.einsum("pbi,ij,pbj->pb", D, self.H, D), axis=1)

    @property
    def sigma(self):
        """The SGD gradient covariance H Cov(c) H (constant in x)."""
        C = np.cov(self.centres.T, bias=True).reshape(self.dim, self.dim)
        return self.H @ C @ self.H


class MLPBatches:
    """A one-hidden-layer MLP with softmax cross-entropy, the data split once into B equal batches.

    theta = (W1 (p, h), b1 (h), W2 (h, K), b2 (K)); activation 'linear' (Iris, a linear MLP) or
    'tanh' (breast cancer, the nonlinear one). Gradients are analytic (backpropagation); Hessian-vector
    products are central differences of them with a step 1e-4 / ||v|| (error O(1e-8 ||v||))."""

    def __init__(self, features, labels, hidden=10, activation="linear", batch=10, data_seed=0):
        Xd = np.asarray(features, float)
        Xd = (Xd - Xd.mean(0)) / Xd.std(0)
        perm = np.random.default_rng(data_seed).permutation(len(Xd))
        n = (len(Xd) // batch) * batch
        perm = perm[:n]
        self.K = int(np.max(labels)) + 1
        self.p, self.h, self.act = Xd.shape[1], hidden, activation
        self.Xb = Xd[perm].reshape(n // batch, batch, self.p)          # (B, b, p)
        self.Yb = np.eye(self.K)[np.asarray(labels)[perm]].reshape(n // batch, batch, self.K)
        self.n_batches, self.n = n // batch, n
        p, h, K = self.p, self.h, self.K
        self.shapes = [(p, h), (h,), (h, K), (K,)]
        self.dim = p * h + h + h * K + K

    @classmethod
    def iris(cls, **kw):
        return cls._sklearn("load_iris", "linear", 10, **kw)

    @classmethod
    def breast_cancer(cls, **kw):
        return cls._sklearn("load_breast_cancer", "tanh", 20, **kw)

    @classmethod
    def _sklearn(cls, loader, activation, batch, **kw):
        """A data set bundled with scikit-learn, with its default activation and batch size."""
        import sklearn.datasets
        data = getattr(sklearn.datasets, loader)()
        kw.setdefault("activation", activation)
        kw.setdefault("batch", batch)
        return cls(data.data, data.target, **kw)

    def init(self, runs, seed=0):
        """theta0 per run from the counter-based stream (seed, run): N(0, 1/fan_in) weights, 0 biases."""
        from convergence.random import normal
        z = normal(seed, np.asarray(runs), 31, 0, (self.dim,))
        p, h = self.p, self.h
        scale = np.concatenate([np.full(p * h, 1 / np.sqrt(p)), np.zeros(h),
                                np.full(h * self.K, 1 / np.sqrt(h)), np.zeros(self.K)])
        return z * scale

    def _unpack(self, T):
        out, i = [], 0
        for s in self.shapes:
            size = int(np.prod(s))
            out.append(T[..., i:i + size].reshape(T.shape[:-1] + s))
            i += size
        return out

    def _forward(self, T, Xs):
        """T (..., dim), Xs (..., m, p) broadcastable: (z1, a, probs)."""
        W1, b1, W2, b2 = self._unpack(T)
        z1 = np.einsum("...mp,...ph->...mh", Xs, W1) + b1[..., None, :]
        a = z1 if self.act == "linear" else np.tanh(z1)
        z2 = np.einsum("...mh,...hk->...mk", a, W2) + b2[..., None, :]
        z2 = z2 - z2.max(axis=-1, keepdims=True)
        e = np.exp(z2)
        return z1, a, e / e.sum(axis=-1, keepdims=True)

    def _grad(self, T, Xs, Ys):
        """Mean cross-entropy gradient over the m samples: T (..., dim) -> (..., dim)."""
        _, a, P = self._forward(T, Xs)
        W2 = self._unpack(T)[2]
        m = Xs.shape[-2]
        d2 = (P - Ys) / m                                              # (..., m, K)
        gW2 = np.einsum("...mh,...mk->...hk", a, d2)
        gb2 = d2.sum(axis=-2)
        back = np.einsum("...mk,...hk->...mh", d2, W2)
        d1 = back if self.act == "linear" else back * (1 - a * a)
        gW1 = np.einsum("...mp,...mh->...ph", Xs, d1)
        gb1 = d1.sum(axis=-2)
        lead = gb2.shape[:-1]
        return np.concatenate([g.reshape(lead + (-1,)) for g in (gW1, gb1, gW2, gb2)], axis=-1)

    def grads(self, X):
        return self._grad(X[:, None, :], self.Xb[None], self.Yb[None])

    def hvps(self, X, V):
        nv = np.linalg.norm(V, axis=-1, keepdims=True)
        eps = np.divide(1e-4, nv, out=np.zeros_like(nv), where=nv > 0)
        Tp, Tm = X[:, None, :] + eps * V, X[:, None, :] - eps * V
        diff = self._grad(Tp, self.Xb[None], self.Yb[None]) - self._grad(Tm, self.Xb[None], self.Yb[None])
        return np.divide(diff, 2 * eps, out=np.zeros_like(diff), where=eps > 0)

    def grad_at(self, Y, g):
        return self._grad(Y, self.Xb[g], self.Yb[g])

    def loss(self, X):
        _, _, P = self._forward(X[:, None, :], self.Xb[None])
        return -np.mean(np.sum(self.Yb[None] * np.log(np.maximum(P, 1e-300)), axis=-1), axis=(1, 2))

    def batch_losses(self, X):
        """(P, B) the loss of every batch (for finite-difference checks)."""
        _, _, P = self._forward(X[:, None, :], self.Xb[None])
        return -np.mean(np.sum(self.Yb[None] * np.log(np.maximum(P, 1e-300)), axis=-1), axis=2)
