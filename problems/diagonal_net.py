"""Diagonal linear networks (Andriushchenko & Flammarion, ICML 2022). numpy only, analytic gradients.

Diagonal linear network: beta = u * v (elementwise), x = (u, v) of dimension 2d, training loss
L(u, v) = (1/2n) ||A (u * v) - y||^2 = (1/n) sum_k l_k, l_k = 1/2 r_k^2, r_k = <a_k, u * v> - y_k.
The setup is that of the authors' notebook (tml-epfl/understanding-sam, diagonal_linear_nets):
n = 20, d = 30, a 3-sparse target with |N(0, 1)| entries normalized to unit norm, noiseless labels,
1000 test points, init u = alpha 1, v = 0.

The methods run on it (GD, n-SAM, 1-SAM, m-SAM) are the engine's rules; the training driver and the
notebook's radius conventions are in experiments/papers/andriushchenko2022.py.
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
