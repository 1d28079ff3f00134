"""Andriushchenko & Flammarion, "Towards Understanding Sharpness-Aware Minimization", ICML 2022:
the implicit bias of SAM on diagonal linear networks (Sec. 4) and m-sharpness (Sec. 3), in the setup
of the authors' notebook (tml-epfl/understanding-sam, diagonal_linear_nets): sparse regression,
n = 20, d = 30, 3-sparse target, init u = alpha 1, v = 0, full-batch steps gamma = 10/d.

Methods are the engine's rules (convergence.methods) run by ``train``; radii follow the notebook:
n-SAM is USAM at rho (ascent rho grad L), 1-SAM gives example k the ascent rho grad(r_k^2) =
2 rho grad l_k, i.e. ``msam(m=1, base=usam)`` at radius 2 rho; m-SAM generalizes it to chunks of m
examples, ascent rho grad(mean of the chunk's r_k^2) = ``msam(m, base=usam)`` at 2 rho (so m = n is
USAM at 2 rho: n-SAM on a rho grid twice as fine).

Claims (each with the wrong implementations it must reject):
1. 1-SAM at its best rho (training loss still converging, < 1e-5) has test loss < 0.1 x GD's;
2. n-SAM's best test loss is >= 0.9 x GD's;
3. 1-SAM's solution has a smaller l1 norm than GD's (< 0.99 x; GD and n-SAM give >= 1);
4. m-sharpness: the test loss at the best rho grows with m in {1, 2, 4, 5, 10, 20 = n} (Spearman
   rank correlation >= 0.8, and 1-SAM < 0.1 x n-SAM, n-SAM >= 0.9 x GD).
Quick mode: the notebook's instance, 4000 steps; full mode: 10^4 steps (the notebook's) and 8 fresh
instances besides, the claims on every instance (1-3) or on the medians over instances (4).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from convergence.methods import Rule, make_method
from convergence.sde import run_recorded
from experiments.claims import Claim, Outcome, check
from figures import sde as figures
from figures.convergence import save
from problems.diagonal_net import DiagonalNet

TITLE = "Andriushchenko & Flammarion (ICML 2022): SAM's implicit bias on diagonal linear networks"
PAPER = "andriushchenko2022"
RHOS = np.r_[np.geomspace(0.001, 0.1, 7)[:-1], np.geomspace(0.1, 1.5, 24)]
MS = (1, 2, 4, 5, 10, 20)
CONVERGED = 1e-5        # a run counts for the "suitable rho" only if its training loss reached this
GAMMA = 10 / 30         # the notebook's step 10/d for the 1-SAM comparison at alpha = 0.1


def train(problem: DiagonalNet, rule: Rule, gamma: float, rho, iters: int, record=None, X0=None):
    """``rule`` on the full batch, run by the engine (convergence.runner via sde.run_recorded) with
    step gamma and one radius per run (runs = len(rho)). Returns (record iterations, train losses,
    test losses (len, runs), X_final); runs that diverge (|x| > 1e12) end as NaN."""
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    X = problem.x0(len(rho)) if X0 is None else np.array(X0, float)
    record = np.unique(np.r_[0, np.geomspace(1, iters, 60).astype(int)]) if record is None else record
    it = np.unique(np.asarray(record, dtype=np.int64))
    it = it[it <= iters]
    with np.errstate(all="ignore"):            # diverging radii are retired by the engine, not warned about
        values, X = run_recorded(problem, rule, gamma, rho, X, np.append(it, iters),
                                 lambda Y: (problem.f(Y), problem.test_loss(Y)))
    return it, np.array([v[0] for v in values[:-1]]), np.array([v[1] for v in values[:-1]]), X


@dataclass(frozen=True)
class Method:
    """A rule with the factor between the notebook's rho and the radius the rule is run at."""

    label: str
    rule: Rule
    factor: float = 1.0


def gd():
    return Method("GD", make_method("gd"), 0.0)


def n_sam():
    return Method("n-SAM", make_method("usam"))


def m_sam(m: int):
    return Method(f"{m}-SAM", make_method("msam", m=m, base="usam"), 2.0)


class Sweeps:
    """Final train/test loss and l1 norm of a Method over the RHOS grid, per instance, computed once
    (mutants that coincide with a correct method reuse its runs)."""

    def __init__(self, instances: dict, iters: int):
        self.instances, self.iters, self.cache = instances, iters, {}

    def __call__(self, instance: str, method: Method) -> dict:
        key = (instance, repr(method.rule), method.factor)
        if key not in self.cache:
            problem = self.instances[instance]
            rhos = RHOS if method.factor else np.zeros(1)
            _, tr, te, X = train(problem, method.rule, GAMMA, method.factor * rhos, self.iters, record=[self.iters])
            self.cache[key] = {"rho": RHOS if method.factor else None, "train": tr[-1], "test": te[-1],
                               "l1": problem.l1(X)}
        return self.cache[key]

    def best(self, instance: str, method: Method) -> dict:
        """Test loss, rho and l1 norm at the best rho among the runs whose training loss converged."""
        r = self(instance, method)
        ok = np.isfinite(r["train"]) & (r["train"] < CONVERGED)
        if not ok.any():
            return {"test": np.nan, "rho": None, "l1": np.nan}
        i = np.flatnonzero(ok)[np.argmin(r["test"][ok])]
        return {"test": float(r["test"][i]), "rho": None if r["rho"] is None else float(r["rho"][i]),
                "l1": float(r["l1"][i])}


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    instances = {"notebook": DiagonalNet(alpha=0.1, notebook=True)}
    if not quick:
        instances.update({f"seed{s}": DiagonalNet(alpha=0.1, data_seed=s) for s in range(8)})
    sweeps = Sweeps(instances, 4000 if quick else 10_000)
    gd_test = {name: sweeps.best(name, gd())["test"] for name in instances}
    gd_l1 = {name: sweeps.best(name, gd())["l1"] for name in instances}
    claims = []

    def one_sam_vs_gd(method):
        ratios = np.array([sweeps.best(name, method)["test"] / gd_test[name] for name in instances])
        ok = np.isfinite(ratios).all() and np.median(ratios) < 0.1 and ratios[0] < 0.1
        return Outcome(bool(ok), {"ratio_per_instance": ratios.tolist(), "median": float(np.median(ratios)),
                                  "best_rho_notebook": sweeps.best("notebook", method)["rho"]})

    claim, _ = check(
        "1sam-beats-gd",
        "1-SAM reaches a far lower test loss than GD at a suitable rho on sparse regression with a diagonal "
        "linear network (Andriushchenko & Flammarion 2022, Sec. 4, Fig. 3): best 1-SAM / GD test loss < 0.1 "
        "(notebook instance, and the median over instances in the full mode)",
        one_sam_vs_gd, m_sam(1),
        {"GD in place of 1-SAM": gd(), "n-SAM (full-batch USAM) in place of 1-SAM": n_sam()},
        "diag_net_rho.png")
    claims.append(claim)

    def n_sam_close_to_gd(method):
        ratios = np.array([sweeps.best(name, method)["test"] / gd_test[name] for name in instances])
        return Outcome(bool(np.all(ratios >= 0.9)), {"ratio_per_instance": ratios.tolist()})

    claim, _ = check(
        "nsam-close-to-gd",
        "n-SAM (full-batch SAM) does not improve much over GD (Sec. 4): its best test loss >= 0.9 x GD's on "
        "every instance",
        n_sam_close_to_gd, n_sam(), {"1-SAM in place of n-SAM": m_sam(1), "2-SAM in place of n-SAM": m_sam(2)},
        "diag_net_rho.png")
    claims.append(claim)

    def smaller_l1(method):
        ratios = np.array([sweeps.best(name, method)["l1"] / gd_l1[name] for name in instances])
        return Outcome(bool(np.all(ratios < 0.99)), {"l1_ratio_per_instance": ratios.tolist(),
                                                      "l1_1sam_notebook": sweeps.best("notebook", method)["l1"],
                                                      "l1_gd_notebook": gd_l1["notebook"]})

    claim, _ = check(
        "1sam-smaller-l1",
        "SAM's implicit bias: the 1-SAM solution (at its best rho) has a smaller l1 norm than GD's, closer "
        "to the sparse target's (Sec. 4): l1(1-SAM) < 0.99 l1(GD) on every instance (GD and n-SAM: >= 1)",
        smaller_l1, m_sam(1), {"GD in place of 1-SAM": gd(), "n-SAM in place of 1-SAM": n_sam()},
        "diag_net_rho.png")
    claim.measured["l1_target"] = float(np.sum(np.abs(instances["notebook"].beta_star)))
    claims.append(claim)

    def trend(family):
        per = {name: [sweeps.best(name, family(m))["test"] for m in MS] for name in instances}
        med = np.median(np.array(list(per.values())), axis=0)
        corr = spearmanr(MS, med).statistic if np.ptp(med) > 0 else float("nan")
        slope = float(np.polyfit(np.log(MS), np.log(med), 1)[0]) if np.all(med > 0) else float("nan")
        gd_med = float(np.median(list(gd_test.values())))
        ok = corr >= 0.8 and med[0] < 0.1 * med[-1] and med[-1] >= 0.9 * gd_med
        return Outcome(bool(ok), {"m": list(MS), "best_test_median": med.tolist(), "spearman": float(corr),
                                  "log_log_slope": slope, "gd_test_median": gd_med}, per)

    claim, per = check(
        "m-sharpness",
        "m-sharpness (Sec. 3): the smaller the m examples sharing an ascent direction, the better SAM "
        "generalizes; on the diagonal network the test loss at the best rho grows with m in "
        f"{list(MS)} (n = 20; Spearman correlation >= 0.8) and 1-SAM < 0.1 x n-SAM, n-SAM >= 0.9 x GD",
        trend, m_sam,
        {"GD at every m": lambda m: gd(), "m ignored: n-SAM at every m": lambda m: m_sam(20),
         "m ignored: 1-SAM at every m": lambda m: m_sam(1)},
        "m_sharpness.png")
    claims.append(claim)

    nb = {label: sweeps("notebook", method) for label, method in (("n-SAM", n_sam()), ("1-SAM", m_sam(1)))}
    problem = instances["notebook"]
    done = {label: np.where(r["train"] < CONVERGED, 1.0, np.nan) for label, r in nb.items()}   # converged runs only
    save(figures.rho_sweep(RHOS, [(label, r["test"] * done[label], r["l1"] * done[label]) for label, r in nb.items()],
                           [("GD", gd_test["notebook"], gd_l1["notebook"]),
                            (r"$\|\beta^\star\|_1$ (sparse target)", None, float(np.sum(np.abs(problem.beta_star))))],
                           rf"Diagonal linear net (notebook instance), $\alpha$=0.1, $\gamma$=10/d, "
                           rf"{sweeps.iters} steps (runs with training loss < {CONVERGED:g})"), out / "diag_net_rho")
    if len(per) > 1:
        per = {"median over instances": np.median(np.array(list(per.values())), axis=0), **per}
    save(figures.m_sharpness(list(MS), per, float(np.median(list(gd_test.values()))),
                             f"m-SAM on the diagonal net, {sweeps.iters} steps"), out / "m_sharpness")
    return claims
