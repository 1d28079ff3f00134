"""SDE models (convergence/sde.py) and the batch objectives (convergence/objectives.py): coefficients
against the paper's closed forms, steps by hand, exact moments and Lyapunov solutions, weak error
and noise, saddle thresholds from both sides, the run_sde CLI and the quick claims of compagnoni2023.
Every test shows the wrong implementation it rejects failing it."""

import numpy as np
import pytest
from conftest import call, one_line

from convergence import sde
from convergence.errors import InputError
from convergence.methods import make_method
from convergence.objectives import MLPBatches, NoisyQuadratic
from convergence.random import normal
from convergence.verdicts import fit_rate
from experiments.mutants import AntiSAM
from experiments.papers import compagnoni2023 as paper
from experiments.papers.compagnoni2023 import DiffusionTimes, model

H = np.array([[1.0, 0.3], [0.3, 0.5]])
C = np.array([[1.0, 0.5], [-1.0, 0.3], [0.2, -1.0], [-0.2, 0.2]])
METHODS = ["gd", "usam", "sam", "dnsam"]


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


def modified_loss(obj, method, rho, X):
    """Compagnoni et al. Sec. 3: f (SGD), f + rho/2 E||grad f_g||^2 (USAM), f + rho E||grad f_g||
    (SAM), f + rho ||grad f|| (DNSAM, exact here since H_g = H)."""
    G = obj.grads(X)
    norms = np.linalg.norm(G, axis=-1)
    extra = {"gd": 0 * norms[:, 0], "usam": 0.5 * np.mean(norms**2, axis=1), "sam": np.mean(norms, axis=1),
             "dnsam": np.linalg.norm(G.mean(axis=1), axis=-1)}[method]
    return obj.loss(X) + rho * extra


@pytest.mark.parametrize("method", METHODS)
def test_drift_is_minus_gradient_of_the_modified_loss(quad, method):
    """The drift, built from the rule's own direction, is -grad of the paper's regularized loss; every
    other method's SDE in its place fails the same check."""
    X = np.array([[2.0, -1.0], [0.3, 0.7], [-1.5, 2.5]])
    target = -fd_grad(lambda Y: modified_loss(quad, method, 0.3, Y), X)
    assert np.allclose(model(method).coefficients(quad, 0.3, X)[0], target, atol=1e-6)
    for other in set(METHODS) - {method}:
        assert not np.allclose(model(other).coefficients(quad, 0.3, X)[0], target, atol=1e-3)


def test_usam_and_dnsam_diffusion_equal_the_papers_closed_forms(quad):
    """(I + rho H) Sigma (I + rho H) for USAM, (I + rho H/||grad f||) Sigma (...) for DNSAM, Sigma for
    SGD; SGD's diffusion in place of USAM's fails."""
    X = np.array([[2.0, -1.0], [0.4, 0.1]])
    rho, Sigma = 0.4, quad.sigma
    A = np.eye(2) + rho * H
    _, cov = sde.drift_and_covariance(model("usam"), quad, rho, X)
    assert np.allclose(cov, A @ Sigma @ A, atol=1e-12)
    assert not np.allclose(sde.drift_and_covariance(model("gd"), quad, rho, X)[1], A @ Sigma @ A, atol=1e-3)
    _, cov = sde.drift_and_covariance(model("dnsam"), quad, rho, X)
    for p in range(2):
        B = np.eye(2) + rho * H / np.linalg.norm(H @ (X[p] - C.mean(0)))
        assert np.allclose(cov[p], B @ Sigma @ B, atol=1e-12)
    assert np.allclose(sde.drift_and_covariance(model("gd"), quad, rho, X)[1], Sigma, atol=1e-12)


def test_sde_takes_its_direction_from_the_rule_object(quad):
    """Any rule object, a mutant included, gives its own expanded step s_g = grad f_g + rho H d_g:
    anti-SAM (d = -g/||g||) by hand; rules with state are refused with one line."""
    X = np.array([[2.0, -1.0]])
    G = (X[0] - C) @ H
    expect = G - 0.3 * (G / np.linalg.norm(G, axis=1, keepdims=True)) @ H
    assert np.allclose(sde.SDE(AntiSAM()).steps(quad, 0.3, X)[0], expect, atol=1e-14)
    assert not np.allclose(model("sam").steps(quad, 0.3, X)[0], expect, atol=1e-3)
    for name in ("fsam", "vasso", "rsam", "msam"):
        with pytest.raises(InputError, match=f"method '{name}'"):
            sde.SDE(make_method(name))


def test_one_euler_maruyama_step_by_hand(quad):
    X0 = np.array([[2.0, -1.0]])
    eta, rho, dt = 0.05, 0.3, 0.01
    _, _, X1 = sde.simulate(model("sam"), quad, eta, rho, X0, dt, dt=dt, seed=5, times=[dt])
    G = (X0[0] - C) @ H                                                 # batch gradients
    S = G + rho * (G / np.linalg.norm(G, axis=1, keepdims=True)) @ H    # SAM expanded steps
    xi = normal(5, [0], sde.NOISE_STREAM, 0, (4,))[0]
    F = (S - S.mean(0)) / 2.0
    expect = X0[0] - dt * S.mean(0) + np.sqrt(eta * dt) * xi @ F
    assert np.allclose(X1[0], expect, atol=1e-14)
    wrong = X0[0] - dt * S.mean(0) + np.sqrt(eta) * dt * xi @ F        # noise scaled by dt, not sqrt(dt)
    assert not np.allclose(X1[0], wrong, atol=1e-6)


def test_discrete_step_is_the_method(quad):
    """One step of the discrete DNSAM (the engine with methods.py's rule) by hand, batch from
    draw_batches; SAM's step (batch-gradient norm) differs."""
    X = np.array([[2.0, -1.0], [0.5, 0.5]])
    rho, eta = 0.3, 0.1
    _, _, out = sde.discrete(make_method("dnsam"), quad, eta, rho, X, 1, seed=7, runs=[3, 9], times=[eta])
    _, _, sam = sde.discrete(make_method("sam"), quad, eta, rho, X, 1, seed=7, runs=[3, 9], times=[eta])
    g = sde.draw_batches(7, [3, 9], 0, len(C))
    full = (X - C.mean(0)) @ H
    for p in range(2):
        gp = H @ (X[p] - C[g[p]])
        y = X[p] + rho * gp / np.linalg.norm(full[p])
        assert np.allclose(out[p], X[p] - eta * H @ (y - C[g[p]]), atol=1e-14)
    assert not np.allclose(sam, out, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_discrete_is_the_engine_run(quad, method):
    """discrete = convergence.runner.run with the methods.py rule and the batch sampler, however the
    recording times split it, and with a radius per path = each path run alone at its radius."""
    from convergence.runner import iterate as run
    X0 = np.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 1.5]])
    rho = np.array([0.1, 0.3, 0.3])
    paths = np.array([4, 0, 2])
    rule = make_method(method)
    _, v, X = sde.discrete(rule, quad, 0.05, rho, X0, 40, seed=3, runs=paths, times=np.linspace(0, 2, 9))
    for p in range(3):
        tr = run(sde.ObjectiveProblem(quad), rule, lambda k: 0.05, lambda k: rho[p], 40, 1, seed=3,
                 x0=X0[p:p + 1], sampler=sde.BatchSampler(quad, paths[p:p + 1]))
        assert np.allclose(tr.final_x[0], X[p], rtol=0, atol=1e-13)       # batched BLAS: round-off only
        assert np.isclose(v[-1, p], quad.loss(X[p:p + 1])[0], rtol=1e-13) and v[0, p] == quad.loss(X0[p:p + 1])[0]


def test_discrete_marks_diverged_paths_nan():
    """Paths the engine retires (|x| > 1e12) end as NaN; the others are unaffected."""
    obj = NoisyQuadratic.diagonal([1.0, -2.0])
    X0 = np.array([[1.0, 1.0], [1.0, 0.0]])
    _, v, X = sde.discrete(make_method("gd"), obj, 0.5, 0.0, X0, 100, times=[0, 50])
    assert np.all(np.isnan(X[0])) and np.allclose(X[1], [0.5**100, 0.0])
    assert np.isnan(v[-1, 0]) and np.isfinite(v[-1, 1])


def test_exact_moments_by_hand_and_against_the_simulations(quad):
    """discrete_moments: two USAM steps by hand (enumerating the 16 batch pairs); sde_moments: the OU
    solution; both against Monte Carlo of the discrete method and the SDE. The SDE without diffusion
    has covariance 0."""
    eta, rho, x0 = 0.1, 0.5, np.array([1.0, -1.0])
    M = (np.eye(2) + rho * H) @ H
    ends = [x0 - eta * M @ (x0 - C[a]) for a in range(4)]
    ends = np.array([x - eta * M @ (x - C[b]) for x in ends for b in range(4)])
    m, Cd = sde.discrete_moments(make_method("usam"), quad, eta, rho, x0, 2)
    assert np.allclose(m, ends.mean(0), atol=1e-14) and np.allclose(Cd, np.cov(ends.T, bias=True), atol=1e-14)
    (md, Cd), (ms, Cs) = (sde.discrete_moments(make_method("usam"), quad, eta, rho, x0, 10),
                          sde.sde_moments(model("usam"), quad, eta, rho, x0, 1.0))
    P = 20000
    X0 = np.tile(x0, (P, 1))
    _, _, Xd = sde.discrete(make_method("usam"), quad, 0.1, 0.5, X0, 10, seed=1, times=[1.0])
    assert np.allclose(Xd.mean(0), md, atol=4 * np.sqrt(np.diag(Cd) / P).max())
    assert np.allclose(np.cov(Xd.T), Cd, atol=0.05 * np.abs(Cd).max())
    v = sde.simulate_richardson(model("usam"), quad, 0.1, 0.5, X0, 1.0, 0.05, lambda X: X[:, 0] ** 2, seed=2)
    assert abs(v.mean() - (ms[0] ** 2 + Cs[0, 0])) < 4 * v.std() / np.sqrt(P)
    assert np.all(sde.sde_moments(DiffusionTimes(model("usam"), 0.0), quad, eta, rho, x0, 1.0)[1] == 0)
    with pytest.raises(InputError, match="not affine"):
        sde.discrete_moments(make_method("sam"), quad, eta, rho, x0, 2)


def test_stationary_covariances_solve_the_lyapunov_equations():
    """1-D f_g = lam/2 (x - c_g)^2, USAM: a = lam (1 + rho lam), Q = a^2 Var(c); the discrete
    stationary variance eta^2 Q / (1 - (1 - eta a)^2), the SDE's eta Q / (2 a) (hand-derived).
    SGD's (a = lam) differs."""
    lam, rho, eta = 2.0, 0.3, 0.05
    c = np.array([[1.0], [-0.5], [0.2]])
    obj = NoisyQuadratic(np.array([[lam]]), c)
    a = lam * (1 + rho * lam)
    Q = a**2 * np.var(c)
    Cd, Cs = sde.stationary_covariances(make_method("usam"), obj, eta, rho)
    assert np.isclose(Cd[0, 0], eta**2 * Q / (1 - (1 - eta * a) ** 2), rtol=1e-12)
    assert np.isclose(Cs[0, 0], eta * Q / (2 * a), rtol=1e-12)
    assert not np.isclose(sde.stationary_covariances(make_method("gd"), obj, eta, rho)[1][0, 0], Cs[0, 0], rtol=1e-2)


@pytest.mark.parametrize("method", ["gd", "usam"])
def test_sde_moments_are_weak_order_one_and_the_noise_free_ode_fails(method):
    """Closed-form moments, noisy quadratic, T = 1: the SDE's covariance has relative error O(eta)
    (slope 1 in eta, below 5 % at eta = 0.0125). The noise-free ODE (the same drift, no diffusion)
    gets the second moment E||x||^2 to O(eta) as well (its slope is ~1: that test alone cannot see the
    noise) but its covariance error stays 1, so it fails this check."""
    obj, rule = paper.quadratic(), make_method(method)
    etas = np.array([0.05, 0.025, 0.0125])
    rel, weak = {}, {}
    for kind, subject in (("sde", model(method)), ("ode", DiffusionTimes(model(method), 0.0))):
        rel[kind], weak[kind] = [], []
        for eta in etas:
            md, Cd = sde.discrete_moments(rule, obj, eta, paper.WEAK_RHO, paper.WEAK_X0, int(round(1 / eta)))
            ms, Cs = sde.sde_moments(subject, obj, eta, paper.WEAK_RHO, paper.WEAK_X0, 1.0)
            rel[kind].append(np.linalg.norm(Cs - Cd) / np.linalg.norm(Cd))
            weak[kind].append(abs(md @ md + np.trace(Cd) - ms @ ms - np.trace(Cs)))
        rel[kind] = np.array(rel[kind])
    assert abs(fit_rate(etas, rel["sde"])["slope"] - 1) < 0.15 and rel["sde"][-1] < 0.05
    assert np.allclose(rel["ode"], 1.0)                                 # the ODE: no covariance at all
    assert abs(fit_rate(etas, np.array(weak["ode"]))["slope"] - 1) < 0.15   # ... yet weak order 1 in E||x||^2


def test_weak_error_slope_sam_monte_carlo():
    """SAM by Monte Carlo: slope ~ 1; USAM's SDE in place of SAM's has an O(rho) error that does not
    shrink with eta (slope ~ 0)."""
    etas = [0.1, 0.05, 0.025]
    measure = paper.weak_error_measure("sam", etas, 3000, seed=11)
    right = measure(model("sam"))
    assert right.passed and abs(right.measured["slope"] - 1) < max(0.2, 3 * right.measured["slope_se"])
    wrong = measure(model("usam"))
    assert not wrong.passed and abs(wrong.measured["slope"]) < 0.5


def test_one_step_noise_of_sam_and_its_mutants():
    """The covariance of one SDE step = eta^2 Cov_g[g_k] of discrete SAM (within 5 %); the SDE without
    diffusion, with it scaled by sqrt(2), and SGD's SDE in SAM's place all fail."""
    measure = paper.increment_measure("sam", 10000)
    assert measure(model("sam")).passed
    for wrong in (DiffusionTimes(model("sam"), 0.0), DiffusionTimes(model("sam"), np.sqrt(2)), model("gd")):
        assert not measure(wrong).passed


@pytest.mark.parametrize("rho,attracted", [(0.4, False), (0.6, True)])
def test_usam_saddle_threshold_both_sides(rho, attracted):
    """lambda = -2: the direction is attracted iff rho |lambda| > 1 (threshold rho = 0.5), flow (exact)
    and discrete; USAM at 2 rho puts rho = 0.4 on the wrong side."""
    obj, x0 = paper.saddle(), np.array([0.0, 0.0, 1.0])
    for subject, expect in ((model("usam"), attracted), (model("usam", 2.0), True)):
        flow = sde.sde_moments(subject, obj, 0.0, rho, x0, 30.0)[0]
        disc = paper.saddle_discrete(subject.rule, rho, x0[None], 30.0, 0.01)[0]
        for X in (flow, disc):
            assert (abs(X[2]) < 0.05) if expect else (abs(X[2]) > 20)


@pytest.mark.parametrize("s,attracted", [(0.9, True), (1.1, False)])
def test_sam_saddle_threshold_both_sides(s, attracted):
    """||H x0|| = s rho |lambda| along the eigenvector of lambda = -0.5: attracted iff s < 1 (flow and
    discrete); USAM's SDE in SAM's place escapes from both sides."""
    rho = 0.5
    x0 = np.array([[1e-3, s * rho, 0.0]])
    for subject, expect in ((model("sam"), attracted), (model("usam"), False)):
        _, v, _ = sde.simulate(subject, paper.saddle(), 0.0, rho, x0, 20.0, dt=0.002, times=[20.0], observe=paper.norm)
        disc = paper.norm(paper.saddle_discrete(subject.rule, rho, x0, 20.0, 0.002))
        for r in (v[-1] / paper.norm(x0), disc / paper.norm(x0)):
            assert (r[0] < 0.05) if expect else (r[0] > 10)


@pytest.mark.parametrize("make", [MLPBatches.iris, MLPBatches.breast_cancer])
def test_mlp_gradients_and_hvps(make):
    """Batch gradients and f's gradient against central differences of the losses, HVPs against
    differences of gradients; the tanh net's gradient without tanh' (the linear net's) fails."""
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
    e, j = 1e-5, 3
    ref = (obj.grad_at(T + e * V[:, j], np.array([j, j])) - obj.grad_at(T - e * V[:, j], np.array([j, j]))) / (2 * e)
    assert np.allclose(hv[:, j], ref, rtol=1e-4, atol=1e-6)
    assert np.allclose(obj.grad_at(T, np.array([0, 4])), G[[0, 1], [0, 4]])
    if obj.act == "tanh":
        linear = MLPBatches.breast_cancer(activation="linear")
        assert not np.allclose(linear.grads(T), G, atol=1e-3)


def test_same_seed_same_paths(quad):
    X0 = np.tile([1.0, 1.0], (5, 1))
    sam = model("sam")
    a = sde.simulate(sam, quad, 0.1, 0.2, X0, 1.0, seed=3)[1]
    b = sde.simulate(sam, quad, 0.1, 0.2, X0, 1.0, seed=3)[1]
    c = sde.simulate(sam, quad, 0.1, 0.2, X0, 1.0, seed=4)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a path does not depend on how many paths share its batch
    d = sde.simulate(sam, quad, 0.1, 0.2, X0[:2], 1.0, seed=3)[1]
    assert np.array_equal(a[:, :2], d)


def test_run_sde_cli(tmp_path):
    from experiments import run_sde
    assert run_sde.main(["--method", "usam", "--problem", "noisy_quadratic", "--eta", "0.05", "--rho", "0.2",
                         "--paths", "4", "--out", str(tmp_path / "r")]) == 0
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["figure.pdf", "figure.png", "summary.json", "trajectories.csv"]
    run_sde.main(["--method", "usam", "--problem", "noisy_quadratic", "--eta", "0.05", "--rho", "0.2",
                  "--paths", "4", "--out", str(tmp_path / "s")])
    assert (tmp_path / "r/trajectories.csv").read_bytes() == (tmp_path / "s/trajectories.csv").read_bytes()


@pytest.mark.parametrize("flags,message", [
    (["--method", "sma"], "did you mean 'sam'"),
    (["--method", "SAM"], "did you mean 'sam'"),
    (["--method", "fsam"], "--method 'fsam' keeps state between steps"),
    (["--eta", "0"], "--eta must be a finite positive number"),
    (["--problem", "irsi"], "did you mean 'iris'"),
    (["--paths", "0"], "--paths must be a finite positive integer"),
    (["--problem", "iris", "--paths", "2000000"], "--paths x dimension x batches"),
])
def test_run_sde_bad_input(tmp_path, capsys, flags, message):
    out = tmp_path / "o"
    assert call("run_sde", ["--out", str(out), *flags]) == 2
    assert message in one_line(capsys.readouterr().err) and not out.exists()


@pytest.mark.slow
def test_quick_claims_pass(tmp_path):
    """experiments.reproduce compagnoni2023 --quick: every claim PASS, each rejecting all its mutants
    (at least one), every figure written."""
    claims = paper.run(tmp_path, quick=True)
    assert len(claims) == 16
    assert all(c.result == "PASS" and len(c.mutants) >= 1 for c in claims), \
        [(c.name, c.mutant_column, c.measured) for c in claims if c.result != "PASS"]
    for stem in ("weak_error", "sde_noise", "stationary_covariance", "saddle_usam", "saddle_sam",
                 "saddle_sam_setup", "mlp_iris", "mlp_breast_cancer"):
        assert (tmp_path / f"{stem}.png").exists() and (tmp_path / f"{stem}.pdf").exists()
