"""experiments.sweep: the grid, its files, the combined CSV, resuming, and CIFAR cell commands."""
import csv
import importlib.util
import json
import sys
import subprocess
from pathlib import Path

import pytest

from convergence.errors import InputError
from convergence.trace import COLUMNS, read_csv
from experiments import run_toy, sweep

REPO = Path(__file__).resolve().parents[1]

SMALL = ["--methods", "sam,usam", "--stepsizes", "constant,diminishing", "--problems", "quadratic",
         "--seeds", "0-1", "--iters", "300", "--runs", "2"]


def run_sweep(out, *flags, figure=False):
    return sweep.main([*flags, "--out", str(out), *([] if figure else ["--no-figure"])])


def combined(out):
    with open(out / "combined.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_grid_writes_cells_combined_csv_figure_and_summary(tmp_path, capsys):
    assert run_sweep(tmp_path, *SMALL, figure=True) == 0
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert len(cells) == 8 and "quadratic-sam-diminishing-rho0.05-seed1" in cells
    for name in cells:
        assert sorted(p.name for p in (tmp_path / "cells" / name).iterdir()) == ["summary.json", "trace.csv"]
    assert {p.name for p in tmp_path.iterdir()} >= {"combined.csv", "grid.png", "grid.pdf", "sweep.json"}
    header = (tmp_path / "combined.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS + ["stepsize", "lr0", "rho0", "seed", "cell"]
    rows = combined(tmp_path)
    assert len(rows) == sum(len(read_csv(tmp_path / "cells" / c / "trace.csv")["run"]) for c in cells)
    # sorted by cell key (problem, method, stepsize, lr, rho, seed), then run, then iteration
    keys = [(r["problem"], r["method"], r["stepsize"], r["lr0"], float(r["rho0"]), int(r["seed"]),
             int(r["run"]), int(r["iter"])) for r in rows]
    assert keys == sorted(keys)
    assert {r["cell"] for r in rows} == set(cells)
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert len(summary["cells"]) == 8 and summary["diverged_runs"] == 0
    assert sum(summary["status_counts"].values()) == 8 * 2
    cell = json.loads((tmp_path / "cells" / cells[0] / "summary.json").read_text())
    assert cell["sweep_cell"]["iters"] == 300 and "git_commit" in cell["provenance"]
    assert "8 cells done" in capsys.readouterr().out


def test_cell_trace_is_run_toys_trace(tmp_path):
    """A cell is exactly a run_toy run: same trace.csv bytes for the same flags."""
    run_sweep(tmp_path / "s", "--methods", "sam", "--problems", "sinpl", "--dim", "3", "--seeds", "7",
              "--iters", "400", "--runs", "3")
    run_toy.main(["--no-progress", "--method", "sam", "--problem", "sinpl", "--dim", "3", "--seed", "7",
                  "--iters", "400", "--runs", "3", "--out", str(tmp_path / "t")])
    assert ((tmp_path / "s/cells/sinpl-sam-diminishing-rho0.05-seed7/trace.csv").read_bytes()
            == (tmp_path / "t/trace.csv").read_bytes())


def test_parallel_jobs_and_resume_give_identical_bytes(tmp_path, capsys):
    assert run_sweep(tmp_path / "serial", *SMALL) == 0
    assert run_sweep(tmp_path / "pool", *SMALL, "--jobs", "2") == 0
    reference = (tmp_path / "serial/combined.csv").read_bytes()
    assert (tmp_path / "pool/combined.csv").read_bytes() == reference
    assert (tmp_path / "pool/sweep.json").read_bytes() == (tmp_path / "serial/sweep.json").read_bytes()
    marker = tmp_path / "serial/cells/quadratic-sam-constant-rho0.05-seed0/summary.json"
    before = marker.stat().st_mtime_ns
    capsys.readouterr()
    assert run_sweep(tmp_path / "serial", *SMALL) == 0
    assert "8 already complete, 0 to run" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == before
    assert (tmp_path / "serial/combined.csv").read_bytes() == reference


def test_growing_the_grid_reuses_the_cells_already_done(tmp_path, capsys):
    flags = ["--methods", "sam", "--problems", "quadratic", "--iters", "200", "--runs", "2"]
    run_sweep(tmp_path, *flags, "--seeds", "0-1")
    capsys.readouterr()
    run_sweep(tmp_path, *flags, "--seeds", "0-3", "--rhos", "0.05,0.1")
    assert "8 cells, 2 already complete, 6 to run" in capsys.readouterr().out
    assert {r["rho0"] for r in combined(tmp_path)} == {"0.05", "0.1"}


def test_expression_stepsizes_with_commas(tmp_path):
    expr = "min(0.5,1/(k+1))"
    assert run_sweep(tmp_path, "--methods", "sam", "--stepsizes", f"constant,{expr}", "--seeds", "0",
                     "--iters", "200", "--runs", "1") == 0
    rows = combined(tmp_path)
    assert {r["stepsize"] for r in rows} == {"constant", expr}      # quoted in the CSV
    names = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert any(n.startswith("quadratic-sam-min_0.5_1__k_1__-rho0.05-seed0-") for n in names)


@pytest.mark.parametrize("text,seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,3,7-9", [0, 3, 7, 8, 9]),
                                        ("5", [5]), ("2,1,2", [1, 2])])
def test_parse_seeds(text, seeds):
    assert sweep.parse_seeds(text) == seeds


@pytest.mark.parametrize("text,message", [("4-0", "did you mean 0-4?"), ("a", "'a' is not a seed"),
                                          ("-1", "'-1' is not a seed"), ("0,,1", "empty entry")])
def test_bad_seeds(text, message):
    with pytest.raises(InputError, match=message.replace("?", r"\?")):
        sweep.parse_seeds(text)


def test_split_list_keeps_commas_inside_parentheses():
    assert sweep.split_list("constant, max(1,k) ,diminishing,constant", "--x") == [
        "constant", "max(1,k)", "diminishing"]


def cifar_cells(*flags):
    args = sweep.build_parser().parse_args(["--kind", "cifar", *flags])
    return sweep.plan(args)


def test_cifar_cells_and_their_commands(tmp_path):
    cells = cifar_cells("--models", "resnet18", "--methods", "sam", "--stepsizes",
                        "constant,diminish1,diminish2,diminish3", "--lrs", "0.1,0.01", "--seeds", "0-2",
                        "--epochs", "200", "--amp", "--out", str(tmp_path))
    assert len(cells) == 4 * 2 * 3
    cell = next(c for c in cells if c["stepsize"] == "diminish2" and c["lr"] == "0.01" and c["seed"] == 1)
    assert cell.name == "cifar10-resnet18-sam-diminish2-lr0.01-rho0.05-seed1"
    cmd = sweep.cifar_command(cell, tmp_path / "cells" / cell.name)
    assert cmd[:3] == [sys.executable, "-m", "experiments.run_cifar"]
    assert "--amp" in cmd and "--resume" in cmd and "--no-progress" in cmd
    args = [a for a in cmd[3:] if a not in ("--amp", "--resume", "--no-progress")]
    flags = dict(zip(args[::2], args[1::2]))
    assert flags == {"--dataset": "cifar10", "--model": "resnet18", "--method": "sam", "--rho": "0.05",
                     "--stepsize": "diminish2",
                     "--lr": "0.01", "--epochs": "200", "--batch-size": "128", "--weight-decay": "0.001",
                     "--momentum": "0.0", "--seed": "1", "--out": str(tmp_path / "cells" / cell.name)}


def test_cifar_dry_run_lists_commands_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep.main(["--kind", "cifar", "--methods", "sam,usam", "--stepsizes", "diminish3", "--seeds", "0",
                       "--epochs", "2", "--dry-run", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("-m experiments.run_cifar" in line and "--stepsize diminish3" in line
                                   for line in lines)
    assert lines[0].startswith("cifar10-resnet18-sam-diminish3-lr0.1-rho0.05-seed0: todo: ")
    assert not out.exists()


@pytest.mark.parametrize("flags,message", [
    (["--stepsizes", "diminishing"], "unknown CIFAR stepsize 'diminishing' (did you mean 'diminish3'?)"),
    (["--problems", "quadratic"], "--problems applies to --kind toy"),
    (["--epochs", "0"], "--epochs must be a finite positive integer"),
    (["--iters", "100"], "--iters applies to --kind toy"),
    (["--rhos", "theory"], "--rhos entry 'theory' must be a positive number"),
    (["--models", "resnet81"], "unknown model 'resnet81' (did you mean 'resnet18'?)"),
    (["--datasets", "cifar1000"], "unknown dataset 'cifar1000'"),
    (["--cifar-args", "--seed 3"], "--cifar-args may not set --seed"),
])
def test_bad_cifar_input(tmp_path, flags, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        cifar_cells(*flags, "--out", str(tmp_path))


NO_TORCH = importlib.util.find_spec("torch") is None
TORCH_HINT = "the deep-net module needs torch: pip install -e \".[deepnet]\""


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
@pytest.mark.parametrize("cifar_args,message", [
    ("--bogus-flag 3", "unrecognized arguments: --bogus-flag 3"),
    pytest.param("--limit-train -5", "--limit-train must be a finite positive integer, got -5",
                 marks=pytest.mark.skipif(NO_TORCH, reason=TORCH_HINT)),
])
def test_bad_cifar_args_are_refused_before_anything_is_written(tmp_path, capsys, cifar_args, message, dry_run):
    out = tmp_path / "out"
    assert sweep.main(["--kind", "cifar", "--epochs", "1", "--cifar-args", cifar_args, "--out", str(out),
                       *dry_run]) == 2
    err = capsys.readouterr().err
    assert message in err and "(cell cifar10-resnet18-sam-constant-lr0.1-rho0.05-seed0)" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.skipif(NO_TORCH, reason=TORCH_HINT)
def test_cifar_cells_check_this_machines_gpus_only_when_they_run_here(tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cell = cifar_cells("--cifar-args", "--device cuda", "--out", str(tmp_path))[0]
    sweep.check_cifar_cell(cell, tmp_path / cell.name, local=False)          # a Ray cluster's GPUs
    with pytest.raises(InputError, match="CUDA is not available here"):
        sweep.check_cifar_cell(cell, tmp_path / cell.name, local=True)


def test_cifar_cell_runs_its_command_and_reads_its_summary(tmp_path, monkeypatch):
    """The CIFAR worker with a stand-in for run_cifar: log, GPU slot, summary.json as the marker."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SAMCONV_SLOT", "3")
    script = ("import json, os, sys; out = sys.argv[1]; "
              "json.dump({'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'), 'status_counts': {'converged': 1}}, "
              "open(os.path.join(out, 'summary.json'), 'w')); print('trained')")
    cell = tmp_path / "cell"
    result = sweep.cifar_cell([sys.executable, "-c", script, str(cell)], str(cell), gpus=2)
    assert result["summary"] == {"gpu": "1", "status_counts": {"converged": 1}}     # slot 3 of 2 GPUs
    assert "trained" in (cell / "log.txt").read_text()
    with pytest.raises(RuntimeError, match="exited with status 1"):
        sweep.cifar_cell([sys.executable, "-c", "raise SystemExit(1)"], str(tmp_path / "bad"), gpus=0)
    with pytest.raises(RuntimeError, match="without a valid"):
        sweep.cifar_cell([sys.executable, "-c", "pass"], str(tmp_path / "none"), gpus=0)


FAKE_CIFAR = """
import json, os, sys
args = sys.argv[1:]
flags = dict(zip(args[::2], args[1::2]))
out = args[args.index('--out') + 1]
with open(os.path.join(out, 'metrics.csv'), 'w') as fh:
    fh.write('epoch,lr,test_acc\\n')
    for e in range(int(flags['--epochs'])):
        fh.write(f"{e},{flags['--lr']},{0.5 + 0.01 * e + int(flags['--seed']) / 1000}\\n")
json.dump({'status': 'diverged' if flags['--stepsize'] == 'diminish1' and flags['--seed'] == '1' else 'ok'},
          open(os.path.join(out, 'summary.json'), 'w'))
sys.exit(3 if flags['--stepsize'] == 'diminish1' and flags['--seed'] == '1' else 0)
"""


def test_cifar_sweep_end_to_end_with_a_stand_in_trainer(tmp_path, monkeypatch, capsys):
    """The CIFAR path of the sweep (cells, markers, resume, combined table) with run_cifar replaced
    by a stand-in that takes the same flags and writes trace.csv and summary.json."""
    real = sweep.cifar_command
    monkeypatch.setattr(sweep, "cifar_command",
                        lambda cell, d: [sys.executable, "-c", FAKE_CIFAR, *real(cell, d)[3:]])
    flags = ["--kind", "cifar", "--methods", "sam", "--stepsizes", "constant,diminish1", "--seeds", "0-1",
             "--epochs", "3", "--out", str(tmp_path)]
    assert sweep.main(flags) == 3                  # one cell diverged (run_cifar's exit status 3)
    assert "1 runs diverged in 1 of 4 cells: cifar10-resnet18-sam-diminish1-lr0.1-rho0.05-seed1" in \
        capsys.readouterr().out
    rows = (tmp_path / "combined.csv").read_text().splitlines()
    assert rows[0] == "epoch,lr,test_acc,dataset,model,method,stepsize,lr0,rho0,seed,cell"
    assert len(rows) == 1 + 4 * 3
    assert rows[1].endswith(",cifar10,resnet18,sam,constant,0.1,0.05,0,"
                            "cifar10-resnet18-sam-constant-lr0.1-rho0.05-seed0")
    cell = tmp_path / "cells" / "cifar10-resnet18-sam-diminish1-lr0.1-rho0.05-seed1"
    assert sorted(p.name for p in cell.iterdir()) == ["cell.json", "log.txt", "metrics.csv", "summary.json"]
    assert sweep.main(flags) == 3
    assert "4 cells, 4 already complete, 0 to run" in capsys.readouterr().out
    assert sweep.main([*flags[:-4], "--epochs", "5", "--out", str(tmp_path)]) == 2
    assert "computed with epochs=3 (now 5)" in capsys.readouterr().err


def test_grid_exponents_reach_only_the_cells_whose_schedules_take_them(tmp_path):
    """--decay/--rho-decay set the diminishing cells; a constant cell (which run_toy alone would refuse
    them for) runs as without them."""
    flags = ["--methods", "sam", "--stepsizes", "constant,diminishing", "--problems", "quadratic",
             "--seeds", "0", "--iters", "50", "--runs", "1", "--decay", "0.8", "--rho-decay", "0.7"]
    assert run_sweep(tmp_path, *flags) == 0
    config = {step: json.loads((tmp_path / "cells" / f"quadratic-sam-{step}-rho0.05-seed0" / "summary.json")
                               .read_text())["config"] for step in ("constant", "diminishing")}
    assert (config["diminishing"]["decay"], config["diminishing"]["rho_decay"]) == (0.8, 0.7)
    assert config["constant"]["rho_schedule"] == "constant"


def test_cifar_model_names_are_checked_without_torch(tmp_path):
    """Where torch is missing (a Ray head node, the no-extras install) a misspelt model is still refused
    at planning time: before, --models resnet81 --dry-run was accepted and failed on the workers."""
    code = ("import sys; sys.modules['torch'] = None; from experiments import sweep; "
            f"sys.exit(sweep.main(['--kind', 'cifar', '--models', 'resnet81', '--dry-run', '--out', {str(tmp_path / 'o')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "unknown model 'resnet81' (did you mean 'resnet18'?)" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "o").exists()
