"""A run's result folder: trace.csv, summary.json and the figure, written as a whole.

The files are written into a hidden sibling folder that is renamed into place at the end, so an
interrupted run or a full disk leaves either the complete old result or nothing (never a new
trace.csv beside an old summary.json). An existing result folder is replaced only when asked.
"""
from __future__ import annotations

import errno
import contextlib
import os
import shutil
from pathlib import Path

import numpy as np

from convergence.errors import InputError


def check_out(out, overwrite: bool = False, param: str = "out") -> Path:
    """Refuse, before any work, an output folder that is empty text, a device or other non-folder,
    a name the filesystem will not take, not writable, or an existing result without ``overwrite``."""
    from experiments.common import check_writable
    if not str(out).strip():
        raise InputError(f"{param} is empty: give a folder name", param)
    out = Path(out)
    for part in out.parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise InputError(f"{param} has a name of {len(part.encode('utf-8', 'surrogateescape'))} bytes "
                             f"(File name too long: a filesystem takes 255 at most): choose a shorter name", param)
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"{param} {out} exists and is not a folder: choose a folder", param)
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise InputError(f"{param} {out} already holds a result: pass `overwrite` to replace it, or "
                             f"choose another folder", param)
    except OSError as err:
        raise InputError(f"cannot use {param} {out} ({err.strerror or err}): choose another folder", param) from None
    check_writable(out)
    return out


@contextlib.contextmanager
def whole_folder(out: Path):
    """Yield a hidden sibling folder to write into; on success it replaces ``out`` whole (the old
    result, if any, goes only then), on any failure or interrupt it is removed: ``out`` is always
    either the complete old result or the complete new one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        tmp.mkdir()
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_folder(out: Path, files: dict[str, str | bytes]) -> list[Path]:
    """Write ``files`` (name -> text or bytes) as the folder ``out``, replacing any old one whole."""
    with whole_folder(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return [Path(out) / name for name in files]


def _umask() -> int:
    from convergence.trace import _UMASK
    return _UMASK


def disk_error(err: OSError) -> str | None:
    """A one-line message for a full disk or quota (None for other OS errors)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"cannot write {err.filename or 'the results'}: {os.strerror(err.errno)}; free space and rerun"
    return None


def max_err_ratio(trace) -> float | None:
    """max over recorded iterates of err / err_bound (<= 1 when the inexactness bound holds).

    Iterates whose ||grad f|| is below 1e-9 of the run's first are left out: there both sides are
    at round-off level and their ratio means nothing.
    """
    err, bound = trace.data["err"], trace.data["err_bound"]
    g = trace.data["grad_norm"]
    ok = np.isfinite(err) & np.isfinite(bound) & (bound > 0) & (g >= 1e-9 * g[:1])
    return float(np.max(err[ok] / bound[ok])) if ok.any() else None


def summary(spec, trace, seconds: float | None = None, extra: dict | None = None) -> dict:
    """summary.json: the run's config, seed, provenance, problem metadata, verdicts and theory."""
    from convergence.trace import provenance
    runs = [{"run": r, "status": trace.status[r], "reason": trace.reason[r], **trace.details[r]}
            for r in range(trace.runs)]
    return {"config": {**spec.describe(), **(extra or {})}, "seed": spec.seed, "provenance": provenance(),
            "problem": spec.problem.metadata(), "status_counts": status_counts(trace),
            "max_err_over_bound": max_err_ratio(trace), "runs": runs, "theory": trace.theory,
            "mismatches": [row["theorem"] for row in trace.theory if row.get("mismatch")],
            **({"seconds": round(seconds, 3)} if seconds is not None else {})}


def status_counts(trace) -> dict:
    return {s: trace.status.count(s) for s in sorted(set(trace.status))}


def trace_text(trace) -> str:
    """trace.csv's text."""
    from convergence.trace import csv_text
    return csv_text([trace])


def figure(spec, trace, worker=None):
    """The convergence figure of one run (median and band over its runs, the derived bounds dashed):
    the function that gives its PNG and PDF bytes, drawn meanwhile by ``worker`` (a
    figures.worker.FigureWorker started with the run) when given, else when called."""
    from convergence.trace import table
    from figures.worker import draw
    cfg = spec.describe()
    title = f"{spec.rule.name.upper()} on {spec.problem.name} (d={spec.problem.dim}), {cfg['stepsize']} steps"
    overlays = [(row["bound_curve"], "grad_norm" if row["predicts"] == "bound_min_grad" else "f_gap",
                 "min-grad bound" if row["predicts"] == "bound_min_grad" else "PL bound")
                for row in trace.theory if "bound_curve" in row]
    tables = [(spec.rule.name, table([trace]))]
    if worker is not None:
        return worker.request(tables, title, overlays)
    return lambda: draw(tables, title, overlays)


def write_result(out: Path, spec, trace, seconds=None, extra: dict | None = None, worker=None) -> list[Path]:
    """trace.csv, figure.png/pdf (drawn by ``worker`` when given) and summary.json, as one folder."""
    from convergence.trace import json_text
    pictures = figure(spec, trace, worker)          # the helper draws while the text is made
    text, summary_json = trace_text(trace), json_text(summary(spec, trace, seconds, extra))
    png_pdf = pictures()
    files = {"trace.csv": text, "figure.png": png_pdf["png"], "figure.pdf": png_pdf["pdf"],
             "summary.json": summary_json}
    return write_folder(out, files)
