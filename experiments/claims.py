"""Claims of a paper checked numerically, each against wrong implementations it must reject, and the
report they are written to.

A paper module (``experiments/papers/<paper>.py``) has ``TITLE`` and ``run(out: Path, quick: bool)
-> list[Claim]``; it writes its figures (PNG + PDF) under ``out`` and returns one Claim per statement
of the paper it checks. A claim is decided by a measurement ``measure(subject) -> Outcome`` run on the
correct implementation (a rule, an SDE model, ...) and on each of its mutants: wrong implementations
injected as objects (anti-SAM, USAM in place of SAM, the SDE without its diffusion, ...), never by
editing code. A claim passes when the correct implementation passes and every mutant fails; one
that rejects no mutant says nothing about the method and is UNINFORMATIVE (a failure).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from convergence.trace import atomic_write


@dataclass
class Outcome:
    """What one measurement found: whether the paper's statement held, the numbers that decided it,
    and (for the correct implementation) whatever its figure needs."""

    passed: bool
    measured: dict = field(default_factory=dict)
    data: object = None


@dataclass
class Claim:
    """One statement of a paper, what was measured, and which wrong implementations it rejected."""

    name: str                      # short id, e.g. "constant-step-sam-stalls"
    statement: str                 # the paper's claim in one sentence, with its source (thm/fig)
    passed: bool                   # the correct implementation agrees with the statement
    measured: dict = field(default_factory=dict)   # the numbers that decided it
    figure: str = ""               # file name (under out) of the figure that shows it
    mutants: dict = field(default_factory=dict)    # wrong implementation -> rejected by the check

    @property
    def rejected(self) -> int:
        return sum(self.mutants.values())

    @property
    def result(self) -> str:
        """PASS: holds and rejects every mutant; UNINFORMATIVE: holds but rejects none; else FAIL."""
        if self.passed and self.mutants and self.rejected == len(self.mutants):
            return "PASS"
        if self.passed and not self.rejected:
            return "UNINFORMATIVE"
        return "FAIL"

    @property
    def mutant_column(self) -> str:
        missed = [m for m, ok in self.mutants.items() if not ok]
        return f"{self.rejected}/{len(self.mutants)}" + (f" (passed: {', '.join(missed)})" if missed else "")


def check(name: str, statement: str, measure, subject, mutants: dict, figure: str = "") -> tuple[Claim, object]:
    """Decide a claim: ``measure(subject)`` for the correct implementation, then for each wrong one in
    ``mutants`` (label -> object of the same kind). Returns the Claim and the correct run's data."""
    right = measure(subject)
    rejected, numbers = {}, {}
    for label, wrong in mutants.items():
        outcome = measure(wrong)
        rejected[label] = not outcome.passed
        numbers[label] = outcome.measured
    measured = dict(right.measured)
    if numbers:
        measured["mutants"] = numbers
    return Claim(name, statement, bool(right.passed), measured, figure, rejected), right.data


def write_report(out: Path, paper: str, title: str, claims: list[Claim], config: dict) -> tuple[Path, Path]:
    """report.md (human) and report.csv (one row per claim), both atomic."""
    out = Path(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["paper", "claim", "result", "mutants_rejected", "statement", "measured", "figure"])
    for c in claims:
        w.writerow([paper, c.name, c.result, c.mutant_column, c.statement,
                    json.dumps(c.measured, sort_keys=True, default=float), c.figure])
    atomic_write(out / "report.csv", buf.getvalue())
    n_pass = sum(c.result == "PASS" for c in claims)
    lines = [f"# {title}", "", f"{n_pass}/{len(claims)} claims PASS. Config: `{json.dumps(config, sort_keys=True)}`", "",
             "| claim | result | mutants rejected | statement | measured |", "|---|---|---|---|---|"]
    for c in claims:
        measured = ", ".join(f"{k}={_short(v)}" for k, v in c.measured.items() if k != "mutants")
        result = c.result if c.result == "PASS" else f"**{c.result}**"
        lines.append(f"| {c.name} | {result} | {c.mutant_column}: {', '.join(c.mutants) or 'none'} | "
                     f"{c.statement} | {measured} |")
    figures = sorted({c.figure for c in claims if c.figure})
    lines += [""] + [f"![{f}]({f})" for f in figures if f.endswith(".png")]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md", out / "report.csv"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)
