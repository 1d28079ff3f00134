"""The README's first command, timed as a user runs it, against the same work drawn in one process.

Runs, alternately and ``--repeats`` times each, in a fresh temporary folder:
- ``quickstart``: ``python -m experiments.run_toy --method sam --stepsize diminishing`` as written
  (its figure drawn by the helper process that imports matplotlib while the run iterates);
- ``one process``: the same run_toy call in a process that imported matplotlib first, so that the
  figure is drawn in-process after the iterations (the serial reference, the same files).
Alternating makes the ratio robust to the shared host's speed, which drifts within minutes. The last
line reads ``quickstart_s=X serial_s=Y ratio=X/Y target_4s=met|missed`` (medians; issue 19's target:
the quickstart within 4 s on an idle 2-core machine).

    python benchmarks/quickstart.py               # about a minute
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["-m", "experiments.run_toy", "--method", "sam", "--stepsize", "diminishing"]
SERIAL = ["-c", "import sys, matplotlib.pyplot; from experiments.run_toy import main; "
                "sys.exit(main(['--method', 'sam', '--stepsize', 'diminishing']))"]


def wall(argv: list[str]) -> float:
    """Seconds of one run of ``python argv`` in a fresh folder (it must succeed)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=tmp, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="runs of each variant (default 5)")
    args = p.parse_args(argv)
    times = {"quickstart": [], "one process": []}
    for i in range(args.repeats):
        print(f"quickstart: round {i + 1} of {args.repeats} ...", file=sys.stderr, flush=True)
        times["quickstart"].append(wall(COMMAND))
        times["one process"].append(wall(SERIAL))
    for label, values in times.items():
        print(f"{label:12s} " + " ".join(f"{v:.2f}" for v in values) + " s")
    quick, serial = (statistics.median(times[k]) for k in ("quickstart", "one process"))
    print(f"quickstart_s={quick:.2f} serial_s={serial:.2f} ratio={quick / serial:.2f} "
          f"target_4s={'met' if quick <= 4.0 else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
