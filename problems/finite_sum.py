"""Finite sums f(x) = (1/n) sum_i f_i(x) of generalized linear losses, with per-sample gradients.

f_i(x) = phi(a_i^T x - b_i) + (reg/2) ||x||^2, or phi(b_i a_i^T x) for classification. The shipped
data are drawn from a fixed data seed, so a problem is the same object whatever the run seed; the
user's data come in through ``from_data`` (``make_problem(name, data=...)`` or ``A=..., b=...``).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from convergence.errors import InputError
from convergence.vec import array_namespace
from problems.base import Problem
from problems.data import check_data, issparse


class FiniteSum(Problem):
    """Base of the generalized linear finite sums: subclasses give phi, phi', sup|phi''|, their
    generated data, and ``_solve`` (x*, f*, mu from the data). ``from_data`` builds any of them
    on the user's data instead; A may be a scipy.sparse matrix (kept sparse: only products with A
    are needed, and the d x d normal-equation matrices, which are dense)."""

    phi_curvature: float = 1.0     # sup |phi''|, so L_i = phi_curvature ||a_i||^2 + reg
    margin: bool = False           # True: residual is b_i a_i^T x (classification), else a_i^T x - b_i
    reg: float = 0.0               # the regularizer; on user data, the default of ``from_data``
    batch_invariant = False        # X @ A.T: BLAS blocks the rows of a batch
    rows_per_dim: int = 1          # generated data: n = rows_per_dim * dim rows unless n is given

    @classmethod
    def build_bytes(cls, dim: int | None = None, n: int | None = None) -> int:
        """Bytes that building the generated data takes, before any of it is drawn: A (n x d) and
        its transformed copies, and the dense d x d normal-equation matrices of ``_solve``."""
        import inspect
        if dim is None:
            dim = inspect.signature(cls.__init__).parameters["dim"].default
        n = cls.rows_per_dim * dim if n is None else n
        return 8 * (4 * n * dim + 3 * dim * dim + 8 * n)

    @classmethod
    def from_data(cls, A, b, reg: float | None = None, source: str = "data (A, b)"):
        """This problem on data A (n, d) and b (n,): L, L_i, x*, f*, mu computed from them.

        ``reg`` defaults to the class's own (``_default_reg``); ``source`` names the data in
        errors and in ``metadata()``. Bad data raise InputError (problems.data.check_data).
        """
        A, b = check_data(A, b, source)
        problem = cls.__new__(cls)              # __init__ would draw the generated data
        Problem.__init__(problem, A.shape[1])
        problem.reg = cls._default_reg(A.shape[0]) if reg is None else _nonnegative("reg", reg)
        problem.source = source
        problem._set_data(A, cls._target(b, source))
        return problem

    @classmethod
    def _default_reg(cls, n: int) -> float:
        return cls.reg

    @classmethod
    def _target(cls, b, source):
        """The targets as this loss reads them (labels mapped to +-1 for classification)."""
        return b

    def _set_data(self, A, b) -> None:
        """Install the data and everything derived from it: L_i, L, then x*, f*, mu."""
        self.A, self.b = (A.tocsr() if issparse(A) else np.asarray(A, float)), np.asarray(b, float)
        self.n = self.A.shape[0]
        sq = np.asarray(self.A.multiply(self.A).sum(axis=1)).ravel() if self.is_sparse else np.sum(self.A**2, axis=1)
        self.L_i = self.phi_curvature * sq + self.reg
        self.L_max = float(self.L_i.max())
        gram = self._gram()
        self.L = self.phi_curvature * float(np.linalg.eigvalsh(gram).max()) + self.reg
        self._solve(gram)

    @property
    def is_sparse(self) -> bool:
        return issparse(self.A)

    def _gram(self, w=None) -> np.ndarray:
        """A^T diag(w) A / n as a dense (d, d) array (w = 1 when None)."""
        if self.is_sparse:
            from scipy import sparse
            return (self.A.T @ (self.A if w is None else sparse.diags(w) @ self.A)).toarray() / self.n
        return (self.A.T if w is None else self.A.T * w) @ self.A / self.n

    def _solve(self, gram) -> None:
        """Set x*, f*, mu from the data (None where they are unknown)."""
        raise NotImplementedError

    def sample_infima(self) -> np.ndarray | None:
        """inf_x f_i(x) for each sample, where it has a closed form (else None)."""
        return None

    # residuals r (runs, m) of the samples idx (None: all n samples)
    def _residual(self, X, idx=None):
        if idx is None:
            z = X @ self.A.T
            return self.b * z if self.margin else z - self.b
        z = self._sample_rows(idx, X=X)
        b = array_namespace(idx, X).asarray(self.b)[idx]
        return b * z if self.margin else z - b

    def _sample_rows(self, idx, X=None, w=None):
        """With X: a_{idx[r,j]}^T X[r], shaped (runs, m); with w: sum_j w[r,j] a_{idx[r,j]} (runs, d)."""
        if not self.is_sparse:
            xp = array_namespace(idx, X, w)
            rows = xp.asarray(self.A)[idx]                        # (runs, m, dim)
            return xp.einsum("rmd,rd->rm", rows, X) if w is None else xp.einsum("rm,rmd->rd", w, rows)
        runs, m = idx.shape
        rows = self.A[idx.ravel()]                                # csr (runs * m, dim)
        row = np.repeat(np.arange(runs * m), np.diff(rows.indptr))   # the sample row of each nonzero
        if w is None:
            return np.bincount(row, rows.data * X[row // m, rows.indices], runs * m).reshape(runs, m)
        from scipy import sparse
        return sparse.csr_matrix((rows.data * w.ravel()[row], (row // m, rows.indices)),
                                 shape=(runs, self.dim)).toarray()

    def phi(self, r):
        raise NotImplementedError

    def dphi(self, r):
        raise NotImplementedError

    def sympy_phi(self, r):
        raise NotImplementedError

    def f(self, X):
        xp = array_namespace(X)
        return xp.mean(self.phi(self._residual(X)), axis=-1) + 0.5 * self.reg * xp.sum(X * X, axis=-1)

    def grad(self, X):
        w = self.dphi(self._residual(X))
        if self.margin:
            w = w * self.b
        return w @ self.A / self.n + self.reg * X

    def sample_grad(self, X, idx, weights=None):
        """(1/m) sum_j w_j grad f_{idx_j}(X) for per-run index rows idx (runs, m)."""
        xp = array_namespace(X, idx)
        w = self.dphi(self._residual(X, idx))
        if self.margin:
            w = w * xp.asarray(self.b)[idx]
        if weights is not None:
            w = w * weights
        reg_w = 1.0 if weights is None else xp.mean(weights, axis=1, keepdims=True)
        return self._sample_rows(idx, w=w) / idx.shape[1] + self.reg * reg_w * X

    def sympy_f(self, xs):
        terms = []
        for a, b in zip(self.A.toarray() if self.is_sparse else self.A, self.b):
            z = sum(sp.Float(ai) * x for ai, x in zip(a, xs))
            terms.append(self.sympy_phi(sp.Float(b) * z if self.margin else z - sp.Float(b)))
        return sp.Add(*terms) / self.n + sp.Float(self.reg) / 2 * sum(x**2 for x in xs)


def _nonnegative(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            np.isfinite(value) and value >= 0):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}", name)
    return float(value)


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


def _normal_equations(problem, gram):
    """(x, lambda_min) for (A^T A / n + reg I) x = A^T b / n; x is one least-squares solution of
    many and lambda_min None where the matrix is singular (reg = 0 and rank A < d)."""
    H = gram + problem.reg * np.eye(problem.dim)
    rhs = problem.A.T @ problem.b / problem.n
    lam = float(np.linalg.eigvalsh(H).min())
    if lam > 1e-12 * problem.L:
        return np.linalg.solve(H, rhs), lam
    return np.linalg.lstsq(H, rhs, rcond=1e-12)[0], None


class RobustRegression(FiniteSum):
    """f(x) = (1/n) sum_i log(1 + (a_i^T x - b_i)^2), b = A x_true: nonconvex, f* = 0 at x_true.

    phi'' = 2(1 - r^2)/(1 + r^2)^2 lies in [-1/4, 2], so L = 2 lambda_max(A^T A / n).
    The paper (Khanh et al. 2024, appendix) writes the plain sum; the mean is the same problem with
    the step size scaled by n. On user data f* = 0 is known where A x = b has a solution (x* = x
    when it is unique); otherwise the nonconvex minimum is unknown and f*, x* stay None.
    """

    name = "robust_regression"
    citation = "Khanh et al. (2024), appendix: robust regression sum_i log(1 + (Ax - b)_i^2)"
    phi_curvature = 2.0
    box = (-2.0, 2.0)

    rows_per_dim = 2

    def __init__(self, dim: int = 10, n: int | None = None, data_seed: int = 0):
        super().__init__(dim)
        n = self.rows_per_dim * dim if n is None else n
        A = _gaussian(n, dim, data_seed)
        x_true = np.random.default_rng(data_seed + 1).standard_normal(dim)
        self._set_data(A, A @ x_true)
        self.f_star, self.x_star = 0.0, x_true        # exact by construction, not up to round-off

    @classmethod
    def from_data(cls, A, b, source: str = "data (A, b)"):
        """Robust regression on data A (n, d), b (n,); no regularizer (f* = 0 needs none)."""
        return super().from_data(A, b, source=source)

    def _solve(self, gram):
        x, lam = _normal_equations(self, gram)
        scale = np.abs(self.A).max() * np.abs(x).sum() + np.abs(self.b).max()
        exact = np.abs(self.A @ x - self.b).max() <= 1e-9 * scale
        self.f_star = 0.0 if exact else None
        self.x_star = x if exact and lam is not None else None

    def sample_infima(self):
        """inf_x log(1 + (a^T x - b)^2) = 0, or log(1 + b^2) for a zero row a = 0."""
        return np.where(self.L_i > 0, 0.0, np.log1p(self.b**2))

    def phi(self, r):
        return array_namespace(r).log1p(r * r)

    def dphi(self, r):
        return 2.0 * r / (1.0 + r * r)

    def sympy_phi(self, r):
        return sp.log(1 + r**2)


class LeastSquares(FiniteSum):
    """f(x) = (1/n) sum_i 1/2 (a_i^T x - b_i)^2 + reg/2 ||x||^2 with cond(A^T A) = cond.

    Oikonomou & Loizou (2025), Sec. 6: n = d = 100, condition number 10; b = A x_true + noise.
    f*, x* come from the normal equations (exact up to round-off), mu = lambda_min(A^T A / n + reg I);
    x* and mu are None where that matrix is singular (minimizers form an affine set). ``row_spread``
    > 1 rescales the rows to norms spread over that ratio (unequal L_i, where importance sampling
    pays off).
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
        self._set_data(A, A @ rng.standard_normal(dim) + noise * rng.standard_normal(n))

    def _solve(self, gram):
        x, self.mu = _normal_equations(self, gram)
        self.x_star = None if self.mu is None else x
        self.f_star = float(self.f(x[None])[0])

    def sample_infima(self):
        """inf_x 1/2 (a^T x - b)^2 + reg/2 ||x||^2 = reg b^2 / (2 (||a||^2 + reg)) (at x = t a);
        b^2 / 2 for a zero row without regularizer. Here ||a_i||^2 + reg = L_i."""
        return np.divide(self.reg * self.b**2, 2 * self.L_i, out=self.b**2 / 2, where=self.L_i > 0)

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

    @classmethod
    def _default_reg(cls, n):
        return 3.0 / n


class Logistic(FiniteSum):
    """f(x) = (1/n) sum_i log(1 + exp(-b_i a_i^T x)) + reg/2 ||x||^2, labels b_i in {-1, +1}.

    Strongly convex (mu >= reg); x*, f* found by Newton's method to machine precision. On user
    data the smaller of the two target values becomes -1, the larger +1; with reg = 0, mu is
    unknown and the minimizer exists only if the classes overlap (else Newton fails, saying so).
    """

    name = "logistic"
    citation = "l2-regularized logistic regression (standard finite-sum benchmark)"
    convex, margin, phi_curvature = True, True, 0.25
    kl_exponent = 0.5
    reg = 1e-2
    box = (-1.0, 1.0)

    rows_per_dim = 5

    def __init__(self, dim: int = 20, n: int | None = None, reg: float = 1e-2, data_seed: int = 0):
        super().__init__(dim)
        n = self.rows_per_dim * dim if n is None else n
        self.reg = reg
        rng = np.random.default_rng(data_seed)
        A = rng.standard_normal((n, dim))
        self._set_data(A, np.where(A @ rng.standard_normal(dim) + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0))

    @classmethod
    def _target(cls, b, source):
        labels = np.unique(b)
        if len(labels) != 2:
            raise InputError(f"{source}: logistic needs a target with two classes, found {len(labels)} "
                             f"distinct values: use least_squares, or give two-class data", "data")
        return np.where(b == labels[1], 1.0, -1.0)

    def _solve(self, gram):
        self.mu = self.reg if self.reg > 0 else None
        self.x_star = self._newton()
        self.f_star = float(self.f(self.x_star[None])[0])

    def _newton(self, iters: int = 100):
        """Newton's method from 0, the step halved while it increases f (badly scaled data); an
        InputError unless it ends at a stationary point with a vanishing step."""
        x, step = np.zeros(self.dim), np.full(self.dim, np.inf)
        fx = self.f(x[None])[0]
        for _ in range(iters):
            z = self.b * (self.A @ x)
            s = 0.5 * (1 - np.tanh(0.5 * z))                    # sigmoid(-z), stable
            H = self._gram(s * (1 - s)) + self.reg * np.eye(self.dim)
            try:
                step = np.linalg.solve(H, self.grad(x[None])[0])
            except np.linalg.LinAlgError:             # reg = 0 on separable data: H -> 0
                break
            while self.f((x - step)[None])[0] > fx + 1e-12 * (1 + abs(fx)) and np.any(step):
                step = step / 2
            x = x - step
            fx = self.f(x[None])[0]
            if np.linalg.norm(step) < 1e-15 * (1 + np.linalg.norm(x)):
                break
        g, g0 = np.linalg.norm(self.grad(x[None])), np.linalg.norm(self.grad(np.zeros((1, self.dim))))
        if not (g <= 1e-8 * (1 + g0) and np.linalg.norm(step) <= 1e-8 * (1 + np.linalg.norm(x))):
            raise InputError(f"{self.source or self.name}: Newton's method found no minimizer (||grad f|| = "
                             f"{g:.3g}, last step {np.linalg.norm(step):.3g}): the classes may be separable; "
                             f"use reg > 0", "data" if self.source else None)
        return x

    def phi(self, z):
        return array_namespace(z).logaddexp(0.0, -z)

    def dphi(self, z):
        return -0.5 * (1 - array_namespace(z).tanh(0.5 * z))

    def sympy_phi(self, z):
        return sp.log(1 + sp.exp(-z))
