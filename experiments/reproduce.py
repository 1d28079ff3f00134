"""Reproduce a paper's claims: figures (PNG + PDF) and a report (markdown + CSV). Each claim is run on
the method and on wrong implementations it must reject (mutants): PASS when the method passes and
every mutant fails, UNINFORMATIVE when no mutant is rejected, else FAIL.

examples:
  python -m experiments.reproduce khanh2024 --quick
  python -m experiments.reproduce oikonomou2025 --out results/oikonomou2025
  python -m experiments.reproduce all --quick
  python -m experiments.reproduce khanh2024 --quick --engine jax      # compiled (pip install -e ".[jax]")

--quick: the sizes the tests run (under a minute per paper on 2 cores); the default: the papers' sizes.
--engine jax: the paper modules' runs (convergence.runner.iterate) on the compiled backend, whose
numbers agree with numpy to 1e-12 relative; runs it cannot compile (the SDE models' adapters, for
one) run on numpy, said in one line per paper and in report.md. Theory checks and figures unchanged.
Exit status: 0 when every claim passes, 1 when one fails or is uninformative, 2 on bad input.
"""
from __future__ import annotations

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
    from convergence.runner import Engine
    from experiments.claims import write_report
    from experiments.results import whole_folder
    parser = OneLineParser(prog="python -m experiments.reproduce", description=__doc__)
    parser.add_argument("paper", help=f"one of: {', '.join(available())}, or all")
    parser.add_argument("--quick", action="store_true", help="small sizes, as the tests run them (times per paper in README.md)")
    parser.add_argument("--out", default=None, help="output folder (default results/reproduce/<paper>)")
    parser.add_argument("--engine", default="numpy", choices=["numpy", "jax"],
                        help="numpy (default) or jax: the runs compiled with jax.jit where they can be "
                             "(pip install -e \".[jax]\")")
    args = parser.parse_args(argv)
    papers = available() if args.paper == "all" else [args.paper]
    try:
        Engine(args.engine)                     # jax without JAX: the install line, nothing written
        for paper in papers:
            if paper not in available():
                raise unknown("paper", paper, available() + ["all"])
        root = Path("results/reproduce" if args.out is None else args.out)
        check_writable("results/reproduce" if args.out is None else args.out)
        for paper in papers:                    # each folder is replaced whole: only an earlier report
            out = root / paper if (args.out is None or len(papers) > 1) else root
            if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
                raise InputError(f"--out {out} holds files that are not a reproduction report: choose an "
                                 f"empty or new folder (it is replaced whole)")
    except InputError as err:
        return fail("reproduce", str(err))
    failed = 0
    for paper in papers:
        module = importlib.import_module(f"experiments.papers.{paper}")
        out = root / paper if (args.out is None or len(papers) > 1) else root
        start = time.perf_counter()
        with whole_folder(out) as partial, Engine(args.engine) as engine:   # interrupted: the old report, or none
            claims = module.run(partial, args.quick)
            seconds = time.perf_counter() - start
            config = {"quick": args.quick, "seconds": round(seconds, 1), "engine": args.engine}
            if engine.fallbacks:
                config["ran_on_numpy"] = engine.fallbacks
            write_report(partial, paper, module.TITLE, claims, config)
        md = out / "report.md"
        print(f"{paper}: {sum(c.result == 'PASS' for c in claims)}/{len(claims)} claims PASS, mutants rejected "
              f"{sum(c.rejected for c in claims)}/{sum(len(c.mutants) for c in claims)} ({seconds:.0f} s) -> {md}")
        if engine.fallbacks:
            print(f"  engine jax: {len(engine.fallbacks)} kind(s) of run ran on numpy, e.g. {engine.fallbacks[0]}")
        for c in claims:
            print(f"  {c.result:<13} {c.name} (mutants rejected {c.mutant_column}): {c.statement}")
        failed += sum(c.result != "PASS" for c in claims)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
