"""Result files and output folders: strict JSON, permissions, damaged traces, unusable --out, and the
run_sde CLI's bad input and divergence."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import call, one_line

from convergence.errors import InputError
from convergence.trace import COLUMNS, atomic_write, read_csv, write_json
from convergence.spec import check_memory
from experiments.common import check_seed, check_writable

REPO = Path(__file__).resolve().parent.parent


def cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO)


def test_json_is_strict_with_null_for_non_finite_numbers(tmp_path):
    write_json(tmp_path / "s.json", {"loss": float("nan"), "xs": np.array([1.0, np.inf]), "n": np.int64(3),
                                     "ok": np.bool_(True), "pair": (1, np.float32(2.5))})

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    got = json.loads((tmp_path / "s.json").read_text(), parse_constant=refuse)
    assert got == {"loss": None, "xs": [1.0, None], "n": 3, "ok": True, "pair": [1, 2.5]}


def test_atomic_write_honours_the_umask(tmp_path):
    """Not mkstemp's 0600: results on a shared cluster stay readable as the user's umask says."""
    umask = os.umask(0)
    os.umask(umask)
    atomic_write(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask != 0o600


def _trace(tmp_path, rows):
    d = tmp_path / "run"
    d.mkdir()
    (d / "trace.csv").write_text(",".join(COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return d


GOOD = "0,sam,quadratic,0,1.0,0.5,2.0,1.0,0.1,0.05,0.01,0.02,converged,0.0"


@pytest.mark.parametrize("bad,message", [("0,sam,quadratic,1,1.0", "line 3 has 5 cells, expected 14"),
                                         (GOOD.replace(",2.0,", ",two,"), "not a number")])
def test_damaged_trace_is_named_with_its_line(tmp_path, bad, message):
    d = _trace(tmp_path, [GOOD, bad])
    with pytest.raises(ValueError, match=message):
        read_csv(d / "trace.csv")
    line = one_line(cli("experiments.compare", str(d), "--out", str(tmp_path / "cmp")).stderr)
    assert message in line and "trace.csv" in line
    assert not list(tmp_path.glob("cmp*"))


def test_compare_refuses_an_unwritable_out_before_plotting(tmp_path):
    d = _trace(tmp_path, [GOOD])
    proc = cli("experiments.compare", str(d), "--out", "/etc/hostname/fig")
    assert proc.returncode == 2 and "cannot write to --out" in one_line(proc.stderr)


def test_out_with_a_name_too_long_is_refused(tmp_path):
    with pytest.raises(InputError, match="File name too long"):
        check_writable(tmp_path / ("n" * 300) / "run")
    assert list(tmp_path.iterdir()) == []


def test_seed_and_memory_bounds():
    assert check_seed(2 ** 63 - 1) == 2 ** 63 - 1
    for bad in (-1, 2 ** 63, 1.5):
        with pytest.raises(InputError, match=r"--seed must be an integer in \[0, 2\^63\)"):
            check_seed(bad)
    check_memory(8 * 10 ** 6, "--runs x --dim")
    with pytest.raises(InputError, match="--runs x --dim needs about 745 GiB, more than the .* GiB available"):
        check_memory(8 * 10 ** 11, "--runs x --dim")


@pytest.mark.parametrize("flags,message", [
    (["--time", "0.001", "--eta", "0.01"], "shorter than one step"),
    (["--paths", "100000000000"], "--paths x dimension"),
    (["--seed", "100000000000000000000000"], "--seed must be an integer"),
])
def test_run_sde_bad_input(tmp_path, capsys, flags, message):
    assert call("run_sde", [*flags, "--out", str(tmp_path / "o")]) == 2
    assert message in one_line(capsys.readouterr().err) and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_run_sde_divergence_is_reported_with_exit_3(tmp_path):
    proc = cli("experiments.run_sde", "--eta", "5", "--time", "5000", "--out", str(tmp_path / "o"))
    assert proc.returncode == 3 and proc.stderr == ""         # no numpy overflow warnings either
    assert "diverged: 3 of 3 discrete paths, 3 of 3 SDE paths" in proc.stdout
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["diverged_paths"] == {"discrete": 3, "sde": 3} and summary["final_loss_sde"] is None


def test_a_trace_written_before_path_length_still_reads(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "trace.csv").write_text(",".join(COLUMNS[:-1]) + "\n" + GOOD.rsplit(",", 1)[0] + "\n")
    cols = read_csv(d / "trace.csv")
    assert cols["grad_norm"][0] == 2.0 and np.isnan(cols["path_length"][0])
