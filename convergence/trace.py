"""What a run records, and the tidy CSV / JSON files it is written to (atomically).

CSV schema (one row per recorded iterate and run, DESIGN.md):
``run, method, problem, iter, f, f_gap, grad_norm, dist_to_opt, step, rho, err, err_bound, status``
Empty cells mean "unknown here" (f_gap without f*, err at the last iterate); the status column
repeats the run's final verdict on each of its rows so that a filter on it selects whole runs.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)        # read the process umask (the only way) and put it back
os.umask(_UMASK)

COLUMNS = ["run", "method", "problem", "iter", "f", "f_gap", "grad_norm", "dist_to_opt",
           "step", "rho", "err", "err_bound", "status", "path_length"]
NUMERIC = ["f", "f_gap", "grad_norm", "dist_to_opt", "step", "rho", "err", "err_bound", "path_length"]
# path_length = sum_{j<k} ||x_{j+1} - x_j||, the length of the path to x_k (finite under KL: the
# iterates converge); appended last so that files of the earlier 13 columns still read


def geometric_grid(iters: int, per_decade: int = 40, dense: int = 10) -> np.ndarray:
    """Steps to record: 0..dense-1, then about ``per_decade`` per decade, below ``iters``.

    The last iterate x_iters is always recorded as well (Trace.final).
    """
    n = max(2, int(per_decade * np.log10(max(iters, 10))) + 1)
    pts = np.unique(np.concatenate([np.arange(min(dense, iters + 1)),
                                    np.floor(np.logspace(0, np.log10(max(iters, 1)), n)),
                                    ]).astype(np.int64))
    return pts[pts < iters]


@dataclass
class Trace:
    """Recorded columns of a batch of runs.

    ``data[name]`` has shape (len(grid), runs) for the recorded steps k < iters (NaN: not recorded,
    e.g. after divergence); ``final[name]`` has shape (runs,) for each run's last iterate, at
    ``final_iter`` (= iters, or the step at which the run diverged).
    """

    method: str
    problem: str
    grid: np.ndarray
    runs: int
    data: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    final_iter: np.ndarray | None = None
    diverged: np.ndarray | None = None           # (runs,) bool
    status: list = field(default_factory=list)   # per-run verdict status
    reason: list = field(default_factory=list)   # per-run verdict reason
    details: list = field(default_factory=list)  # per-run verdict numbers (dicts)
    final_x: np.ndarray | None = None            # last iterates of the runs that did not diverge
    final_runs: np.ndarray | None = None         # their run indices
    theory: list = field(default_factory=list)   # theory-vs-observation rows (verdicts.theory_report)
    eps: float = float(np.finfo(np.float64).eps)  # machine epsilon of the run's arithmetic

    def __post_init__(self):
        for name in NUMERIC:
            self.data.setdefault(name, np.full((len(self.grid), self.runs), np.nan))
            self.final.setdefault(name, np.full(self.runs, np.nan))
        if self.final_iter is None:
            self.final_iter = np.full(self.runs, -1, dtype=np.int64)
        if self.diverged is None:
            self.diverged = np.zeros(self.runs, dtype=bool)

    def take(self, rows, rule: str | None = None) -> "Trace":
        """The runs ``rows`` of this trace as a trace of their own, renumbered 0, 1, ..."""
        rows = np.asarray(rows)
        part = Trace(rule or self.method, self.problem, self.grid, len(rows),
                     data={n: v[:, rows] for n, v in self.data.items()},
                     final={n: v[rows] for n, v in self.final.items()},
                     final_iter=self.final_iter[rows], diverged=self.diverged[rows], eps=self.eps)
        if self.final_runs is not None:
            mine = np.isin(self.final_runs, rows)
            part.final_x = self.final_x[mine]
            part.final_runs = np.searchsorted(rows, self.final_runs[mine])
        return part

    def column(self, name: str, run: int) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, values) of one run: its recorded steps, then its last iterate."""
        seen = ~np.isnan(self.data["grad_norm"][:, run])
        its = np.append(self.grid[seen], self.final_iter[run])
        return its, np.append(self.data[name][seen, run], self.final[name][run])

    def columns(self) -> dict[str, np.ndarray]:
        """The trace as columns in CSV row order: each run's recorded iterates, then its last one."""
        seen = ~np.isnan(self.data["grad_norm"])
        picks = [np.flatnonzero(seen[:, r]) for r in range(self.runs)]
        counts = np.array([len(g) + 1 for g in picks], dtype=np.int64)
        out = {"run": np.repeat(np.arange(self.runs), counts),
               "iter": np.concatenate([np.append(self.grid[g], self.final_iter[r]) for r, g in enumerate(picks)]
                                      ).astype(np.int64)}
        for name in NUMERIC:
            out[name] = np.concatenate([np.append(self.data[name][g, r], self.final[name][r])
                                        for r, g in enumerate(picks)])
        out["method"] = np.full(len(out["run"]), self.method, dtype=object)
        out["problem"] = np.full(len(out["run"]), self.problem, dtype=object)
        out["status"] = np.repeat(np.array(self.status or [""] * self.runs, dtype=object), counts)
        return out


def table(traces) -> dict[str, np.ndarray]:
    """The columns of one or several traces, as read_csv returns them (for plotting in memory)."""
    parts = [trace.columns() for trace in traces]
    return {name: np.concatenate([p[name] for p in parts]) for name in COLUMNS}


def _cells(values: np.ndarray) -> list[str]:
    """A column as CSV cells: floats by repr (exact), NaN as empty, text quoted as csv.writer does."""
    if values.dtype.kind == "f":
        return ["" if v != v else repr(v) for v in values.tolist()]
    if values.dtype.kind in "iu":
        return [str(v) for v in values.tolist()]
    texts = list(map(str, values.tolist()))
    cell = {v: f'"{v.replace(chr(34), chr(34) * 2)}"' if any(c in v for c in ',"\r\n') else v for v in set(texts)}
    return [cell[v] for v in texts]


def csv_text(traces) -> str:
    """One or several traces as one tidy CSV text."""
    cols = table(traces)
    cells = [_cells(cols[name]) for name in COLUMNS]
    return ",".join(COLUMNS) + "\n" + "".join(",".join(row) + "\n" for row in zip(*cells))


def write_csv(path, traces) -> None:
    """Write one or several traces as one tidy CSV (atomically)."""
    atomic_write(path, csv_text(traces))


def read_csv(path) -> dict[str, np.ndarray]:
    """Read a trace CSV into columns (numeric ones as float arrays, empty cells as NaN)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header == COLUMNS[:-1]:                      # written before path_length was recorded
            header = COLUMNS[:-1]
        elif header != COLUMNS:
            raise ValueError(f"{path} is not a samconv trace (header {header}); rerun the experiment")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path} line {line} has {len(row)} cells, expected {len(header)}: the file "
                             f"is truncated or edited; rerun the experiment")
    cols = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    cols.setdefault("path_length", [""] * len(rows))
    try:
        out = {name: np.array([float(v) if v else np.nan for v in cols[name]]) for name in NUMERIC}
        out["run"] = np.array([int(v) for v in cols["run"]], dtype=np.int64)
        out["iter"] = np.array([int(v) for v in cols["iter"]], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{path} holds a cell that is not a number ({err}); rerun the experiment") from None
    for name in ("method", "problem", "status"):
        out[name] = np.array(cols[name], dtype=object)
    return out


def atomic_write(path, text) -> None:
    """Write to a temporary file beside ``path`` and rename it: readers never see half a file.
    ``text`` is a str, bytes, or an iterable of str chunks (streamed: a large table need not be held
    in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)          # mkstemp's 0600 would hide results from a group
        with os.fdopen(fd, mode) as fh:
            if isinstance(text, (str, bytes)):
                fh.write(text)
            else:
                fh.writelines(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_text(obj) -> str:
    """Strict JSON (non-finite numbers, e.g. the loss of a diverged run, become null)."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json(path, obj) -> None:
    """json_text(obj), written atomically."""
    atomic_write(path, json_text(obj))


def _finite(v):
    """``v`` with every NaN/inf float (numpy ones and arrays included) replaced by None."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, np.ndarray):
        return _finite(v.tolist())
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def _json_default(v):
    if isinstance(v, np.generic):              # numpy integers and booleans (floats: see _finite)
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """Package versions and the git commit of the code that produced a result (read once a process;
    the versions from the installed metadata, so that recording scipy's does not import it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    return {"python": platform.python_version(), "numpy": np.__version__,
            **{name: _version(name) for name in ("scipy", "sympy", "matplotlib", "samconv")},
            "git_commit": commit, "git_dirty": dirty}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"
