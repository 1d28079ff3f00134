"""The README is a contract: its commands and Python snippets run as written.

Each shell command of the README's code blocks runs, in README order, in a temporary copy of the
repository (so results/ and figures/gallery/ of the checkout stay untouched), and must exit as the
README says (0, or the status it documents); the files a command reports in its "wrote ..." line must
exist. The Python blocks run as scripts; the block that the README introduces as `my_problem.py` is
written to that file instead. Commands that need what a test machine lacks (torch and CIFAR, a Ray or
SLURM cluster) or that other tests already run at a size CI affords are skipped, each with its reason.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

SKIP = [  # (pattern in the command, why it does not run here)
    (r"^pip install|^pytest", "installs and the test suite itself: what CI runs"),
    (r"run_cifar|cifar_table|--kind cifar|torchrun", "needs torch and CIFAR: tests/test_deepnet_*.py run it small"),
    (r"^ray |^srun|^scontrol|^sleep|^set |^for |^done|^\w+=|--backend ray|\.\.\.",
     "needs a Ray or SLURM cluster: tests/test_ray.py runs a local Ray"),
    (r"experiments\.reproduce", "tests/test_reproduce.py, test_sde.py and test_diagonal_net.py run every claim at --quick"),
    (r"^python benchmarks/|gpu_check", "a benchmark, not a test: it prints ratios measured in its own run"),
]
EXIT = {"experiments.sweep --methods sam,usam,fsam": 3}   # the README says it exits 3 on purpose
TIMEOUT = 240


def _blocks(lang: str):
    """(line number, text) of each ```lang block, in README order."""
    for m in re.finditer(rf"```{lang}\n(.*?)```", README, re.S):
        yield README[:m.start()].count("\n") + 1, m.group(1)


def _commands():
    """(id, command) of every shell command in the README's bash blocks, continuation lines joined
    and `a && b` split; comments dropped."""
    out = []
    for line, text in _blocks("bash"):
        for n, raw in enumerate(text.replace("\\\n", " ").splitlines()):
            raw = re.sub(r"\s+#.*$", "", raw).strip()
            if raw and not raw.startswith("#"):
                out += [(f"L{line}.{n}-{part.split()[2] if len(part.split()) > 2 else part.split()[0]}", part.strip())
                        for part in raw.split(" && ")]
    return out


def _skip_reason(command: str) -> str | None:
    if re.search(r"--(backend|engine) jax", command) and importlib.util.find_spec("jax") is None:
        return 'needs JAX (pip install -e ".[jax]"): tests/test_jax_backend.py runs it where JAX is installed'
    return next((why for pattern, why in SKIP if re.search(pattern, command)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the repository's tracked and untracked-but-not-ignored files."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout: the README test copies the tracked files")
    work = tmp_path_factory.mktemp("readme")
    for name in files:
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    for _, code in _blocks("python"):
        if _file_of(code):
            (work / _file_of(code)).write_text(code)
    return work


def _file_of(code: str) -> str | None:
    """The file name a Python block is introduced as ("For example, `my_problem.py`:"), else None."""
    before = [line for line in README[:README.index(code)].splitlines() if line.strip()][-2]   # above the fence
    found = re.search(r"`([\w/]+\.py)`:$", before)
    return found.group(1) if found else None


def _env():
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("PYTHONSTARTUP", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("name,command", _commands(), ids=[c[0] for c in _commands()])
def test_readme_command_runs_as_written(workdir, name, command):
    reason = _skip_reason(command)
    if reason:
        pytest.skip(reason)
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    expected = next((code for key, code in EXIT.items() if key in command), 0)
    assert proc.returncode == expected, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for wrote in re.findall(r"^wrote (.*)$", proc.stdout, re.M):
        for path in wrote.split(", "):
            assert (workdir / path.strip()).exists(), f"{command} says it wrote {path}"


def _python_blocks():
    return [(f"L{line}", text) for line, text in _blocks("python")]


@pytest.mark.slow
@pytest.mark.parametrize("name,code", _python_blocks(), ids=[b[0] for b in _python_blocks()])
def test_readme_python_runs_as_written(workdir, name, code):
    if _file_of(code):
        assert (workdir / _file_of(code)).read_text() == code      # the fixture wrote it for the commands
        return
    if "SAMFamily" in code:
        pytest.skip("a fragment of a torch training loop (model, closure: yours); tests/test_deepnet_dropin.py runs it")
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]


PRE_REDESIGN = "eb32a5557301c28e947f5e8947c613e7493102dc"     # main before the run-spec redesign (issue 15)
ADDED_SINCE = "path_length"                                  # the column issue 16 added after it


@pytest.fixture(scope="module")
def pre_redesign(tmp_path_factory):
    """The source tree of main before the run-spec redesign, from this checkout's git history."""
    proc = subprocess.run(["git", "archive", "--format=tar", PRE_REDESIGN], cwd=REPO, capture_output=True)
    if proc.returncode:
        pytest.skip(f"needs commit {PRE_REDESIGN[:7]} in the git history (a full clone of the repository)")
    tree = tmp_path_factory.mktemp("pre-redesign")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=proc.stdout, check=True)
    return tree


def _without_added_column(text: str) -> list[str]:
    """The lines of a CSV with the column ADDED_SINCE removed (no field of these files holds a comma)."""
    lines = text.splitlines()
    at = lines[0].split(",").index(ADDED_SINCE)
    return [",".join(fields[:at] + fields[at + 1:]) for fields in (line.split(",") for line in lines)]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [r"^python -m experiments\.run_toy --method sam --stepsize diminishing$",
                                     r"experiments\.sweep --methods sam,usam,fsam"], ids=["quickstart", "sweep"])
def test_readme_results_are_those_of_the_code_before_the_redesign(pre_redesign, tmp_path, pattern):
    """The quickstart's trace.csv, and every trace.csv and combined.csv of the sweep example, byte for
    byte as the code before the redesign writes them, but for the path_length column added since.
    The redesign's first versions failed this (norms by np.vecdot, which rounds as BLAS's ddot does;
    the quadratic's f as a row sum, where before it was a BLAS gemv), as would any change of the
    formulas, schedules, seeds or recording grid."""
    command = next(c for _, c in _commands() if re.search(pattern, c))
    argv = [sys.executable] + re.sub(r" --out \S+", "", command).split()[1:]
    runs = {}
    for name, tree in (("before", pre_redesign), ("now", REPO)):
        proc = subprocess.run(argv + ["--out", str(tmp_path / name)], cwd=tree, capture_output=True, text=True,
                              timeout=TIMEOUT, env=_env())
        runs[name] = proc.returncode
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert runs["now"] == runs["before"]
    files = sorted(p.relative_to(tmp_path / "before") for p in (tmp_path / "before").rglob("*.csv"))
    assert files and files == sorted(p.relative_to(tmp_path / "now") for p in (tmp_path / "now").rglob("*.csv"))
    for path in files:
        before, now = ((tmp_path / side / path).read_text() for side in ("before", "now"))
        assert ADDED_SINCE not in before and _without_added_column(now) == before.splitlines(), path
