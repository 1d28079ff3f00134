"""Run a SAM-family method on a toy problem with known truth, and write trace, summary and figure.

examples:
  python -m experiments.run_toy --method sam --stepsize diminishing
  python -m experiments.run_toy --method sam --stepsize constant --problem quadratic --lr 0.5
  python -m experiments.run_toy --method usam --problem sinpl --dim 5 --runs 64 --iters 20000
  python -m experiments.run_toy --method sam --stepsize "0.5/(k+1)**0.75" --rho-schedule "0.1/(k+1)"
  python -m experiments.run_toy --method unified --lam 0.5 --problem least_squares --stepsize constant --lr theory --rho theory
  python -m experiments.run_toy --method msam --m 2 --problem ridge --sampling tau-nice --batch 10

methods: gd, sam, usam, unified (--lam), fsam (--sigma --beta), vasso (--theta), rsam (--lam-r
--noise), dnsam, msam (--m --base).

schedules: constant t_k = lr; pl-decreasing (Oikonomou & Loizou: t_k = min(lr, (2k+1)/((k+1)^2 mu)),
rho_k = min(rho, 1/(2k+1))); diminishing t_k = lr/(k+1)^decay (decay 0.6) with, by default,
rho_k = rho/(k+1)^0.6, so that sum t_k = inf, sum t_k^2 < inf and sum t_k rho_k < inf (the step-size
hypotheses of Khanh et al. 2024); or any expression in k (numbers, k, + - * / ** and log, sqrt, exp,
floor, min, max).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import (OneLineParser, add_method_flags, check_memory, check_seed, check_writable, fail,
                                method_options, positive)

DEFAULT_DECAY = 0.6


def build_parser() -> argparse.ArgumentParser:
    from convergence.methods import METHODS
    from problems import PROBLEMS
    p = OneLineParser(prog="python -m experiments.run_toy", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="sam", help=f"one of: {', '.join(METHODS)} (default sam)")
    p.add_argument("--stepsize", default="diminishing",
                   help="constant, diminishing, or an expression in k (default diminishing)")
    p.add_argument("--problem", default="quadratic", help=f"one of: {', '.join(PROBLEMS)}")
    p.add_argument("--dim", type=int, default=None, help="dimension (default: the problem's own)")
    p.add_argument("--rho", default="0.05",
                   help="perturbation radius rho_0, or 'theory' for Oikonomou & Loizou's rho* (default 0.05)")
    p.add_argument("--rho-schedule", default=None,
                   help="constant, diminishing or an expression in k (default: constant for a "
                        "constant step, diminishing for a diminishing one)")
    p.add_argument("--lr", default=None,
                   help="step size t_0, or 'theory' for Oikonomou & Loizou's gamma* (default 1/L)")
    p.add_argument("--decay", type=float, default=None,
                   help="exponent p of t_k = lr/(k+1)^p, --stepsize diminishing only (default 0.6)")
    p.add_argument("--rho-decay", type=float, default=None,
                   help="exponent q of rho_k = rho/(k+1)^q, a diminishing radius only (default 0.6)")
    p.add_argument("--iters", type=int, default=100_000, help="iterations (default 100000)")
    p.add_argument("--runs", type=int, default=16, help="independent runs, random starts (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of starts and samples (default 0)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    add_method_flags(p)
    s = p.add_argument_group("stochastic finite sums")
    s.add_argument("--sampling", default="full", help="full, tau-nice, importance or single (default full)")
    s.add_argument("--batch", type=int, default=None, help="samples per step (tau of tau-nice; default 1)")
    p.add_argument("--out", default=None, help="output folder (default results/<problem>-<method>-<stepsize>)")
    p.add_argument("--require-theory", action="store_true",
                   help="refuse (exit 2) a schedule under which no convergence theorem covers the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def radius_schedule(stepsize: str, rho_schedule: str | None = None) -> str:
    """The radius schedule a run uses: the one given, else constant for a constant (or PL-decreasing)
    step size and diminishing otherwise."""
    return rho_schedule or {"constant": "constant", "pl-decreasing": "pl-decreasing"}.get(stepsize, "diminishing")


def _or_default(decay):
    """A decay exponent as given, else the default (also recorded where the schedule ignores it)."""
    return DEFAULT_DECAY if decay is None else decay


def configure(args) -> dict:
    """Validate the flags and return the run's full config (raises InputError on bad input)."""
    from convergence.errors import InputError
    from convergence.methods import make_method
    from convergence.sampling import make_sampler
    from problems import make_problem
    positive("--iters", args.iters, integer=True)
    positive("--runs", args.runs, integer=True)
    for flag, value in (("--decay", args.decay), ("--rho-decay", args.rho_decay)):
        if value is not None:
            positive(flag, value, allow_zero=True)
    check_seed(args.seed)
    if args.dim is not None:
        positive("--dim", args.dim, integer=True)
    check_memory(args.runs * (args.dim or 1), "--runs x --dim")
    out = Path(args.out or f"results/{args.problem}-{args.method}-{_slug(args.stepsize)}")
    check_writable(out)                  # first: a warning below must not precede this error
    problem = make_problem(args.problem, args.dim)
    options = method_options(args)
    rule = make_method(args.method, **options)
    dry_run(problem, rule, make_sampler(args.sampling, args.batch, problem))
    rho_schedule = radius_schedule(args.stepsize, args.rho_schedule)
    for flag, value, schedule, where in (("--decay", args.decay, args.stepsize, "--stepsize"),
                                         ("--rho-decay", args.rho_decay, rho_schedule, "--rho-schedule")):
        if value is not None and schedule != "diminishing":
            raise InputError(f"{flag} applies to {where} diminishing only, not '{schedule}': drop it "
                             f"or use {where} diminishing")
    cfg = {"problem": args.problem, "dim": problem.dim, "method": args.method, "method_options": options,
           "sampling": args.sampling, "batch": args.batch, "stepsize": args.stepsize,
           "lr": args.lr or "1/L", "decay": _or_default(args.decay), "rho": args.rho,
           "rho_schedule": rho_schedule, "rho_decay": _or_default(args.rho_decay), "iters": args.iters, "runs": args.runs, "seed": args.seed,
           "dtype": args.dtype}
    cfg["lr"], cfg["rho"] = resolve_steps(cfg, problem)
    t, r = schedules(cfg)                # parse now: a malformed expression fails before any work
    verdict = theory_verdict(cfg, problem, rule, t, r)
    if verdict:
        if args.require_theory:
            raise InputError(f"--require-theory: {verdict}")
        print(f"run_toy: warning: {verdict}", file=sys.stderr)
    cfg["out"] = str(out)
    return cfg


def dry_run(problem, rule, sampler) -> None:
    """One step of one run, so that a method/problem/sampler mismatch fails before any work."""
    from convergence.random import Streams
    streams = Streams(0, [0], 0)
    x = problem.x0(1, 0)
    rule.gradient(0, x, sampler.oracle(problem, streams), rule.init(x), 0.0, streams)


CONVERGENCE = ("grad_to_zero", "linear", "rate_1_over_k")


def theory_rows(cfg, problem, rule, t, r, trace=None):
    """The theory report of a config (with observations when a trace is given)."""
    from convergence.methods import make_method
    from convergence.sampling import make_sampler
    from convergence.verdicts import theory_report
    lam = make_method(cfg["method"], **cfg["method_options"]).options().get("lam")
    sampler = make_sampler(cfg["sampling"], cfg["batch"], problem)
    return theory_report(problem, rule, lam, t, r, sampler, trace, _ol_steps(cfg, problem), cfg["iters"])


def theory_verdict(cfg, problem, rule, t, r) -> str:
    """'' when a convergence theorem covers the run and its hypotheses hold, else why not."""
    rows = [row for row in theory_rows(cfg, problem, rule, t, r)
            if _predicts(row["theorem"]) in CONVERGENCE and row["covered"]]
    if any(row["holds"] for row in rows):
        return ""
    if not rows:
        return (f"no convergence theorem covers {cfg['method']} on {problem.name} "
                f"({'deterministic' if cfg['sampling'] == 'full' else 'stochastic'})")
    return "; ".join(f"{row['theorem']} fails: {row['failures'][0]}" for row in rows)


def _predicts(key):
    from convergence.theory import THEOREMS
    return next(th.predicts for th in THEOREMS if th.key == key)


def _ol_steps(cfg, problem):
    """Oikonomou & Loizou's (gamma*, rho*) for this run when they exist (PL, constant lam)."""
    from convergence.errors import InputError
    try:
        theory = resolve_theory(cfg, problem)
    except InputError:
        return None
    return theory


def resolve_theory(cfg, problem):
    """(gamma*, rho*) of Unified SAM for the config's method, sampler and PL problem."""
    from convergence.errors import InputError
    from convergence.sampling import make_sampler
    from convergence.theorems import unified_pl_steps
    lam = {"sam": 1.0, "usam": 0.0}.get(cfg["method"], cfg["method_options"].get("lam", 0.5))
    if cfg["method"] not in ("sam", "usam", "unified") or not isinstance(_number(lam), float):
        raise InputError("theory steps (--lr/--rho theory, --stepsize pl-decreasing) exist for sam, "
                         "usam and unified with a constant --lam")
    if problem.mu is None:
        raise InputError(f"theory steps need a PL constant; '{problem.name}' has none: use "
                         f"quadratic, sinpl, least_squares, ridge or logistic")
    sampler = make_sampler(cfg["sampling"], cfg["batch"], problem)
    consts = sampler.constants(problem)
    L = problem.L if cfg["sampling"] == "full" else problem.L_max
    return unified_pl_steps(L, problem.mu, consts["A"], consts["B"], _number(lam))


def resolve_steps(cfg: dict, problem) -> tuple[float, float]:
    """t_0 and rho_0 as numbers: '1/L', a number, or 'theory' (Oikonomou & Loizou's gamma*, rho*)."""
    lr, rho = str(cfg["lr"]), str(cfg["rho"])
    theory = None
    if "theory" in (lr, rho) or cfg["stepsize"] == "pl-decreasing":
        theory = resolve_theory(cfg, problem)
    lr_value = (1.0 / problem.L if lr == "1/L" else theory[0] if lr == "theory" else _number(lr, "--lr"))
    rho_value = theory[1] if rho == "theory" else _number(rho, "--rho")
    return positive("--lr", lr_value), positive("--rho", rho_value)


def _number(text, flag=None):
    from convergence.errors import InputError
    try:
        return float(text)
    except (TypeError, ValueError):
        if flag is None:
            return text
        raise InputError(f"{flag} must be a number or 'theory', got '{text}'")


def schedules(cfg):
    """The step-size and radius schedules of a config, checked positive and finite at every k < iters
    (the values are kept: the run reads them)."""
    from convergence.errors import InputError
    from convergence.schedules import make_schedule
    from convergence.theorems import pl_decreasing
    from problems import make_problem
    if "pl-decreasing" in (cfg["stepsize"], cfg["rho_schedule"]):
        if cfg["stepsize"] != cfg["rho_schedule"]:
            raise InputError("pl-decreasing sets t_k and rho_k together: use it for both --stepsize "
                             "and --rho-schedule (the default)")
        t, r = pl_decreasing(cfg["lr"], cfg["rho"], make_problem(cfg["problem"], cfg["dim"]).mu)
    else:
        t = make_schedule(cfg["stepsize"], cfg["lr"], cfg["decay"])
        r = make_schedule(cfg["rho_schedule"], cfg["rho"], cfg["rho_decay"])
    for name, sched in (("--stepsize", t), ("--rho-schedule", r)):
        sched.check(name, cfg["iters"], lambda v: v > 0, "stay positive")
    return t, r


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]


def execute(cfg: dict, progress: bool = False):
    """Run a validated config; returns the assessed Trace."""
    from convergence.methods import make_method
    from convergence.runner import run
    from convergence.sampling import make_sampler
    from convergence.verdicts import assess
    from problems import make_problem
    problem = make_problem(cfg["problem"], cfg["dim"])
    t, r = schedules(cfg)
    sampler = make_sampler(cfg["sampling"], cfg["batch"], problem)
    rule = make_method(cfg["method"], **cfg["method_options"])
    trace = run(problem, rule, t, r, cfg["iters"], cfg["runs"], cfg["seed"], sampler=sampler,
                dtype=np.dtype(cfg["dtype"]).type, progress=progress)
    assess(trace)
    trace.theory = theory_rows(cfg, problem, rule, t, r, trace)
    return problem, trace


def summary(cfg: dict, problem, trace, seconds: float | None = None) -> dict:
    from convergence.trace import provenance
    runs = [{"run": r, "status": trace.status[r], "reason": trace.reason[r], **trace.details[r]}
            for r in range(trace.runs)]
    return {"config": cfg, "seed": cfg["seed"], "provenance": provenance(),
            "problem": problem.metadata(), "status_counts": {s: trace.status.count(s)
                                                            for s in sorted(set(trace.status))},
            "max_err_over_bound": max_err_ratio(trace), "runs": runs,
            "theory": trace.theory, "mismatches": [row["theorem"] for row in trace.theory if row.get("mismatch")],
            **({"seconds": round(seconds, 3)} if seconds is not None else {})}


def max_err_ratio(trace) -> float | None:
    """max over recorded iterates of err / err_bound (<= 1 when the inexactness bound holds).

    Iterates whose ||grad f|| is below 1e-9 of the run's first are left out: there both sides are
    at round-off level and their ratio means nothing.
    """
    err, bound = trace.data["err"], trace.data["err_bound"]
    g = trace.data["grad_norm"]
    ok = np.isfinite(err) & np.isfinite(bound) & (bound > 0) & (g >= 1e-9 * g[:1])
    return float(np.max(err[ok] / bound[ok])) if ok.any() else None


def write_results(cfg, problem, trace, seconds=None) -> list[Path]:
    """trace.csv, figure.png/pdf, then summary.json last (its presence marks a complete result)."""
    from convergence.trace import write_csv, write_json
    from figures.convergence import plot_dirs
    out = Path(cfg["out"])
    write_csv(out / "trace.csv", [trace])
    title = f"{cfg['method'].upper()} on {cfg['problem']} (d={cfg['dim']}), {cfg['stepsize']} steps"
    overlays = [(row["bound_curve"], "grad_norm" if row["predicts"] == "bound_min_grad" else "f_gap",
                 "min-grad bound" if row["predicts"] == "bound_min_grad" else "PL bound")
                for row in trace.theory if "bound_curve" in row]
    figs = plot_dirs([out], out / "figure", title, labels=[cfg["method"]], overlays=overlays)
    write_json(out / "summary.json", summary(cfg, problem, trace, seconds))
    return [out / "trace.csv", *figs, out / "summary.json"]


def print_table(cfg, trace) -> None:
    """A short summary table: medians over runs and the verdict counts."""
    def med(name):
        v = trace.final[name]
        v = v[np.isfinite(v)]
        return f"{np.median(v):.3e}" if len(v) else "-"
    g0 = np.median([d["grad_norm_0"] for d in trace.details])
    print(f"{cfg['method']} on {cfg['problem']} (d={cfg['dim']}), stepsize {cfg['stepsize']} "
          f"(t0={cfg['lr']:.4g}), rho {cfg['rho_schedule']} (rho0={cfg['rho']:g}), "
          f"{cfg['iters']} iterations x {cfg['runs']} runs")
    rows = [("||grad f(x_0)||  (median)", f"{g0:.3e}"), ("||grad f(x_K)||  (median)", med("grad_norm")),
            ("f(x_K) - f*      (median)", med("f_gap")), ("||x_K - x*||     (median)", med("dist_to_opt"))]
    ratio = max_err_ratio(trace)
    rows.append(("max err / err_bound", "-" if ratio is None else f"{ratio:.3f}"))
    counts = {s: trace.status.count(s) for s in sorted(set(trace.status))}
    rows.append(("verdicts", ", ".join(f"{n} {s}" for s, n in counts.items())))
    for name, value in rows:
        print(f"  {name:<28}{value}")
    if trace.runs <= 4:
        for r in range(trace.runs):
            print(f"  run {r}: {trace.status[r]}: {trace.reason[r]}")
    for row in trace.theory:
        if row.get("unreached"):
            print(f"  theory {row['unreached']}: {row['theorem']} ({row['where']}, {row['source']}) predicts "
                  f"{row['predicts']}")
        if row["holds"] and "runs_agree" in row:
            flag = "MISMATCH" if row["mismatch"] else "agrees"
            print(f"  theory {flag}: {row['theorem']} ({row['where']}, {row['source']}) predicts "
                  f"{row['predicts']}; observed in {row['runs_agree']}/{row['runs']} runs: {row['observed'][0]}")


def main(argv=None) -> int:
    from convergence.errors import InputError
    args = build_parser().parse_args(argv)
    try:
        cfg = configure(args)
    except InputError as err:
        return fail("run_toy", err.for_flags())
    start = time.perf_counter()
    problem, trace = execute(cfg, progress=not args.no_progress and sys.stderr.isatty())
    paths = write_results(cfg, problem, trace, time.perf_counter() - start)
    print_table(cfg, trace)
    print("wrote " + ", ".join(str(p) for p in paths))
    diverged = trace.status.count("diverged")
    if diverged:
        print(f"{diverged} of {trace.runs} runs diverged (exit status 3)")
    return 3 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
