"""Compagnoni, Biggio, Orvieto, Proske, Kersting & Lucchi, "An SDE for Modeling SAM: Theory and
Insights", ICML 2023 (arXiv 2301.08203): the SDE models of USAM, SAM and DNSAM checked against the
discrete methods (convergence/sde.py).

Claims checked:
1. weak error |E g(x_K) - E g(X_{K eta})| of the SDE is linear in eta (log-log slope ~ 1): exactly
   (closed-form moments) for SGD and USAM, by Monte Carlo for SAM and DNSAM, on a quadratic with
   noisy minimizers (where the first-order expansion in rho is exact, so rho can stay fixed);
2. saddles, USAM: on f = 1/2 x^T H x the USAM flow -H(I + rho H)x is attracted along an eigenvector of
   eigenvalue lambda < 0 iff rho |lambda| > 1 (checked on both sides of each threshold, flow and
   discrete USAM);
3. saddles, SAM: the SAM flow -Hx - rho H^2 x / ||Hx|| is attracted to the saddle when
   ||H x0|| < rho min_{lambda<0} |lambda|, and escapes along a negative eigenvector when ||H x0|| >
   rho |lambda| (the threshold is derived from the flow; the paper's exact statement could not be
   read offline);
4. MLPs (Iris, linear; breast cancer, tanh), eta = 0.01, rho in {0.001, 0.01, 0.1, 0.5}, 3 runs:
   the mean loss of the SDE tracks that of the discrete method.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convergence import sde
from experiments.claims import Claim
from problems.diagonal_net import MLPBatches, NoisyQuadratic

TITLE = "Compagnoni et al. (ICML 2023): SDE models of SAM, USAM and DNSAM"
PAPER = "compagnoni2023"

# the weak-error problem: f_g = 1/2 (x - c_g)^T H (x - c_g), four centres, H = diag(1, 0.5)
WEAK_H = np.diag([1.0, 0.5])
WEAK_C = np.array([[1.0, 0.5], [-1.0, 0.3], [0.2, -1.0], [-0.2, 0.2]])
WEAK_X0 = np.array([3.0, -3.0])
WEAK_RHO, WEAK_T = 0.5, 1.0
# the saddle: one positive and two negative eigenvalues (USAM thresholds rho = 2 and rho = 0.5)
SADDLE_EIG = np.array([1.0, -0.5, -2.0])


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def weak_errors(method, etas, paths, seed=0, dt=None):
    """(errors, MC standard errors) of E||x||^2 at time WEAK_T, discrete vs SDE, for each eta."""
    etas = list(etas)
    if method in ("sgd", "usam"):
        errs = []
        for eta in etas:
            (md, Cd), (ms, Cs) = sde.linear_moments(WEAK_H, WEAK_C, method, eta, WEAK_RHO, WEAK_X0, WEAK_T)
            errs.append(abs(md @ md + np.trace(Cd) - ms @ ms - np.trace(Cs)))
        return np.array(errs), np.zeros(len(etas))
    obj = NoisyQuadratic(WEAK_H, WEAK_C)
    X0 = np.tile(WEAK_X0, (paths, 1))
    dt = dt or min(etas) / 2      # Euler-Maruyama + Richardson: O(dt^2) bias, far below the weak error

    def g(X):
        return np.sum(X * X, axis=1)
    errs, ses = [], []
    for eta in etas:
        K = int(round(WEAK_T / eta))
        _, vd, _ = sde.discrete(obj, method, eta, WEAK_RHO, X0, K, seed=seed, times=[WEAK_T], observe=g)
        vs = sde.simulate_richardson(obj, method, eta, WEAK_RHO, X0, WEAK_T, dt, g, seed=seed + 1)
        errs.append(abs(vd[-1].mean() - vs.mean()))
        ses.append(np.sqrt(vd[-1].var() / paths + vs.var() / paths))
    return np.array(errs), np.array(ses)


def slope_with_se(etas, errs, ses):
    """Log-log slope and its standard error from the MC errors (delta method: sd(log e) = se/e)."""
    x = np.log(np.asarray(etas))
    y = np.log(errs)
    s = np.maximum(np.asarray(ses) / errs, 1e-12)
    X = np.c_[x - x.mean(), np.ones_like(x)]
    cov = np.linalg.inv(X.T @ X) @ X.T @ np.diag(s**2) @ X @ np.linalg.inv(X.T @ X)
    return sde.fit_slope(etas, errs), float(np.sqrt(cov[0, 0]))


def claim_weak_error(out: Path, quick: bool) -> list[Claim]:
    plt = _plt()
    from figures.convergence import PALETTE, save
    etas = [0.1, 0.05, 0.025] if quick else [0.1, 0.05, 0.025, 0.0125]
    paths = 6000 if quick else 60000
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    claims = []
    for i, method in enumerate(sde.METHODS):
        errs, ses = weak_errors(method, etas, paths, seed=3)
        slope, se = slope_with_se(etas, errs, ses)
        exact = method in ("sgd", "usam")
        # exact moments: only the O(eta^2) curvature of the error curve separates the fitted slope
        # from 1 (0.92-0.99 over this eta range); Monte Carlo: 3 standard errors of the slope on top
        tol = 0.15 if exact else max(0.15, 3 * se)
        ax.errorbar(etas, errs, yerr=2 * ses, color=PALETTE[i], marker="o", lw=1.4, capsize=2,
                    label=f"{method.upper()} slope {slope:.2f}")
        claims.append(Claim(
            f"weak-error-linear-{method}",
            f"The {method.upper()} SDE is a weak order-1 approximation: |E g(x_k) - E g(X_(k eta))| = O(eta) "
            f"(Compagnoni et al. 2023, SDE theorems of Sec. 3; g = ||x||^2, T = {WEAK_T}, rho = {WEAK_RHO})",
            bool(abs(slope - 1) <= tol),
            {"etas": etas, "errors": errs.tolist(), "mc_se": ses.tolist(), "slope": slope, "slope_se": se,
             "tolerance": tol, "paths": 0 if exact else paths, "method": "exact moments" if exact else "Monte Carlo"},
            "weak_error.png"))
    ref = np.array(etas)
    ax.plot(ref, claims[0].measured["errors"][0] * ref / ref[0], "k:", lw=1, label="slope 1")
    ax.set(xscale="log", yscale="log", xlabel=r"step size $\eta$", ylabel="weak error of $E\\|x\\|^2$",
           title="SDE vs discrete, noisy quadratic")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    save(fig, out / "weak_error")
    return claims


def _saddle_flow(method, rho, x0, T, dt, eta=None):
    """Full-batch flow (Euler, step dt) or discrete method (step eta) on f = 1/2 x^T H x: x(T), inf
    for a discrete run that left the engine's range |x| <= 1e12 (an escape)."""
    obj = NoisyQuadratic.diagonal(SADDLE_EIG, np.zeros((1, len(SADDLE_EIG))))
    X0 = np.atleast_2d(x0)
    if eta is None:
        _, _, X = sde.simulate(obj, method, 0.0, rho, X0, T, dt=dt, times=[T])
    else:
        _, _, X = sde.discrete(obj, method, eta, rho, X0, int(round(T / eta)), times=[T])
        X = np.where(np.isnan(X), np.inf, X)     # retired by the engine as diverged (|x| > 1e12): escaped
    return X


def claim_saddles(out: Path, quick: bool) -> list[Claim]:
    plt = _plt()
    from figures.convergence import PALETTE, save
    claims = []
    neg = np.flatnonzero(SADDLE_EIG < 0)
    # --- USAM: direction i attracted iff rho |lambda_i| > 1 -------------------------------------
    rhos = [0.4, 0.6, 1.6, 2.5, 3.5]
    x0 = np.ones(len(SADDLE_EIG))
    T = 60.0
    rows, ok = [], True
    for kind, eta in (("flow", None), ("discrete", 0.01)):
        for rho in rhos:
            X = _saddle_flow("usam", rho, x0, T, 0.01, eta)[0]
            for i in neg:
                ratio = abs(X[i]) / abs(x0[i])
                predicted = rho * abs(SADDLE_EIG[i]) > 1
                observed = ratio < 0.1 if predicted else ratio > 10
                ok &= bool(observed)
                rows.append({"kind": kind, "rho": rho, "lambda": SADDLE_EIG[i], "growth": float(ratio),
                             "attracted_predicted": bool(predicted)})
    whole = {rho: all(rho * abs(SADDLE_EIG[i]) > 1 for i in neg) for rho in rhos}
    claims.append(Claim(
        "usam-saddle-threshold",
        "USAM on a quadratic saddle: the flow -H(I + rho H)x contracts the eigendirection of lambda < 0 iff "
        "rho |lambda| > 1, so the saddle attracts iff this holds for every negative eigenvalue "
        "(Compagnoni et al. 2023, Sec. 4 saddle analysis); flow and discrete USAM (eta = 0.01), "
        f"eigenvalues {SADDLE_EIG.tolist()}, rho on both sides of 1/|lambda| = 2 and 0.5",
        bool(ok), {"cases": rows, "saddle_attracts_at_rho": {str(k): v for k, v in whole.items()}},
        "saddle_usam.png"))
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    obj = NoisyQuadratic.diagonal(SADDLE_EIG, np.zeros((1, 3)))
    times = np.linspace(0, T, 121)
    for j, rho in enumerate(rhos):
        t, v, _ = sde.simulate(obj, "usam", 0.0, rho, x0[None], T, dt=0.01, times=times,
                               observe=lambda X: np.linalg.norm(X, axis=1))
        ax.plot(t, v[:, 0], color=PALETTE[j], label=rf"$\rho$={rho}" + (" (attracted)" if whole[rho] else ""))
    ax.set(yscale="log", xlabel="time t", ylabel=r"$\|X_t\|$", title="USAM flow at a saddle, eig (1, -0.5, -2)")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    save(fig, out / "saddle_usam")

    # --- SAM: attracted when ||H x0|| < rho min |lambda_neg|; escapes along v_i when > rho |lambda_i| -
    rho, T, dt = 0.5, 20.0, 0.002
    lam_min = np.min(np.abs(SADDLE_EIG[neg]))
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((8, 3))
    rows, ok = [], True
    for kind, eta in (("flow", None), ("discrete", 0.002)):
        for s in (0.5, 0.9):                       # inside: random directions, ||H x0|| = s rho min|lambda|
            x0s = dirs / np.linalg.norm(dirs * SADDLE_EIG, axis=1, keepdims=True) * s * rho * lam_min
            X = _saddle_flow("sam", rho, x0s, T, dt, eta)
            r = np.linalg.norm(X, axis=1) / np.linalg.norm(x0s, axis=1)
            ok &= bool(np.all(r < 0.05))
            rows.append({"kind": kind, "start": f"||Hx0|| = {s} rho min|lambda|", "max_shrink": float(r.max())})
        for i in neg:                               # along a negative eigenvector, both sides of rho|lambda_i|
            for s in (0.9, 1.1):
                x0e = np.zeros(3)
                x0e[i] = s * rho                    # ||H x0|| = s rho |lambda_i|
                x0e[0] = 1e-3                       # and a little of the positive direction
                X = _saddle_flow("sam", rho, x0e, T, dt, eta)[0]
                r = np.linalg.norm(X) / np.linalg.norm(x0e)
                good = r < 0.05 if s < 1 else r > 10
                ok &= bool(good)
                rows.append({"kind": kind, "start": f"eigvec lambda={SADDLE_EIG[i]}, ||Hx0|| = {s} rho|lambda|",
                             "ratio": float(r)})
    claims.append(Claim(
        "sam-saddle-threshold",
        "SAM on a quadratic saddle: the flow -Hx - rho H^2 x/||Hx|| is attracted to the saddle when "
        "||H x0|| < rho min_{lambda<0} |lambda|, and along a negative eigenvector it escapes iff ||H x0|| > "
        "rho |lambda| (Compagnoni et al. 2023, Sec. 4; threshold derived from the flow), flow and discrete SAM",
        bool(ok), {"rho": rho, "cases": rows}, "saddle_sam.png"))
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    times = np.linspace(0, T, 201)
    for j, (i, s) in enumerate([(i, s) for i in neg for s in (0.9, 1.1)]):
        x0e = np.zeros(3)
        x0e[i], x0e[0] = s * rho, 1e-3
        t, v, _ = sde.simulate(obj, "sam", 0.0, rho, x0e[None], T, dt=dt, times=times,
                               observe=lambda X: np.linalg.norm(X, axis=1))
        ax.plot(t, np.maximum(v[:, 0], 1e-6), color=PALETTE[j],
                label=rf"$\lambda$={SADDLE_EIG[i]}, $\|Hx_0\|$={s}$\rho|\lambda|$")
    ax.set(yscale="log", xlabel="time t", ylabel=r"$\|X_t\|$", title=rf"SAM flow at a saddle, $\rho$={rho}")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    save(fig, out / "saddle_sam")
    return claims


MLP_RHOS = (0.001, 0.01, 0.1, 0.5)


def mlp_trajectories(obj, method, eta, steps, runs=3, seed=0, dt=None, points=41):
    """Loss trajectories (times, discrete (len, rho, run), SDE (len, rho, run)) for every rho of
    MLP_RHOS at once: runs are batched as paths (rho-major), each run with its own init."""
    R = len(MLP_RHOS)
    rho = np.repeat(MLP_RHOS, runs)
    run_ids = np.tile(np.arange(runs), R)
    X0 = obj.init(run_ids, seed)
    paths = np.arange(R * runs)
    T = steps * eta
    times = np.linspace(0, T, points)
    t, vd, _ = sde.discrete(obj, method, eta, rho, X0, steps, seed=seed, runs=paths, times=times)
    _, vs, _ = sde.simulate(obj, method, eta, rho, X0, T, dt=dt or eta, seed=seed + 1, runs=paths, times=times)
    return t, vd.reshape(len(t), R, runs), vs.reshape(len(t), R, runs)


def claim_mlps(out: Path, quick: bool) -> list[Claim]:
    plt = _plt()
    from figures.convergence import PALETTE, save
    eta = 0.01
    steps = 300 if quick else 3000
    methods = ("usam", "sam") if quick else ("usam", "sam", "dnsam")
    claims = []
    for name, make in (("iris", MLPBatches.iris), ("breast_cancer", MLPBatches.breast_cancer)):
        obj = make()
        fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.0), squeeze=False)
        for ax, method in zip(axes[0], methods):
            t, vd, vs = mlp_trajectories(obj, method, eta, steps)
            md, ms = vd.mean(axis=2), vs.mean(axis=2)                 # (len, rho)
            scale = vd[0].mean() - min(md.min(), ms.min())
            gap = np.max(np.abs(md - ms), axis=0) / scale            # per rho
            for j, rho in enumerate(MLP_RHOS):
                ax.plot(t, md[:, j], color=PALETTE[j], lw=1.4, label=rf"$\rho$={rho} discrete")
                ax.plot(t, ms[:, j], color=PALETTE[j], lw=1.2, ls="--", label=rf"$\rho$={rho} SDE")
            ax.set(yscale="log", xlabel=r"time $t = k\eta$", ylabel="training loss",
                   title=f"{method.upper()}, {name} (mean of 3 runs)")
            ax.grid(True, alpha=0.3)
            tol = 0.1
            small = np.array(MLP_RHOS) <= np.sqrt(eta) + 1e-12       # the SDE's regime rho = O(sqrt(eta))
            claims.append(Claim(
                f"mlp-{name}-{method}",
                f"{method.upper()} on a one-hidden-layer MLP ({name}, {'linear' if name == 'iris' else 'tanh'}"
                f", batch {obj.Xb.shape[1]} of n = {obj.n}): the mean training loss of its SDE tracks the "
                f"discrete method's within {tol} of the loss drop for rho <= sqrt(eta) (eta = {eta}, rho in "
                f"{list(MLP_RHOS)}, 3 runs; Compagnoni et al. 2023, Sec. 5); the gap at rho = 0.5, outside "
                f"the first-order-in-rho regime, is reported, not tested",
                bool(np.all(gap[small] <= tol)),
                {"max_gap_over_loss_drop": gap.tolist(), "tolerance": tol, "steps": steps,
                 "final_loss_discrete": md[-1].tolist(), "final_loss_sde": ms[-1].tolist()},
                f"mlp_{name}.png"))
        axes[0][0].legend(frameon=False, fontsize=6, ncol=2)
        fig.tight_layout()
        save(fig, out / f"mlp_{name}")
    return claims


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return claim_weak_error(out, quick) + claim_saddles(out, quick) + claim_mlps(out, quick)
