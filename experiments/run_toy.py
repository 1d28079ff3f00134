"""Run a SAM-family method on a toy problem with known truth, and write trace, summary and figure.

examples:
  python -m experiments.run_toy --method sam --stepsize diminishing
  python -m experiments.run_toy --method sam --stepsize constant --problem quadratic --lr 0.5
  python -m experiments.run_toy --method usam --problem sinpl --dim 5 --runs 64 --iters 20000
  python -m experiments.run_toy --method sam --stepsize "0.5/(k+1)**0.75" --rho-schedule "0.1/(k+1)"
  python -m experiments.run_toy --method unified --lam 0.5 --problem least_squares --stepsize constant --lr theory --rho theory
  python -m experiments.run_toy --method msam --m 2 --problem ridge --sampling tau-nice --batch 10
  python -m experiments.run_toy --method sam --stepsize diminishing --backend jax   # compiled (pip install -e ".[jax]")

schedules (--stepsize, --rho-schedule): constant (t_k = lr); diminishing (t_k = lr/(k+1)^decay,
decay 0.6; with it, by default, rho_k = rho/(k+1)^0.6, so that sum t_k = inf, sum t_k^2 < inf and
sum t_k rho_k < inf, the step-size hypotheses of Khanh et al. 2024); pl-decreasing (Oikonomou &
Loizou: t_k = min(lr, (2k+1)/((k+1)^2 mu)), rho_k = min(rho, 1/(2k+1))); or an expression in k
(numbers, k, + - * / ** ^ and log, ln, sqrt, exp, floor, ceil, min, max), e.g. "0.1/(k+1)**0.6".

Exit status: 0 done; 2 bad input (one line, nothing written); 3 some runs diverged; 1 the results
could not be written (full disk); 130 interrupted (nothing written).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from convergence.progress import Progress
from experiments.common import OneLineParser, add_method_flags, fail, method_options, slug

PROG = "python -m experiments.run_toy"
FLAGS = {"radius": "--rho-schedule", "theory_variant": "--theory-steps"}   # spec parameter -> flag


def build_parser() -> argparse.ArgumentParser:
    from convergence.methods import METHODS
    from convergence.sampling import SAMPLERS
    from convergence.theory.steps import VARIANTS
    from problems import DATA_PROBLEMS, PROBLEMS
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="sam", help=f"one of: {', '.join(METHODS)} (default sam)")
    p.add_argument("--stepsize", default="diminishing",
                   help="t_k: constant (lr), diminishing (lr/(k+1)^decay), pl-decreasing (Oikonomou & Loizou's rule, "
                        "with --lr/--rho theory for gamma*, rho*) or an expression in k such as '0.1/(k+1)**0.75' "
                        "(default diminishing)")
    p.add_argument("--problem", default="quadratic",
                   help=f"one of: {', '.join(PROBLEMS)} (default quadratic); or your own: \"expr:<formula in "
                        f"x1..xd>\", path/to/file.py:Class or module:Class")
    p.add_argument("--dim", type=int, default=None, help="dimension (default: the problem's own)")
    p.add_argument("--lr", default=None,
                   help="t_0 of a constant, diminishing or pl-decreasing step: a number, or 'theory' for "
                        "Oikonomou & Loizou's gamma* (default 1/L)")
    p.add_argument("--rho", default=None,
                   help="rho_0 of a constant, diminishing or pl-decreasing radius: a number, or 'theory' for "
                        "Oikonomou & Loizou's rho* (default 0.05)")
    p.add_argument("--rho-schedule", default=None,
                   help="rho_k, in the forms of --stepsize (default: constant with a constant step, "
                        "pl-decreasing with pl-decreasing, else diminishing)")
    p.add_argument("--decay", type=float, default=None,
                   help="exponent p of t_k = lr/(k+1)^p, --stepsize diminishing only (default 0.6)")
    p.add_argument("--rho-decay", type=float, default=None,
                   help="exponent q of rho_k = rho/(k+1)^q, a diminishing radius only (default 0.6)")
    p.add_argument("--iters", type=int, default=100_000, help="iterations (default 100000)")
    p.add_argument("--runs", type=int, default=16, help="independent runs from random starts (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts and samples (default 0)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="arithmetic of the iterates; problem constants stay float64 (default float64)")
    p.add_argument("--backend", default="numpy",
                   help="numpy or jax: the same rules compiled with jax.jit, float64, agreeing with "
                        "numpy to 1e-12 relative (pip install -e \".[jax]\")")
    add_method_flags(p)
    u = p.add_argument_group("your own problem")
    u.add_argument("--data", default=None,
                   help=f"data of a finite sum ({', '.join(DATA_PROBLEMS)}): FILE.npz (arrays A, b), FILE.csv "
                        f"(last column the target), FILE.svm (LIBSVM) or sklearn:NAME")
    u.add_argument("--box", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="an expr: problem's box, where starts are drawn and L is bounded (default -1 1)")
    u.add_argument("--f-star", type=float, default=None, help="an expr: problem's minimum value, if known")
    u.add_argument("--x-star", type=float, nargs="+", metavar="X", default=None,
                   help="an expr: problem's minimizer x1 .. xd, if known")
    s = p.add_argument_group("stochastic finite sums")
    s.add_argument("--sampling", default="full", help=f"one of: {', '.join(SAMPLERS)} (default full)")
    s.add_argument("--batch", type=int, default=None, help="samples per step (tau of tau-nice; default 1)")
    t = p.add_argument_group("theory")
    t.add_argument("--theory-steps", default="authors", choices=list(VARIANTS),
                   help="which (gamma*, rho*) 'theory' takes: the lines Oikonomou & Loizou's experiments "
                        "ran (authors, default) or the commented-out ones")
    t.add_argument("--require-theory", action="store_true",
                   help="refuse (exit 2) a run that no convergence theorem covers")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="output folder (default results/<problem>-<method>-<stepsize>)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing result in --out")
    o.add_argument("--max-memory", type=float, default=None,
                   help="GiB the run may take (default: the memory available now)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    o.add_argument("--verbose", action="store_true", help="print where the time went")
    return p


def spec_from_args(args):
    """The run spec the flags describe (InputError naming the parameter on bad input)."""
    from convergence.spec import toy_run
    return toy_run(problem=args.problem, method=args.method, stepsize=args.stepsize, lr=args.lr, rho=args.rho,
                   rho_schedule=args.rho_schedule, decay=args.decay, rho_decay=args.rho_decay, dim=args.dim,
                   iters=args.iters, runs=args.runs, seed=args.seed, sampling=args.sampling, batch=args.batch,
                   dtype=args.dtype, method_options=method_options(args), theory_variant=args.theory_steps,
                   max_memory=None if args.max_memory is None else args.max_memory * 2**30, backend=args.backend,
                   problem_options={"data": args.data, "box": args.box and tuple(args.box), "f_star": args.f_star,
                                    "x_star": args.x_star and tuple(args.x_star)})


def default_out(args) -> str:
    return f"results/{slug(args.problem, 40)}-{args.method}-{slug(args.stepsize)}"


def print_table(spec, trace) -> None:
    """A short summary table: medians over runs, the verdict counts and the theory's predictions."""
    from experiments.results import max_err_ratio, status_counts

    def med(name):
        v = trace.final[name]
        v = v[np.isfinite(v)]
        return f"{np.median(v):.3e}" if len(v) else "-"
    rows = [("||grad f(x_0)||  (median)", f"{np.median([d['grad_norm_0'] for d in trace.details]):.3e}"),
            ("||grad f(x_K)||  (median)", med("grad_norm")), ("f(x_K) - f*      (median)", med("f_gap")),
            ("||x_K - x*||     (median)", med("dist_to_opt"))]
    ratio = max_err_ratio(trace)
    rows.append(("max err / err_bound", "-" if ratio is None else f"{ratio:.3f}"))
    rows.append(("verdicts", ", ".join(f"{n} {s}" for s, n in status_counts(trace).items())))
    for name, value in rows:
        print(f"  {name:<28}{value}")
    if trace.runs <= 4:
        for r in range(trace.runs):
            print(f"  run {r}: {trace.status[r]}: {trace.reason[r]}")
    for row in trace.theory:
        head = f"{row['theorem']} ({row['where']}, {row['source']}) predicts {row.get('predicts')}"
        if row.get("unreached"):
            print(f"  theory {row['unreached']}: {head}")
        elif row["holds"] and "runs_agree" in row:
            flag = ("MISMATCH" if row["mismatch"] else "agrees" if row["runs_agree"] == row["runs"]
                    else "consistent")
            seen = f"{row['runs_agree']}/{row['runs']} runs" + (
                f" (+{row['runs_consistent']} still decreasing)" if row["runs_consistent"] else "")
            print(f"  theory {flag}: {head}; observed in {seen}: {row['observed'][0]}")


def header(spec) -> str:
    cfg = spec.describe()
    return (f"{spec.rule.name} on {spec.problem.name} (d={spec.problem.dim}), stepsize {cfg['stepsize']} "
            f"(t0={spec.stepsize(0):.4g}), rho {cfg['rho_schedule']} (rho0={spec.radius(0):g}), "
            f"{spec.iters} iterations x {spec.runs} runs")


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded("run_toy", _main, argv)


def _main(argv=None) -> int:
    from convergence import theory
    from convergence.errors import InputError
    from convergence.runner import run
    from experiments.results import check_out, disk_error, write_result
    from figures.worker import FigureWorker
    clock = time.perf_counter()
    args = build_parser().parse_args(argv)
    try:
        out = check_out(default_out(args) if args.out is None else args.out, args.overwrite)
        spec = spec_from_args(args)
        why = theory.applicability(spec)
        if why and args.require_theory:
            raise InputError(f"require_theory: {why}", "require_theory")
    except InputError as err:
        return fail("run_toy", err.for_flags(FLAGS))
    except ArithmeticError as err:             # a float64 bound of the theory overflowed
        return fail("run_toy", f"the theory's float64 bounds overflow for this run ({err}): lower --lr, "
                               f"--rho or the schedules' values")
    if why:
        print(f"run_toy: note: no convergence theorem applies: {why}", file=sys.stderr)
    times = {"set-up (imports, checks, theory hypotheses)": time.perf_counter() - clock}
    print(header(spec), flush=True)
    progress = Progress(spec.iters, "run_toy", enabled=not args.no_progress)
    try:
        with FigureWorker() as worker:          # imports matplotlib on the other core meanwhile
            start = time.perf_counter()
            run_times = {}
            trace = run(spec, progress, run_times)
            progress.close()
            seconds = time.perf_counter() - start
            times.update(run_times)             # iterations, theory report (and jax's compile)
            start = time.perf_counter()
            paths = write_result(out, spec, trace, seconds, {"out": str(out)}, worker)
            times["figure and files"] = time.perf_counter() - start
    except KeyboardInterrupt:
        progress.close()
        print(f"run_toy: interrupted; nothing written to {out}", file=sys.stderr)
        return 130
    except OSError as err:
        if disk_error(err) is None:
            raise
        print(f"run_toy: error: {disk_error(err)}; nothing written to {out}", file=sys.stderr)
        return 1
    print_table(spec, trace)
    print("wrote " + ", ".join(str(p) for p in paths))
    if "compile" in run_times:
        print(f"backend jax: compile {run_times['compile']:.2f} s, iterations {run_times['iterations']:.3f} s")
    if args.verbose:
        print("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
    diverged = trace.status.count("diverged")
    if diverged:
        print(f"{diverged} of {trace.runs} runs diverged (exit status 3)")
    return 3 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
