"""experiments.sweep --backend ray: same cells, same resume, same combined CSV bytes as the local backend.

The Ray tests start a local Ray instance with 2 CPUs (a few seconds); they are skipped when Ray, the
optional extra `cluster`, is not installed.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import sweep

REPO = Path(__file__).resolve().parent.parent
GRID = ["--methods", "sam,usam", "--stepsizes", "constant,diminishing", "--problems", "quadratic,rosenbrock",
        "--seeds", "0-1", "--iters", "300", "--runs", "2", "--no-figure"]


def _ray_importable() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _ray_importable(), reason="Ray is not installed "
                               "(optional extra: pip install -e '.[cluster]')")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert sweep.main([*GRID, "--out", str(out)]) == 3        # USAM diverges on Rosenbrock
    return out


@needs_ray
@pytest.mark.slow
def test_ray_backend_matches_the_local_backend_byte_for_byte(tmp_path, local, capsys):
    out = tmp_path / "ray"
    assert sweep.main([*GRID, "--backend", "ray", "--jobs", "2", "--out", str(out)]) == 3
    assert "ray backend" in capsys.readouterr().out
    assert (out / "combined.csv").read_bytes() == (local / "combined.csv").read_bytes()
    assert (out / "sweep.json").read_bytes() == (local / "sweep.json").read_bytes()


@needs_ray
@pytest.mark.slow
def test_ray_resumes_an_interrupted_grid_without_duplicate_rows(tmp_path, local, capsys):
    """A grid left half done (complete cells, a cell killed between its two files, a half-written
    temporary file) is finished by Ray tasks; the combined CSV equals the local one."""
    out = tmp_path / "ray"
    names = sorted(p.name for p in (local / "cells").iterdir())
    for name in names[::2]:
        shutil.copytree(local / "cells" / name, out / "cells" / name)
    killed = out / "cells" / names[0]
    (killed / "summary.json").unlink()
    (killed / ".summary.json.x1y2z3.tmp").write_text("{")
    capsys.readouterr()
    assert sweep.main([*GRID, "--backend", "ray", "--jobs", "2", "--out", str(out)]) == 3
    text = capsys.readouterr().out
    assert f"{len(names)} cells, {len(names) // 2 - 1} already complete, {len(names) // 2 + 1} to run" in text
    rows = (out / "combined.csv").read_text().splitlines()
    assert len(rows) == len(set(rows))
    assert (out / "combined.csv").read_bytes() == (local / "combined.csv").read_bytes()
    assert not list(killed.glob(".*.tmp"))


def test_without_ray_the_flag_fails_with_one_line(tmp_path):
    """A `ray` that cannot be imported (as when the extra is not installed): one line, exit 2."""
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "--backend", "ray", "--iters", "10",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": f"{fake}:{REPO}"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "sweep: error: --backend ray needs Ray, which is not installed: pip install -e \".[cluster]\" "
        "(or pip install \"ray>=2.9\")"]
    assert not out.exists()



def _die_once(marker: str, value):
    """A task whose first attempt kills its worker process (as kill -9 or an OOM kill would)."""
    import os
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return value


@needs_ray
@pytest.mark.slow
def test_a_task_whose_worker_dies_is_retried_once_and_reported_once(tmp_path):
    from ray import cloudpickle

    from experiments import backends
    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # the workers cannot import tests/
    ray = backends.connect_ray(None, 2)
    tasks = [backends.Task("dies", _die_once, (str(tmp_path / "marker"), 42)),
             backends.Task("fine", _die_once, (str(tmp_path), 7))]
    results = sorted(backends.run_ray(tasks, ray))
    assert results == [("dies", True, 42), ("fine", True, 7)]


def test_unreachable_address_fails_at_once_with_one_line(tmp_path):
    """A port nobody listens on: refused in well under the minutes ray.init would retry."""
    import socket
    with socket.socket() as s:                     # bind, never listen: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "experiments.sweep", *GRID, "--backend", "ray",
                               "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "x")],
                              capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in lines[0]
    assert not (tmp_path / "x").exists()


STAND_IN = '''
import json, os
def trainer(cfg):
    print("trained", cfg.seed, "in", os.getpid())
    with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
        json.dump({"status": "ok"}, fh)
    with open(os.path.join(cfg.out, "metrics.csv"), "w") as fh:
        fh.write(f"epoch,lr,test_acc\\n0,{cfg.lr},0.5\\n")
    return 0
'''
SWEEP_WITH_STAND_IN = '''
import sys
from experiments import sweep
from standin import trainer
sweep.train_cell = trainer
sweep._has_torch = lambda: True
sys.exit(sweep.main(sys.argv[1:]))
'''


@needs_ray
@pytest.mark.slow
def test_cifar_cells_train_in_children_of_ray_workers(tmp_path):
    """A CIFAR sweep on Ray with a stand-in trainer: each cell's config reaches a Ray task, which
    trains it in a child process (output in the cell's log.txt) and returns its summary."""
    (tmp_path / "standin.py").write_text(STAND_IN)
    (tmp_path / "main.py").write_text(SWEEP_WITH_STAND_IN)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "main.py", "--kind", "cifar", "--seeds", "0-1", "--lrs", "0.1,0.2",
                           "--epochs", "1", "--backend", "ray", "--jobs", "2", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert proc.returncode == 0, proc.stderr
    assert "4 cells done" in proc.stdout
    logs = {p.parent.name: p.read_text() for p in (out / "cells").glob("*/log.txt")}
    assert len(logs) == 4 and all(f"trained {name[-1]} in" in text for name, text in logs.items())
    assert (out / "combined.csv").read_text().count("\n") == 1 + 4
