"""Claims of a paper checked numerically, and the PASS/FAIL report they are written to.

A paper module (``experiments/papers/<paper>.py``) has ``TITLE`` and ``run(out: Path, quick: bool)
-> list[Claim]``; it writes its figures (PNG + PDF) under ``out`` and returns one Claim per statement
of the paper it checks, with the measured numbers that decided it.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from convergence.trace import atomic_write


@dataclass
class Claim:
    """One statement of a paper, what was measured, and whether the measurement agrees."""

    name: str                      # short id, e.g. "constant-step-sam-stalls"
    statement: str                 # the paper's claim in one sentence, with its source (thm/fig)
    passed: bool
    measured: dict = field(default_factory=dict)   # the numbers that decided it
    figure: str = ""               # file name (under out) of the figure that shows it


def write_report(out: Path, paper: str, title: str, claims: list[Claim], config: dict) -> tuple[Path, Path]:
    """report.md (human) and report.csv (one row per claim), both atomic."""
    out = Path(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["paper", "claim", "result", "statement", "measured", "figure"])
    for c in claims:
        w.writerow([paper, c.name, "PASS" if c.passed else "FAIL", c.statement,
                    json.dumps(c.measured, sort_keys=True, default=float), c.figure])
    atomic_write(out / "report.csv", buf.getvalue())
    n_pass = sum(c.passed for c in claims)
    lines = [f"# {title}", "", f"{n_pass}/{len(claims)} claims PASS. Config: `{json.dumps(config, sort_keys=True)}`", "",
             "| claim | result | statement | measured |", "|---|---|---|---|"]
    for c in claims:
        measured = ", ".join(f"{k}={_short(v)}" for k, v in c.measured.items())
        lines.append(f"| {c.name} | {'PASS' if c.passed else '**FAIL**'} | {c.statement} | {measured} |")
    figures = sorted({c.figure for c in claims if c.figure})
    lines += [""] + [f"![{f}]({f})" for f in figures if f.endswith(".png")]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md", out / "report.csv"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return str(v)
