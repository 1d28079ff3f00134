"""Put several result folders on one convergence figure.

    python -m figures.compare results/quadratic-sam-constant results/quadratic-sam-diminishing \
        --out results/compare
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convergence.errors import InputError
from experiments.common import OneLineParser, check_writable, fail


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m figures.compare", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="result folders holding trace.csv")
    parser.add_argument("--out", default="results/compare", help="output stem (PNG + PDF)")
    parser.add_argument("--title", default="")
    parser.add_argument("--labels", default=None, help="comma-separated legend labels")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    for d in args.dirs:
        if not (Path(d) / "trace.csv").is_file():
            return fail("figures.compare", f"{d} has no trace.csv: pass folders written by run_toy")
    if labels and len(labels) != len(args.dirs):
        return fail("figures.compare", f"--labels has {len(labels)} names for {len(args.dirs)} folders")
    try:
        check_writable(Path(args.out).parent)
    except InputError as err:
        return fail("figures.compare", str(err))
    from figures.convergence import plot_dirs
    try:
        paths = plot_dirs(args.dirs, args.out, args.title, labels)
    except ValueError as err:
        return fail("figures.compare", str(err))
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
