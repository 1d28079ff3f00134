"""Khanh, Luong, Mordukhovich & Tran, "Fundamental Convergence Analysis of SAM" (NeurIPS 2024), each
claim checked against the wrong implementations it must reject (experiments.mutants, and the
schedule mutants below), on the engine (convergence.runner.iterate).

Claims checked:
1. constant-step-sam-does-not-converge: on a strongly convex quadratic, SAM with constant t, rho
   ends in the exact 2-cycle x_{k+1} = -x_k along the top eigen-direction with amplitude
   a = t rho L/(2 - t L) (the fixed point of x -> -( (1 - tL) x - tL rho sign x )), f - f* = L a^2/2;
2. diminishing-step-sam-converges: with t_k, rho_k meeting the theorem's hypotheses ||grad f|| -> 0,
   and ||x_k|| tracks the cycle amplitude of the moment a_k = t_k rho_k L/(2 - t_k L);
3. almost-constant-radius (Remark 3.6, on the step-size hypotheses): t_k = c/(k + k0), c = 2/mu,
   k0 = 2L/mu, with rho_k = 0.05/(k+1)^0.1 meets them (decided symbolically); a constant rho does not;
4. variants-converge: SAM, USAM, F-SAM, VaSSO, RSAM converge with diminishing steps on the nonconvex
   robust regression, each also showing its own signature (ascent direction, relative inexactness,
   F-SAM's zero-mean direction, VaSSO's EMA variance theta/(2 - theta), RSAM's gradient alignment);
5. inexactness-bounds: ||g_k - grad f(x_k)|| <= L rho_k (a ||grad f(x_k)|| + b) at every recorded
   iterate, on an isotropic quadratic where the bound is attained (so a radius off by 1 % shows);
6. kl-iterates-converge: on Kurdyka-Lojasiewicz problems that are not PL (problems/kl.py), SAM with
   diminishing steps moves along a path of finite length to x*: over the last decade the path grew
   by about the distance it gained towards x* (the tail length is bounded by a telescoping sum);
7. kl-distance-rate: relative-error inexact gradient descent (USAM within its hypothesis) with
   constant steps has ||x_k - x*|| = O(k^-(1-theta)/(2theta-1)) (Attouch & Bolte 2009, Thm 2, for
   descent methods with sufficient decrease and relative error); the fitted exponent with its 95 % CI.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from convergence.methods import Rule, make_method
from convergence.random import Streams
from convergence.runner import iterate
from convergence.schedules import Schedule, constant, diminishing, k
from convergence.theory import Context, check as hypothesis
from convergence.trace import table
from convergence.verdicts import assess, tail_fit
from convergence.vec import norm
from experiments.claims import Claim, Outcome, check
from experiments.mutants import AntiSAM, FrozenRadius, RandomUnit, ScaledRadius, unchecked
from figures.convergence import plot_tables, save
from problems import make_problem

TITLE = "Khanh et al. (2024): Fundamental Convergence Analysis of SAM"
PAPER = "khanh2024"
VARIANTS = ("sam", "usam", "fsam", "vasso", "rsam")
KL_PROBLEMS = ("quartic", "sextic", "sinpl_squared")
THEOREM = ("sum_t_inf", "sum_t2_fin", "sum_trho_fin")     # Thm 3.3's schedule hypotheses


@dataclass(frozen=True)
class Setup:
    """A rule with the schedules it is run at (the schedules can be the mutation)."""

    rule: Rule
    stepsize: Schedule | str | None = None
    radius: Schedule | None = None


def hypotheses(t: Schedule, rho: Schedule, L: float, keys=THEOREM) -> dict:
    """The schedule hypotheses decided by convergence.theory (symbolic where sympy decides them)."""
    ctx = Context(t, rho, L)
    return {key: hypothesis(key, ctx) for key in keys}


def cycle_ratio(trace, L, start=0.1):
    """||x_k|| / a_k with a_k = t_k rho_k L/(2 - t_k L) (t_k, rho_k the recorded nominal values), on
    the recorded k >= start K, every run: (min, max)."""
    t, rho, dist = trace.data["step"], trace.data["rho"], trace.data["dist_to_opt"]
    a = t * rho * L / (2 - t * L)
    sel = trace.grid >= start * trace.grid.max()
    ratio = dist[sel] / a[sel]
    return float(np.nanmin(ratio)), float(np.nanmax(ratio))


def grad_ratio(trace) -> float:
    return float(np.max(trace.final["grad_norm"] / trace.data["grad_norm"][0]))


# --- 1-2. constant vs diminishing steps on a strongly convex quadratic -------------------------------

def claim_constant(quick: bool):
    quad = make_problem("quadratic", 2)                     # eigenvalues 0.1, 1: L = 1, mu = 0.1
    t, rho, iters = 0.5, 0.05, 2000 if quick else 20_000
    a = t * rho * quad.L / (2 - t * quad.L)
    top = int(np.argmax(quad.eigs))

    def measure(rule):
        trace = iterate(quad, rule, constant(t), constant(rho), iters, runs=4, seed=0)
        assess(trace)
        x = trace.final_x
        nxt = iterate(quad, rule, constant(t), constant(rho), 1, runs=len(x), x0=x).final_x
        amp = np.abs(x[:, top])
        gap = trace.final["f_gap"]
        rel_amp = float(np.max(np.abs(amp / a - 1)))
        rel_gap = float(np.max(np.abs(gap / (quad.L * a * a / 2) - 1)))
        size = norm(x)[:, 0]                                             # x_{K+1} = -x_K, x_K != 0
        cycle = float(np.max(np.where(size > 0, norm(nxt + x)[:, 0] / np.where(size > 0, size, 1), np.inf)))
        ok = rel_amp <= 1e-6 and rel_gap <= 1e-6 and cycle <= 1e-6
        return Outcome(ok, {"predicted_amplitude": a, "measured_amplitude": float(np.median(amp)),
                            "amplitude_rel_err": rel_amp, "predicted_f_gap": quad.L * a * a / 2,
                            "measured_f_gap": float(np.median(gap)), "f_gap_rel_err": rel_gap,
                            "two_cycle_err": cycle}, trace)

    sam = make_method("sam")
    return check(
        "constant-step-sam-does-not-converge",
        "SAM with constant t, rho on a strongly convex quadratic does not converge (Khanh et al. 2024, Sec. 3 "
        "example): it ends in the 2-cycle x_{k+1} = -x_k along the top eigen-direction with amplitude "
        "a = t rho L/(2 - tL), f - f* = L a^2/2 (t = 0.5, rho = 0.05, L = 1, mu = 0.1; rtol 1e-6)",
        measure, sam,
        {"GD": make_method("gd"), "USAM in place of SAM": make_method("usam"), "anti-SAM": AntiSAM(),
         "SAM at 2 rho": ScaledRadius(sam, 2.0)},
        "constant-vs-diminishing.png")


def claim_diminishing(quick: bool):
    quad = make_problem("quadratic", 2, kappa=2.0)          # eigenvalues 0.5, 1
    t, rho = diminishing(1.0, 0.6), diminishing(0.05, 0.6)
    iters = 10_000 if quick else 100_000
    hyp = hypotheses(t, rho, quad.L)

    def measure(rule):
        trace = iterate(quad, rule, t, rho, iters, runs=4, seed=0)
        assess(trace)
        lo, hi = cycle_ratio(trace, quad.L)
        g = grad_ratio(trace)
        ok = all(hyp.values()) and g <= 1e-5 and 0.99 <= lo and hi <= 1.01
        return Outcome(ok, {"hypotheses": {h: bool(d) for h, d in hyp.items()}, "max_grad_ratio": g,
                            "dist_over_cycle_amplitude_min": lo, "dist_over_cycle_amplitude_max": hi}, trace)

    sam = make_method("sam")
    return check(
        "diminishing-step-sam-converges",
        "With t_k = 1/(k+1)^0.6, rho_k = 0.05/(k+1)^0.6 (sum t = oo, sum t^2 < oo, sum t rho < oo: the "
        "hypotheses of Thm 3.3) SAM converges: ||grad f|| ratio <= 1e-5, and ||x_k|| tracks the cycle "
        "amplitude a_k = t_k rho_k L/(2 - t_k L) within 1 % for k >= K/10 (quadratic, eigenvalues 0.5, 1)",
        measure, sam,
        {"GD": make_method("gd"), "USAM in place of SAM": make_method("usam"), "anti-SAM": AntiSAM(),
         "random unit direction": RandomUnit(), "SAM at 2 rho": ScaledRadius(sam, 2.0)},
        "constant-vs-diminishing.png")


# --- 3. the almost constant radius (Remark 3.6) --------------------------------------------------------

def claim_almost_constant(quick: bool):
    quad = make_problem("quadratic", 2)                     # L = 1, mu = 0.1
    c, k0 = 2 / quad.mu, 2 * quad.L / quad.mu
    t = Schedule(sp.Float(c) / (k + sp.Float(k0)), f"{c:g}/(k+{k0:g})")
    almost = Schedule(sp.Float(0.05) / (k + 1) ** sp.Rational(1, 10), "0.05/(k+1)^0.1")
    iters = 10_000 if quick else 100_000

    def measure(setup: Setup):
        hyp = hypotheses(t, setup.radius, quad.L, THEOREM + ("t_to_0",))
        trace = iterate(quad, setup.rule, t, setup.radius, iters, runs=4, seed=1)
        assess(trace)
        lo, hi = cycle_ratio(trace, quad.L)
        g = grad_ratio(trace)
        ok = all(hyp.values()) and g <= 1e-3 and 0.99 <= lo and hi <= 1.01
        return Outcome(ok, {"hypotheses": {h: f"{bool(d)} ({d.method})" for h, d in hyp.items()},
                            "max_grad_ratio": g, "dist_over_cycle_amplitude_min": lo,
                            "dist_over_cycle_amplitude_max": hi}, trace)

    sam = make_method("sam")
    return check(
        "almost-constant-radius",
        "Remark 3.6: the step-size hypotheses (sum t = oo, sum t^2 < oo, sum t rho < oo, t -> 0) hold for "
        "t_k = c/(k + k0), c = 2/mu, k0 = 2L/mu, with the almost constant radius rho_k = 0.05/(k+1)^0.1 "
        "(decided symbolically; a constant rho fails sum t rho < oo), and SAM's ||x_k|| tracks the cycle "
        "amplitude t_k rho_k L/(2 - t_k L) within 1 % (quadratic, L = 1, mu = 0.1)",
        measure, Setup(sam, radius=almost),
        {"constant rho = 0.05": Setup(sam, radius=constant(0.05)), "GD": Setup(make_method("gd"), radius=almost),
         "USAM in place of SAM": Setup(make_method("usam"), radius=almost),
         "anti-SAM": Setup(AntiSAM(), radius=almost), "SAM at 2 rho": Setup(ScaledRadius(sam, 2.0), radius=almost)},
        "almost-constant-radius.png")


# --- 4. the variants, each with its own signature ------------------------------------------------------

class NoisyOracle:
    """The exact gradient of ``problem`` plus a fixed noise vector per step (one sample S per step):
    the probe of the stateful rules at a fixed point."""

    def __init__(self, problem, noise):
        self.problem, self.noise, self.L = problem, noise, problem.L

    def grad(self, y):
        return self.problem.grad(y) + self.noise

    def full_grad(self, y):
        return self.problem.grad(y)


def probe_directions(rule, problem, x, steps: int, noise: float, seed: int = 5):
    """The directions d_k of ``rule`` at the fixed points x (rows) over ``steps`` steps, gradients
    with Gaussian noise of standard deviation ``noise``: (steps, runs, dim), and the states."""
    rows = np.arange(len(x))
    state, ds, states = rule.init(x), [], []
    for step in range(steps):
        rng = Streams(seed, rows, step)
        xi = noise * rng.normal_like(x, stream=21)
        d, state = rule.direction(step, x, NoisyOracle(problem, xi), state, rng)
        ds.append(d)
        states.append(state)
    return np.array(ds), states


class Variants:
    """Each variant's signature and its convergence run, computed once per rule."""

    def __init__(self, quick: bool):
        self.rr = make_problem("robust_regression", 10)
        self.quick, self.cache, self.traces = quick, {}, {}
        self.x = self.rr.x0(64, 3)

    def __call__(self, variant: str, rule: Rule) -> tuple[bool, dict]:
        key = (variant, repr(rule), rule.name)
        if key not in self.cache:
            ok, numbers = getattr(self, "sig_" + variant)(rule)
            if ok:                          # a failed signature needs no convergence run
                conv_ok, conv = self.converges(variant, rule)
                ok, numbers = ok and conv_ok, {**numbers, **conv}
            self.cache[key] = (ok, numbers)
        return self.cache[key]

    def converges(self, variant, rule):
        rr = self.rr
        iters = 20_000 if self.quick else 200_000
        trace = iterate(rr, rule, diminishing(1.0 / rr.L, 0.6), diminishing(0.05, 0.6), iters, runs=2, seed=2)
        assess(trace)
        if variant == rule.name:
            self.traces[variant] = trace
        g, dist = grad_ratio(trace), float(np.max(trace.final["dist_to_opt"] / trace.data["dist_to_opt"][0]))
        tol = 5e-2 if self.quick else 1e-3
        return bool(g <= tol and dist <= tol), {"grad_ratio": g, "dist_ratio": dist}

    def cosines(self, rule, noise=0.0):
        d, _ = probe_directions(rule, self.rr, self.x, 1, noise)
        g = self.rr.grad(self.x)
        return np.sum(d[0] * g, axis=1) / (norm(d[0])[:, 0] * norm(g)[:, 0])

    def sig_sam(self, rule):
        cos = self.cosines(rule)
        return bool(cos.min() >= 1 - 1e-12), {"min_cos_d_grad": float(cos.min())}

    def sig_rsam(self, rule):
        cos = self.cosines(rule)
        return bool(cos.mean() >= 0.9), {"mean_cos_d_grad": float(cos.mean())}

    def sig_usam(self, rule):
        rr = self.rr
        nu = 0.5
        rho = nu / rr.L
        t = 0.99 * (1 - nu) / (rr.L * (1 + nu) ** 2)        # inside the toolkit's USAM hypothesis
        hyp = hypotheses(constant(t), constant(rho), rr.L, ("rho_below_1_over_L", "usam_step"))
        trace = iterate(rr, rule, constant(t), constant(rho), 5000 if self.quick else 50_000, runs=4, seed=2)
        rel = trace.data["err"] / (rho * rr.L * trace.data["grad_norm"])
        worst = float(np.nanmax(rel))
        g = grad_ratio(trace)
        ok = all(hyp.values()) and worst <= 1 + 1e-9 and g <= 1e-8
        return bool(ok), {"usam_hypotheses": {h: bool(d) for h, d in hyp.items()}, "t": t, "rho": rho,
                          "max_err_over_rho_L_grad": worst, "constant_step_grad_ratio": g}

    def sig_fsam(self, rule):
        d, _ = probe_directions(rule, self.rr, self.x[:16], 2000, noise=0.3)
        mean = np.linalg.norm(d[1:].mean(axis=0), axis=1)       # first step is plain SAM
        return bool(mean.max() <= 0.2), {"max_norm_mean_direction": float(mean.max())}

    def sig_vasso(self, rule):
        theta = 0.9
        x = np.repeat(self.x[:1], 4000, axis=0)
        _, states = probe_directions(rule, self.rr, x, 40, noise=1.0)
        ratio = float(np.mean(np.var(states[-1], axis=0)))         # noise variance 1 per coordinate
        pred = theta / (2 - theta)
        return bool(abs(ratio / pred - 1) <= 0.1), {"ema_variance_ratio": ratio, "predicted": pred}


def claim_variants(quick: bool, variants: Variants):
    right = {v: make_method(v) for v in VARIANTS}
    swaps = {"anti-SAM in place of SAM": ("sam", AntiSAM()),
             "SAM in place of USAM": ("usam", make_method("sam")),
             "F-SAM with sigma -> -sigma": ("fsam", unchecked("fsam", sigma=-1.0)),
             "F-SAM with frozen momentum (beta = 1)": ("fsam", unchecked("fsam", beta=1.0)),
             "VaSSO with theta -> 1 - theta": ("vasso", unchecked("vasso", theta=0.1)),
             "random unit direction in place of RSAM": ("rsam", RandomUnit())}

    def measure(rules):
        results = {v: variants(v, rules[v]) for v in VARIANTS}
        return Outcome(all(ok for ok, _ in results.values()), {v: n for v, (_, n) in results.items()})

    return check(
        "variants-converge",
        "SAM, USAM, F-SAM, VaSSO and RSAM with t_k = (1/L)/(k+1)^0.6, rho_k = 0.05/(k+1)^0.6 converge on the "
        "nonconvex robust regression (d = 10; ||grad f||, ||x - x*|| ratios <= 5e-2 quick (2 10^4 steps), 1e-3 full (2 10^5); "
        "Sec. 3-4), each with its signature: SAM d = grad f/||grad f||; USAM err <= rho L ||grad f|| and "
        "constant steps converging inside its hypothesis t <= (1 - nu)/(L(1 + nu)^2); F-SAM's direction has "
        "mean ~ 0 at a fixed point (||mean d|| <= 0.2); VaSSO's EMA variance ratio theta/(2 - theta) "
        "(10 %); RSAM cos(d, grad f) >= 0.9",
        measure, right, {label: {**right, v: wrong} for label, (v, wrong) in swaps.items()}, "variants.png")


# --- 5. inexactness bounds --------------------------------------------------------------------------

def claim_inexactness(quick: bool):
    iso = make_problem("quadratic", 2, kappa=1.0)           # A = I: ||A d|| = ||d||, the bound is attained
    iters = 3000 if quick else 30_000
    models = {v: make_method(v).error_model for v in VARIANTS}

    cache = {}

    def ratios(v, rule):
        if (v, rule.name) not in cache:
            trace = iterate(iso, rule, diminishing(0.5, 0.6), diminishing(0.05, 0.6), iters, runs=2, seed=4)
            a, b = models[v]
            bound = iso.L * trace.data["rho"] * (a * trace.data["grad_norm"] + b)
            ok = np.isfinite(trace.data["err"])
            cache[v, rule.name] = (float(np.max(trace.data["err"][ok] / bound[ok])),
                                   float(np.max(trace.data["err"][ok] / trace.data["err_bound"][ok])))
        return cache[v, rule.name]

    def measure(rules):
        worst, nominal = {}, {}
        for v, rule in rules.items():
            nominal[v], worst[v] = ratios(v, rule)
        passed = max(nominal.values()) <= 1 + 1e-9 and max(worst.values()) <= 1 + 1e-9
        return Outcome(passed, {"max_err_over_L_rho_bound": nominal, "max_err_over_recorded_bound": worst})

    right = {v: make_method(v) for v in VARIANTS}
    mutants = {f"{v} at 2 rho": {**right, v: ScaledRadius(right[v], 2.0)} for v in VARIANTS}
    mutants["sam at 1.01 rho"] = {**right, "sam": ScaledRadius(right["sam"], 1.01)}
    return check(
        "inexactness-bounds",
        "SAM-type methods are inexact gradient descent: ||g_k - grad f(x_k)|| <= L rho_k (unit directions: "
        "SAM, F-SAM, VaSSO, RSAM) and <= L rho_k ||grad f(x_k)|| (USAM) at every recorded iterate "
        "(deterministic; on f = ||x||^2/2 the bound is attained, so a radius 1 % too large exceeds it)",
        measure, right, mutants)


# --- 6-7. KL problems -------------------------------------------------------------------------------

def kl_exponent(theta: float) -> float:
    """The distance rate exponent -(1 - theta)/(2 theta - 1) of the KL theory (theta in (1/2, 1))."""
    return -(1 - theta) / (2 * theta - 1)


def path_efficiency(trace, start=0.1):
    """Per problem: (dist(K/10) - dist(K)) / (P(K) - P(K/10)) pooled over runs (how much of the last
    decade's path length went towards x*), and the last decade's share of the total length."""
    gains, lengths, totals = 0.0, 0.0, 0.0
    for r in range(trace.runs):
        its, P = trace.column("path_length", r)
        _, D = trace.column("dist_to_opt", r)
        K = its[-1]
        p0, p1 = np.interp([start * K, K], its, P)
        d0, d1 = np.interp([start * K, K], its, D)
        gains, lengths, totals = gains + (d0 - d1), lengths + (p1 - p0), totals + p1
    return gains / lengths, lengths / totals


def on_each_problem(kl: dict, one) -> Outcome:
    """``one(problem) -> (fine, numbers, trace)`` on each KL problem, stopping at the first that is not
    fine (rejected: the other problems need not be run)."""
    numbers, traces = {}, {}
    for name, problem in kl.items():
        fine, numbers[name], traces[name] = one(problem)
        if not fine:
            return Outcome(False, numbers, traces)
    return Outcome(True, numbers, traces)


def claim_kl_iterates(quick: bool, kl: dict):
    iters = 10_000 if quick else 100_000
    rho0 = 0.5

    def one(rule, problem):
        t, rho = diminishing(1.0 / problem.L, 0.6), diminishing(rho0, 0.6)
        hyp = hypotheses(t, rho, problem.L)
        trace = iterate(problem, rule, t, rho, iters, runs=4, seed=6)
        assess(trace)
        eff, share = path_efficiency(trace)
        dist = float(np.max(trace.final["dist_to_opt"] / trace.data["dist_to_opt"][0]))
        numbers = {"theta": problem.kl_exponent, "efficiency": float(eff), "last_decade_share": float(share),
                   "path_length": float(np.median(trace.final["path_length"])), "dist_ratio": dist}
        return bool(all(hyp.values()) and eff >= 0.8 and dist < 1), numbers, trace

    def measure(rule):
        return on_each_problem(kl, lambda problem: one(rule, problem))

    sam = make_method("sam")
    return check(
        "kl-iterates-converge",
        "On KL functions that are not PL (quartic theta = 3/4, sextic 5/6, nonconvex sinpl_squared 3/4) SAM "
        "with t_k = (1/L)/(k+1)^0.6, rho_k = 0.5/(k+1)^0.6 (Thm 3.3's hypotheses) converges to x* along a "
        "path of finite length (Khanh et al. 2024, iterates under the KL property): over the last decade the "
        "path grew by at most 1/0.8 times the distance gained towards x*, so the remaining length is bounded "
        "by a telescoping sum",
        measure, sam, {"rho_k schedule not applied (rho frozen at 0.5)": FrozenRadius(sam, rho0),
                       "anti-SAM, rho frozen at 0.5": FrozenRadius(AntiSAM(), rho0)},
        "kl.png")


def claim_kl_rate(quick: bool, kl: dict):
    iters = 10_000 if quick else 100_000
    nu = 0.5

    def one(setup: Setup, problem):
        rho = nu / problem.L
        t0 = 0.99 * (1 - nu) / (problem.L * (1 + nu) ** 2)
        t = diminishing(t0, 0.6) if setup.stepsize == "diminishing" else constant(t0)
        hyp = hypotheses(t, constant(rho), problem.L, ("t_const", "rho_below_1_over_L", "usam_step"))
        x0 = np.full((1, problem.dim), 0.9)
        trace = iterate(problem, setup.rule, t, constant(rho), iters, runs=1, x0=x0)
        assess(trace)
        rel = float(np.nanmax(trace.data["err"] / (nu * trace.data["grad_norm"])))
        its, dist = trace.column("dist_to_opt", 0)
        fit = tail_fit(its, dist)
        pred = kl_exponent(problem.kl_exponent)
        tol = 0.05 * abs(pred)
        agrees = bool(fit["lo"] - tol <= pred <= fit["hi"] + tol)
        numbers = {"predicted": pred, "slope": fit["slope"], "ci95": [fit["lo"], fit["hi"]],
                   "max_err_over_nu_grad": rel, "hypotheses": {h: bool(d) for h, d in hyp.items()}}
        return bool(all(hyp.values()) and rel <= 1 + 1e-9 and agrees), numbers, trace

    def measure(setup: Setup):
        return on_each_problem(kl, lambda problem: one(setup, problem))

    usam = make_method("usam")
    return check(
        "kl-distance-rate",
        "Relative-error inexact gradient descent with constant steps (USAM, nu = L rho = 0.5, t = 0.99 (1 - nu)/"
        "(L (1 + nu)^2): sufficient decrease and relative error, Attouch & Bolte 2009 Thm 2) has "
        "||x_k - x*|| = O(k^-(1-theta)/(2theta-1)), tight on these problems: the fitted tail exponent's 95 % "
        "CI, widened by 5 %, contains -(1-theta)/(2theta-1) (-1/2, -1/4, -1/2), and err <= nu ||grad f|| at "
        "every iterate (x_0 = 0.9 (1, 1))",
        measure, Setup(usam),
        {"SAM in place of USAM (absolute error)": Setup(make_method("sam")), "anti-SAM": Setup(AntiSAM()),
         "random unit direction": Setup(RandomUnit()),
         "diminishing t_k = t_0/(k+1)^0.6 in place of constant": Setup(usam, stepsize="diminishing")},
        "kl.png")


def run(out: Path, quick: bool) -> list[Claim]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    claims = []

    claim, const = claim_constant(quick)
    claims.append(claim)
    claim, dimin = claim_diminishing(quick)
    claims.append(claim)
    save(plot_tables([("SAM, constant t = 0.5, ρ = 0.05", table([const])),
                      (r"SAM, $t_k = 1/(k+1)^{0.6}$, $\rho_k = 0.05/(k+1)^{0.6}$", table([dimin]))],
                     "SAM on strongly convex quadratics (d = 2)"), out / "constant-vs-diminishing")

    claim, almost = claim_almost_constant(quick)
    claims.append(claim)
    save(plot_tables([(r"SAM, $t_k = 20/(k+20)$, $\rho_k = 0.05/(k+1)^{0.1}$", table([almost]))],
                     "Almost constant radius (Remark 3.6), quadratic L = 1, μ = 0.1"), out / "almost-constant-radius")

    variants = Variants(quick)
    claim, _ = claim_variants(quick, variants)
    claims.append(claim)
    save(plot_tables([(v, table([variants.traces[v]])) for v in VARIANTS if v in variants.traces],
                     "SAM-family, diminishing steps, robust regression (d = 10)"), out / "variants")

    claim, _ = claim_inexactness(quick)
    claims.append(claim)

    kl = {name: make_problem(name, 2) for name in KL_PROBLEMS}
    claim, kl_traces = claim_kl_iterates(quick, kl)
    claims.append(claim)
    claim, rate_traces = claim_kl_rate(quick, kl)
    claims.append(claim)
    save(plot_tables([(f"SAM diminishing, {n}", table([tr])) for n, tr in kl_traces.items()]
                     + [(f"USAM constant, {n}", table([tr])) for n, tr in rate_traces.items()],
                     "KL problems (not PL): SAM with diminishing steps, USAM with constant steps"), out / "kl")
    return claims
