"""Hypothesis checks: which theorems of the catalogue cover a run, and which of their schedule
hypotheses hold, each decided symbolically (asymptotics.py) or on the schedule's values at every k
of the run (computed once per Schedule and shared with the run itself)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from convergence.schedules import SCAN, Schedule, k
from convergence.theory import asymptotics
from convergence.theory.asymptotics import Decision
from convergence.theory.catalogue import SCOPES, THEOREMS, Theorem


@dataclass
class Context:
    """What the hypotheses are checked against: the schedules and the problem's constants."""

    t: Schedule
    rho: Schedule
    L: float
    mu: float | None = None
    error_model: tuple | None = (0.0, 1.0)
    ol_steps: tuple | None = None        # (gamma*, rho*) for the run's sampler, when PL
    horizon: int = SCAN                  # k < horizon is scanned numerically (a run's length, at least SCAN)
    cache: dict = field(default_factory=dict)


def _sup(schedule: Schedule, ctx: Context) -> float:
    """sup_k of a schedule: the maximum over k < horizon and the limit (inf when undecided)."""
    value = asymptotics.limit(schedule.expr)[0]
    return max(float(schedule.values(ctx.horizon).max()), math.inf if value is None else value)


def check(key: str, ctx: Context) -> Decision:
    """Decide one schedule hypothesis (cached per context)."""
    if key not in ctx.cache:
        ctx.cache[key] = _check(key, ctx)
    return ctx.cache[key]


def _check(key, ctx):
    t, rho, L = ctx.t.expr, ctx.rho.expr, ctx.L
    if key == "sum_t_inf":
        d = asymptotics.sum_converges(t)
        return Decision(None if d.holds is None else not d.holds, d.method, d.detail)
    if key == "sum_t2_fin":
        return asymptotics.sum_converges(t**2)
    if key == "sum_trho_fin":
        return asymptotics.sum_converges(t * rho)
    if key == "sum_rho2_fin":
        return asymptotics.sum_converges(rho**2)
    if key == "t_to_0":
        return asymptotics.tends_to_zero(t)
    if key == "t_below_2_over_L":
        return asymptotics.eventually_below(t, 2 / L, "2/L")
    if key in ("t_at_most_1_over_L", "t_at_most_2_over_L"):
        n = 1 if key == "t_at_most_1_over_L" else 2
        return asymptotics.always_at_most(ctx.t, n / L, f"{n}/L", ctx.horizon)
    if key in ("t_const", "rho_const"):
        expr = t if key == "t_const" else rho
        const = k not in expr.free_symbols
        return Decision(const, "symbolic", f"{'constant' if const else 'depends on k'}: {expr}")
    if key == "rho_below_1_over_L":
        nu = L * _sup(ctx.rho, ctx)
        return Decision(nu < 1, "symbolic+scan", f"ν = L sup ρ_k = {nu:.3g}")
    if key == "usam_step":
        nu = L * _sup(ctx.rho, ctx)
        if nu >= 1:
            return Decision(False, "symbolic+scan", f"ν = {nu:.3g} ≥ 1")
        return asymptotics.always_at_most(ctx.t, (1 - nu) / (L * (1 + nu) ** 2), "(1−ν)/(L(1+ν)²)", ctx.horizon)
    if key == "relative_step":
        if ctx.error_model is None or ctx.error_model[1] != 0:
            return Decision(False, "symbolic", "the method's error is not relative (b > 0 or no error model)")
        nu = ctx.error_model[0] * L * _sup(ctx.rho, ctx)
        if nu >= 1:
            return Decision(False, "symbolic+scan", f"ν = a L sup ρ_k = {nu:.3g} ≥ 1")
        return asymptotics.always_at_most(ctx.t, (1 - nu) / (L * (1 + nu) ** 2), f"(1−ν)/(L(1+ν)²), ν = {nu:.3g}",
                                          ctx.horizon)
    if key == "usam_factor_positive":
        if ctx.error_model is None:
            return Decision(False, "symbolic", "the method has no error model")
        a, b = ctx.error_model
        c = 2.0 if a > 0 and b > 0 else 1.0
        worst = c * L**2 * a**2 * _sup(ctx.rho, ctx) ** 2
        return Decision(worst < 1, "symbolic+scan", f"c L² a² sup ρ² = {worst:.3g}")
    if key in ("ol_constant", "ol_decreasing"):
        if ctx.ol_steps is None or ctx.mu is None:
            return Decision(False, "symbolic", "no (γ*, ρ*): they need a PL constant and a constant λ")
        gamma, rho_star = ctx.ol_steps
        ok_t = asymptotics.always_at_most(ctx.t, gamma * (1 + 1e-9), "γ*", ctx.horizon)
        ok_r = asymptotics.always_at_most(ctx.rho, rho_star * (1 + 1e-9), "ρ*", ctx.horizon)
        if key == "ol_constant" or not (ok_t and ok_r):
            return Decision(bool(ok_t and ok_r), ok_t.method, f"{ok_t.detail}; {ok_r.detail}")
        lt, _ = asymptotics.limit(t * ctx.mu * k)
        lr, _ = asymptotics.limit(rho * k)
        ok = lt is not None and lr is not None and abs(lt - 2) < 1e-9 and abs(lr - 0.5) < 1e-9
        return Decision(ok, "symbolic", f"t_k μ k → {lt} (2), ρ_k k → {lr} (1/2)")
    raise KeyError(key)


ASSUMPTIONS = {"smooth": "grad f globally Lipschitz", "lower_bounded": "f bounded below", "convex": "f convex",
               "pl": "the PL inequality", "quadratic": "a strongly convex quadratic",
               "smooth_on_box": "a finite L", "kl": "a KL exponent in (1/2, 1) and a known x*"}


def problem_lacks(problem, assumptions) -> str:
    """The assumptions ``problem`` does not declare, in words ('' when none)."""
    missing = [a for a in assumptions if not problem_has(problem, a)]
    words = [ASSUMPTIONS[a] + (f" (L holds {problem.smoothness_note})" if a == "smooth" and
                               math.isfinite(problem.L) else "") for a in missing]
    return ", ".join(words)


def problem_has(problem, assumption: str) -> bool:
    """Whether f has a property a theorem assumes, from the metadata the problem declares."""
    theta = getattr(problem, "kl_exponent", None)     # check_schedule describes f by a few constants only
    return {"smooth": problem.smoothness_note == "global" and math.isfinite(problem.L),
            # L declared globally or on a box (problems/kl.py): the KL rows assume the iterates stay there
            "smooth_on_box": math.isfinite(problem.L),
            "kl": theta is not None and 0.5 < theta < 1 and getattr(problem, "x_star", None) is not None,
            "lower_bounded": problem.lower_bounded, "convex": problem.convex,
            "pl": problem.mu is not None,
            "quadratic": bool(getattr(problem, "strongly_convex_quadratic", False))}[assumption]


@dataclass
class Assessment:
    theorem: Theorem
    covered: bool            # the method and problem are of the theorem's kind
    holds: bool              # covered, and every hypothesis holds
    failures: list           # (hypothesis, detail) that fail or are undecided
    checks: dict             # hypothesis -> Decision


def assess(rule, problem, ctx: Context, deterministic: bool) -> list[Assessment]:
    """For every theorem: does it cover the run (the rule as the run's sampling sees it, the
    problem's properties), and which of its hypotheses hold."""
    seen = rule.on_full_batch() if deterministic else rule
    out = []
    for th in THEOREMS:
        covered = (th.covers(seen) and (deterministic or not th.deterministic)
                   and all(problem_has(problem, a) for a in th.assumptions))
        checks, failures = {}, []
        if covered:
            for h in th.hypotheses:
                d = check(h, ctx)
                checks[h] = d
                if not d.holds:
                    failures.append((h, d.detail))
        else:
            failures.append(("scope", _scope_reason(th, seen, problem, deterministic)))
        out.append(Assessment(th, covered, covered and not failures, failures, checks))
    return out


def _scope_reason(th, rule, problem, deterministic):
    if not th.covers(rule):
        return f"covers {SCOPES[th.scope][0]}, not {rule.name}"
    if th.deterministic and not deterministic:
        return "deterministic (full-batch) runs only"
    missing = [a for a in th.assumptions if not problem_has(problem, a)]
    return f"{problem.name} is not {' and '.join(missing)}"
