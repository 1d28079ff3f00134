"""Compagnoni, Biggio, Orvieto, Proske, Kersting & Lucchi, "An SDE for Modeling SAM: Theory and
Insights", ICML 2023 (arXiv 2301.08203): the SDE models of SGD, USAM, SAM and DNSAM
(convergence/sde.py) checked against the discrete methods, each claim against the wrong models it
must reject (``DiffusionTimes``: the SDE without its diffusion or with it scaled; another method's
SDE in its place; the radius off by a factor 2, experiments.mutants.ScaledRadius).

Claims checked:
1. weak-error-*: |E||x_K||^2 - E||X_{K eta}||^2| is linear in eta (log-log slope ~ 1), on a quadratic
   with noisy minimizers where the expansion in rho is exact (rho fixed). This tests the drift: the
   noise-free ODE also has an O(eta) weak error, so the noise is tested by 2-3;
2. sde-noise-*: one Euler-Maruyama step of the SDE from fixed points has covariance eta^2 Sigma_method,
   the covariance of one step of the discrete method (enumerated exactly over the batches);
3. stationary-covariance: the stationary covariances of discrete USAM and of its SDE solve the
   discrete and the continuous Lyapunov equations (issue #16's setup: eta = 0.005, rho = eta,
   2 10^5 iterations, 3 runs);
4. mlp-*: Iris (linear) and breast-cancer (tanh) MLPs, eta = 0.01, rho in {0.001, 0.01, 0.1, 0.5},
   3 runs: the SDE reproduces the effect of rho on the mean training loss (SDE(rho) - SDE_SGD against
   discrete(rho) - SGD, common random numbers), tested for rho <= sqrt(eta), reported for rho = 0.5;
5. saddles: USAM's flow is attracted along lambda < 0 iff rho |lambda| > 1; SAM's is attracted when
   ||H x0|| < rho min |lambda_neg| and escapes along an eigenvector when ||H x0|| > rho |lambda|
   (derived from the flow); SAM is attracted for rho in {0.03, 0.05} and escapes for rho in
   {0.0001, 0.001} from x0 = (0.02, ..., 0.02) with eta = 0.001, 2 10^4 iterations (issue #16's setup).

The setups with eta = 0.001 and lambda = 0.001 are given by issue #16 as the paper's experiments;
the paper's text beyond its first page and its code could not be read offline, so the objectives
they were run on (and the role of lambda) are not known: ours are the quadratics below.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convergence import sde
from convergence.errors import InputError
from convergence.methods import make_method
from convergence.objectives import MLPBatches, NoisyQuadratic
from convergence.verdicts import fit_rate
from experiments.claims import Claim, Outcome, check
from experiments.mutants import ScaledRadius
from figures import sde as figures
from figures.convergence import save

TITLE = "Compagnoni et al. (ICML 2023): SDE models of SAM, USAM and DNSAM"
PAPER = "compagnoni2023"
METHODS = ("gd", "usam", "sam", "dnsam")

# the noisy quadratic: f_g = 1/2 (x - c_g)^T H (x - c_g), four centres, H = diag(1, 0.5)
WEAK_H = np.diag([1.0, 0.5])
WEAK_C = np.array([[1.0, 0.5], [-1.0, 0.3], [0.2, -1.0], [-0.2, 0.2]])
WEAK_X0 = np.array([3.0, -3.0])
WEAK_RHO, WEAK_T = 0.5, 1.0
# the saddle: one positive and two negative eigenvalues (USAM thresholds rho = 2 and rho = 0.5)
SADDLE_EIG = np.array([1.0, -0.5, -2.0])
MLP_RHOS = (0.001, 0.01, 0.1, 0.5)


class DiffusionTimes:
    """A wrong SDE model: ``model`` with its diffusion factor times c (c = 0: the noise-free ODE)."""

    def __init__(self, model, c: float):
        self.model, self.rule, self.c = model, model.rule, c
        self.name = f"{model.name} (diffusion x {c:g})"

    def coefficients(self, obj, rho, X):
        b, F = self.model.coefficients(obj, rho, X)
        return b, self.c * F


def model(name: str, factor: float = 1.0):
    """The SDE of a methods.py rule, its radius times ``factor`` (a mutant where factor != 1)."""
    rule = make_method(name)
    return sde.SDE(rule if factor == 1 else ScaledRadius(rule, factor))


def label(name: str) -> str:
    return "SGD" if name == "gd" else name.upper()


def quadratic():
    return NoisyQuadratic(WEAK_H, WEAK_C)


# --- 1. weak error (drift) ---------------------------------------------------------------------------

def affine(rule, obj) -> bool:
    """Whether the discrete step of ``rule`` on ``obj`` is affine in x (closed-form moments exist)."""
    try:
        sde.affine_fit(lambda X: sde.batch_steps(rule, obj, WEAK_RHO, X), obj.dim, rule.name)
        return True
    except InputError:
        return False


def second_moment(x):
    return np.sum(x * x, axis=-1)


def slope_with_se(etas, errs, ses):
    """Least-squares log-log slope (verdicts.fit_rate) and its standard error from the Monte Carlo
    errors (delta method: sd(log e) = se / e)."""
    x = np.log(np.asarray(etas))
    s = np.maximum(np.asarray(ses) / np.asarray(errs), 1e-12)
    X = np.c_[x - x.mean(), np.ones_like(x)]
    inv = np.linalg.inv(X.T @ X)
    cov = inv @ X.T @ np.diag(s**2) @ X @ inv
    return fit_rate(np.asarray(etas, float), np.asarray(errs, float))["slope"], float(np.sqrt(cov[0, 0]))


def weak_error_measure(name: str, etas, paths: int, seed: int = 3):
    """measure(model) -> Outcome for the weak error of E||x||^2 at WEAK_T against the discrete method
    of ``name``: closed-form moments where the step is affine (sgd, usam), else Monte Carlo (the SDE
    by Euler-Maruyama with Richardson extrapolation, dt = min(etas): bias O(dt^2), far below the
    weak error)."""
    obj, rule = quadratic(), make_method(name)
    exact = affine(rule, obj)
    X0 = np.tile(WEAK_X0, (paths, 1))
    truth = []
    for eta in etas:
        K = int(round(WEAK_T / eta))
        if exact:
            m, C = sde.discrete_moments(rule, obj, eta, WEAK_RHO, WEAK_X0, K)
            truth.append((m @ m + np.trace(C), 0.0))
        else:
            _, v, _ = sde.discrete(rule, obj, eta, WEAK_RHO, X0, K, seed=seed, times=[WEAK_T], observe=second_moment)
            truth.append((v[-1].mean(), v[-1].var() / paths))

    def measure(subject):
        errs, ses = [], []
        for eta, (value, var) in zip(etas, truth):
            if exact:
                m, C = sde.sde_moments(subject, obj, eta, WEAK_RHO, WEAK_X0, WEAK_T)
                est, est_var = m @ m + np.trace(C), 0.0
            else:
                v = sde.simulate_richardson(subject, obj, eta, WEAK_RHO, X0, WEAK_T, min(etas), second_moment,
                                            seed=seed + 1)
                est, est_var = v.mean(), v.var() / paths
            errs.append(abs(value - est))
            ses.append(np.sqrt(var + est_var))
        errs, ses = np.array(errs), np.array(ses)
        slope, se = slope_with_se(etas, errs, ses)
        # exact moments: only the O(eta^2) curvature of the error curve moves the slope off 1;
        # Monte Carlo: 3 standard errors of the slope on top
        tol = 0.15 if exact else max(0.15, 3 * se)
        return Outcome(bool(abs(slope - 1) <= tol),
                       {"etas": list(etas), "errors": errs.tolist(), "mc_se": ses.tolist(), "slope": slope,
                        "slope_se": se, "tolerance": tol, "paths": 0 if exact else paths,
                        "method": "exact moments" if exact else "Monte Carlo"}, (errs, ses))
    return measure


WEAK_MUTANTS = {"gd": {"USAM's SDE in place of SGD's": ("usam", 1.0)},
                "usam": {"SGD's SDE in place of USAM's": ("gd", 1.0), "USAM's SDE at 2 rho": ("usam", 2.0)},
                "sam": {"SGD's SDE in place of SAM's": ("gd", 1.0), "USAM's SDE in place of SAM's": ("usam", 1.0)},
                "dnsam": {"USAM's SDE in place of DNSAM's": ("usam", 1.0), "SGD's SDE in place of DNSAM's": ("gd", 1.0)}}
# (SAM's SDE in place of DNSAM's differs in the drift only by E[H g/||g||] - H grad f/||grad f||, small far
# from the centres: its slope 0.71 is too close to the tolerance to count; the noise claim rejects it)


def claim_weak_error(out: Path, quick: bool) -> list[Claim]:
    etas = [0.1, 0.05, 0.025] if quick else [0.1, 0.05, 0.025, 0.0125]
    paths = 4000 if quick else 60000
    claims, rows = [], []
    for name in METHODS:
        measure = weak_error_measure(name, etas, paths)
        claim, (errs, ses) = check(
            f"weak-error-{name}",
            f"The {label(name)} SDE is a weak order-1 approximation of the discrete method: |E g(x_k) - "
            f"E g(X_(k eta))| = O(eta) (Compagnoni et al. 2023, Sec. 3; g = ||x||^2, T = {WEAK_T}, rho = "
            f"{WEAK_RHO}, noisy quadratic). Tests the drift: the noise-free ODE has an O(eta) weak error too",
            measure, model(name), {lab: model(*spec) for lab, spec in WEAK_MUTANTS[name].items()}, "weak_error.png")
        claims.append(claim)
        rows.append((f"{label(name)} slope {claim.measured['slope']:.2f}", errs, ses))
    save(figures.weak_errors(etas, rows, "SDE vs discrete, noisy quadratic", r"weak error of $E\|x\|^2$", paths),
         out / "weak_error")
    return claims


# --- 2. the noise of one step ----------------------------------------------------------------------

NOISE_POINTS = np.array([[3.0, -3.0], [0.5, 0.4], [-1.0, 1.5]])


def increment_measure(name: str, paths: int, eta: float = 0.01, tol: float = 0.05):
    """measure(model) -> Outcome: the covariance of one Euler-Maruyama step (dt = eta) of the model
    from each point, estimated from ``paths`` paths, against the covariance of one step of the
    discrete method, eta^2 Cov_g[g_k], exact over the batches."""
    obj, rule = quadratic(), make_method(name)
    G = sde.batch_steps(rule, obj, WEAK_RHO, NOISE_POINTS)              # (points, B, dim)
    D = G - G.mean(axis=1, keepdims=True)
    truth = eta**2 * np.einsum("pbi,pbj->pij", D, D) / G.shape[1]
    X0 = np.repeat(NOISE_POINTS, paths, axis=0)

    def measure(subject):
        _, _, X1 = sde.simulate(subject, obj, eta, WEAK_RHO, X0, eta, seed=7, times=[eta])
        inc = (X1 - X0).reshape(len(NOISE_POINTS), paths, -1)
        est = np.array([np.cov(inc[p].T) for p in range(len(NOISE_POINTS))])
        rel = np.linalg.norm(est - truth, axis=(1, 2)) / np.linalg.norm(truth, axis=(1, 2))
        return Outcome(bool(np.all(rel <= tol)), {"relative_error_per_point": rel.tolist(), "tolerance": tol,
                                                  "paths": paths}, (truth, est))
    return measure


def claim_noise(out: Path, quick: bool) -> list[Claim]:
    paths = 10000 if quick else 200000
    claims, points = [], []
    for name in METHODS:
        right = model(name)
        mutants = {"the SDE without diffusion (noise-free ODE)": DiffusionTimes(right, 0.0),
                   "diffusion x sqrt(2)": DiffusionTimes(right, np.sqrt(2))}
        mutants.update({f"{label(other)}'s SDE in place of {label(name)}'s": model(other)
                        for other in METHODS if other != name})
        claim, (truth, est) = check(
            f"sde-noise-{name}",
            f"The diffusion of the {label(name)} SDE is the discrete method's noise: one Euler-Maruyama step "
            f"(dt = eta = 0.01) from fixed points has covariance eta^2 Cov_g[g_k] (Compagnoni et al. 2023, "
            f"Sec. 3: diffusion sqrt(eta) Sigma^(1/2)), relative error <= 0.05 at each of "
            f"{len(NOISE_POINTS)} points (noisy quadratic, rho = {WEAK_RHO}, {paths} paths)",
            increment_measure(name, paths), right, mutants, "sde_noise.png")
        claims.append(claim)
        points.append((label(name), truth, est))
    save(figures.parity(points, "one-step covariance, noisy quadratic", r"$\eta^2$ Cov$_g[g_k]$ (discrete, exact)",
                        "SDE, Euler-Maruyama"), out / "sde_noise")
    return claims


# --- 3. stationary covariance against the Lyapunov equations ---------------------------------------

def claim_stationary(out: Path, quick: bool) -> list[Claim]:
    eta, runs = 0.005, 3
    rho = eta
    iters = 2000 if quick else 200_000
    paths = 200 if quick else 100
    every = 100
    obj, rule = quadratic(), make_method("usam")
    C_disc, C_sde = sde.stationary_covariances(rule, obj, eta, rho)
    X0 = np.tile(WEAK_C.mean(axis=0), (runs * paths, 1))             # start at the stationary mean
    snaps = np.arange(iters // 2, iters + 1, every) * eta               # the second half: stationary
    ids = np.arange(runs * paths)

    def pooled(values):
        """Covariance over the snapshots and paths of each run, and over all runs."""
        V = np.asarray(values).reshape(len(snaps), runs, paths, -1)
        per_run = [np.cov(V[:, r].reshape(-1, V.shape[-1]).T) for r in range(runs)]
        return per_run, np.cov(V.reshape(-1, V.shape[-1]).T)

    def rel(C, target):
        return float(np.linalg.norm(C - target) / np.linalg.norm(target))

    _, vd, _ = sde.discrete(rule, obj, eta, rho, X0, iters, seed=0, runs=ids, times=snaps, observe=np.copy)
    disc_runs, disc = pooled(vd)
    tol = 0.1

    def measure(subject):
        _, vs, _ = sde.simulate(subject, obj, eta, rho, X0, iters * eta, seed=1, runs=ids, times=snaps,
                                observe=np.copy)
        sde_runs, est = pooled(vs)
        errors = {"discrete": rel(disc, C_disc), "sde": rel(est, C_sde)}
        return Outcome(errors["discrete"] <= tol and errors["sde"] <= tol,
                       {"relative_error": errors, "tolerance": tol,
                        "relative_error_per_run": {"discrete": [rel(c, C_disc) for c in disc_runs],
                                                   "sde": [rel(c, C_sde) for c in sde_runs]},
                        "lyapunov_discrete_vs_continuous": rel(C_disc, C_sde), "iters": iters,
                        "paths_per_run": paths}, est)

    right = model("usam")
    claim, est = check(
        "stationary-covariance",
        f"USAM at rho = eta = {eta} on the noisy quadratic: the stationary covariance of the discrete method "
        "solves the discrete Lyapunov equation C = A C A^T + eta^2 Q and that of its SDE the continuous one "
        "M C + C M^T = eta Q (relative error <= 0.1; the noise term of Compagnoni et al. 2023, Sec. 3; "
        f"{runs} runs x {paths} paths, {iters} iterations, covariance over the second half)",
        measure, right, {"the SDE without diffusion (noise-free ODE)": DiffusionTimes(right, 0.0),
                         "diffusion x sqrt(2)": DiffusionTimes(right, np.sqrt(2))}, "stationary_covariance.png")
    save(figures.parity([("discrete", C_disc, disc), ("SDE", C_sde, est)], "stationary covariance, USAM",
                        "Lyapunov solution", "measured"), out / "stationary_covariance")
    return [claim]


# --- 4. MLPs -------------------------------------------------------------------------------------

def mlp_runs(obj, subject, eta, steps, rhos, runs, discrete: bool, seed=0, points=41):
    """Mean training loss over ``runs`` runs for every rho at once (paths rho-major, each run its own
    init): (times, (len(times), len(rhos))); the discrete method of subject.rule or the SDE subject."""
    rho = np.repeat(rhos, runs)
    X0 = obj.init(np.tile(np.arange(runs), len(rhos)), seed)
    paths = np.arange(len(rho))
    times = np.linspace(0, steps * eta, points)
    if discrete:
        t, v, _ = sde.discrete(subject.rule, obj, eta, rho, X0, steps, seed=seed, runs=paths, times=times)
    else:
        t, v, _ = sde.simulate(subject, obj, eta, rho, X0, steps * eta, seed=seed + 1, runs=paths, times=times)
    return t, v.reshape(len(t), len(rhos), runs).mean(axis=2)


def mlp_measure(obj, name, sgd, eta, steps, rhos, runs, tol=0.25):
    """measure(model) -> Outcome: the SDE's effect of rho on the mean loss, SDE(rho) - SDE_SGD, against
    the discrete one, method(rho) - SGD (common random numbers on each side), relative to the latter.
    ``sgd`` = (discrete SGD, SDE of SGD) mean losses from ``mlp_runs``."""
    t, disc = mlp_runs(obj, model(name), eta, steps, rhos, runs, True)
    disc_sgd, sde_sgd = sgd
    effect = disc - disc_sgd
    small = np.asarray(rhos) <= np.sqrt(eta) + 1e-12                   # the SDE's regime rho = O(sqrt(eta))

    def measure(subject):
        _, est = mlp_runs(obj, subject, eta, steps, rhos, runs, False)
        err = np.max(np.abs(est - sde_sgd - effect), axis=0) / np.max(np.abs(effect), axis=0)
        drop = disc[0] - disc.min(axis=0)
        return Outcome(bool(np.all(err[small] <= tol)),
                       {"rho": list(rhos), "effect_error": err.tolist(), "tolerance": tol,
                        "effect_size": np.max(np.abs(effect), axis=0).tolist(),
                        "max_gap_over_loss_drop": (np.max(np.abs(est - disc), axis=0) / drop).tolist(),
                        "final_loss_discrete": disc[-1].tolist(), "final_loss_sde": est[-1].tolist(),
                        "steps": steps, "runs": runs}, (t, disc, est))
    return measure


def claim_mlps(out: Path, quick: bool) -> list[Claim]:
    eta = 0.01
    claims = []
    sizes = {"iris": (300 if quick else 3000, MLP_RHOS, 3),
             "breast_cancer": (200 if quick else 3000, (0.01, 0.1, 0.5) if quick else MLP_RHOS, 1 if quick else 3)}
    for name, make in (("iris", MLPBatches.iris), ("breast_cancer", MLPBatches.breast_cancer)):
        obj = make()
        steps, rhos, runs = sizes[name]
        sgd = model("gd")
        baseline = tuple(mlp_runs(obj, sgd, eta, steps, rhos, runs, kind)[1] for kind in (True, False))
        panels = []
        for method in ("usam", "sam"):
            claim, (t, disc, est) = check(
                f"mlp-{name}-{method}",
                f"{label(method)} on a one-hidden-layer MLP ({name}, {'linear' if name == 'iris' else 'tanh'}, "
                f"batch {obj.Xb.shape[1]} of n = {obj.n}; Compagnoni et al. 2023, Sec. 5): the SDE reproduces the "
                f"effect of rho on the mean training loss, max_t |(SDE(rho) - SDE_SGD) - (discrete(rho) - SGD)| "
                f"<= 0.25 max_t |discrete(rho) - SGD| for rho <= sqrt(eta) (eta = {eta}, rho in {list(rhos)}, "
                f"{runs} run(s), {steps} steps); the error at rho = 0.5, outside the first-order regime, is reported",
                mlp_measure(obj, method, baseline, eta, steps, rhos, runs), model(method),
                {f"SGD's SDE in place of {label(method)}'s": sgd, f"{label(method)}'s SDE at 2 rho":
                 model(method, 2.0), f"{label(method)}'s SDE at rho / 2": model(method, 0.5)},
                f"mlp_{name}.png")
            claims.append(claim)
            panels.append((f"{label(method)}, {name} (mean of {runs})", t, disc, est))
        save(figures.mean_losses(panels, rhos), out / f"mlp_{name}")
    return claims


# --- 5. saddles ----------------------------------------------------------------------------------

def saddle():
    return NoisyQuadratic.diagonal(SADDLE_EIG)


def norm(X):
    return np.linalg.norm(X, axis=-1)


def saddle_discrete(rule, rho, X0, T, eta):
    """x_T of the discrete method with step eta on the saddle; a run the engine retired as diverged
    (|x| > 1e12) escaped: inf."""
    with np.errstate(all="ignore"):
        _, _, X = sde.discrete(rule, saddle(), eta, rho, X0, int(round(T / eta)), times=[T])
    return np.where(np.isnan(X), np.inf, X)


USAM_RHOS = np.array([0.4, 0.6, 1.6, 2.5, 3.5])


def usam_threshold(subject, T):
    """USAM: direction i attracted (|x_i| shrinks 10x from 1) iff rho |lambda_i| > 1, else it grows 10x;
    the discrete method (eta = 0.01) and the flow, exact (linear: sde.sde_moments)."""
    X0 = np.ones((len(USAM_RHOS), 3))
    times = np.linspace(0, T, 61)
    flow = np.array([sde.sde_moments(subject, saddle(), 0.0, rho, X0[0], times)[0] for rho in USAM_RHOS])
    rows, ok = [], True
    for kind, X in (("discrete", saddle_discrete(subject.rule, USAM_RHOS, X0, T, 0.01)), ("flow", flow[:, -1])):
        for j, rho in enumerate(USAM_RHOS):
            for i in np.flatnonzero(SADDLE_EIG < 0):
                predicted = rho * abs(SADDLE_EIG[i]) > 1
                growth = abs(X[j, i])
                ok &= bool(growth < 0.1 if predicted else growth > 10)
                rows.append({"kind": kind, "rho": rho, "lambda": SADDLE_EIG[i], "growth": float(growth),
                             "attracted_predicted": bool(predicted)})
    return Outcome(bool(ok), {"cases": rows}, (times, norm(flow).T))


def sam_starts(rho):
    """Starting points of the SAM threshold check: random directions with ||H x0|| = s rho min|lambda_neg|
    (s = 0.5, 0.9: inside), and each negative eigenvector with ||H x0|| = s rho |lambda_i| (s = 0.9, 1.1)
    plus 1e-3 of the positive direction; with the expected outcome (True: attracted)."""
    neg = np.flatnonzero(SADDLE_EIG < 0)
    lam_min = np.min(np.abs(SADDLE_EIG[neg]))
    dirs = np.random.default_rng(0).standard_normal((8, 3))
    starts, expect, names = [], [], []
    for s in (0.5, 0.9):
        starts.append(dirs / np.linalg.norm(dirs * SADDLE_EIG, axis=1, keepdims=True) * s * rho * lam_min)
        expect += [True] * 8
        names += [f"random, ||Hx0|| = {s} rho min|lambda|"] * 8
    for i in neg:
        for s in (0.9, 1.1):
            x0 = np.zeros(3)
            x0[i], x0[0] = s * rho, 1e-3
            starts.append(x0[None])
            expect.append(s < 1)
            names.append(f"eigvec lambda={SADDLE_EIG[i]}, ||Hx0|| = {s} rho|lambda|")
    return np.vstack(starts), np.array(expect), names


def sam_threshold(subject, T, rho=0.5):
    """The flow (Euler, dt = 0.001) from ``sam_starts``: attracted (||X_T|| < 0.05 ||x0||) or escaped
    (> 10 ||x0||) as expected."""
    X0, expect, names = sam_starts(rho)
    t, v, _ = sde.simulate(subject, saddle(), 0.0, rho, X0, T, dt=0.001, times=np.linspace(0, T, 121), observe=norm)
    ratio = v[-1] / v[0]
    ok = np.where(expect, ratio < 0.05, ratio > 10)
    return Outcome(bool(ok.all()), {"rho": rho, "cases": [
        {"start": n, "ratio": float(r), "attracted_expected": bool(e)} for n, r, e in zip(names, ratio, expect)]},
        (t, v, names))


SETUP_RHOS = np.array([0.0001, 0.001, 0.03, 0.05])


def sam_setup(subject, T):
    """From x0 = (0.02, 0.02, 0.02): the discrete method (eta = 0.001) and the flow (Euler, dt = 0.0005)
    attracted (||x_T|| < 1e-3) for rho >= 0.03, escaped (||x_T|| > 1) for rho <= 0.001."""
    X0 = np.full((len(SETUP_RHOS), 3), 0.02)
    t, v, _ = sde.simulate(subject, saddle(), 0.0, SETUP_RHOS, X0, T, dt=0.0005, times=np.linspace(0, T, 101),
                           observe=norm)
    expect = SETUP_RHOS >= 0.03
    norms = {"discrete": norm(saddle_discrete(subject.rule, SETUP_RHOS, X0, T, 0.001)), "flow": v[-1]}
    ok = all(np.all(np.where(expect, n < 1e-3, n > 1)) for n in norms.values())
    return Outcome(bool(ok), {"rho": SETUP_RHOS.tolist(), "attracted_expected": expect.tolist(),
                              "final_norm": {k: n.tolist() for k, n in norms.items()},
                              "iterations": int(round(T / 0.001))}, (t, v))


def claim_saddles(out: Path, quick: bool) -> list[Claim]:
    usam, sam = model("usam"), model("sam")
    claims = []
    claim, (t, v) = check(
        "usam-saddle-threshold",
        "USAM on a quadratic saddle: the flow -H(I + rho H)x contracts the eigendirection of lambda < 0 iff "
        "rho |lambda| > 1, so the saddle attracts iff this holds for every negative eigenvalue (Compagnoni et al. "
        "2023, Sec. 4); discrete USAM (eta = 0.01, 3000 steps) and the flow (exact), eigenvalues "
        f"{SADDLE_EIG.tolist()}, x0 = (1, 1, 1), rho in {USAM_RHOS.tolist()} (both sides of 1/|lambda| = 2 and 0.5)",
        lambda s: usam_threshold(s, 30.0), usam,
        {"SGD's SDE in place of USAM's": model("gd"), "USAM at 2 rho": model("usam", 2.0)}, "saddle_usam.png")
    claims.append(claim)
    save(figures.norms(t, [(rf"$\rho$={r}", v[:, j]) for j, r in enumerate(USAM_RHOS)],
                       "USAM flow at a saddle, eigenvalues 1, −0.5, −2"), out / "saddle_usam")
    T = 12.0 if quick else 20.0
    claim, (t, v, names) = check(
        "sam-saddle-threshold",
        "SAM on a quadratic saddle: the flow -Hx - rho H^2 x/||Hx|| is attracted to the saddle when ||H x0|| < "
        "rho min_{lambda<0} |lambda|, and along a negative eigenvector it escapes iff ||H x0|| > rho |lambda| "
        f"(Compagnoni et al. 2023, Sec. 4; threshold derived from the flow); the flow (Euler, dt = 0.001, T = {T:g}), "
        "rho = 0.5, 16 random starts inside and 4 along the eigenvectors",
        lambda s: sam_threshold(s, T), sam,
        {"SGD's SDE in place of SAM's": model("gd"), "USAM's SDE in place of SAM's": usam,
         "SAM at 2 rho": model("sam", 2.0)}, "saddle_sam.png")
    claims.append(claim)
    save(figures.norms(t, [(n, v[:, 16 + j]) for j, n in enumerate(names[16:])], r"SAM flow at a saddle, $\rho$=0.5"),
         out / "saddle_sam")
    T = 5.0 if quick else 20.0
    claim, (t, v) = check(
        "sam-saddle-attraction",
        "SAM is attracted to saddles for large enough rho (Compagnoni et al. 2023, Sec. 4; setup of issue #16: "
        f"eta = 0.001, x0 = (0.02, 0.02, 0.02), {int(round(T / 0.001))} iterations, rho in {SETUP_RHOS.tolist()}): "
        "discrete SAM and its flow (Euler, dt = 0.0005) end within 1e-3 of the saddle for rho >= 0.03 and "
        f"escape (||x|| > 1) for rho <= 0.001, eigenvalues {SADDLE_EIG.tolist()}",
        lambda s: sam_setup(s, T), sam,
        {"SGD's SDE in place of SAM's": model("gd"), "USAM's SDE in place of SAM's": usam,
         "SAM at rho / 2": model("sam", 0.5)}, "saddle_sam_setup.png")
    claims.append(claim)
    save(figures.norms(t, [(rf"$\rho$={r:g}", v[:, j]) for j, r in enumerate(SETUP_RHOS)],
                       r"SAM flow from $x_0$ = 0.02 (1, 1, 1)", floor=1e-8), out / "saddle_sam_setup")
    return claims


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return (claim_weak_error(out, quick) + claim_noise(out, quick) + claim_stationary(out, quick)
            + claim_mlps(out, quick) + claim_saddles(out, quick))
