"""experiments.sweep: the grid, its files, the combined CSV, resuming, and CIFAR cell configs."""
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


def test_cifar_cells_and_their_configs(tmp_path):
    """Each cell's TrainConfig carries its axes and the sweep's settings (no argv in between); the
    user's --cifar-args reach every cell; --amp is the sweep's."""
    cells = cifar_cells("--models", "resnet18", "--methods", "sam", "--stepsizes",
                        "constant,diminish1,diminish2,diminish3", "--lrs", "0.1,0.01", "--seeds", "0-2",
                        "--epochs", "200", "--amp", "--cifar-args", "--limit-train 512 --beta 0.7",
                        "--out", str(tmp_path))
    assert len(cells) == 4 * 2 * 3
    cell = next(c for c in cells if c["stepsize"] == "diminish2" and c["lr"] == "0.01" and c["seed"] == 1)
    assert cell.name == "cifar10-resnet18-sam-diminish2-lr0.01-rho0.05-seed1"
    with pytest.raises(InputError, match="--beta"):          # sam has no beta: the rule refuses it
        sweep.cifar_config(cell, tmp_path / "cells" / cell.name, local=False)
    cells = cifar_cells("--methods", "fsam", "--stepsizes", "diminish2", "--lrs", "0.01", "--rhos", "0.1",
                        "--seeds", "1", "--epochs", "20", "--amp", "--weight-decay", "5e-4",
                        "--cifar-args", "--limit-train 512 --beta 0.7", "--out", str(tmp_path))
    cfg = sweep.cifar_config(cells[0], tmp_path / "cells" / cells[0].name, local=False)
    assert (cfg.dataset, cfg.model, cfg.method, cfg.stepsize, cfg.lr, cfg.rho, cfg.seed, cfg.epochs) == \
        ("cifar10", "resnet18", "fsam", "diminish2", 0.01, 0.1, 1, 20)
    assert (cfg.batch_size, cfg.weight_decay, cfg.momentum, cfg.amp, cfg.limit_train) == (128, 5e-4, 0.0, True, 512)
    assert float(cfg.method_options["beta"]) == 0.7 and cfg.resume and not cfg.progress
    assert cfg.out == str(tmp_path / "cells" / "cifar10-resnet18-fsam-diminish2-lr0.01-rho0.1-seed1")
    no_amp = cifar_cells("--cifar-args=--no-amp", "--out", str(tmp_path))[0]
    assert sweep.cifar_config(no_amp, tmp_path / "c", local=False).amp is False


def test_cifar_dry_run_lists_cells_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep.main(["--kind", "cifar", "--methods", "sam,usam", "--stepsizes", "diminish3", "--seeds", "0",
                       "--epochs", "2", "--dry-run", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == ["cifar10-resnet18-sam-diminish3-lr0.1-rho0.05-seed0: todo",
                                                    "cifar10-resnet18-usam-diminish3-lr0.1-rho0.05-seed0: todo"]
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
    ("--limit-train -5", "--limit-train must be a finite positive integer, got -5"),
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
    sweep.cifar_config(cell, tmp_path / cell.name, local=False)          # a Ray cluster's GPUs
    with pytest.raises(InputError, match="CUDA is not available here"):
        sweep.cifar_config(cell, tmp_path / cell.name, local=True)


def gpu_and_summary(cfg):
    """A stand-in trainer: records the GPU it sees, prints, writes summary.json (status from cfg.seed)."""
    import os
    print("trained", cfg.model)
    status = {0: "ok", 1: "diverged"}.get(cfg.seed)
    if status is None:
        raise SystemExit(1)
    if cfg.seed == 0 or cfg.stepsize != "diminish1":
        summary = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "status": "ok"}
    else:
        summary = {"status": "diverged"}
    if cfg.lr != 0.5:                                # lr 0.5: finishes without a summary
        with open(os.path.join(cfg.out, "summary.json"), "w") as fh:
            json.dump(summary, fh)
        with open(os.path.join(cfg.out, "metrics.csv"), "w") as fh:
            fh.write("epoch,lr,test_acc\n")
            for e in range(cfg.epochs):
                fh.write(f"{e},{cfg.lr},{0.5 + 0.01 * e + cfg.seed / 1000}\n")
    return 3 if summary["status"] == "diverged" else 0


def test_cifar_cell_trains_in_a_child_on_its_gpu_and_reads_its_summary(tmp_path, monkeypatch):
    """The CIFAR worker with a stand-in trainer: a child process that sees the slot's GPU, its output
    in log.txt, summary.json as the marker; a failed or summary-less child fails the cell."""
    from convergence.deepnet.config import TrainConfig
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SAMCONV_SLOT", "3")
    cell = tmp_path / "cell"
    result = sweep.cifar_cell(gpu_and_summary, TrainConfig(out=str(cell), epochs=1), gpus=2)
    assert result["summary"] == {"gpu": "1", "status": "ok"}                # slot 3 of 2 GPUs
    assert "trained resnet18" in (cell / "log.txt").read_text()
    with pytest.raises(RuntimeError, match="exited with status 1"):
        sweep.cifar_cell(gpu_and_summary, TrainConfig(out=str(tmp_path / "bad"), seed=2), gpus=0)
    with pytest.raises(RuntimeError, match="without a valid"):
        sweep.cifar_cell(gpu_and_summary, TrainConfig(out=str(tmp_path / "none"), lr=0.5), gpus=0)


def test_cifar_sweep_end_to_end_with_a_stand_in_trainer(tmp_path, monkeypatch, capsys):
    """The CIFAR path of the sweep (configs, child processes, markers, resume, combined table) with the
    trainer replaced by a stand-in that writes metrics.csv and summary.json."""
    monkeypatch.setattr(sweep, "train_cell", gpu_and_summary)
    monkeypatch.setattr(sweep, "_has_torch", lambda: True)
    flags = ["--kind", "cifar", "--methods", "sam", "--stepsizes", "constant,diminish1", "--seeds", "0-1",
             "--epochs", "3", "--out", str(tmp_path)]
    assert sweep.main(flags) == 3                  # one cell diverged
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


def test_local_cifar_cells_need_torch(tmp_path, monkeypatch, capsys):
    """Without torch a local CIFAR sweep refuses before writing (its dry run and a Ray sweep do not)."""
    monkeypatch.setattr(sweep, "_has_torch", lambda: False)
    assert sweep.main(["--kind", "cifar", "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    assert "CIFAR cells run here need torch" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert sweep.main(["--kind", "cifar", "--epochs", "1", "--dry-run", "--out", str(tmp_path / "o")]) == 0


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
