"""Training loop and run_cifar: bit-identical resume on CPU, files, bad input, per-epoch metrics."""
import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine

from convergence.deepnet.data import Arrays, default_cifar10_path  # noqa: E402
from convergence.deepnet.train import TrainConfig, train  # noqa: E402
from experiments import run_cifar  # noqa: E402

pytestmark = pytest.mark.torch


def _synthetic(n_train=192, n_test=64, seed=0):
    """Images whose mean colour depends on the class, so that a tiny CNN can learn something."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 10
        x = rng.integers(0, 128, (n, 32, 32, 3)) + (y[:, None, None, None] * 12)
        return x.astype(np.uint8), y.astype(np.int64)

    (xt, yt), (xe, ye) = make(n_train), make(n_test)
    return Arrays("cifar10", xt, yt, xe, ye, tuple(f"c{i}" for i in range(10)))


def _cfg(out, **kw):
    base = dict(model="tiny", method="fsam", epochs=3, batch_size=32, lr=0.05, stepsize="diminish3",
                grad_subset=64, eval_batch=16, out=str(out), progress=False, tensorboard=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in csv.DictReader(f)]


@pytest.mark.parametrize("method,options", [("fsam", {}), ("rsam", {})])
def test_resume_is_bit_identical_on_cpu(tmp_path, method, options):
    data = _synthetic()
    whole = train(_cfg(tmp_path / "a", method=method, method_options=options), data)
    train(_cfg(tmp_path / "b", method=method, method_options=options, epochs=1), data)
    resumed = train(_cfg(tmp_path / "b", method=method, method_options=options, resume=True), data)
    assert whole["status"] == resumed["status"] == "ok" and resumed["epochs_done"] == 3
    assert _rows(tmp_path / "a" / "metrics.csv") == _rows(tmp_path / "b" / "metrics.csv")
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optim"]["samconv"]["k"] == b["optim"]["samconv"]["k"] == 3 * (192 // 32)


def test_metrics_columns_and_schedule(tmp_path):
    summary = train(_cfg(tmp_path, method="dnsam", dnsam_size=32, epochs=2, stepsize="diminish1"), _synthetic())
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [float(r["lr"]) for r in rows] == [0.05, 0.025]
    for r in rows:
        for key in ("train_loss", "test_loss", "objective", "grad_norm", "grad_norm_se", "loss_grad_norm",
                    "step_norm", "grad_err"):
            assert np.isfinite(float(r[key])) and float(r[key]) > 0
        assert 0 <= float(r["test_acc"]) <= 1
    assert summary["versions"]["torch"] == torch.__version__
    assert (tmp_path / "summary.json").is_file()


def test_resume_refuses_other_settings(tmp_path):
    from convergence.errors import InputError
    data = _synthetic()
    train(_cfg(tmp_path, epochs=1), data)
    with pytest.raises(InputError, match="rho"):
        train(_cfg(tmp_path, epochs=2, rho=0.1, resume=True), data)


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet19"], "did you mean 'resnet18'"),
    (["--method", "samm"], "did you mean 'sam'"),
    (["--stepsize", "diminish4"], "unknown stepsize"),
    (["--lr", "-1"], "--lr must be"),
    (["--m", "2"], "--m does not apply"),
    (["--method", "msam", "--m", "3"], "must divide"),
    (["--epochs", "0"], "--epochs"),
    (["--limit-train", "64", "--batch-size", "128"], "below --batch-size"),
    (["--data", "/nonexistent/cifar.tar.gz", "--model", "tiny", "--epochs", "1"], "not found"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert run_cifar.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_existing_checkpoint_needs_resume(tmp_path, capsys):
    train(_cfg(tmp_path, epochs=1), _synthetic())
    assert run_cifar.main(["--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not default_cifar10_path().is_file(), reason="CIFAR-10 archive absent (set SAMCONV_CIFAR10)")
def test_run_cifar_cli_on_real_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAMCONV_CACHE", str(tmp_path / "cache"))          # a partial decode, no cache
    out = tmp_path / "run"
    code = run_cifar.main(["--model", "tiny", "--method", "sam", "--epochs", "1", "--batch-size", "50",
                           "--limit-train", "200", "--limit-test", "100",
                           "--device", "cpu", "--no-progress", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "summary.json", "checkpoint.pt"}
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("device,gpus,message", [
    ("cuda:abc", 0, "--device must be auto, cpu, cuda or cuda:N, got 'cuda:abc'"),
    ("mps", 0, "--device must be auto, cpu, cuda or cuda:N, got 'mps'"),
    ("cuda", 0, "--device cuda: CUDA is not available here"),
    ("cuda:1", 1, "--device cuda:1: this machine has 1 CUDA device(s): choose cuda:0 to cuda:0"),
])
def test_bad_device_is_refused_before_any_data_is_loaded(tmp_path, capsys, monkeypatch, device, gpus, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    out = tmp_path / "out"
    assert run_cifar.main(["--model", "tiny", "--device", device, "--data", "/nonexistent/cifar.tar.gz",
                           "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("damage", ["no config", "not a dict"])
def test_resume_refuses_a_checkpoint_lacking_its_keys(tmp_path, damage):
    from convergence.errors import InputError
    data = _synthetic()
    train(_cfg(tmp_path, epochs=1), data)
    ckpt = tmp_path / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["config"]
    torch.save(state if damage == "no config" else [state], ckpt)
    with pytest.raises(InputError, match=r"checkpoint.pt is not a run_cifar checkpoint \(no valid '"):
        train(_cfg(tmp_path, epochs=2, resume=True), data)


# ------------------------------------------------------------------------------------ cifar_table
@pytest.fixture
def table_dir(tmp_path):
    """A cifar_table folder holding one finished run, constant-seed0."""
    train(_cfg(tmp_path / "constant-seed0", epochs=1), _synthetic())
    return tmp_path


def _table(out, capsys):
    from experiments import cifar_table
    code = cifar_table.main(["--table-only", "--schedules", "constant", "--seeds", "0", "--out", str(out)])
    return code, capsys.readouterr()


def test_table_only_without_finished_runs_is_refused(tmp_path, capsys):
    code, (_, err) = _table(tmp_path / "new", capsys)
    assert code == 2 and "no finished, undiverged run" in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name,keep", [("summary.json", 50), ("metrics.csv", 30), ("metrics.csv", -10)])
def test_table_names_a_damaged_run(table_dir, capsys, name, keep):
    path = table_dir / "constant-seed0" / name
    path.write_bytes(path.read_bytes()[:keep])
    code, (_, err) = _table(table_dir, capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{path} is truncated or damaged" in err and f"delete {table_dir / 'constant-seed0'}" in err
    assert not (table_dir / "table.csv").exists()


def test_table_writes_its_figures_atomically(table_dir, capsys, monkeypatch):
    import figures.convergence
    written, real = [], figures.convergence.atomic_write

    def recording(path, data):
        written.append(path.name)
        real(path, data)
    monkeypatch.setattr(figures.convergence, "atomic_write", recording)
    code, (out, _) = _table(table_dir, capsys)
    assert code == 0 and written == ["theory.png", "theory.pdf"] and "| constant | 1 |" in out
    assert (table_dir / "theory.png").stat().st_size > 0


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """--compile (torch.compile of the training forward) with SAM's re-pointed parameters: the same
    training as eager, up to float32 reordering (about a minute of compilation on a CPU)."""
    eager = train(_cfg(tmp_path / "eager", epochs=2, method="sam"), _synthetic())
    compiled = train(_cfg(tmp_path / "compiled", epochs=2, method="sam", compile=True), _synthetic())
    for key in ("train_loss", "test_loss", "grad_norm", "step_norm"):
        assert compiled["final"][key] == pytest.approx(eager["final"][key], rel=1e-4), key
