"""benchmarks/gpu_check.sh, the prepared device check, in its tiny CPU mode (what CI runs): every stage
runs and its figures land under one folder; a non-empty folder is refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")

from convergence.deepnet.data import default_cifar10_path  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow
def test_gpu_check_tiny_mode(tmp_path):
    out = tmp_path / "check"
    proc = _run("--tiny", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    step = json.loads((out / "step.json").read_text())
    assert step["same_parameters_ours_vs_loop"] is True
    assert {"sgd", "sam_ours", "sam_loop"} <= step["images_per_s"].keys() and step["sam_over_sgd"] > 0
    summary = (out / "summary.txt").read_text()
    assert "SAM/SGD step time" in summary and "ours/loop full step" in summary and "host syncs" in summary
    if default_cifar10_path().is_file():
        rows = (out / "cifar" / "metrics.csv").read_text().splitlines()
        assert len(rows) == 2 and "test accuracy" in summary and "SAM epoch" in summary
    else:
        assert "run_cifar skipped: no CIFAR-10 archive" in (out / "cifar.txt").read_text()
    assert "not comparable in tiny mode" in summary


def test_gpu_check_refuses_a_non_empty_folder_and_unknown_flags(tmp_path):
    (tmp_path / "old.txt").write_text("keep")
    proc = _run("--tiny", tmp_path)
    assert proc.returncode == 2 and "is not empty" in proc.stderr and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]
    proc = _run("--fast", tmp_path / "new")
    assert proc.returncode == 2 and "unknown flag --fast" in proc.stderr and not (tmp_path / "new").exists()
