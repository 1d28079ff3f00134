"""CIFAR data: real images from the archive (a few hundred), labels, errors, device augmentation,
CIFAR-100 reader, and the epoch schedules."""
import io
import math
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine
pytest.importorskip("PIL", reason="the deep-net module needs pillow: pip install -e \".[deepnet]\"")

from convergence.deepnet.data import (CIFAR10_CLASSES, CIFAR10_PYTHON, CIFAR100_PYTHON, MEAN_STD,  # noqa: E402
                                      DeviceSplit, default_cifar10_path, load_cifar, read_python_archive)
from convergence.errors import InputError  # noqa: E402

pytestmark = pytest.mark.torch

ARCHIVE = default_cifar10_path()
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(),
                                   reason=f"CIFAR-10 archive absent at {ARCHIVE} (set SAMCONV_CIFAR10)")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """300 training and 100 test images decoded from the archive (empty cache: a partial decode)."""
    if not ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 archive absent at {ARCHIVE} (set SAMCONV_CIFAR10)")
    return load_cifar("cifar10", ARCHIVE, tmp_path_factory.mktemp("cache"), limit_train=300, limit_test=100)


@needs_archive
def test_real_images_shapes_labels(small):
    assert small.x_train.shape == (300, 32, 32, 3) and small.x_train.dtype == np.uint8
    assert small.x_test.shape == (100, 32, 32, 3)
    assert small.classes == CIFAR10_CLASSES
    # image i of class c at position 10 i + c: every prefix is class-balanced
    np.testing.assert_array_equal(small.y_train[:20], np.tile(np.arange(10), 2))
    np.testing.assert_array_equal(np.bincount(small.y_train, minlength=10), np.full(10, 30))
    np.testing.assert_array_equal(np.bincount(small.y_test, minlength=10), np.full(10, 10))
    # real photographs: not constant, varied means, distinct images
    assert small.x_train.std() > 30
    assert len({small.x_train[i].tobytes() for i in range(300)}) == 300
    # the first train airplane is the archive's train/airplane/0000.jpg
    from PIL import Image
    with tarfile.open(ARCHIVE, "r:gz") as tf:
        for m in tf:
            if m.name.endswith("train/airplane/0000.jpg"):
                img = np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                break
    np.testing.assert_array_equal(small.x_train[0], img)


@needs_archive
def test_limits_beyond_the_data_are_refused(tmp_path):
    with pytest.raises(InputError, match="--limit-test"):
        load_cifar("cifar10", ARCHIVE, tmp_path, limit_train=10, limit_test=10_001)


def test_missing_and_corrupt_archive_give_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found .*SAMCONV_CIFAR10"):
        load_cifar("cifar10", tmp_path / "none.tar.gz", tmp_path)
    bad = tmp_path / "cifar10-jpeg.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(InputError, match="corrupt"):
        load_cifar("cifar10", bad, tmp_path / "cache", limit_train=10, limit_test=10)


def test_device_crop_and_flip_match_per_image_reference():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    split = DeviceSplit(x, np.arange(6), ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), "cpu")
    dx, dy = torch.tensor([0, 8, 4, 3, 0, 8]), torch.tensor([0, 8, 4, 7, 8, 0])
    flip = torch.tensor([False, True, False, True, True, False])
    got = split.crop_flip(split.x, dx, dy, flip).numpy()
    for i in range(6):
        padded = np.zeros((40, 40, 3), np.uint8)
        padded[4:36, 4:36] = x[i]
        want = padded[dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        if flip[i]:
            want = want[:, ::-1]
        np.testing.assert_array_equal(got[i], want)
    # a crop at offset (4, 4) without flip is the image itself
    np.testing.assert_array_equal(got[2], x[2])
    norm = split.normalize(split.x[:1])
    assert norm.shape == (1, 3, 32, 32) and norm.dtype == torch.float32
    np.testing.assert_allclose(norm[0, 1].numpy(), (x[0, :, :, 1] / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)


def test_training_batches_are_a_pure_function_of_seed_and_epoch():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), np.arange(100) % 10
    split = DeviceSplit(x, y, ((0.5,) * 3, (0.25,) * 3), "cpu")
    a = list(split.train_batches(32, seed=3, epoch=2))
    b = list(split.train_batches(32, seed=3, epoch=2))
    c = list(split.train_batches(32, seed=3, epoch=1))
    assert len(a) == 3 and a[0][0].shape == (32, 3, 32, 32)              # last partial batch dropped
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    labels = torch.cat([t[1] for t in a])
    assert len(set(labels.tolist())) == 10 and len(labels) == 96
    # two ranks get the two halves of each global batch
    halves = [list(split.train_batches(32, 3, 2, rank=r, world=2)) for r in (0, 1)]
    for i in range(3):
        assert torch.equal(torch.cat([halves[0][i][1], halves[1][i][1]]), a[i][1])
        assert torch.equal(torch.cat([halves[0][i][0], halves[1][i][0]]), a[i][0])
    # images keep their labels through the augmentation: with augment off, the batch is x[idx]
    plain = next(split.train_batches(32, 3, 2, augment=False))
    idx = plain[1]                                           # labels are the indices mod 10
    assert plain[0].shape == (32, 3, 32, 32) and idx.max() < 10


def test_explicit_archive_is_checked_even_when_the_cache_hits(tmp_path, monkeypatch):
    import convergence.deepnet.data as data_module
    cached = data_module.Arrays("cifar10", np.zeros((10, 32, 32, 3), np.uint8), np.arange(10),
                                np.zeros((10, 32, 32, 3), np.uint8), np.arange(10), CIFAR10_CLASSES)
    monkeypatch.setattr(data_module, "_read_cache", lambda cache_file: cached)
    monkeypatch.delenv("SAMCONV_CIFAR10", raising=False)
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.tar.gz is corrupt or not a known archive"):
        load_cifar("cifar10", empty, tmp_path)
    monkeypatch.setattr(data_module, "default_cifar10_path", lambda: tmp_path / "absent.tar.gz")
    assert load_cifar("cifar10", None, tmp_path) is not None        # default path: the cache alone is enough


def _pickled_archive(path, folder, parts):
    """A tar.gz of pickled members <folder>/<name> (``parts``: name -> object), as the standard
    CIFAR archives are made."""
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in parts.items():
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _fake_standard(path, spec, per_class=(3, 1), seed=0):
    """A tiny archive in ``spec``'s standard pickle format: ``per_class`` (train, test) images of
    each class in shuffled order, split over the train members; returns (path, x_train, y_train)."""
    rng = np.random.default_rng(seed)
    parts, split = {}, {}
    for kind, n in zip(("train", "test"), per_class):
        y = rng.permutation(np.repeat(np.arange(spec.classes), n))
        split[kind] = (rng.integers(0, 256, (len(y), 3072), dtype=np.uint8), y)
    x, y = split["train"]
    for i, (xs, ys) in enumerate(zip(np.array_split(x, len(spec.train)), np.array_split(y, len(spec.train)))):
        parts[spec.train[i]] = {b"data": xs, spec.labels: ys.tolist()}
    parts[spec.test] = {b"data": split["test"][0], spec.labels: split["test"][1].tolist()}
    parts[spec.meta] = {spec.names: [f"c{i}".encode() for i in range(spec.classes)]}
    folder = "cifar-10-batches-py" if spec.dataset == "cifar10" else "cifar-100-python"
    return _pickled_archive(path, folder, parts), x, y


@pytest.mark.parametrize("spec", [CIFAR10_PYTHON, CIFAR100_PYTHON], ids=["cifar10", "cifar100"])
def test_standard_archive_reader_on_a_fake_archive(tmp_path, spec):
    """Rows are CHW (1024 red, 1024 green, 1024 blue values); images come out HWC, class-balanced
    (the i-th image of class c at position i * classes + c), each with its own label. Rejects a
    reader that reshapes rows as HWC, or reorders images without their labels."""
    path, x, y = _fake_standard(tmp_path / spec.file, spec)
    d = read_python_archive(path, spec)
    assert d.x_train.shape == (3 * spec.classes, 32, 32, 3) and d.x_test.shape == (spec.classes, 32, 32, 3)
    np.testing.assert_array_equal(d.y_train, np.tile(np.arange(spec.classes), 3))
    for pos in (0, 1, spec.classes + 2, 3 * spec.classes - 1):          # each image is a row of its class
        i, c = divmod(pos, spec.classes)
        row = x[np.flatnonzero(y == c)[i]]
        np.testing.assert_array_equal(d.x_train[pos, :, :, 2], row[2048:].reshape(32, 32))
        np.testing.assert_array_equal(d.x_train[pos].transpose(2, 0, 1).reshape(-1), row)
    assert d.classes[7] == (CIFAR10_CLASSES[7] if spec.dataset == "cifar10" else "c7")
    assert d.mean_std == MEAN_STD[spec.dataset]


GOOD = {b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0, 1, 2, 99]}


@pytest.mark.parametrize("parts", [
    None,                                                                  # an empty file
    {"train": {b"fine_labels": [0]}, "test": GOOD},                        # no b'data'
    {"train": {b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, "test": GOOD},   # wrong size
    {"train": {**GOOD, b"fine_labels": [0, 1, 2, 100]}, "test": GOOD},     # label beyond 99
    {"train": [1, 2, 3], "test": GOOD},                                    # not a dict
    {"test": GOOD},                                                        # no train member
])
def test_a_damaged_standard_archive_is_one_line_naming_the_format(tmp_path, parts):
    path = tmp_path / "c100.tar.gz"
    if parts is None:
        path.write_bytes(b"")
    else:
        _pickled_archive(path, "cifar-100-python", parts)
    with pytest.raises(InputError, match="cifar-100-python.tar.gz") as err:
        read_python_archive(path, CIFAR100_PYTHON)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_official_checksums_are_pinned():
    """The sha256 of the official archives (as pinned by Keras and torchvision); their md5 sums,
    published by the site, are in the README."""
    assert CIFAR10_PYTHON.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert CIFAR100_PYTHON.sha256 == "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"


@pytest.fixture
def known_fake(tmp_path, monkeypatch):
    """A fake cifar-10-python.tar.gz and a fake cifar-100-python.tar.gz whose sha256 the loader
    accepts as the official ones (the real files cannot be made here)."""
    import convergence.deepnet.data as data_module
    fakes = {}
    archives = dict(data_module.ARCHIVES)
    for spec in (CIFAR10_PYTHON, CIFAR100_PYTHON):
        path, _, _ = _fake_standard(tmp_path / spec.file, spec, per_class=(10, 2) if spec.dataset == "cifar10"
                                    else (1, 1))
        archives[data_module.sha256(path)] = spec
        fakes[spec.dataset] = path
    monkeypatch.setattr(data_module, "ARCHIVES", archives)
    monkeypatch.delenv("SAMCONV_CIFAR10", raising=False)
    monkeypatch.delenv("SAMCONV_CIFAR100", raising=False)
    return fakes


def test_run_cifar_reads_the_standard_archives(known_fake, tmp_path, capsys):
    from experiments import run_cifar
    base = ["--model", "tiny", "--epochs", "1", "--batch-size", "20", "--device", "cpu", "--no-progress",
            "--no-tensorboard"]
    assert run_cifar.main(base + ["--data", str(known_fake["cifar10"]), "--out", str(tmp_path / "c10")]) == 0
    assert run_cifar.main(base + ["--dataset", "cifar100", "--batch-size", "50", "--data",
                                  str(known_fake["cifar100"]), "--out", str(tmp_path / "c100")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    d = load_cifar("cifar10", known_fake["cifar10"], tmp_path / "cache", limit_train=30)
    np.testing.assert_array_equal(d.y_train, np.tile(np.arange(10), 3))     # a class-balanced prefix
    assert not (tmp_path / "cache").exists()                                 # nothing cached


@pytest.mark.parametrize("case,message", [
    ("missing", "cifar10 archive not found at"),
    ("unknown", "is corrupt or not a known archive (sha256"),
    ("corrupt", "cannot read"),
    ("other dataset", "a cifar100 archive: use --dataset cifar100"),
])
def test_bad_standard_archive_is_one_line_exit_2_nothing_written(known_fake, tmp_path, capsys, monkeypatch,
                                                                 case, message):
    import convergence.deepnet.data as data_module
    from experiments import run_cifar
    path = {"missing": tmp_path / "none.tar.gz", "other dataset": known_fake["cifar100"]}.get(
        case, tmp_path / "bad.tar.gz")
    if case == "unknown":
        path.write_bytes(known_fake["cifar10"].read_bytes()[:-7])              # truncated
    if case == "corrupt":                                                     # a known checksum, bad bytes
        path.write_bytes(b"not a tar archive")
        monkeypatch.setitem(data_module.ARCHIVES, data_module.sha256(path), CIFAR10_PYTHON)
    out = tmp_path / "out"
    assert run_cifar.main(["--model", "tiny", "--epochs", "1", "--device", "cpu", "--data", str(path),
                           "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


REAL = {spec.dataset: os.environ.get(f"SAMCONV_{spec.dataset.upper()}_PYTHON") for spec in (CIFAR10_PYTHON,
                                                                                         CIFAR100_PYTHON)}


@pytest.mark.parametrize("spec", [CIFAR10_PYTHON, CIFAR100_PYTHON], ids=["cifar10", "cifar100"])
def test_real_standard_archive(spec):
    path = REAL[spec.dataset]
    if not path or not Path(path).is_file():
        pytest.skip(f"the real {spec.file} is absent (not on these machines): set "
                    f"SAMCONV_{spec.dataset.upper()}_PYTHON to its path to run this test")
    d = load_cifar(spec.dataset, path)
    assert d.x_train.shape == (50000, 32, 32, 3) and d.x_test.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(d.y_train), np.full(spec.classes, 50000 // spec.classes))
    np.testing.assert_array_equal(d.y_train[:2 * spec.classes], np.tile(np.arange(spec.classes), 2))
    assert d.x_train.std() > 30


def test_epoch_schedules_are_the_papers():
    from convergence.deepnet.schedules import epoch_schedule
    d1, d2, d3 = (epoch_schedule(n, 0.1) for n in ("diminish1", "diminish2", "diminish3"))
    assert epoch_schedule("constant", 0.01)(150) == 0.01
    assert d1(0) == 0.1 and math.isclose(d1(9), 0.01)
    assert d2(0) == 0.1 and math.isclose(d2(1), 0.1) and math.isclose(d2(4), 0.1 / 4 ** 0.5001)
    assert d3(0) == 0.1
    for e in (1, 5):
        assert math.isclose(d3(e), 0.1 / (3 * math.log(3)))
    for e in (6, 10):
        assert math.isclose(d3(e), 0.1 / (4 * math.log(4)))
    assert math.isclose(d3(11), 0.1 / (5 * math.log(5)))
    import sympy as sp
    assert d3.expr.has(sp.Piecewise) and d3.expr.has(sp.floor)        # symbolic, for the theory layer
