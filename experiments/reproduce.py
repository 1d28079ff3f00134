"""Reproduce a paper's claims: figures (PNG + PDF) and a report (markdown + CSV) with PASS/FAIL.

examples:
  python -m experiments.reproduce khanh2024 --quick
  python -m experiments.reproduce oikonomou2025 --out results/oikonomou2025
  python -m experiments.reproduce all --quick

--quick finishes in well under 2 minutes on 2 CPU cores; the default runs the papers' sizes.
Exit status: 0 when every claim passes, 1 when some fail, 2 on bad input.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from experiments.common import OneLineParser, check_writable, fail

PAPERS = ["khanh2024", "oikonomou2025", "compagnoni2023", "andriushchenko2022"]


def available() -> list[str]:
    return [p for p in PAPERS if importlib.util.find_spec(f"experiments.papers.{p}") is not None]


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded("reproduce", _main, argv)


def _main(argv=None) -> int:
    from convergence.errors import InputError, unknown
    from experiments.claims import write_report
    parser = OneLineParser(prog="python -m experiments.reproduce", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paper", help=f"one of: {', '.join(available())}, or all")
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 minutes)")
    parser.add_argument("--out", default=None, help="output folder (default results/reproduce/<paper>)")
    args = parser.parse_args(argv)
    papers = available() if args.paper == "all" else [args.paper]
    try:
        for paper in papers:
            if paper not in available():
                raise unknown("paper", paper, available() + ["all"])
        root = Path("results/reproduce" if args.out is None else args.out)
        check_writable("results/reproduce" if args.out is None else args.out)
    except InputError as err:
        return fail("reproduce", str(err))
    failed = 0
    for paper in papers:
        module = importlib.import_module(f"experiments.papers.{paper}")
        out = root / paper if (args.out is None or len(papers) > 1) else root
        start = time.perf_counter()
        claims = module.run(out, args.quick)
        seconds = time.perf_counter() - start
        md, _ = write_report(out, paper, module.TITLE, claims,
                             {"quick": args.quick, "seconds": round(seconds, 1)})
        print(f"{paper}: {sum(c.passed for c in claims)}/{len(claims)} claims PASS ({seconds:.0f} s) -> {md}")
        for c in claims:
            print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}: {c.statement}")
        failed += sum(not c.passed for c in claims)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
