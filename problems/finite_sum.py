"""Finite sums f(x) = (1/n) sum_i f_i(x) of generalized linear losses, with per-sample gradients.

f_i(x) = phi(a_i^T x - b_i) + (reg/2) ||x||^2, or phi(b_i a_i^T x) for classification. The data are
drawn from a fixed data seed, so a problem is the same object whatever the run seed.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from problems.base import Problem


class FiniteSum(Problem):
    """Base of the generalized linear finite sums; subclasses give phi, phi', sup|phi''| and data."""

    phi_curvature: float = 1.0     # sup |phi''|, so L_i = phi_curvature ||a_i||^2 + reg
    margin: bool = False           # True: residual is b_i a_i^T x (classification), else a_i^T x - b_i
    reg: float = 0.0
    batch_invariant = False        # X @ A.T: BLAS blocks the rows of a batch

    def _set_data(self, A: np.ndarray, b: np.ndarray) -> None:
        self.A, self.b = np.asarray(A, float), np.asarray(b, float)
        self.n = self.A.shape[0]
        self.L_i = self.phi_curvature * np.sum(self.A**2, axis=1) + self.reg
        self.L_max = float(self.L_i.max())
        self.L = self.phi_curvature * float(np.linalg.eigvalsh(self.A.T @ self.A / self.n).max()) + self.reg

    # residuals r (runs, m) of the samples idx (None: all n samples)
    def _residual(self, X, idx=None):
        if idx is None:
            z = X @ self.A.T
            return self.b * z if self.margin else z - self.b
        rows = self.A[idx]                                    # (runs, m, dim)
        z = np.einsum("rmd,rd->rm", rows, X)
        return self.b[idx] * z if self.margin else z - self.b[idx]

    def phi(self, r):
        raise NotImplementedError

    def dphi(self, r):
        raise NotImplementedError

    def sympy_phi(self, r):
        raise NotImplementedError

    def f(self, X):
        return np.mean(self.phi(self._residual(X)), axis=-1) + 0.5 * self.reg * np.sum(X * X, axis=-1)

    def grad(self, X):
        w = self.dphi(self._residual(X))
        if self.margin:
            w = w * self.b
        return w @ self.A / self.n + self.reg * X

    def sample_grad(self, X, idx, weights=None):
        """(1/m) sum_j w_j grad f_{idx_j}(X) for per-run index rows idx (runs, m)."""
        w = self.dphi(self._residual(X, idx))
        if self.margin:
            w = w * self.b[idx]
        if weights is not None:
            w = w * weights
        reg_w = 1.0 if weights is None else np.mean(weights, axis=1, keepdims=True)
        return np.einsum("rm,rmd->rd", w, self.A[idx]) / idx.shape[1] + self.reg * reg_w * X

    def sympy_f(self, xs):
        terms = []
        for a, b in zip(self.A, self.b):
            z = sum(sp.Float(ai) * x for ai, x in zip(a, xs))
            terms.append(self.sympy_phi(sp.Float(b) * z if self.margin else z - sp.Float(b)))
        return sp.Add(*terms) / self.n + sp.Float(self.reg) / 2 * sum(x**2 for x in xs)


def _gaussian(n, d, data_seed):
    return np.random.default_rng(data_seed).standard_normal((n, d))


def _conditioned(n, d, cond, data_seed):
    """A (n, d) with singular values log-spaced in [1, sqrt(cond)]: A^T A has condition number cond."""
    rng = np.random.default_rng(data_seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    k = min(n, d)
    s = np.sqrt(np.geomspace(1.0, cond, k))[::-1]
    return np.sqrt(n) * (U[:, :k] * s) @ V[:, :k].T / np.sqrt(cond)


class RobustRegression(FiniteSum):
    """f(x) = (1/n) sum_i log(1 + (a_i^T x - b_i)^2), b = A x_true: nonconvex, f* = 0 at x_true.

    phi'' = 2(1 - r^2)/(1 + r^2)^2 lies in [-1/4, 2], so L = 2 lambda_max(A^T A / n).
    The paper (Khanh et al. 2024, appendix) writes the plain sum; the mean is the same problem with
    the step size scaled by n.
    """

    name = "robust_regression"
    citation = "Khanh et al. (2024), appendix: robust regression sum_i log(1 + (Ax - b)_i^2)"
    phi_curvature = 2.0
    box = (-2.0, 2.0)

    def __init__(self, dim: int = 10, n: int | None = None, data_seed: int = 0):
        super().__init__(dim)
        n = 2 * dim if n is None else n
        A = _gaussian(n, dim, data_seed)
        x_true = np.random.default_rng(data_seed + 1).standard_normal(dim)
        self._set_data(A, A @ x_true)
        self.f_star, self.x_star = 0.0, x_true

    def phi(self, r):
        return np.log1p(r * r)

    def dphi(self, r):
        return 2.0 * r / (1.0 + r * r)

    def sympy_phi(self, r):
        return sp.log(1 + r**2)


class LeastSquares(FiniteSum):
    """f(x) = (1/n) sum_i 1/2 (a_i^T x - b_i)^2 + reg/2 ||x||^2 with cond(A^T A) = cond.

    Oikonomou & Loizou (2025), Sec. 6: n = d = 100, condition number 10; b = A x_true + noise.
    f*, x* come from the normal equations (exact up to round-off). ``row_spread`` > 1 rescales the
    rows to norms spread over that ratio (unequal L_i, where importance sampling pays off).
    """

    name = "least_squares"
    citation = "Oikonomou & Loizou (2025), Sec. 6: least squares, n = d = 100, condition number 10"
    convex = True
    kl_exponent = 0.5
    box = (-1.0, 1.0)

    def __init__(self, dim: int = 100, n: int | None = None, cond: float = 10.0,
                 reg: float = 0.0, noise: float = 0.1, data_seed: int = 0, row_spread: float = 1.0):
        super().__init__(dim)
        n = dim if n is None else n
        self.reg = reg
        A = _conditioned(n, dim, cond, data_seed)
        if row_spread != 1.0:        # rows of unequal norms (ratio row_spread): unequal L_i
            scales = np.geomspace(1.0, row_spread, n)
            A = A * np.random.default_rng(data_seed + 2).permutation(scales)[:, None] / np.sqrt(np.mean(scales**2))
        rng = np.random.default_rng(data_seed + 1)
        b = A @ rng.standard_normal(dim) + noise * rng.standard_normal(n)
        self._set_data(A, b)
        H = A.T @ A / n + reg * np.eye(dim)
        self.x_star = np.linalg.solve(H, A.T @ b / n)
        self.f_star = float(self.f(self.x_star[None])[0])
        self.mu = float(np.linalg.eigvalsh(H).min())
        if self.mu <= 1e-12 * self.L:
            self.mu = None

    def phi(self, r):
        return 0.5 * r * r

    def dphi(self, r):
        return r

    def sympy_phi(self, r):
        return r**2 / 2


class Ridge(LeastSquares):
    """Least squares with the ridge regularizer reg = 3/n of Oikonomou & Loizou (2025), Sec. 6."""

    name = "ridge"
    citation = "Oikonomou & Loizou (2025), Sec. 6: ridge regression, regularizer 3/n"

    def __init__(self, dim: int = 100, n: int | None = None, cond: float = 10.0, data_seed: int = 0,
                 row_spread: float = 1.0):
        n = dim if n is None else n
        super().__init__(dim, n=n, cond=cond, reg=3.0 / n, data_seed=data_seed, row_spread=row_spread)


class Logistic(FiniteSum):
    """f(x) = (1/n) sum_i log(1 + exp(-b_i a_i^T x)) + reg/2 ||x||^2, labels b_i in {-1, +1}.

    Strongly convex (mu >= reg); x*, f* found by Newton's method to machine precision.
    """

    name = "logistic"
    citation = "l2-regularized logistic regression (standard finite-sum benchmark)"
    convex, margin, phi_curvature = True, True, 0.25
    kl_exponent = 0.5
    box = (-1.0, 1.0)

    def __init__(self, dim: int = 20, n: int | None = None, reg: float = 1e-2, data_seed: int = 0):
        super().__init__(dim)
        n = 5 * dim if n is None else n
        self.reg = reg
        rng = np.random.default_rng(data_seed)
        A = rng.standard_normal((n, dim))
        b = np.where(A @ rng.standard_normal(dim) + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
        self._set_data(A, b)
        self.mu = reg
        self.x_star = self._newton()
        self.f_star = float(self.f(self.x_star[None])[0])

    def _newton(self, iters: int = 50):
        x = np.zeros(self.dim)
        for _ in range(iters):
            z = self.b * (self.A @ x)
            s = 0.5 * (1 - np.tanh(0.5 * z))                    # sigmoid(-z), stable
            H = (self.A.T * (s * (1 - s))) @ self.A / self.n + self.reg * np.eye(self.dim)
            step = np.linalg.solve(H, self.grad(x[None])[0])
            x = x - step
            if np.linalg.norm(step) < 1e-15 * (1 + np.linalg.norm(x)):
                break
        return x

    def phi(self, z):
        return np.logaddexp(0.0, -z)

    def dphi(self, z):
        return -0.5 * (1 - np.tanh(0.5 * z))

    def sympy_phi(self, z):
        return sp.log(1 + sp.exp(-z))
