"""Sweep learning-rate schedules x seeds with run_cifar, then tabulate the final test accuracy (mean
+- 95 % CI over seeds, as in the fundamental-SAM paper's tables) and ||grad F|| of the trained
objective, and plot the theory's quantities per epoch (||grad F(w_e)||, ||w_e - w_{e-1}||).

examples:
  python -m experiments.cifar_table --schedules constant,diminish1,diminish2,diminish3 --seeds 0,1,2 \\
      --out results/cifar-table -- --model resnet18 --method sam --epochs 200
  python -m experiments.cifar_table --schedules diminish1,diminish2,diminish3 --seeds 0,1,2 \\
      --out results/cifar-table-theory -- --model resnet18 --method sam --rho-schedule diminish1 --require-theory
  python -m experiments.cifar_table --schedules constant@0.1,constant@0.01,constant@0.001 --seeds 0,1,2
  python -m experiments.cifar_table --table-only --out results/cifar-table     # aggregate finished runs

A schedule is a run_cifar --stepsize, optionally with its lr as name@lr. Flags after "--" go to every
run_cifar call (model, method, epochs, --rho-schedule, ...). Each run lives in <out>/<schedule>-seed<seed>/;
finished runs are skipped and interrupted ones resumed, so the command can be re-run. Writes table.csv,
table.md and theory.png/.pdf under --out.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from experiments.common import OneLineParser, check_writable, fail

PROG = "python -m experiments.cifar_table"


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--schedules", default="constant,diminish1,diminish2,diminish3",
                   help="comma-separated run_cifar --stepsize values, each optionally name@lr")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--out", default="results/cifar-table", help="sweep folder (default results/cifar-table)")
    p.add_argument("--table-only", action="store_true", help="only aggregate the runs already in --out")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then flags for every run_cifar call")
    return p


def parse_schedules(text):
    from convergence.errors import InputError, unknown
    from convergence.deepnet.schedules import CIFAR_SCHEDULES
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, lr = item.partition("@")
        if name not in CIFAR_SCHEDULES:
            raise unknown("schedule", name, CIFAR_SCHEDULES)
        if lr:
            try:
                value = float(lr)
            except ValueError:
                raise InputError(f"cannot read the lr of '{item}': write name@0.01") from None
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"the lr of '{item}' must be a positive number")
        out.append((item, name, lr or None))
    if not out:
        raise InputError("--schedules is empty")
    return out


def parse_seeds(text):
    from convergence.errors import InputError
    try:
        seeds = [int(s) if s.strip().isascii() else int("x") for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated non-negative integers, got '{text}'") from None
    if not seeds or min(seeds) < 0:
        raise InputError(f"--seeds must be comma-separated non-negative integers, got '{text}'")
    return seeds


def ci95(values):
    """(mean, half-width of the 95 % Student-t confidence interval); half-width nan for one value."""
    from scipy import stats
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def read_run(folder: Path):
    """(summary, rows) of a finished run folder, or None; InputError if one of its files is damaged."""
    from convergence.errors import InputError
    summary, metrics = folder / "summary.json", folder / "metrics.csv"
    if not summary.is_file() or not metrics.is_file():
        return None
    path = summary
    try:
        info = json.loads(summary.read_text())
        if not (isinstance(info, dict) and {"status", "epochs_done"} <= info.keys()
                and isinstance(info.get("config"), dict) and "epochs" in info["config"]):
            raise ValueError("not a run_cifar summary")
        for key, value in (("epochs_done", info["epochs_done"]), ("config.epochs", info["config"]["epochs"])):
            if type(value) is not int or value < 0:
                raise ValueError(f"{key} is {value!r}, not a non-negative integer")
        if not isinstance(info["status"], str):
            raise ValueError(f"status is {info['status']!r}, not a verdict name")
        path = metrics
        with open(metrics) as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        if not rows or not {"test_acc", "grad_norm", "step_norm"} <= rows[-1].keys():
            raise ValueError("no complete epoch row")
    except (OSError, ValueError, TypeError) as exc:        # JSONDecodeError is a ValueError
        raise InputError(f"{path} is truncated or damaged ({exc}): delete {folder} and rerun to recompute "
                         f"that run") from None
    return info, rows


FIELDS = ["schedule", "runs", "test_acc_mean", "test_acc_ci95", "test_acc_runs", "grad_norm_final", "theory"]


def tabulate(out: Path, schedules, seeds):
    """table.csv/md (final test accuracy and ||grad F||, whether the schedules meet a convergence
    theorem's hypotheses) and the theory figure, over the finished, undiverged runs."""
    from convergence.trace import atomic_write
    from figures.deepnet import theory_figure
    table, curves = [], []
    for label, _, _ in schedules:
        finals, verdicts = [], set()
        for seed in seeds:
            got = read_run(out / f"{label}-seed{seed}")
            if got is None or got[0]["status"] != "ok":
                continue
            finals.append(got[1][-1])
            verdicts.add(got[0]["config"].get("theory_verdict", ""))
            curves += [{"schedule": label, "seed": seed, **r} for r in got[1]]
        if not finals:
            continue
        mean, half = ci95([r["test_acc"] for r in finals])
        table.append({"schedule": label, "runs": len(finals), "test_acc_mean": mean, "test_acc_ci95": half,
                      "test_acc_runs": " ".join(f"{r['test_acc']:.4f}" for r in finals),
                      "grad_norm_final": sum(r["grad_norm"] for r in finals) / len(finals),
                      "theory": "hypotheses hold" if verdicts == {""} else "not shown"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    atomic_write(out / "table.csv", buf.getvalue())
    md = ["| schedule | runs | final test accuracy (%) | final ‖∇F‖ | convergence theorem |", "|---|---|---|---|---|"]
    for r in table:
        ci = "" if math.isnan(r["test_acc_ci95"]) else f" ± {100 * r['test_acc_ci95']:.2f}"
        md.append(f"| {r['schedule']} | {r['runs']} | {100 * r['test_acc_mean']:.2f}{ci} | "
                  f"{r['grad_norm_final']:.3g} | {r['theory']} |")
    atomic_write(out / "table.md", "\n".join(md) + "\n")
    print("\n".join(md))
    if curves:
        theory_figure(curves, out / "theory")
    return table


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    from convergence.errors import InputError
    args = build_parser().parse_args(argv)
    base = [a for a in args.run_args if a != "--"] if args.run_args else []
    out = Path(args.out)
    try:
        schedules, seeds = parse_schedules(args.schedules), parse_seeds(args.seeds)
        check_writable(args.out)
        configs = {}
        if not args.table_only:
            from experiments import run_cifar
            for flag in ("--stepsize", "--seed", "--out", "--resume"):
                if flag in base:
                    raise InputError(f"{flag} is set by cifar_table; leave it out of the run flags")
            for label, name, lr in schedules:           # every run's config checked before any work
                for seed in seeds:
                    fields = {"stepsize": name, "seed": seed, "out": str(out / f"{label}-seed{seed}"),
                              "resume": True, **({"lr": float(lr)} if lr else {})}
                    configs[label, seed] = run_cifar.run_config(base, **fields)
        runs = {(label, seed): read_run(out / f"{label}-seed{seed}")      # damaged runs: InputError
                for label, _, _ in schedules for seed in seeds}
        if args.table_only and not any(run and run[0]["status"] == "ok" for run in runs.values()):
            raise InputError(f"--table-only: {out} holds no finished, undiverged run of these --schedules "
                             f"and --seeds: run without --table-only first, or check --out")
    except InputError as exc:
        return fail(PROG, exc.for_flags())
    for (label, seed), cfg in configs.items():
        done = runs[(label, seed)]
        if done is not None and done[0]["epochs_done"] >= done[0]["config"]["epochs"]:
            continue
        print(f"== {label} seed {seed} -> {cfg.out}", file=sys.stderr)
        code = run_cifar.train_and_report(cfg)
        if code not in (0, 3):
            return code
    out.mkdir(parents=True, exist_ok=True)
    tabulate(out, schedules, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
