"""The sweep under bad input, damaged files, kill -9, divergence and failing cells."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import sweep

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--methods", "sam,usam", "--stepsizes", "constant,diminishing", "--problems", "quadratic",
         "--seeds", "0-1", "--iters", "300", "--runs", "2", "--no-figure"]


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], capture_output=True,
                          text=True, cwd=REPO, **kw)


def run_sweep(out, *flags):
    return sweep.main([*flags, "--out", str(out)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the SMALL grid."""
    out = tmp_path_factory.mktemp("reference")
    assert run_sweep(out, *SMALL) == 0
    return out


@pytest.mark.parametrize("flags,message", [
    (["--methods", "sam,sma"], "unknown method 'sma' (did you mean 'sam'?)"),
    (["--problems", "rosenbrok"], "unknown problem 'rosenbrok' (did you mean 'rosenbrock'?)"),
    (["--seeds", "4-0"], "--seeds '4-0': the range '4-0' goes down (did you mean 0-4?)"),
    (["--seeds", "0-x"], "is not a seed or a range of seeds"),
    (["--rhos", "0.05,-1"], "--rhos must be a finite positive number, got -1.0"),
    (["--rhos", "nan"], "--rhos must be a finite positive number"),
    (["--lrs", "fast"], "--lrs entry 'fast' must be a positive number or one of 1/L, theory"),
    (["--iters", "0"], "--iters must be a finite positive integer"),
    (["--jobs", "0"], "--jobs must be a finite positive integer"),
    (["--stepsizes", "constant,1-k"], "must stay positive"),
    (["--stepsizes", "open(k)"], "unknown name 'open'"),
    (["--problems", "rosenbrock", "--dim", "1"], "does not support dim=1"),
    (["--methods", ""], "empty entry"),
    (["--address", "auto"], "--address applies to --backend ray"),
    (["--amp"], "--amp applies to --kind cifar"),
    (["--iters", "ten"], "argument --iters: invalid int value"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, flags, message):
    out = tmp_path / "out"
    proc = cli("--out", str(out), *flags)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(("python -m experiments.sweep: error: ", "sweep: error: "))
    assert message in lines[0]
    assert not out.exists() and proc.stdout == ""


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    proc = cli("--out", str(blocker / "sweep"), "--iters", "10", "--runs", "1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "cannot write to --out" in proc.stderr
    if os.geteuid() != 0:                     # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli("--out", str(locked / "s"), "--iters", "10").returncode == 2


def test_other_settings_in_the_same_out_are_refused(tmp_path, reference, capsys):
    out = tmp_path / "s"
    assert run_sweep(out, *SMALL) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert run_sweep(out, *SMALL, "--iters", "400") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "computed with iters=300 (now 400): use another --out" in err[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_damaged_cells_are_detected_and_recomputed(tmp_path, reference, capsys):
    out = tmp_path / "s"
    assert run_sweep(out, *SMALL) == 0
    cells = out / "cells"
    trace = cells / "quadratic-sam-constant-rho0.05-seed0" / "trace.csv"
    trace.write_bytes(trace.read_bytes()[:-200])                              # truncated
    (cells / "quadratic-sam-constant-rho0.05-seed1" / "summary.json").write_text('{"config": {"meth')
    (cells / "quadratic-usam-constant-rho0.05-seed0" / "trace.csv").unlink()  # lost
    partial = cells / "quadratic-usam-diminishing-rho0.05-seed1"
    (partial / "summary.json").unlink()                    # killed between trace.csv and summary.json
    (partial / ".trace.csv.abc123.tmp").write_text("half a fi")               # killed mid-write
    (out / "combined.csv").write_text("garbage")
    capsys.readouterr()
    assert run_sweep(out, *SMALL) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "recomputing" in line]
    assert len(notes) == 3
    assert any("does not match the checksum" in n for n in notes)
    assert any("not a valid sweep record" in n for n in notes)
    assert any("trace.csv is missing" in n for n in notes)
    assert "8 cells, 4 already complete, 4 to run" in captured.out
    assert not list(partial.glob(".*.tmp"))
    assert (out / "combined.csv").read_bytes() == (reference / "combined.csv").read_bytes()
    assert (out / "sweep.json").read_bytes() == (reference / "sweep.json").read_bytes()


@pytest.mark.slow
def test_kill_9_mid_sweep_then_resume_gives_identical_bytes(tmp_path):
    flags = ["--methods", "sam,usam", "--stepsizes", "constant,diminishing", "--problems", "quadratic",
             "--seeds", "0-2", "--iters", "20000", "--runs", "2", "--no-figure"]
    ref = tmp_path / "ref"
    assert run_sweep(ref, *flags) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *flags, "--jobs", "2",
                             "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(out.glob("cells/*/summary.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)                    # the sweep and its workers, at once
    proc.wait()
    done = len(list(out.glob("cells/*/summary.json")))
    assert proc.returncode == -signal.SIGKILL and 2 <= done < 12
    assert not (out / "combined.csv").exists()
    resumed = cli(*flags, "--jobs", "2", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"12 cells, {done} already complete, {12 - done} to run" in resumed.stdout
    assert (out / "combined.csv").read_bytes() == (ref / "combined.csv").read_bytes()
    rows = (out / "combined.csv").read_text().splitlines()
    assert len(rows) == len(set(rows))                     # no duplicated rows


def test_divergence_is_counted_and_the_other_cells_finish(tmp_path, capsys):
    """USAM at t = 1/L diverges on Rosenbrock; the rest of the grid still runs to the end."""
    assert run_sweep(tmp_path, "--methods", "sam,usam", "--problems", "quadratic,rosenbrock",
                     "--stepsizes", "constant", "--iters", "300", "--runs", "2", "--no-figure") == 3
    out = capsys.readouterr().out
    assert "2 runs diverged in 1 of 4 cells: rosenbrock-usam-constant-rho0.05-seed0 (2) (exit status 3)" in out
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["diverged_runs"] == 2 and summary["diverged_cells"] == ["rosenbrock-usam-constant-rho0.05-seed0"]
    assert len(summary["cells"]) == 4
    rows = [line.split(",") for line in (tmp_path / "combined.csv").read_text().splitlines()[1:]]
    diverged = [r for r in rows if r[-1] == "rosenbrock-usam-constant-rho0.05-seed0"]
    assert {r[12] for r in diverged} == {"diverged"} and max(int(r[3]) for r in diverged) < 300


def test_a_failing_cell_is_reported_the_others_kept_and_a_rerun_retries_it(tmp_path, reference,
                                                                           monkeypatch, capsys):
    """A batch that fails loses its cells (the usam batch: 4 cells); the others are kept and a rerun
    computes only the lost ones."""
    real = sweep.toy_batch

    def flaky(cells):
        if any(name == "quadratic-usam-constant-rho0.05-seed1" for name, _ in cells):
            raise FloatingPointError("simulated failure")
        return real(cells)
    monkeypatch.setattr(sweep, "toy_batch", flaky)
    out = tmp_path / "s"
    assert run_sweep(out, *SMALL) == 1
    captured = capsys.readouterr()
    assert "FAILED: FloatingPointError: simulated failure" in captured.out
    assert "4 of 8 cells failed" in captured.err and "rerun the same command" in captured.err
    assert not (out / "combined.csv").exists()
    monkeypatch.setattr(sweep, "toy_batch", real)
    assert run_sweep(out, *SMALL) == 0
    assert "4 already complete, 4 to run" in capsys.readouterr().out
    assert (out / "combined.csv").read_bytes() == (reference / "combined.csv").read_bytes()


def test_a_second_sweep_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    with open(out / ".sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_sweep(out, *SMALL) == 2
    assert "another sweep is writing to" in capsys.readouterr().err
