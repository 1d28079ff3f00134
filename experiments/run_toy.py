"""Run a SAM-family method on a toy problem with known truth, and write trace, summary and figure.

examples:
  python -m experiments.run_toy --method sam --stepsize diminishing
  python -m experiments.run_toy --method sam --stepsize constant --problem quadratic --lr 0.5
  python -m experiments.run_toy --method usam --problem sinpl --dim 5 --runs 64 --iters 20000
  python -m experiments.run_toy --method sam --stepsize "0.5/(k+1)**0.75" --rho-schedule "0.1/(k+1)"

schedules: constant t_k = lr; diminishing t_k = lr/(k+1)^decay (decay 0.6) with, by default,
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

from experiments.common import OneLineParser, check_writable, fail, positive

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
    p.add_argument("--rho", type=float, default=0.05, help="perturbation radius rho_0 (default 0.05)")
    p.add_argument("--rho-schedule", default=None,
                   help="constant, diminishing or an expression in k (default: constant for a "
                        "constant step, diminishing for a diminishing one)")
    p.add_argument("--lr", type=float, default=None, help="step size t_0 (default 1/L of the problem)")
    p.add_argument("--decay", type=float, default=DEFAULT_DECAY,
                   help="exponent p of t_k = lr/(k+1)^p (default 0.6)")
    p.add_argument("--rho-decay", type=float, default=DEFAULT_DECAY,
                   help="exponent q of rho_k = rho/(k+1)^q for a diminishing radius (default 0.6)")
    p.add_argument("--iters", type=int, default=100_000, help="iterations (default 100000)")
    p.add_argument("--runs", type=int, default=16, help="independent runs, random starts (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of starts and samples (default 0)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--out", default=None, help="output folder (default results/<problem>-<method>-<stepsize>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def configure(args) -> dict:
    """Validate the flags and return the run's full config (raises InputError on bad input)."""
    from convergence.errors import InputError
    from convergence.methods import make_method
    from problems import make_problem
    positive("--rho", args.rho)
    positive("--iters", args.iters, integer=True)
    positive("--runs", args.runs, integer=True)
    positive("--decay", args.decay, allow_zero=True)
    positive("--rho-decay", args.rho_decay, allow_zero=True)
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.dim is not None:
        positive("--dim", args.dim, integer=True)
    problem = make_problem(args.problem, args.dim)
    make_method(args.method)
    lr = 1.0 / problem.L if args.lr is None else positive("--lr", args.lr)
    rho_schedule = args.rho_schedule or ("constant" if args.stepsize == "constant" else "diminishing")
    cfg = {"problem": args.problem, "dim": problem.dim, "method": args.method,
           "stepsize": args.stepsize, "lr": lr, "decay": args.decay, "rho": args.rho,
           "rho_schedule": rho_schedule, "rho_decay": args.rho_decay, "iters": args.iters,
           "runs": args.runs, "seed": args.seed, "dtype": args.dtype}
    schedules(cfg)                       # parse now: a malformed expression fails before any work
    out = Path(args.out or f"results/{args.problem}-{args.method}-{_slug(args.stepsize)}")
    check_writable(out)
    cfg["out"] = str(out)
    return cfg


def schedules(cfg):
    """The step-size and radius schedules of a config, checked positive and finite at the start."""
    from convergence.errors import InputError
    from convergence.schedules import make_schedule
    t = make_schedule(cfg["stepsize"], cfg["lr"], cfg["decay"])
    r = make_schedule(cfg["rho_schedule"], cfg["rho"], cfg["rho_decay"])
    for name, sched in (("--stepsize", t), ("--rho-schedule", r)):
        for step in (0, 1, 10, cfg["iters"] - 1):
            try:
                value = sched(step)
            except (ValueError, ZeroDivisionError, OverflowError, TypeError) as err:
                raise InputError(f"{name} '{sched.label}' cannot be evaluated at k={step}: {err}")
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"{name} '{sched.label}' is {value} at k={step}: it must stay "
                                 f"positive and finite for k = 0, 1, ...")
    return t, r


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]


def execute(cfg: dict, progress: bool = False):
    """Run a validated config; returns the assessed Trace."""
    from convergence.methods import make_method
    from convergence.runner import run
    from convergence.verdicts import assess
    from problems import make_problem
    problem = make_problem(cfg["problem"], cfg["dim"])
    t, r = schedules(cfg)
    trace = run(problem, make_method(cfg["method"]), t, r, cfg["iters"], cfg["runs"], cfg["seed"],
                dtype=np.dtype(cfg["dtype"]).type, progress=progress)
    assess(trace)
    return problem, trace


def summary(cfg: dict, problem, trace, seconds: float | None = None) -> dict:
    from convergence.trace import provenance
    runs = [{"run": r, "status": trace.status[r], "reason": trace.reason[r], **trace.details[r]}
            for r in range(trace.runs)]
    return {"config": cfg, "seed": cfg["seed"], "provenance": provenance(),
            "problem": problem.metadata(), "status_counts": {s: trace.status.count(s)
                                                            for s in sorted(set(trace.status))},
            "max_err_over_bound": max_err_ratio(trace), "runs": runs,
            **({"seconds": round(seconds, 3)} if seconds is not None else {})}


def max_err_ratio(trace) -> float | None:
    """max over recorded iterates of err / err_bound (<= 1 when the inexactness bound holds)."""
    err, bound = trace.data["err"], trace.data["err_bound"]
    ok = np.isfinite(err) & np.isfinite(bound) & (bound > 0)
    return float(np.max(err[ok] / bound[ok])) if ok.any() else None


def write_results(cfg, problem, trace, seconds=None) -> list[Path]:
    """trace.csv, figure.png/pdf, then summary.json last (its presence marks a complete result)."""
    from convergence.trace import write_csv, write_json
    from figures.convergence import plot_dirs
    out = Path(cfg["out"])
    write_csv(out / "trace.csv", [trace])
    title = f"{cfg['method'].upper()} on {cfg['problem']} (d={cfg['dim']}), {cfg['stepsize']} steps"
    figs = plot_dirs([out], out / "figure", title, labels=[cfg["method"]])
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


def main(argv=None) -> int:
    from convergence.errors import InputError
    args = build_parser().parse_args(argv)
    try:
        cfg = configure(args)
    except InputError as err:
        return fail("run_toy", str(err))
    start = time.perf_counter()
    problem, trace = execute(cfg, progress=not args.no_progress and sys.stderr.isatty())
    paths = write_results(cfg, problem, trace, time.perf_counter() - start)
    print_table(cfg, trace)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 1 if all(s == "diverged" for s in trace.status) else 0


if __name__ == "__main__":
    sys.exit(main())
