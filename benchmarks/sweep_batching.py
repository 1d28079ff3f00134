"""Sweep cells run as one batched array run against the same cells run one at a time.

SAM with diminishing steps on the quadratic over 8 values of rho_0 x 4 values of t_0 x 3 seeds, 16
runs of 10^5 iterations per cell (96 cells), both ways in this process with one worker
(``experiments.sweep --jobs 1``, then the same with ``--no-batch``). The last line reads
``speedup=X identical=True|False``: X is the cell-by-cell time over the batched time, identical
whether the two combined.csv files have the same bytes. Target: X >= 10, identical=True.

    python benchmarks/sweep_batching.py                # about 3.5 minutes on 2 cores (cell by cell ~3)
    python benchmarks/sweep_batching.py --iters 10000  # a quick look
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RHOS = "0.01,0.02,0.03,0.05,0.07,0.1,0.15,0.2"
LRS = "0.1,0.25,0.5,1.0"


def main(argv=None) -> int:
    from experiments import sweep
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=100_000, help="iterations per run (default 100000)")
    p.add_argument("--runs", type=int, default=16, help="runs per cell (default 16)")
    args = p.parse_args(argv)
    flags = ["--methods", "sam", "--problems", "quadratic", "--stepsizes", "diminishing", "--rhos", RHOS,
             "--lrs", LRS, "--seeds", "0-2", "--iters", str(args.iters), "--runs", str(args.runs),
             "--jobs", "1", "--no-figure"]
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("batched", []), ("cell by cell", ["--no-batch"])):
            print(f"sweep_batching: running the 96 cells {label} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            rc = sweep.main(flags + extra + ["--out", str(Path(tmp) / label.replace(" ", "_"))])
            seconds[label] = time.perf_counter() - start
            if rc != 0:
                print(f"sweep_batching: the {label} sweep exited with status {rc}", file=sys.stderr)
                return 1
        identical = ((Path(tmp) / "batched/combined.csv").read_bytes()
                     == (Path(tmp) / "cell_by_cell/combined.csv").read_bytes())
    print(f"96 cells x {args.runs} runs x {args.iters} iterations: batched {seconds['batched']:.1f} s, "
          f"cell by cell {seconds['cell by cell']:.1f} s")
    print(f"speedup={seconds['cell by cell'] / seconds['batched']:.1f} identical={identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
