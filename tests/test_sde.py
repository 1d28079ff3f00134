"""SDE models of SGD/USAM/SAM/DNSAM (convergence/sde.py): coefficients against the paper's closed
forms, one Euler-Maruyama step by hand, weak error linear in eta, saddle thresholds from both sides,
the MLP objectives' gradients, reproducibility, the CLI and the quick claims of compagnoni2023."""
import subprocess
import sys

import numpy as np
import pytest

from convergence import sde
from convergence.random import normal
from experiments.papers import compagnoni2023 as paper
from problems.diagonal_net import MLPBatches, NoisyQuadratic

H = np.array([[1.0, 0.3], [0.3, 0.5]])
C = np.array([[1.0, 0.5], [-1.0, 0.3], [0.2, -1.0], [-0.2, 0.2]])


@pytest.fixture
def quad():
    return NoisyQuadratic(H, C)


def fd_grad(fun, X, eps=1e-6):
    out = np.zeros_like(X)
    for i in range(X.shape[1]):
        E = np.zeros_like(X)
        E[:, i] = eps
        out[:, i] = (fun(X + E) - fun(X - E)) / (2 * eps)
    return out


@pytest.mark.parametrize("method", ["sgd", "usam", "sam", "dnsam"])
def test_drift_is_minus_gradient_of_the_modified_loss(quad, method):
    """Compagnoni et al. Sec. 3: the drift is -grad of f + rho/2 E||grad f_g||^2 (USAM),
    f + rho E||grad f_g|| (SAM), f + rho ||grad f|| (DNSAM, H_g = H here)."""
    X = np.array([[2.0, -1.0], [0.3, 0.7], [-1.5, 2.5]])
    b, _ = sde.coefficients(quad, method, 0.3, X)
    g = fd_grad(lambda Y: sde.modified_loss(quad, method, 0.3, Y), X)
    assert np.allclose(b, -g, atol=1e-6)


def test_usam_and_dnsam_diffusion_equal_the_papers_closed_forms(quad):
    X = np.array([[2.0, -1.0], [0.4, 0.1]])
    rho = 0.4
    Sigma = quad.sigma
    _, cov = sde.drift_and_covariance(quad, "usam", rho, X)
    A = np.eye(2) + rho * H
    assert np.allclose(cov, A @ Sigma @ A, atol=1e-12)                 # (I + rho H) Sigma (I + rho H)
    _, cov = sde.drift_and_covariance(quad, "dnsam", rho, X)
    for p in range(2):
        gn = np.linalg.norm(H @ (X[p] - C.mean(0)))
        A = np.eye(2) + rho * H / gn
        assert np.allclose(cov[p], A @ Sigma @ A, atol=1e-12)
    _, cov = sde.drift_and_covariance(quad, "sgd", rho, X)
    assert np.allclose(cov, Sigma, atol=1e-12)


def test_one_euler_maruyama_step_by_hand(quad):
    X0 = np.array([[2.0, -1.0]])
    eta, rho, dt = 0.05, 0.3, 0.01
    _, _, X1 = sde.simulate(quad, "sam", eta, rho, X0, dt, dt=dt, seed=5, times=[dt])
    G = (X0[0] - C) @ H                                                 # batch gradients
    S = G + rho * (G / np.linalg.norm(G, axis=1, keepdims=True)) @ H    # SAM expanded steps
    xi = normal(5, [0], sde.NOISE_STREAM, 0, (4,))[0]
    F = (S - S.mean(0)) / 2.0
    expect = X0[0] - dt * S.mean(0) + np.sqrt(eta * dt) * xi @ F
    assert np.allclose(X1[0], expect, atol=1e-14)


def test_discrete_step_is_the_method(quad):
    """One step of the discrete DNSAM (the engine with methods.py's rule) by hand, batch from draw_batches."""
    X = np.array([[2.0, -1.0], [0.5, 0.5]])
    rho, eta = 0.3, 0.1
    _, _, out = sde.discrete(quad, "dnsam", eta, rho, X, 1, seed=7, runs=[3, 9], times=[eta])
    g = sde.draw_batches(7, [3, 9], 0, len(C))
    full = (X - C.mean(0)) @ H
    for p in range(2):
        gp = H @ (X[p] - C[g[p]])
        y = X[p] + rho * gp / np.linalg.norm(full[p])
        assert np.allclose(out[p], X[p] - eta * H @ (y - C[g[p]]), atol=1e-14)


@pytest.mark.parametrize("method", ["sgd", "usam", "sam", "dnsam"])
def test_discrete_is_the_engine_run(quad, method):
    """discrete = convergence.runner.run with the methods.py rule and the batch sampler, however the
    recording times split it, and with a radius per path = each path run alone at its radius."""
    from convergence.methods import make_method
    from convergence.runner import run
    X0 = np.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 1.5]])
    rho = np.array([0.1, 0.3, 0.3])
    paths = np.array([4, 0, 2])
    _, v, X = sde.discrete(quad, method, 0.05, rho, X0, 40, seed=3, runs=paths, times=np.linspace(0, 2, 9))
    for p in range(3):
        tr = run(sde.ObjectiveProblem(quad), make_method(sde.RULES[method]), lambda k: 0.05,
                 lambda k: rho[p], 40, 1, seed=3, x0=X0[p:p + 1], sampler=sde.BatchSampler(quad, paths[p:p + 1]))
        assert np.allclose(tr.final_x[0], X[p], rtol=0, atol=1e-13)       # batched BLAS: round-off only
        assert np.isclose(v[-1, p], quad.loss(X[p:p + 1])[0], rtol=1e-13) and v[0, p] == quad.loss(X0[p:p + 1])[0]


def test_discrete_marks_diverged_paths_nan():
    """Paths the engine retires (|x| > 1e12) end as NaN; the others are unaffected."""
    obj = NoisyQuadratic.diagonal([1.0, -2.0], np.zeros((1, 2)))
    X0 = np.array([[1.0, 1.0], [1.0, 0.0]])
    _, v, X = sde.discrete(obj, "sgd", 0.5, 0.0, X0, 100, times=[0, 50])
    assert np.all(np.isnan(X[0])) and np.allclose(X[1], [0.5**100, 0.0])
    assert np.isnan(v[-1, 0]) and np.isfinite(v[-1, 1])


def test_linear_moments_match_the_simulations(quad):
    """The closed-form moments (SGD/USAM, linear) agree with the discrete method and the SDE by MC."""
    x0 = np.array([1.0, -1.0])
    (md, Cd), (ms, Cs) = sde.linear_moments(H, C, "usam", 0.1, 0.5, x0, 1.0)
    P = 20000
    X0 = np.tile(x0, (P, 1))
    _, _, Xd = sde.discrete(quad, "usam", 0.1, 0.5, X0, 10, seed=1, times=[1.0])
    assert np.allclose(Xd.mean(0), md, atol=4 * np.sqrt(np.diag(Cd) / P).max())
    assert np.allclose(np.cov(Xd.T), Cd, atol=0.1 * np.abs(Cd).max())
    v = sde.simulate_richardson(quad, "usam", 0.1, 0.5, X0, 1.0, 0.01, lambda X: X[:, 0], seed=2)
    assert abs(v.mean() - ms[0]) < 4 * v.std() / np.sqrt(P) + 1e-3


@pytest.mark.parametrize("method", ["sgd", "usam"])
def test_weak_error_slope_exact(method):
    etas = [0.05, 0.025, 0.0125]
    errs, _ = paper.weak_errors(method, etas, 0)
    assert abs(sde.fit_slope(etas, errs) - 1) < 0.1


def test_weak_error_slope_sam_monte_carlo():
    etas = [0.1, 0.05, 0.025]
    errs, ses = paper.weak_errors("sam", etas, 4000, seed=11)
    slope, se = paper.slope_with_se(etas, errs, ses)
    assert abs(slope - 1) < max(0.2, 3 * se)


@pytest.mark.parametrize("rho,attracted", [(0.4, False), (0.6, True)])
def test_usam_saddle_threshold_both_sides(rho, attracted):
    """lambda = -2: the direction is attracted iff rho |lambda| > 1 (threshold rho = 0.5)."""
    X = paper._saddle_flow("usam", rho, np.array([0.0, 0.0, 1.0]), 30.0, 0.01)[0]
    assert (abs(X[2]) < 0.05) if attracted else (abs(X[2]) > 20)


@pytest.mark.parametrize("s,attracted", [(0.9, True), (1.1, False)])
def test_sam_saddle_threshold_both_sides(s, attracted):
    rho = 0.5
    x0 = np.array([1e-3, s * rho, 0.0])       # eigvec of lambda = -0.5, ||H x0|| = s rho |lambda|
    for eta in (None, 0.002):
        X = paper._saddle_flow("sam", rho, x0, 20.0, 0.002, eta)[0]
        r = np.linalg.norm(X) / np.linalg.norm(x0)
        assert (r < 0.05) if attracted else (r > 10)


@pytest.mark.parametrize("make", [MLPBatches.iris, MLPBatches.breast_cancer])
def test_mlp_gradients_and_hvps(make):
    obj = make()
    rng = np.random.default_rng(0)
    T = obj.init(np.arange(2)) + 0.1 * rng.standard_normal((2, obj.dim))
    G = obj.grads(T)
    for j in rng.integers(obj.dim, size=6):
        E = np.zeros(obj.dim)
        E[j] = 1e-6
        fd = (obj.batch_losses(T + E) - obj.batch_losses(T - E)) / 2e-6
        assert np.allclose(G[:, :, j], fd, atol=1e-7)
    E = np.zeros(obj.dim)
    E[j] = 1e-6
    assert np.allclose(G.mean(1)[:, j], (obj.loss(T + E) - obj.loss(T - E)) / 2e-6, atol=1e-7)  # f = mean of batches
    V = rng.standard_normal((2, obj.n_batches, obj.dim))
    hv = obj.hvps(T, V)
    e = 1e-5
    j = 3
    ref = (obj.grad_at(T + e * V[:, j], np.array([j, j])) - obj.grad_at(T - e * V[:, j], np.array([j, j]))) / (2 * e)
    assert np.allclose(hv[:, j], ref, rtol=1e-4, atol=1e-6)
    assert np.allclose(obj.grad_at(T, np.array([0, 4])), G[[0, 1], [0, 4]])


def test_same_seed_same_paths(quad):
    X0 = np.tile([1.0, 1.0], (5, 1))
    a = sde.simulate(quad, "sam", 0.1, 0.2, X0, 1.0, seed=3)[1]
    b = sde.simulate(quad, "sam", 0.1, 0.2, X0, 1.0, seed=3)[1]
    c = sde.simulate(quad, "sam", 0.1, 0.2, X0, 1.0, seed=4)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a path does not depend on how many paths share its batch
    d = sde.simulate(quad, "sam", 0.1, 0.2, X0[:2], 1.0, seed=3)[1]
    assert np.array_equal(a[:, :2], d)


def test_run_sde_cli(tmp_path):
    from experiments import run_sde
    assert run_sde.main(["--method", "usam", "--problem", "noisy_quadratic", "--eta", "0.05", "--rho", "0.2",
                         "--paths", "4", "--out", str(tmp_path / "r")]) == 0
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["figure.pdf", "figure.png", "summary.json", "trajectories.csv"]


@pytest.mark.parametrize("flags,message", [
    (["--method", "sma"], "did you mean 'sam'"),
    (["--eta", "0"], "--eta must be a finite positive number"),
    (["--problem", "irsi"], "did you mean 'iris'"),
    (["--paths", "0"], "--paths must be a finite positive integer"),
])
def test_run_sde_bad_input(tmp_path, flags, message):
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "experiments.run_sde", "--out", str(out), *flags],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr and not out.exists()


def test_quick_claims_pass(tmp_path):
    """experiments.reproduce compagnoni2023 --quick: every claim PASS, every figure written."""
    claims = paper.run(tmp_path, quick=True)
    assert len(claims) == 10
    assert all(c.passed for c in claims), [(c.name, c.measured) for c in claims if not c.passed]
    for stem in ("weak_error", "saddle_usam", "saddle_sam", "mlp_iris", "mlp_breast_cancer"):
        assert (tmp_path / f"{stem}.png").exists() and (tmp_path / f"{stem}.pdf").exists()
