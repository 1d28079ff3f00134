"""Put several result folders on one convergence figure (PNG + PDF).

    python -m experiments.compare results/quadratic-sam-constant results/quadratic-sam-diminishing \
        --out results/compare
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convergence.errors import InputError
from experiments.common import OneLineParser, check_writable, fail

PROG = "python -m experiments.compare"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="result folders holding trace.csv (written by run_toy or a sweep)")
    parser.add_argument("--out", default="results/compare",
                        help="output stem: STEM.png and STEM.pdf are written (default results/compare)")
    parser.add_argument("--title", default="", help="figure title (default none)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated legend labels, one per folder (default: the folder names)")
    return parser


def tables(dirs, labels=None) -> list[tuple[str, dict]]:
    """(label, trace columns) of each folder; InputError names a folder without a readable trace."""
    from convergence.trace import read_csv
    if labels and len(labels) != len(dirs):
        raise InputError(f"--labels has {len(labels)} names for {len(dirs)} folders: give one per folder")
    out = []
    for i, d in enumerate(dirs):
        if not (Path(d) / "trace.csv").is_file():
            raise InputError(f"{d} has no trace.csv: pass folders written by run_toy or a sweep")
        path = Path(d) / "trace.csv"
        try:
            table = read_csv(path)
        except UnicodeDecodeError as err:
            raise InputError(f"{path} is not a text trace ({err.reason} at byte {err.start}): rerun the "
                             f"experiment") from None
        except (ValueError, OSError) as err:
            text = str(err)
            raise InputError(text if str(path) in text else f"{path}: {text}") from None
        if not len(table["iter"]):
            raise InputError(f"{path} holds a header but no rows (truncated?): rerun the experiment")
        out.append((labels[i] if labels else Path(d).name, table))
    return out


def check_stem(stem: str) -> Path:
    """The output stem: not empty, not an existing folder, in a writable folder."""
    path = Path(stem)
    if any(len(part.encode("utf-8", "surrogateescape")) + 4 > 255 for part in path.parts):
        raise InputError(f"--out has a name of {max(len(p.encode('utf-8', 'surrogateescape')) for p in path.parts)} "
                         f"bytes (File name too long: a filesystem takes 255 at most, .png included): choose a "
                         f"shorter name")
    if not stem.strip() or stem.endswith(("/", "\\")) or path.is_dir():
        raise InputError(f"--out '{stem}' must name a file stem (STEM.png and STEM.pdf are written), not a folder")
    for target in (path, Path(f"{stem}.png"), Path(f"{stem}.pdf")):
        if (target.exists() or target.is_symlink()) and not target.is_file():
            raise InputError(f"--out '{stem}': {target} exists and is not a regular file (a device?): choose "
                             f"another stem")
    if path.parent.resolve() == Path("/dev"):
        raise InputError(f"--out '{stem}' is in /dev, the devices' folder: choose another stem")
    check_writable(str(path.parent))
    return path


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stem = check_stem(args.out)
        data = tables(args.dirs, args.labels.split(",") if args.labels else None)
        from figures.convergence import plot_tables, save
        paths = save(plot_tables(data, args.title), stem)
    except InputError as err:
        return fail(PROG, str(err))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; nothing written\n")
        return 130
    except OSError as err:
        from experiments.results import disk_error
        if disk_error(err):
            sys.stderr.write(f"{PROG}: error: {disk_error(err)}\n")
            return 1
        return fail(PROG, f"cannot write {args.out} ({err.strerror or err}): choose another --out")
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
