"""What every CLI shares: one-line errors with exit status 2, number checks, output folders."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage dump) and exits with status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def fail(prog: str, message: str) -> int:
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def positive(name: str, value, integer: bool = False, allow_zero: bool = False):
    """Check that a flag is a finite positive number (an integer if asked); return it."""
    from convergence.errors import InputError
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "integer" if integer else "number"
        sign = "non-negative" if allow_zero else "positive"
        raise InputError(f"{name} must be a finite {sign} {kind}, got {value}")
    return int(value) if integer else value


def check_writable(out: Path) -> None:
    """Refuse an --out that cannot be created or written, before any work is done."""
    from convergence.errors import InputError
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise InputError(f"cannot write to --out {out}: choose a writable folder")
