"""Bad input across every command line: a table of cases, each of which must end with its documented
exit status (2 for bad input), exactly one stderr line, no traceback, nothing written, within a time
bound; Ctrl-C and a full disk in every CLI; values read back from result files; and a property test
of the schedule parser on random expression strings.

The table calls each CLI's ``main(argv)`` in-process (an alarm bounds each case); subprocesses only
where a real signal or a fresh interpreter is the point (marked slow where they take long).
"""
from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LIMIT, call, one_line, time_bound

REPO = Path(__file__).resolve().parent.parent
LONG = "x" * 300                # a name no filesystem takes (255 bytes at most)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ---------------------------------------------------------------- the table
D = "1" * 5000                   # a 5000-digit integer
S = ["--iters", "200", "--runs", "2"]          # small run_toy sizes: a case that slips through is quick
CS = ["--rho", "0.1", "--L", "1"]              # check_schedule's other required flags

BAD_SCHEDULES = [
    # unbounded work: towers, huge literals, exact big integers
    ("9**9**9", "not a finite real number"), ("9^9^9", "not a finite real number"),
    ("k**k**k**k", "at k=3"), ("floor(k)**floor(k)**floor(k)**floor(k)", "at k=3"),
    ("1e999999999", "beyond the float range"), ("1e309", "beyond the float range"),
    ("10**400", "not a finite real number"), ("1e300*1e300", "beyond the float range"),
    ("1e-300*1e-300", "beyond the float range"), (D, "characters long"), ("1" * 70, "more than 60 characters"),
    ("k+" * 1001 + "k", "characters long"), ("(" * 150 + "k" + ")" * 150, "nested more than"),
    ("-" * 150 + "k", "nested more than"), ("exp(exp(exp(k)))", "at k="), ("2**(2**k)", "at k="),
    ("(k+1)**(10**60)", "at k="), ("exp(1e300)", "at k=0"),
    ("-floor(exp(222337.5))", "beyond the float range"),     # found by the 4000-example property test: sympy
    ("ceil(exp(1e6))/(k+1)", "beyond the float range"),       # computed the exact integer part, for minutes
    # non-ASCII digits and letters
    ("٣/(k+1)", "cannot be parsed"), ("０.1", "cannot be parsed"), ("0.1/(k+¹)", "cannot be parsed"),
    ("0.1/(κ+1)", "cannot be parsed"), ("0.1\u200b", "cannot be parsed"), ("½", "cannot be parsed"),
    # grammar
    ("0.1/(k+1", "expected ')'"), ("0.1/(k+1))", "unexpected ')'"), ("0.1 0.2", "unexpected '0.2'"),
    ("*k", "unexpected '*'"), ("k**", "unexpected end"), ("log()", "unexpected ')'"),
    ("log(k,k,k)", "does not take 3"), ("open(k)", "unknown name 'open'"), ("__import__", "unknown"),
    ("k; import os", "cannot be parsed"), ("lambda: 1", "cannot be parsed"), ("k[0]", "cannot be parsed"),
    ("0.1/k", "undefined at k=0"), ("log(k)", "undefined at k=0"), ("sqrt(k-1)", "undefined at k=0"),
    ("1-k", "must stay positive"), ("0*k", "must stay positive"), ("diminishng", "did you mean 'diminishing'"),
    ("Constant", "did you mean 'constant'"), ("", "cannot"),
]

CASES: list[tuple[str, list[str], str]] = []
for text, message in BAD_SCHEDULES:
    CASES.append(("run_toy", [f"--stepsize={text}", *S], message))
for text, message in BAD_SCHEDULES[:24]:
    CASES.append(("check_schedule", [f"--stepsize={text}", *CS], message))
for text, message in BAD_SCHEDULES[:12]:
    CASES.append(("sweep", [f"--stepsizes={text}", *S], message))
CASES += [
    ("run_toy", ["--rho-schedule", "k**k**k**k", *S], "at k=3"),
    ("run_toy", ["--rho-schedule", "٣", *S], "cannot be parsed"),
    ("run_toy", ["--rho", "1e308", *S], "--rho must be at most 1e+30"),
    ("run_toy", ["--lr", "1e308", "--stepsize", "constant", *S], "--lr must be at most 1e+30"),
    ("run_toy", ["--lr", "inf", *S], "--lr must be a finite positive number"),
    ("run_toy", ["--lr", "fast", *S], "--lr must be a number or 'theory'"),
    ("run_toy", ["--rho", "-1", *S], "--rho must be a finite non-negative number"),
    ("run_toy", ["--stepsize", "0.1/(k+1)", "--lr", "0.1", *S], "--lr applies to --stepsize constant"),
    ("run_toy", ["--rho-schedule", "0.1/(k+1)", "--rho", "0.1", *S], "drop --rho"),
    ("run_toy", ["--stepsize", "constant", "--decay", "0.5", *S], "--decay applies to --stepsize diminishing"),
    ("run_toy", ["--problem", "robust_regression", "--dim", "20000", *S], "needs about"),
    ("run_toy", ["--problem", "least_squares", "--dim", "100000000", *S], "needs about"),
    ("run_toy", ["--problem", "least_squares", "--dim", "1e8", *S], "invalid int value"),
    ("run_toy", ["--problem", "logistic", "--dim", "100000", *S], "needs about"),
    ("run_toy", ["--iters", "1000000000000"], "needs about"),
    ("run_toy", ["--iters", "1e12"], "invalid int value"),
    ("run_toy", ["--iters", "0"], "iters must be an integer"),
    ("run_toy", ["--runs", "100000000", "--iters", "10"], "needs about"),
    ("run_toy", ["--runs", "-3", "--iters", "10"], "runs must be an integer"),
    ("run_toy", ["--seed", "18446744073709551616", *S], "seed must be an integer"),
    ("run_toy", ["--seed", "-1", *S], "seed must be an integer"),
    ("run_toy", ["--dim", "0", *S], "dim must be an integer"),
    ("run_toy", ["--method", "SAM", *S], "did you mean 'sam'"),
    ("run_toy", ["--method", "adam", *S], "unknown method 'adam'"),
    ("run_toy", ["--problem", "Quadratic", *S], "did you mean 'quadratic'"),
    ("run_toy", ["--problem", "expr:x1**", *S], "cannot be parsed"),
    ("run_toy", ["--problem", "expr:٣*x1**2", *S], "cannot be parsed"),
    ("run_toy", ["--problem", "/nonexistent/p.py:P", *S], "p.py"),
    ("run_toy", ["--sampling", "tau-nce", "--problem", "least_squares", *S], "did you mean 'tau-nice'"),
    ("run_toy", ["--dtype", "float16", *S], "invalid choice"),
    ("run_toy", ["--max-memory", "0.000001", *S], "needs about"),
    ("run_toy", ["--unknown-flag", *S], "unrecognized arguments"),
    ("run_toy", ["--out", "", *S], "--out is empty"),
    ("run_toy", ["--out", "/dev/null", *S], "is not a folder"),
    ("run_toy", ["--out", LONG, *S], "255"),
    ("run_toy", ["--out", "FILE/sub", *S], "cannot"),
    ("run_toy", ["--out", "RESULT", *S], "already holds a result"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1", "--L", "1e308", "--mu", "1e-308"], "--L must lie in"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1", "--L", "1", "--mu", "1e-308"], "--mu must lie in"),
    ("check_schedule", ["--stepsize", "1e100", *CS], "stay at most 1e+30"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "k**k**k**k", "--L", "1"], "at k=3"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1", "--L", "nan"], "--L must be a finite positive"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1", "--L", "-1"], "--L must be a finite positive"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1", "--L", "2", "--mu", "3"], "exceeds --L"),
    ("check_schedule", ["--stepsize", "0.1", *CS, "--gamma-star", "0.1"], "go together"),
    ("check_schedule", ["--stepsize", "0.1", *CS, "--method", "SAM"], "did you mean 'sam'"),
    ("check_schedule", ["--stepsize", "0.1", "--rho", "0.1"], "required"),
    ("sweep", ["--seeds", "0-99999999999"], "more than the 100000 cells"),
    ("sweep", ["--seeds", "0-10000000"], "more than the 100000 cells"),
    ("sweep", ["--seeds", "0-18446744073709551616"], "2^63"),
    ("sweep", ["--seeds", "5-1"], "goes down"),
    ("sweep", ["--seeds", "a-b"], "is not a seed"),
    ("sweep", ["--seeds", "٣"], "is not a seed"),
    ("sweep", ["--seeds", "0-999", "--rhos", ",".join(str(i / 1000) for i in range(1, 200))], "cells"),
    ("sweep", ["--iters", "10000000", "--seeds", "0-99999"], "needs about"),
    ("sweep", ["--problems", "robust_regression", "--dim", "20000", *S], "needs about"),
    ("sweep", ["--methods", "SAM"], "did you mean 'sam'"),
    ("sweep", ["--problems", "quadratc"], "did you mean 'quadratic'"),
    ("sweep", ["--problems", "expr:x1**2"], "sweeps run the shipped problems"),
    ("sweep", ["--rhos", "1e999"], "--rhos must be a finite positive number"),
    ("sweep", ["--rhos", "1e308"], "--rhos must be at most 1e+30"),
    ("sweep", ["--lrs", "0"], "--lrs must be a finite positive number"),
    ("sweep", ["--jobs", "0"], "--jobs must be a finite positive integer"),
    ("sweep", ["--kind", "cifar", "--problems", "quadratic"], "--problems applies to --kind toy"),
    ("sweep", ["--kind", "cifar", "--engine", "jax"], "--engine applies to --kind toy"),
    ("sweep", ["--engine", "numba"], "invalid choice"),
    ("sweep", ["--kind", "cifar", "--stepsizes", "diminish4"], "did you mean"),
    ("sweep", ["--kind", "cifar", "--models", "Resnet18"], "did you mean 'resnet18'"),
    ("sweep", ["--kind", "cifar", "--cifar-args", "--data /nonexistent/cifar.tar.gz --device cpu"],
     "archive not found at"),
    ("sweep", ["--kind", "cifar", "--cifar-args", "--seed 3"], "--cifar-args may not set --seed"),
    ("sweep", ["--kind", "cifar", "--cifar-args", "'unbalanced"], "--cifar-args"),
    ("sweep", ["--address", "auto"], "--address applies to --backend ray"),
    ("sweep", ["--out", ""], "--out is empty"),
    ("sweep", ["--out", "/dev/null"], "is not a folder"),
    ("sweep", ["--out", LONG], "255"),
    ("sweep", ["--out", "FILE"], "is not a folder"),
    ("run_sde", ["--problem", "iris", "--paths", "2000000"], "needs about"),
    ("run_sde", ["--method", "SAM"], "did you mean 'sam'"),
    ("run_sde", ["--method", "fsam"], "fsam"),
    ("run_sde", ["--problem", "Iris"], "did you mean 'iris'"),
    ("run_sde", ["--paths", "0"], "--paths must be a finite positive integer"),
    ("run_sde", ["--seed", "18446744073709551616"], "--seed must be an integer"),
    ("run_sde", ["--eta", "nan"], "--eta must be a finite positive number"),
    ("run_sde", ["--eta", "1e308"], "shorter than one step"),
    ("run_sde", ["--eta", "1e-9"], "more than 10^6 steps"),
    ("run_sde", ["--rho", "-1"], "--rho must be a finite non-negative number"),
    ("run_sde", ["--time", "inf"], "--time must be a finite positive number"),
    ("run_sde", ["--out", ""], "--out is empty"),
    ("run_sde", ["--out", "/dev/null"], "is not a folder"),
    ("run_sde", ["--out", LONG], "255"),
    ("run_sde", ["--out", "FILE/x"], "cannot"),
    ("reproduce", ["khanh2025"], "did you mean 'khanh2024'"),
    ("reproduce", ["KHANH2024"], "did you mean 'khanh2024'"),
    ("reproduce", ["khanh2024", "--out", ""], "--out is empty"),
    ("reproduce", ["khanh2024", "--out", "/dev/null"], "is not a folder"),
    ("reproduce", ["khanh2024", "--out", LONG], "255"),
    ("reproduce", ["all", "--out", "FILE"], "is not a folder"),
    ("reproduce", [], "required"),
    ("reproduce", ["khanh2024", "--quick", "--fast"], "unrecognized arguments"),
    ("reproduce", ["khanh2024", "--engine", "numba"], "invalid choice"),
    ("compare", ["DIR"], "has no trace.csv"),
    ("compare", ["RESULT", "--out", "/dev/null"], "/dev/null"),
    ("compare", ["RESULT", "--out", ""], "must name a file stem"),
    ("compare", ["RESULT", "--out", LONG], "255"),
    ("compare", ["RESULT", "--out", "DIR"], "must name a file stem"),
    ("compare", ["RESULT", "--out", "FILE/x"], "cannot"),
    ("compare", ["RESULT", "--labels", "a,b"], "--labels has 2 names for 1 folders"),
    ("compare", ["HEADER_ONLY"], "trace.csv"),
    ("compare", ["EMPTY_TRACE"], "trace.csv"),
    ("compare", ["BINARY_TRACE"], "trace.csv"),
    ("compare", ["/nonexistent/folder"], "has no trace.csv"),
    ("compare", [], "required"),
    ("cifar_table", ["--out", ""], "--out is empty"),
    ("cifar_table", ["--out", "/dev/null"], "is not a folder"),
    ("cifar_table", ["--out", LONG], "255"),
    ("cifar_table", ["--schedules", "constnt"], "did you mean 'constant'"),
    ("cifar_table", ["--schedules", "constant@fast"], "cannot read the lr"),
    ("cifar_table", ["--schedules", "constant@-1"], "must be a positive number"),
    ("cifar_table", ["--schedules", ","], "--schedules is empty"),
    ("cifar_table", ["--seeds", "-1"], "--seeds must be comma-separated"),
    ("cifar_table", ["--seeds", "٣"], "--seeds must be comma-separated"),
    ("cifar_table", ["--table-only"], "holds no finished"),
    ("cifar_table", ["--table-only", "--out", "DAMAGED_CIFAR", "--schedules", "constant", "--seeds", "0"],
     "epochs_done is '1'"),
    ("cifar_table", ["--schedules", "constant", "--seeds", "0", "--", "--seed", "1"], "set by cifar_table"),
    ("run_cifar", ["--seed", "18446744073709551616", "--device", "cpu"], "--seed must be an integer"),
    ("run_cifar", ["--out", "", "--device", "cpu"], "--out is empty"),
    ("run_cifar", ["--out", "/dev/null", "--device", "cpu"], "is not a folder"),
    ("run_cifar", ["--out", LONG, "--device", "cpu"], "255"),
    ("run_cifar", ["--method", "SAM", "--device", "cpu"], "did you mean 'sam'"),
    ("run_cifar", ["--model", "Resnet18", "--device", "cpu"], "did you mean 'resnet18'"),
    ("run_cifar", ["--dataset", "cifar1000", "--device", "cpu"], "did you mean"),
    ("run_cifar", ["--epochs", "0", "--device", "cpu"], "--epochs must be a finite positive integer"),
    ("run_cifar", ["--momentum", "1", "--device", "cpu"], "--momentum must be below 1"),
    ("run_cifar", ["--lr", "nan", "--device", "cpu"], "--lr must be a finite positive number"),
    ("run_cifar", ["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    ("run_cifar", ["--stepsize", "9**9**9", "--device", "cpu"], "not a finite real number"),
    ("run_cifar", ["--stepsize", "٣/(k+1)", "--device", "cpu"], "cannot be parsed"),
    ("run_cifar", ["--data", "/nonexistent/cifar.tar.gz", "--device", "cpu", "--limit-train", "512"],
     "archive not found at"),
]
# flags that take the case's output folder unless the case names --out (compare writes a stem)
TAKES_OUT = {"run_toy", "sweep", "run_sde", "reproduce", "cifar_table", "run_cifar", "compare"}


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder (also the cwd, so that default outputs would land in it) with the inputs the
    cases name: DIR (empty folder), FILE (a file), RESULT (a run_toy-like result), damaged traces,
    a damaged run_cifar run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAMCONV_CIFAR10", str(tmp_path / "no-archive.tar.gz"))    # no case may train
    monkeypatch.setenv("SAMCONV_CACHE", str(tmp_path / "no-cache"))
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("a file\n")
    result = tmp_path / "RESULT"
    result.mkdir()
    from convergence.trace import COLUMNS
    rows = [",".join(COLUMNS)] + [f"0,sam,quadratic,{i},1,1,1,1,0.1,0.05,0,0,ok,0" for i in range(3)]
    (result / "trace.csv").write_text("\n".join(rows) + "\n")
    for name, data in (("HEADER_ONLY", ",".join(COLUMNS) + "\n"), ("EMPTY_TRACE", ""),
                       ("BINARY_TRACE", b"\x00\xff\xfe\x89PNG\x00")):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "trace.csv"
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    run = tmp_path / "DAMAGED_CIFAR" / "constant-seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "ok", "epochs_done": "1", "config": {"epochs": 2}}))
    (run / "metrics.csv").write_text("epoch,test_acc,grad_norm,step_norm\n0,0.1,1.0,0.1\n")
    return tmp_path


def resolve(argv: list[str], place: Path) -> list[str]:
    names = {"DIR", "FILE", "RESULT", "HEADER_ONLY", "EMPTY_TRACE", "BINARY_TRACE", "DAMAGED_CIFAR"}
    out = []
    for a in argv:
        head, _, tail = a.partition("/")
        out.append(str(place / a) if head in names else a)
    return out


def test_the_table_is_large_and_covers_every_cli():
    assert len(CASES) >= 150
    assert {m for m, _, _ in CASES} == TAKES_OUT | {"check_schedule"}


@pytest.mark.parametrize("module,argv,message", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input(module, argv, message, place, capsys):
    argv = resolve(argv, place)
    if module in TAKES_OUT and "--out" not in argv and module != "compare":
        argv = [*argv, "--out", str(place / "out")] if "--" not in argv else (
            argv[:argv.index("--")] + ["--out", str(place / "out")] + argv[argv.index("--"):])
    before = snapshot(place)
    start = time.monotonic()
    code = call(module, argv)
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    line = one_line(err)
    assert code == 2, (code, line)
    assert message in line, line
    assert snapshot(place) == before, "the case wrote files"
    assert seconds < LIMIT


@pytest.mark.parametrize("module,argv", [("sweep", ["--engine", "jax", *S]),
                                         ("reproduce", ["khanh2024", "--quick", "--engine", "jax"])])
def test_engine_jax_without_jax_says_how_to_install(module, argv, place, capsys, monkeypatch):
    """Without JAX installed, --engine jax is a bad input like the table's: one line naming the extra."""
    monkeypatch.setitem(sys.modules, "jax", None)          # import jax now raises ImportError
    test_bad_input(module, argv, 'pip install -e ".[jax]"', place, capsys)


# ---------------------------------------------------------------- values read back from result files
def test_damaged_sweep_summary_is_recomputed_before_combined_csv_is_written(tmp_path, capsys):
    from experiments import sweep
    flags = ["--problems", "quadratic", "--seeds", "0-1", "--iters", "50", "--runs", "1", "--no-figure", "--no-batch",
             "--out", str(tmp_path)]
    with time_bound():
        assert sweep.main(flags) == 0
    combined = (tmp_path / "combined.csv").read_bytes()
    summary = next(tmp_path.glob("cells/*seed0/summary.json"))
    for damage in ({"diverged": "many"}, ["x"], {"ok": -1}, {"ok": True}):
        record = json.loads(summary.read_text())
        record["status_counts"] = damage
        summary.write_text(json.dumps(record))
        (tmp_path / "combined.csv").write_text("old")
        capsys.readouterr()
        with time_bound():
            assert sweep.main(flags) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and summary.parent.name in err[0] and "recomputing it" in err[0], err
        assert (tmp_path / "combined.csv").read_bytes() == combined
    record = json.loads(summary.read_text())
    del record["status_counts"]
    record["status"] = ["x"]                       # a status that is not a verdict name
    summary.write_text(json.dumps(record))
    with time_bound():
        assert sweep.main(flags) == 0
    assert "status that is not a verdict name" in capsys.readouterr().err


def test_combined_csv_has_the_umask_mode(tmp_path):
    from experiments import sweep
    old = os.umask(0o027)
    try:
        from convergence import trace
        saved, trace._UMASK = trace._UMASK, 0o027
        with time_bound():
            assert sweep.main(["--seeds", "0", "--iters", "20", "--runs", "1", "--no-figure",
                               "--out", str(tmp_path / "s")]) == 0
    finally:
        os.umask(old)
        trace._UMASK = saved
    assert (tmp_path / "s" / "combined.csv").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- Ctrl-C and a full disk, in-process
FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/results/somewhere")
RUNS = {   # module -> (argv, the function to break (module, attribute))
    "run_toy": (["--iters", "30", "--runs", "1"], ("experiments.results", "write_folder")),
    "run_sde": (["--time", "0.05", "--eta", "0.01"], ("experiments.results", "write_folder")),
    "sweep": (["--seeds", "0", "--iters", "30", "--runs", "1", "--no-figure"], ("convergence.trace", "atomic_write")),
    "compare": (["RESULT"], ("figures.convergence", "atomic_write")),
    "cifar_table": (["--table-only", "--schedules", "constant", "--seeds", "0"], ("convergence.trace", "atomic_write")),
    "run_cifar": (["--device", "cpu", "--epochs", "1"], ("experiments.run_cifar", "check_archive")),
    "reproduce": (["khanh2024", "--quick"], ("importlib", "import_module")),
    "check_schedule": (["--stepsize", "0.1/(k+1)", "--rho", "0.05", "--L", "1"], ("convergence.theory", "assess")),
}


def _prepare(module, place):
    """A finished run_cifar run for cifar_table --table-only."""
    if module == "cifar_table":
        run = place / "out" / "constant-seed0"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"status": "ok", "epochs_done": 1, "config": {"epochs": 1}}))
        (run / "metrics.csv").write_text("epoch,test_acc,grad_norm,step_norm\n0,0.1,1.0,0.1\n")


@pytest.mark.parametrize("what", ["interrupt", "disk full"])
@pytest.mark.parametrize("module", sorted(RUNS))
def test_interrupt_and_full_disk_are_one_line(module, what, place, capsys, monkeypatch):
    argv, (owner, attr) = RUNS[module]
    argv = resolve(argv, place)
    if module == "compare":
        argv += ["--out", str(place / "cmp")]
    elif module != "check_schedule":
        argv += ["--out", str(place / "out")]
    _prepare(module, place)
    if module == "run_cifar":
        pytest.importorskip("torch")

    def broken(*args, **kwargs):
        if what == "interrupt":
            raise KeyboardInterrupt
        raise FULL
    target = importlib.import_module(owner)
    if owner == "importlib":                   # reproduce: break the paper module's import only
        real = target.import_module
        monkeypatch.setattr(target, attr, lambda name, *a: broken() if "papers" in name else real(name, *a))
    else:
        monkeypatch.setattr(target, attr, broken)
    capsys.readouterr()
    code = call(module, argv)
    line = one_line(capsys.readouterr().err)
    if what == "interrupt":
        assert code == 130 and "interrupted" in line, line
    else:
        assert code == 1 and "No space left on device" in line, line
    assert not list(place.rglob(".*.partial-*"))


def test_a_reader_that_goes_away_is_exit_141_without_a_traceback(tmp_path):
    """`python -m experiments.run_toy ... | head -0`: the pipe is closed before the header line; the run
    stops there as if killed by SIGPIPE: status 141, stderr empty, no result folder, not even a partial
    one (without the guard: a BrokenPipeError traceback, or 'Exception ignored' at the interpreter's
    exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run_toy", "--iters", "30", "--runs", "2",
                             "--no-progress", "--out", str(tmp_path / "out")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()                                    # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------- real signals, in subprocesses
def _sigint(argv: list[str], cwd: Path, wait_for: str | None = None, delay: float = 3.0):
    """Start ``python -m argv`` as a shell starts a command, send it Ctrl-C's SIGINT after ``delay``
    seconds (after a stdout line containing ``wait_for``), and return its exit status and stderr.

    A command inherits an ignored SIGINT (a non-interactive shell's background jobs ignore it, and so
    would pytest started as one), while a handled one is reset by exec: the command is started with
    SIGINT handled here, so that it gets it at its default as from a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        signal.signal(signal.SIGINT, previous)
    with proc:
        try:
            deadline = time.monotonic() + 60
            if wait_for:
                while time.monotonic() < deadline and wait_for not in proc.stdout.readline():
                    pass
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()                 # a command that ignored Ctrl-C does not outlive the test
    return proc.returncode, err


def test_ctrl_c_landing_in_a_finalizer_still_stops_the_command(capsys):
    """Python prints and drops a KeyboardInterrupt raised in a finalizer or weakref callback, which
    garbage collection runs at any moment (a Ctrl-C sent to reproduce was lost so, and it ran on);
    the CLIs' guard sends SIGINT again. Without that, main below returns 0 and stderr holds
    'Exception ignored in'."""
    from experiments.common import guarded

    class Finalized:
        def __del__(self):
            raise KeyboardInterrupt            # as the SIGINT handler does when a finalizer runs

    def main(argv):
        Finalized()                            # collected at once: its finalizer runs here
        Finalized()                            # a second one dropped: still one Ctrl-C sent again
        deadline = time.monotonic() + 5        # the work the Ctrl-C should stop
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return 0

    def ends_at_once(argv):
        Finalized()
        return 0

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal
    try:
        for command, status in ((main, 130), (ends_at_once, 0)):   # the second ends before the resend
            try:
                assert guarded("prog", command) == status
                time.sleep(0.1)
            except KeyboardInterrupt:
                pytest.fail("a Ctrl-C escaped the guard or came after the command had ended")
            if status == 130:
                assert one_line(capsys.readouterr().err) == ("prog: interrupted; no new result was "
                                                             "completed (rerun the same command)")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_ctrl_c_in_run_toy_is_one_line_exit_130_and_writes_nothing(tmp_path):
    code, err = _sigint(["experiments.run_toy", "--iters", "5000000", "--runs", "4", "--no-progress",
                         "--out", str(tmp_path / "out")], tmp_path, wait_for="iterations", delay=0.5)
    assert code == 130 and "interrupted" in one_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["experiments.run_sde", "--time", "5000", "--eta", "0.005", "--paths", "100"],
    ["experiments.sweep", "--seeds", "0-3", "--iters", "3000000", "--runs", "2", "--no-figure"],
    ["experiments.reproduce", "all", "--quick"],
], ids=["run_sde", "sweep", "reproduce"])
def test_ctrl_c_is_one_line_exit_130(tmp_path, argv):
    code, err = _sigint([*argv, "--out", str(tmp_path / "out")], tmp_path, delay=4.0)
    if code == 1 and "experiments/papers/" in err and "Traceback" in err:
        pytest.skip("a paper module of this checkout fails on its own (experiments/papers is not this test's)")
    assert code == 130 and "interrupted" in one_line(err), err
    assert not list(tmp_path.rglob("summary.json")) or "sweep" in argv[0]


@pytest.mark.slow
def test_cifar_clis_without_torch_are_one_line(tmp_path):
    """With torch hidden (a fresh interpreter whose import of torch fails), run_cifar and cifar_table
    still refuse in one line with status 2."""
    hide = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__')")
    for module, argv in (("experiments.run_cifar", ["--device", "cpu"]),
                         ("experiments.cifar_table", ["--seeds", "0"])):
        proc = subprocess.run([sys.executable, "-c", hide, module, *argv, "--out", str(tmp_path / "o")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 2 and "torch" in one_line(proc.stderr), proc.stderr
        assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- property test of the schedule parser
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

NUMBERS = st.one_of(st.integers(0, 10**6).map(str), st.floats(0, 1e6).map(repr),
                    st.sampled_from(["9", "99", "1e308", "1e309", "1e-308", "1e999999999", "9" * 59, "9" * 61,
                                     "0.5", ".5", "5.", "1e", "0x10", "1_000", "٣", "０", "¹", "1" * 400]))
ATOMS = st.one_of(NUMBERS, st.just("k"), st.sampled_from(["pi", "E", "e", "x", "kk", "K"]))
FUNCS = st.sampled_from(["log", "ln", "sqrt", "exp", "floor", "ceil", "min", "max", "sin", "open"])
OPS = st.sampled_from(["+", "-", "*", "/", "**", "^"])


def _grammar():
    def extend(inner):
        return st.one_of(
            st.tuples(inner, OPS, inner).map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
            st.tuples(FUNCS, inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(lambda t: f"{t[0]}({t[1]},{t[2]})"),
            inner.map(lambda s: f"({s})"), inner.map(lambda s: f"-{s}"))
    return st.recursive(ATOMS, extend, max_leaves=30)


TOKENS = ["k", "(", ")", "+", "-", "*", "/", "**", "^", ",", " ", "9", "1e308", "exp", "log", "floor", "٣", "0.1"]
EXPRESSIONS = st.one_of(
    _grammar(),
    st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),                     # token soup
    st.tuples(st.sampled_from(["k", "9", "(k+1)", "floor(k)"]), st.integers(2, 8)).map(
        lambda t: "**".join([t[0]] * t[1])),                                          # towers
    st.integers(1, 3000).map(lambda n: "k+" * n + "1"),                               # long strings
    st.text(max_size=40),                                                             # anything
)


def _check_schedule_text(text: str) -> None:
    """make_schedule and the run spec builder: InputError with a one-line message, or a schedule
    finite over the run; either within a few seconds (the alarm below; hypothesis' own deadline is
    off: a first call that warms sympy's caches would make it flaky on a loaded machine)."""
    from convergence.errors import InputError
    from convergence.schedules import make_schedule
    from convergence.spec import toy_run
    with time_bound(8):
        try:
            schedule = make_schedule(text, 0.1, 0.6, "stepsize", ("constant", "diminishing"))
            values = schedule.values(300, "stepsize")
            assert all(abs(v) < float("inf") for v in values)
        except InputError as err:
            assert "\n" not in str(err) and str(err)
        try:
            toy_run(stepsize=text, rho_schedule="0.01", iters=300, runs=1, problem="quadratic", dim=2)
        except InputError as err:
            assert "\n" not in str(err) and str(err)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(EXPRESSIONS)
def test_random_schedule_strings_are_refused_in_one_line_or_run(text):
    _check_schedule_text(text)


@pytest.mark.slow
@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(EXPRESSIONS)
def test_random_schedule_strings_many(text):
    _check_schedule_text(text)
