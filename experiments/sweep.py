"""Run a grid of experiments (methods x stepsizes x radii x problems x seeds), resumably, in parallel.

examples:
  python -m experiments.sweep --methods sam,usam,fsam --stepsizes constant,diminishing \\
      --problems quadratic,rosenbrock --seeds 0-4 --iters 20000 --jobs 2 --out results/sweep
  python -m experiments.sweep --methods sam --rhos 0.01,0.05,0.1 --seeds 0-9 --backend ray --address auto
  python -m experiments.sweep --methods sam,usam --seeds 0-9 --engine jax    # compiled: pip install -e ".[jax]"
  python -m experiments.sweep --kind cifar --models resnet18 --methods sam --stepsizes constant,diminish1 \\
      --lrs 0.1 --seeds 0-2 --epochs 200 --backend ray --address auto --out results/cifar-sweep

Each cell (one point of the grid) is one run_toy run (--runs random starts) written to
OUT/cells/<cell>/: trace.csv, then summary.json (atomically; summary.json marks the cell complete).
Killed at any moment (kill -9 included) and rerun with the same flags, the sweep skips the complete
cells and recomputes the others; a cell whose files are truncated or edited is detected (checksum)
and recomputed. At the end OUT/combined.csv holds every cell's trace rows, sorted by cell then run
and iteration, with the columns of trace.csv plus stepsize, lr0, rho0, seed and cell; it is
byte-identical to that of an uninterrupted run, with either backend and the same --engine (jax and
numpy agree to 1e-12 relative, verdicts included, not to the last digit). OUT/grid.png/pdf shows
the median ||grad f|| per (problem, stepsize) panel and OUT/sweep.json the verdict counts per cell.

Lists are comma-separated (commas inside parentheses belong to a schedule expression); seeds are
ranges and lists, e.g. 0-4 or 0,3,7-9. Exit status: 0 done, 2 bad input (nothing run), 3 done but
some runs diverged, 1 some cells failed (rerun to retry them).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from convergence.deepnet import MODEL_NAMES
from convergence.errors import InputError, unknown
from experiments import backends
from experiments.common import OneLineParser, check_writable, fail, positive, slug

PROG = "python -m experiments.sweep"
AXES = {"toy": ("problem", "method", "stepsize", "lr", "rho", "seed"),
        "cifar": ("dataset", "model", "method", "stepsize", "lr", "rho", "seed")}
ID_COLUMNS = {"lr": "lr0", "rho": "rho0"}       # trace.csv's rho is rho_k; the cell's is rho_0
CIFAR_STEPSIZES = ("constant", "diminish1", "diminish2", "diminish3")
CIFAR_TABLE = "metrics.csv"      # the per-epoch table run_cifar writes beside its summary.json
CIFAR_DATASETS = ("cifar10", "cifar100")


# ---------------------------------------------------------------- grid
@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis values (strings, seed an int) and the sweep's settings."""

    kind: str
    axes: tuple          # ((axis, value), ...) in AXES[kind] order
    settings: tuple      # ((name, value), ...)

    def __getitem__(self, axis):
        return dict(self.axes)[axis]

    @property
    def spec(self) -> dict:
        """What summary.json records of the cell; a rerun must find the same."""
        return {"kind": self.kind, **dict(self.axes), **dict(self.settings)}

    @property
    def name(self) -> str:
        """The cell's folder name, e.g. quadratic-sam-diminishing-rho0.05-seed0."""
        prefix = {"lr": "lr", "rho": "rho", "seed": "seed"}
        parts = [prefix.get(a, "") + str(v) for a, v in self.axes if not (a == "lr" and v == "1/L")]
        name = "-".join(slug(p) for p in parts)
        if name != "-".join(parts):          # a lossy slug (schedule expressions): keep names unique
            name += "-" + hashlib.sha1(repr(self.axes).encode()).hexdigest()[:8]
        return name

    @property
    def sort_key(self) -> tuple:
        return tuple(_sortable(v) for _, v in self.axes)


def _sortable(value):
    try:
        return (0, float(value), str(value))
    except ValueError:
        return (1, 0.0, str(value))



def split_list(text: str, flag: str) -> list[str]:
    """'a,b,min(1,k)' -> ['a', 'b', 'min(1,k)']: commas inside parentheses stay; duplicates dropped."""
    items, depth, cur = [], 0, ""
    for c in text:
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += c
    items.append(cur.strip())
    if any(not item for item in items):
        raise InputError(f"{flag} '{text}' has an empty entry: give a comma-separated list such as a,b")
    return list(dict.fromkeys(items))


MAX_CELLS = 100_000      # cells in one grid: the plan is built (and checked) in memory


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7-9' -> [0, 3, 7, 8, 9]; the ranges are counted (and refused
    beyond MAX_CELLS seeds or 2^63) before any is enumerated."""
    seeds, ranges = [], []
    for item in split_list(text, "--seeds"):
        lo, sep, hi = item.partition("-")
        try:
            if not item.isascii():                # int() would read Unicode digits
                raise ValueError(item)
            a, b = (int(lo), int(hi)) if sep else (int(item), int(item))
        except ValueError:
            raise InputError(f"--seeds '{text}': '{item}' is not a seed or a range of seeds such as "
                             f"0-4 (non-negative integers)") from None
        if b < a:
            raise InputError(f"--seeds '{text}': the range '{item}' goes down (did you mean {b}-{a}?)")
        if b >= 2**63:
            raise InputError(f"--seeds '{text}': seed {b} is beyond 2^63 - 1: give seeds in [0, 2^63)")
        ranges.append((a, b))
    count = sum(b - a + 1 for a, b in ranges)
    if count > MAX_CELLS:
        raise InputError(f"--seeds '{text}' names {count:.3g} seeds, more than the {MAX_CELLS} cells a sweep "
                         f"runs: give fewer seeds")
    for a, b in ranges:
        seeds.extend(range(a, b + 1))
    return sorted(set(seeds))


def _names(text: str, flag: str, kind: str, valid) -> list[str]:
    names = split_list(text, flag)
    for name in names:
        if name not in valid:
            raise unknown(kind, name, valid)
    return names


def _number_or(text: str, flag: str, words=()) -> str:
    """A canonical string for a positive number (repr of the float), or one of ``words``."""
    if text in words:
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} entry '{text}' must be a positive number"
                         + (f" or one of {', '.join(words)}" if words else "")) from None
    return repr(positive(flag, value))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", default="toy", choices=["toy", "cifar"],
                   help="toy: run_toy cells (default); cifar: run_cifar cells (one GPU each)")
    p.add_argument("--methods", default="sam", help="comma-separated methods (default sam)")
    p.add_argument("--stepsizes", default=None,
                   help="toy: constant, diminishing or expressions in k (default diminishing); "
                        "cifar: constant, diminish1, diminish2, diminish3 (default constant)")
    p.add_argument("--problems", default=None, help="toy: comma-separated problems (default quadratic)")
    p.add_argument("--models", default=None, help="cifar: comma-separated models (default resnet18)")
    p.add_argument("--datasets", default=None, help="cifar: cifar10 and/or cifar100 (default cifar10)")
    p.add_argument("--rhos", default="0.05", help="comma-separated radii rho_0 (default 0.05)")
    p.add_argument("--lrs", default=None, help="comma-separated step sizes t_0 (toy default 1/L, cifar 0.1)")
    p.add_argument("--seeds", default="0", help="seeds: ranges and lists such as 0-4 or 0,3,7-9 (default 0)")
    t = p.add_argument_group("toy cells (as run_toy)")
    t.add_argument("--iters", type=int, default=100_000, help="iterations per run (default 100000)")
    t.add_argument("--runs", type=int, default=16, help="random starts per cell (default 16)")
    t.add_argument("--dim", type=int, default=None, help="dimension (default: each problem's own)")
    t.add_argument("--decay", type=float, default=0.6, help="p of t_k = lr/(k+1)^p (default 0.6)")
    t.add_argument("--rho-decay", type=float, default=0.6, help="q of rho_k = rho/(k+1)^q (default 0.6)")
    t.add_argument("--sampling", default="full", help="full, tau-nice, importance or single (default full)")
    t.add_argument("--batch", type=int, default=None, help="samples per step (default 1)")
    t.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="arithmetic of the toy iterates, as run_toy's --dtype")
    t.add_argument("--engine", default="numpy", choices=["numpy", "jax"],
                   help="numpy (default) or jax: the cells compiled with jax.jit, as run_toy's --backend "
                        "(pip install -e \".[jax]\"); values agree with numpy to 1e-12 relative, CSV bytes "
                        "may differ in the last digits")
    c = p.add_argument_group("cifar cells (as run_cifar)")
    c.add_argument("--epochs", type=int, default=200, help="training epochs per CIFAR cell")
    c.add_argument("--batch-size", type=int, default=128, help="mini-batch size (samples) per CIFAR step")
    c.add_argument("--weight-decay", type=float, default=1e-3, help="SGD weight decay of the CIFAR cells")
    c.add_argument("--momentum", type=float, default=0.0, help="SGD momentum of the CIFAR cells")
    c.add_argument("--amp", action="store_true", help="bf16 autocast")
    c.add_argument("--cifar-args", default="",
                   help="more run_cifar flags for every cell, e.g. \"--limit-train 512 --device cpu\"")
    x = p.add_argument_group("execution")
    x.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: a process pool on this machine (default); ray: one Ray task per cell")
    x.add_argument("--address", default=None,
                   help="ray: the cluster to join ('auto', or host:port; default: a new local instance)")
    x.add_argument("--jobs", type=int, default=None,
                   help="local: worker processes (default 1); ray: CPUs of a new local instance")
    x.add_argument("--out", default="results/sweep", help="output folder (default results/sweep)")
    x.add_argument("--no-figure", action="store_true", help="skip the grid figure")
    x.add_argument("--no-batch", action="store_true",
                   help="toy: run every cell as its own task (default: cells that differ only in seed, "
                        "lr or rho run as one array run; the results are the same bytes)")
    x.add_argument("--dry-run", action="store_true", help="list the cells and their state (todo, done, corrupt), run nothing")
    return p


TOY_ONLY = ("problems", "iters", "runs", "dim", "decay", "rho_decay", "sampling", "batch", "dtype", "engine",
            "no_batch")
CIFAR_ONLY = ("models", "datasets", "epochs", "batch_size", "weight_decay", "momentum", "amp", "cifar_args")


def plan(args) -> list[Cell]:
    """Validate the flags and return the grid's cells, sorted (raises InputError on bad input)."""
    from convergence.methods import METHODS
    defaults = build_parser().parse_args([])
    for flag in (TOY_ONLY if args.kind == "cifar" else CIFAR_ONLY):
        if getattr(args, flag) != getattr(defaults, flag):
            raise InputError(f"--{flag.replace('_', '-')} applies to --kind "
                             f"{'toy' if args.kind == 'cifar' else 'cifar'}, not --kind {args.kind}")
    if args.address and args.backend != "ray":
        raise InputError("--address applies to --backend ray")
    if args.address and not args.dry_run:
        backends.check_reachable(args.address)
    if args.jobs is not None:
        positive("--jobs", args.jobs, integer=True)
    methods = _names(args.methods, "--methods", "method", list(METHODS))
    words = ("theory",) if args.kind == "toy" else ()
    rhos = [_number_or(r, "--rhos", words) for r in split_list(args.rhos, "--rhos")]
    seeds = parse_seeds(args.seeds)
    if args.kind == "toy":
        from problems import PROBLEMS
        datasets: list = []
        first = split_list(args.problems or "quadratic", "--problems")
        for name in first:
            if ":" in name:
                raise InputError(f"--problems '{name}': sweeps run the shipped problems; run your own with "
                                 f"python -m experiments.run_toy --problem '{name}'")
        first = _names(args.problems or "quadratic", "--problems", "problem", list(PROBLEMS))
        stepsizes = split_list(args.stepsizes or "diminishing", "--stepsizes")
        lrs = [_number_or(v, "--lrs", ("1/L", "theory")) for v in split_list(args.lrs or "1/L", "--lrs")]
        positive("--iters", args.iters, integer=True)
        positive("--runs", args.runs, integer=True)
        settings = {"iters": args.iters, "runs": args.runs, "dim": args.dim, "decay": args.decay,
                    "rho_decay": args.rho_decay, "sampling": args.sampling, "batch": args.batch,
                    "dtype": args.dtype}
    else:
        first = split_list(args.models or "resnet18", "--models")
        first = _names(args.models or "resnet18", "--models", "model", MODEL_NAMES)
        datasets = _names(args.datasets or "cifar10", "--datasets", "dataset", CIFAR_DATASETS)
        stepsizes = _names(args.stepsizes or "constant", "--stepsizes", "CIFAR stepsize", CIFAR_STEPSIZES)
        try:
            extra = shlex.split(args.cifar_args)
        except ValueError as err:
            raise InputError(f"--cifar-args '{args.cifar_args}': {err}") from None
        taken = {"--out", "--resume", "--model", "--dataset", "--method", "--rho", "--stepsize", "--lr",
                 "--seed", "--epochs", "--batch-size", "--weight-decay", "--momentum", "--amp"}
        clash = [a for a in extra if a.split("=")[0] in taken]
        if clash:
            raise InputError(f"--cifar-args may not set {clash[0]}: the sweep sets it (use its own flag)")
        lrs = [_number_or(v, "--lrs") for v in split_list(args.lrs or "0.1", "--lrs")]
        for flag in ("epochs", "batch_size"):
            positive(f"--{flag.replace('_', '-')}", getattr(args, flag), integer=True)
        positive("--weight-decay", args.weight_decay, allow_zero=True)
        positive("--momentum", args.momentum, allow_zero=True)
        settings = {"epochs": args.epochs, "batch_size": args.batch_size,
                    "weight_decay": args.weight_decay, "momentum": args.momentum, "amp": args.amp,
                    "cifar_args": extra}
    check_writable(args.out)
    values = {"problem": first, "model": first, "dataset": datasets, "method": methods, "stepsize": stepsizes,
              "lr": lrs, "rho": rhos, "seed": seeds}
    axes = AXES[args.kind]
    count = math.prod(len(values[a]) for a in axes)
    if count > MAX_CELLS:
        raise InputError(f"the grid has {count:.3g} cells, more than the {MAX_CELLS} a sweep runs: give shorter "
                         f"lists")
    if args.kind == "toy":
        plan_memory(count, args)
    cells = [Cell(args.kind, tuple(zip(axes, combo)), tuple(settings.items()))
             for combo in itertools.product(*[values[a] for a in axes])]
    cells = sorted(cells, key=lambda c: c.sort_key)
    if len({c.name for c in cells}) < len(cells):
        raise InputError("two cells of this grid share a folder name: make the --stepsizes entries differ "
                         "by more than punctuation")
    return cells


def plan_memory(cells: int, args) -> None:
    """The planning's own memory, checked before any spec is built: every cell's spec holds its two
    schedules' values (2 x iters numbers) and its recording grid; a worker then holds one task."""
    from convergence.spec import check_memory
    check_memory(8 * cells * (2 * args.iters + 64 * math.log10(max(args.iters, 10))), "planning this grid "
                 f"({cells} cells x {args.iters} iterations)")


def _has_torch() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


# ---------------------------------------------------------------- toy cells
def toy_options(cell: Cell) -> dict:
    """The toy_run arguments of a toy cell: its axes and the sweep's settings (the grid's decay
    exponents only where the cell's schedules take them)."""
    from convergence.spec import radius_schedule
    s = dict(cell.settings)
    options = {"problem": cell["problem"], "method": cell["method"], "stepsize": cell["stepsize"],
               "lr": None if cell["lr"] == "1/L" else cell["lr"], "rho": cell["rho"], "dim": s["dim"],
               "iters": s["iters"], "runs": s["runs"], "seed": cell["seed"], "sampling": s["sampling"],
               "batch": s["batch"], "dtype": s["dtype"]}
    if cell["stepsize"] == "diminishing":
        options["decay"] = s["decay"]
    if radius_schedule(cell["stepsize"]) == "diminishing":
        options["rho_decay"] = s["rho_decay"]
    return options


TASK_MEMORY = 2**30      # bytes one batched task may take (the cells of a batch are split to fit)


def toy_tasks(cells: list[Cell], specs: dict, jobs: int, batch: bool = True) -> list[list[Cell]]:
    """The cells to run, grouped into batches: cells whose specs can share a batch (same problem,
    method, sampler and sizes; they differ in seed, t_0 or rho_0) run as one array run. A group is
    split into ``jobs`` tasks (parallelism) and into pieces of at most TASK_MEMORY. ``batch=False``:
    one task per cell."""
    from convergence.spec import batch_key
    if not batch:
        return [[cell] for cell in cells]
    groups: dict = {}
    for cell in cells:
        groups.setdefault(batch_key(specs[cell.name]), []).append(cell)
    tasks = []
    for group in groups.values():
        per_cell = specs[group[0].name].memory_estimate()
        size = max(1, min(-(-len(group) // jobs), TASK_MEMORY // max(per_cell, 1)))
        tasks += [group[i:i + size] for i in range(0, len(group), size)]
    return tasks


def toy_batch(cells: list[tuple[str, object]]) -> list[tuple[str, dict]]:
    """Run toy cells (name, run spec) as one batch (in a worker): each cell's trace.csv text and
    summary, as run_toy would write them."""
    from convergence.runner import run_batch
    from convergence.trace import json_text
    from experiments.results import summary, trace_text
    start = time.perf_counter()
    specs = [spec for _, spec in cells]
    traces = run_batch(specs)
    seconds = (time.perf_counter() - start) / len(cells)
    return [(name, {"trace": trace_text(trace), "summary": json.loads(json_text(summary(spec, trace, seconds)))})
            for (name, _), spec, trace in zip(cells, specs, traces)]


def cifar_config(cell: Cell, cell_dir: Path, local: bool):
    """A CIFAR cell's TrainConfig: the user's --cifar-args as run_cifar reads them, the cell's axes and
    the sweep's settings on top, checked by run_cifar.configure. ``local``: the cell runs on this
    machine, so its data archive and --device must exist here (not so on a Ray head node)."""
    from experiments import run_cifar
    s = dict(cell.settings)
    fields = {"dataset": cell["dataset"], "model": cell["model"], "method": cell["method"],
              "rho": float(cell["rho"]), "stepsize": cell["stepsize"], "lr": float(cell["lr"]),
              "epochs": s["epochs"], "batch_size": s["batch_size"], "weight_decay": s["weight_decay"],
              "momentum": s["momentum"], "seed": cell["seed"], "no_progress": True, "resume": True,
              "out": str(cell_dir)}
    if s["amp"]:
        fields["amp"] = True                         # else what --cifar-args says (--no-amp) or run_cifar's default
    return run_cifar.run_config(list(s["cifar_args"]), local, archive=local, needs_torch=False, **fields)


def train_cell(cfg) -> int:
    """Train a CIFAR cell's config as run_cifar does (0, or 3 if it diverged)."""
    from experiments.run_cifar import train_and_report
    return train_and_report(cfg)


def cifar_cell(trainer, cfg, gpus: int) -> dict:
    """Train one CIFAR cell (in a worker) in a child process of its own: a fresh CUDA context on its
    GPU, freed when the cell ends, and its output in log.txt; its summary.json marks it done.

    Under Ray, CUDA_VISIBLE_DEVICES is set by Ray (num_gpus=1); in the local pool worker slot i takes
    GPU i mod (GPUs on the machine).
    """
    import multiprocessing as mp
    gpu = None
    if gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        gpu = str(int(os.environ.get("SAMCONV_SLOT", "0")) % gpus)
    cell = Path(cfg.out)
    cell.mkdir(parents=True, exist_ok=True)
    child = mp.get_context("spawn").Process(target=_train_logged, args=(trainer, cfg, str(cell / "log.txt"), gpu))
    child.start()
    child.join()
    if child.exitcode not in (0, 3):                 # 3: trained to the end, but diverged
        raise RuntimeError(f"training exited with status {child.exitcode}; see {cell / 'log.txt'}")
    summary = _load_json(cell / "summary.json")
    if summary is None or check_summary(summary):
        raise RuntimeError(f"training finished without a valid {cell / 'summary.json'}")
    return {"summary": summary}


def _train_logged(trainer, cfg, log: str, gpu: str | None) -> None:
    """The child of cifar_cell: dies with its parent, sees only its GPU, writes its output to ``log``."""
    backends.die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = trainer(cfg)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell_state(cell: Cell, cell_dir: Path, out: Path) -> tuple[str, object]:
    """('done', summary), ('todo', None) or ('corrupt', why). A cell of other settings: InputError."""
    marker = cell_dir / ("summary.json" if cell.kind == "toy" else "cell.json")
    if not marker.exists():
        return "todo", None
    record = _load_json(marker)
    if not isinstance(record, dict) or not isinstance(record.get("sweep_cell"), dict):
        return "corrupt", f"{marker.name} is not a valid sweep record (truncated?)"
    if record["sweep_cell"] != cell.spec:
        old = record["sweep_cell"]
        diff = next(k for k in sorted(set(old) | set(cell.spec)) if old.get(k) != cell.spec.get(k))
        raise InputError(f"{out} already holds cell {cell.name} computed with {diff}={old.get(diff)!r} "
                         f"(now {cell.spec.get(diff)!r}): use another --out, or delete {cell_dir} to "
                         f"recompute it")
    if cell.kind == "cifar":
        summary = _load_json(cell_dir / "summary.json")
        if not isinstance(summary, dict):
            return "todo", None
        why = check_summary(summary)
        return ("corrupt", f"summary.json {why}") if why else ("done", summary)
    trace = cell_dir / "trace.csv"
    if not trace.exists():
        return "corrupt", "trace.csv is missing"
    if _sha256(trace) != record.get("trace_sha256"):
        return "corrupt", "trace.csv does not match the checksum in summary.json (truncated or edited)"
    why = check_summary(record)
    if why:
        return "corrupt", f"summary.json {why}"
    return "done", record


def store(cell: Cell, cell_dir: Path, result: dict) -> dict:
    """Write a toy cell's files: trace.csv, then summary.json (with the cell and the trace's checksum)."""
    from convergence.trace import atomic_write, write_json
    atomic_write(cell_dir / "trace.csv", result["trace"])
    summary = {**result["summary"], "sweep_cell": cell.spec,
               "trace_sha256": hashlib.sha256(result["trace"].encode()).hexdigest()}
    write_json(cell_dir / "summary.json", summary)
    return summary


def _clean_temporaries(folder: Path) -> None:
    """Remove the temporary files a killed atomic_write left behind (.NAME.XXXX.tmp)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def status_counts(summary: dict) -> dict:
    """Verdict counts of a cell: run_toy's status_counts, or run_cifar's single status (validated by
    ``check_summary`` when read back)."""
    if isinstance(summary.get("status_counts"), dict):
        return summary["status_counts"]
    return {str(summary["status"]): 1} if summary.get("status") else {}


def check_summary(summary) -> str | None:
    """Why a cell's summary cannot be trusted (None when it can): status_counts must map verdict
    names to non-negative integers, a status must be a verdict name."""
    if not isinstance(summary, dict):
        return "is not a JSON object"
    counts = summary.get("status_counts")
    if counts is not None:
        if not (isinstance(counts, dict) and all(isinstance(k, str) and type(v) is int and v >= 0
                                                 for k, v in counts.items())):
            return "has status_counts that are not counts of verdicts"
    status = summary.get("status")
    if status is not None and not (isinstance(status, str) and status.replace("_", "").isalnum()):
        return "has a status that is not a verdict name"
    if counts is None and status is None:
        return "has neither status_counts nor status"
    return None


def diverged_runs(summary: dict) -> int:
    return int(status_counts(summary).get("diverged", 0))


# ---------------------------------------------------------------- outputs
def combine(out: Path, cells: list[Cell]) -> Path:
    """OUT/combined.csv: each cell's trace rows (cells in sorted order) plus identifying columns,
    streamed from the cell files (cells of earlier runs of the sweep included) and written atomically.
    Every cell is read and checked before the file is replaced."""
    from convergence.trace import atomic_write
    sources = [(cell, out / "cells" / cell.name / (CIFAR_TABLE if cell.kind == "cifar" else "trace.csv"))
               for cell in cells]
    sources = [(cell, src) for cell, src in sources if src.exists()]
    headers = {}
    for cell, src in sources:
        with open(src) as fh:
            cols = fh.readline().rstrip("\n").split(",")
        ids = [(a, ID_COLUMNS.get(a, a)) for a, _ in cell.axes if ID_COLUMNS.get(a, a) not in cols]
        headers[cell.name] = (",".join(cols + [c for _, c in ids] + ["cell"]), ids)
    if len({h for h, _ in headers.values()}) > 1:
        first = next(iter(headers.values()))[0]
        odd = next(src for cell, src in sources if headers[cell.name][0] != first)
        raise InputError(f"{odd} has other columns than the other cells' ({first})")

    def chunks():
        if sources:
            yield headers[sources[0][0].name][0] + "\n"
        for cell, src in sources:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow([cell[a] for a, _ in headers[cell.name][1]] + [cell.name])
            suffix = "," + buf.getvalue() + "\n"
            with open(src) as fh:
                next(fh)
                for line in fh:
                    yield line.rstrip("\n") + suffix

    atomic_write(out / "combined.csv", chunks())
    return out / "combined.csv"


def grid_figure(out: Path, cells: list[Cell]) -> list[Path]:
    """OUT/grid.png/pdf from the cells' traces (figures.grid)."""
    from convergence.trace import read_csv
    from figures.convergence import save
    from figures.grid import grid_figure as draw
    tables = [(dict(c.axes), read_csv(out / "cells" / c.name / "trace.csv")) for c in cells]
    s = dict(cells[0].settings)
    title = f"{s['iters']} iterations × {s['runs']} runs × {len({c['seed'] for c in cells})} seeds"
    return save(draw(tables, title), out / "grid")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded("sweep", _main, argv)


def _main(argv=None) -> int:
    from convergence import theory
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        cells = plan(args)
        if args.backend == "ray":
            backends.ray_module()
        states = {cell.name: cell_state(cell, out / "cells" / cell.name, out) for cell in cells}
        todo = [cell for cell in cells if states[cell.name][0] != "done"]
        warnings = {}
        if args.kind == "toy":
            if args.engine == "jax":
                from convergence.jax_runner import require_jax
                require_jax()                    # the install line once, before any cell is built
            specs = {cell.name: _cell(cell, toy_spec, cell, args.engine) for cell in cells}
            warnings = {name: why for name, spec in specs.items() if (why := theory.applicability(spec))}
            tasks = [backends.Task(_task_key(group), toy_batch, ([(c.name, specs[c.name]) for c in group],))
                     for group in toy_tasks(todo, specs, args.jobs or 1, not args.no_batch)]
        else:
            gpus = backends.gpu_count() if args.backend == "local" else 0
            configs = {cell.name: _cell(cell, cifar_config, cell, out / "cells" / cell.name, args.address is None)
                       for cell in cells}
            if args.backend == "local" and not args.dry_run and not _has_torch():
                raise InputError("CIFAR cells run here need torch: pip install -e \".[deepnet]\" (or run them "
                                 "on a Ray cluster with --backend ray)")
            tasks = [backends.Task(cell.name, cifar_cell, (train_cell, configs[cell.name], gpus), gpu=True)
                     for cell in todo]
    except InputError as err:
        return fail("sweep", err.for_flags())
    if warnings:
        first, why = next(iter(warnings.items()))
        print(f"sweep: note: {len(warnings)} of {len(cells)} cells run outside the hypotheses of every "
              f"convergence theorem (e.g. {first}: {why.split(';')[0]}); see 'theory' in their "
              f"summary.json", file=sys.stderr)
    if args.dry_run:
        for cell in cells:
            print(f"{cell.name}: {states[cell.name][0]}")
        return 0
    try:
        ray = backends.connect_ray(args.address, args.jobs) if args.backend == "ray" else None
    except InputError as err:
        return fail("sweep", str(err))
    return _execute(args, out, cells, states, tasks, ray)


def toy_spec(cell: Cell, engine: str = "numpy"):
    """A toy cell's run spec; ``engine`` jax runs it on the compiled backend (not part of the cell:
    both engines give the same numbers to round-off)."""
    from convergence.spec import toy_run
    return toy_run(**toy_options(cell), backend=engine)


def _cell(cell: Cell, fn, *args):
    """fn(*args), its InputError naming the cell (and the sweep's flags)."""
    try:
        return fn(*args)
    except InputError as err:
        raise InputError(f"{err.for_flags(SWEEP_FLAGS)} (cell {cell.name})") from None


SWEEP_FLAGS = {"problem": "--problems", "method": "--methods", "stepsize": "--stepsizes", "lr": "--lrs",
               "rho": "--rhos", "seed": "--seeds", "radius": "--stepsizes", "backend": "--engine"}


def _task_key(group: list[Cell]) -> str:
    return group[0].name if len(group) == 1 else f"{group[0].name} (+{len(group) - 1} cells in one batch)"


def _execute(args, out: Path, cells, states, tasks, ray) -> int:
    """Hold OUT/.sweep.lock (released by the kernel even on kill -9) while the grid runs."""
    import fcntl
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".sweep.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if ray is not None:
                ray.shutdown()
            return fail("sweep", f"another sweep is writing to {out}: wait for it or use another --out")
        return _run_grid(args, out, cells, states, tasks, ray)


def _run_grid(args, out: Path, cells, states, tasks, ray) -> int:
    from convergence.trace import write_json
    start = time.perf_counter()
    by_name = {c.name: c for c in cells}
    summaries = {name: s[1] for name, s in states.items() if s[0] == "done"}
    for name, (state, why) in states.items():
        if state == "corrupt":
            print(f"sweep: cell {name}: {why}; recomputing it", file=sys.stderr)
    _clean_temporaries(out)
    members = {task.key: [name for name, _ in task.args[0]] if args.kind == "toy" else [task.key] for task in tasks}
    for task in tasks:
        for name in members[task.key]:
            _clean_temporaries(out / "cells" / name)
            if args.kind == "cifar":
                write_json(out / "cells" / name / "cell.json", {"sweep_cell": by_name[name].spec})
    todo = sum(len(m) for m in members.values())
    print(f"sweep: {len(cells)} cells, {len(summaries)} already complete, {todo} to run in {len(tasks)} "
          f"task(s) ({args.backend} backend{f', {args.jobs} jobs' if args.jobs else ''})", flush=True)
    failed, n = [], 0
    results = (backends.run_ray(tasks, ray) if ray is not None else backends.run_local(tasks, args.jobs or 1))
    try:
        for key, ok, value in results:
            if not ok:
                failed += members[key]
                n += len(members[key])
                print(f"[{n}/{todo}] {key}: FAILED: {value}", flush=True)
                continue
            for name, result in (value if args.kind == "toy" else [(key, value)]):
                n += 1
                cell = by_name[name]
                summary = store(cell, out / "cells" / name, result) if cell.kind == "toy" else result["summary"]
                summaries[name] = summary
                counts = status_counts(summary)
                text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "done"
                print(f"[{n}/{todo}] {name}: {text}", flush=True)
    except KeyboardInterrupt:
        print(f"sweep: interrupted; {len(summaries)} of {len(cells)} cells complete: rerun the same "
              f"command to resume", file=sys.stderr)
        return 130
    if failed:
        print(f"sweep: {len(failed)} of {len(cells)} cells failed ({', '.join(failed[:5])}"
              f"{', ...' if len(failed) > 5 else ''}); rerun the same command to retry them", file=sys.stderr)
        return 1
    paths = [combine(out, cells)]
    if cells[0].kind == "toy" and not args.no_figure:
        paths += grid_figure(out, cells)
    totals: dict = {}
    for s in summaries.values():
        for k, v in status_counts(s).items():
            totals[k] = totals.get(k, 0) + v
    diverged = {c.name: diverged_runs(summaries[c.name]) for c in cells if diverged_runs(summaries[c.name])}
    write_json(out / "sweep.json", {
        "cells": [{"cell": c.name, **c.spec, "status_counts": status_counts(summaries[c.name])}
                  for c in cells],
        "status_counts": totals, "diverged_runs": sum(diverged.values()), "diverged_cells": sorted(diverged)})
    paths.append(out / "sweep.json")
    print(f"sweep: {len(cells)} cells done in {time.perf_counter() - start:.1f} s; verdicts: "
          + ", ".join(f"{v} {k}" for k, v in sorted(totals.items())))
    print("wrote " + ", ".join(str(p) for p in paths))
    if diverged:
        print(f"{sum(diverged.values())} runs diverged in {len(diverged)} of {len(cells)} cells: "
              + ", ".join(f"{k} ({v})" for k, v in diverged.items()) + " (exit status 3)")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
