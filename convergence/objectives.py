"""Batch objectives of the SDE experiments (Compagnoni et al., ICML 2023): f = (1/B) sum_g f_g with a
batch g drawn uniformly each step; numpy only, analytic gradients.

Contract (what convergence/sde.py uses): ``dim``, ``n_batches`` and, for X (P, dim),
``grads(X)`` -> (P, B, dim) the gradients of every batch function, ``hvps(X, V)`` -> (P, B, dim) the
products H_g(X[p]) V[p, g], ``grad_at(Y, g)`` -> (P, dim) the gradient of batch g[p] at Y[p], and
``loss(X)`` -> (P,) the full loss f.
"""
from __future__ import annotations

import numpy as np

from convergence.random import normal


class NoisyQuadratic:
    """f_g(x) = 1/2 (x - c_g)^T H (x - c_g), g uniform over B centres: every batch has Hessian H, the
    SGD noise covariance is Sigma = H Cov(c) H, and f's stationary point is mean(c). With an
    indefinite H and centred c it is the noisy saddle; with B = 1 and c = 0 the deterministic one."""

    def __init__(self, H, centres):
        self.H = np.atleast_2d(np.asarray(H, float))
        self.centres = np.atleast_2d(np.asarray(centres, float))
        self.dim, self.n_batches = len(self.H), len(self.centres)

    @classmethod
    def diagonal(cls, eigenvalues, centres=None):
        """H = diag(eigenvalues); without centres, the deterministic quadratic (one batch, c = 0)."""
        eigenvalues = np.asarray(eigenvalues, float)
        return cls(np.diag(eigenvalues), np.zeros((1, len(eigenvalues))) if centres is None else centres)

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
    'tanh' (breast cancer, the nonlinear one). Gradients are analytic (backpropagation, batched
    matrix products); Hessian-vector products are central differences of them with a step
    1e-4 / ||v|| (error O(1e-8 ||v||))."""

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
    def _sklearn(cls, loader, default_activation, default_batch, **kw):
        """A data set bundled with scikit-learn, with its default activation and batch size."""
        import sklearn.datasets
        data = getattr(sklearn.datasets, loader)()
        kw.setdefault("activation", default_activation)
        kw.setdefault("batch", default_batch)
        return cls(data.data, data.target, **kw)

    def init(self, runs, seed=0):
        """theta0 per run from the counter-based stream (seed, run): N(0, 1/fan_in) weights, 0 biases."""
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
        """T (..., dim), Xs (..., m, p) broadcastable: (hidden activations a, class probabilities)."""
        W1, b1, W2, b2 = self._unpack(T)
        z1 = Xs @ W1 + b1[..., None, :]
        a = z1 if self.act == "linear" else np.tanh(z1)
        z2 = a @ W2 + b2[..., None, :]
        z2 = z2 - z2.max(axis=-1, keepdims=True)
        e = np.exp(z2)
        return a, e / e.sum(axis=-1, keepdims=True)

    def _grad(self, T, Xs, Ys):
        """Mean cross-entropy gradient over the m samples: T (..., dim) -> (..., dim)."""
        a, P = self._forward(T, Xs)
        W2 = self._unpack(T)[2]
        d2 = (P - Ys) / Xs.shape[-2]                                   # (..., m, K)
        gW2 = np.swapaxes(a, -1, -2) @ d2
        back = d2 @ np.swapaxes(W2, -1, -2)
        d1 = back if self.act == "linear" else back * (1 - a * a)
        gW1 = np.swapaxes(Xs, -1, -2) @ d1
        lead = gW2.shape[:-2]
        return np.concatenate([g.reshape(lead + (-1,)) for g in (gW1, d1.sum(axis=-2), gW2, d2.sum(axis=-2))],
                              axis=-1)

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

    def batch_losses(self, X):
        """(P, B) the loss of every batch."""
        _, P = self._forward(X[:, None, :], self.Xb[None])
        return -np.mean(np.sum(self.Yb[None] * np.log(np.maximum(P, 1e-300)), axis=-1), axis=2)

    def loss(self, X):
        return self.batch_losses(X).mean(axis=1)
