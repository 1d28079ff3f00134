"""CIFAR data: read once into uint8 arrays, kept on the device, augmented there with tensor ops.

Archives, each identified by its sha256 before anything is read from it:
  cifar10-jpeg.tar.gz      the project's JPEG archive (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``;
                           ../shared/data/README.md), decoded with Pillow into
                           ``<cache>/cifar10-<sha[:12]>.npz`` (about 5 s, once)
  cifar-10-python.tar.gz   the standard archives of https://www.cs.toronto.edu/~kriz/cifar.html
  cifar-100-python.tar.gz  (pickled batches; read directly, about 2 s, no cache)
The sha256 values of the standard archives are those pinned by Keras (``cifar10.load_data``,
``cifar100.load_data``) and torchvision's prototype datasets; the site itself publishes md5 sums
(c58f30108f718f92721af3b95e74349a, eb9058c3a382ffc7106e4002c42a8d85). Only files with a known sha256
are unpickled.

Image i of class c sits at position ``i * classes + c``: every prefix is class-balanced, and the first
N images are the same whether they come from the full cache or from a partial decode (``limit_*``).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convergence.errors import InputError

CIFAR10_SHA256 = "d877bdec11f54282b92da36e9f045bd305d663b1223e3822baff39ca9ff6690a"     # cifar10-jpeg.tar.gz
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN_STD = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
            "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PythonArchive:
    """A standard pickled CIFAR archive: its members, label key and checksum."""

    file: str
    sha256: str
    dataset: str
    classes: int
    train: tuple            # member names (the last path component)
    test: str
    labels: bytes
    meta: str
    names: bytes


CIFAR10_PYTHON = PythonArchive("cifar-10-python.tar.gz",
                               "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", "cifar10",
                               10, tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", b"labels",
                               "batches.meta", b"label_names")
CIFAR100_PYTHON = PythonArchive("cifar-100-python.tar.gz",
                                "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", "cifar100",
                                100, ("train",), "test", b"fine_labels", "meta", b"fine_label_names")
# sha256 -> the archive; the JPEG archive is read by decode_cifar10
ARCHIVES = {CIFAR10_SHA256: "cifar10-jpeg.tar.gz", CIFAR10_PYTHON.sha256: CIFAR10_PYTHON,
            CIFAR100_PYTHON.sha256: CIFAR100_PYTHON}
SIZES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000)}          # (train, test) images
ENV = {"cifar10": "SAMCONV_CIFAR10", "cifar100": "SAMCONV_CIFAR100"}


def default_cifar10_path() -> Path:
    """$SAMCONV_CIFAR10, else ../shared/data/cifar10-jpeg.tar.gz next to the repository."""
    env = os.environ.get("SAMCONV_CIFAR10")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def default_cache_dir() -> Path:
    """$SAMCONV_CACHE, else ~/.cache/samconv."""
    env = os.environ.get("SAMCONV_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "samconv"


@dataclass
class Arrays:
    """A dataset as host arrays: images uint8 (N, 32, 32, 3), labels int64 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    @property
    def mean_std(self):
        return MEAN_STD[self.name]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identify(path: Path, dataset: str):
    """The archive at ``path`` (its ARCHIVES entry), checked to be a known archive of ``dataset``;
    InputError naming the fix when it is missing, unknown (corrupt, truncated, another file) or of
    the other dataset."""
    known = {sha: a for sha, a in ARCHIVES.items() if getattr(a, "dataset", "cifar10") == dataset}
    names = " or ".join(dict.fromkeys(getattr(a, "file", a) for a in known.values()))
    if not path.is_file():
        raise InputError(f"{dataset} archive not found at {path}: pass --data PATH to {names} "
                         f"(or set {ENV[dataset]})")
    digest = sha256(path)
    archive = ARCHIVES.get(digest)
    if archive is None:
        expected = ", ".join(f"{getattr(a, 'file', a)} {sha[:16]}..." for sha, a in known.items())
        raise InputError(f"{dataset} archive {path} is corrupt or not a known archive (sha256 {digest[:16]}..., "
                         f"expected {expected}): download or copy it again")
    if digest not in known:
        raise InputError(f"{path} is {archive.file}, a {archive.dataset} archive: use --dataset {archive.dataset}")
    return archive


def class_balanced(x: np.ndarray, y: np.ndarray, classes: int):
    """Images reordered so that the i-th image of class c comes at position i * classes + c (for equal
    class counts): every prefix is class-balanced, as in the JPEG archive's decode."""
    rank = np.empty(len(y), np.int64)
    for c in range(classes):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((y, rank))
    return np.ascontiguousarray(x[order]), y[order]


def read_python_archive(path: Path, spec: PythonArchive) -> Arrays:
    """A standard pickled CIFAR archive (dicts with b'data' rows of 3072 uint8 in CHW order and a
    label list), as class-balanced arrays. Unpickles: call it on archives of known sha256 only."""
    fmt = (f"expected the standard {spec.file} (pickled dicts {', '.join(spec.train + (spec.test,))} with "
           f"b'data' rows of 3072 uint8 and {spec.labels!r} in 0..{spec.classes - 1})")
    parts = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in spec.train + (spec.test, spec.meta):
                    parts[name] = pickle.load(tf.extractfile(member), encoding="bytes")
    except Exception as exc:          # not a tar archive, truncated, or a pickle of something else
        raise InputError(f"cannot read {path} ({type(exc).__name__}): {fmt}") from None
    missing = [m for m in spec.train + (spec.test,) if m not in parts]
    if missing:
        raise InputError(f"{path} has no member '{missing[0]}': {fmt}")

    def arrays(members):
        try:
            x = np.concatenate([np.asarray(parts[m][b"data"], np.uint8).reshape(-1, 3, 32, 32) for m in members])
            y = np.concatenate([np.asarray(parts[m][spec.labels], np.int64) for m in members])
            ok = len(x) > 0 and y.shape == (len(x),) and 0 <= y.min() and y.max() < spec.classes
        except (KeyError, TypeError, ValueError, OverflowError, IndexError):
            ok = False
        if not ok:
            raise InputError(f"member '{members[0]}' of {path} is not {spec.dataset} data: {fmt}")
        return class_balanced(x.transpose(0, 2, 3, 1), y, spec.classes)

    (xt, yt), (xe, ye) = arrays(spec.train), arrays((spec.test,))
    meta = parts.get(spec.meta)
    names = meta.get(spec.names) if isinstance(meta, dict) else None
    if spec.dataset == "cifar10":
        names = CIFAR10_CLASSES
    elif not (isinstance(names, list) and len(names) == spec.classes):     # cosmetic: number the classes
        names = range(spec.classes)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return Arrays(spec.dataset, xt, yt, xe, ye, classes)


_MEMBER = re.compile(r"^(?:\./)?(train|test)/([a-z]+)/(\d+)\.jpg$")
JPEG_PER_CLASS = {"train": 5000, "test": 1000}


def decode_cifar10(path: Path, per_class: dict | None = None) -> Arrays:
    """Decode the JPEG archive (all of it, or the first ``per_class[split]`` images of each class)."""
    from PIL import Image
    per_class = per_class or {}
    want = {s: per_class.get(s) or n for s, n in JPEG_PER_CLASS.items()}
    nc = len(CIFAR10_CLASSES)
    x = {s: np.zeros((want[s] * nc, 32, 32, 3), np.uint8) for s in want}
    seen = {s: np.zeros(want[s] * nc, bool) for s in want}
    cls = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                m = _MEMBER.match(member.name)
                if not m or not member.isfile():
                    continue
                split, c, i = m.group(1), m.group(2), int(m.group(3))
                if c not in cls or i >= want[split]:
                    continue
                pos = i * nc + cls[c]
                img = Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB")
                x[split][pos] = np.asarray(img)
                seen[split][pos] = True
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"cannot read CIFAR-10 archive {path}: {exc}") from None
    for split in want:
        if not seen[split].all():
            raise InputError(f"CIFAR-10 archive {path} lacks {int((~seen[split]).sum())} {split} images")
    labels = {s: np.tile(np.arange(nc, dtype=np.int64), want[s]) for s in want}
    return Arrays("cifar10", x["train"], labels["train"], x["test"], labels["test"], CIFAR10_CLASSES)


def load_cifar(dataset: str = "cifar10", path=None, cache_dir=None, limit_train: int | None = None,
               limit_test: int | None = None, verbose: bool = False) -> Arrays:
    """CIFAR-10 or CIFAR-100 as uint8 arrays (the first ``limit_*`` images of each split when given),
    from ``path``, else $SAMCONV_CIFAR10 / $SAMCONV_CIFAR100, else (CIFAR-10) the project's JPEG archive.

    A path named explicitly (argument or environment) is identified by its sha256 on every run (about
    0.1 s for the JPEG archive), so a wrong file is refused, never silently replaced by a cache. The
    JPEG decode is cached in ``cache_dir`` (default ~/.cache/samconv) under the archive's sha256, so a
    later run with the default path needs no archive; a limited load uses that cache when present,
    else decodes only the images it needs (nothing cached).
    """
    if dataset not in SIZES:
        from convergence.errors import unknown
        raise unknown("dataset", dataset, SIZES)
    for flag, n, size in zip(("--limit-train", "--limit-test"), (limit_train, limit_test), SIZES[dataset]):
        if n is not None and not 0 < n <= size:
            raise InputError(f"{flag} {n} must lie in [1, {size}] ({dataset} has {size} images in that split)")
    named = path or os.environ.get(ENV[dataset])
    if not named and dataset == "cifar100":
        raise InputError("CIFAR-100 needs its archive: pass --data PATH to cifar-100-python.tar.gz (or set "
                         "SAMCONV_CIFAR100)")
    path = Path(named) if named else default_cifar10_path()
    cache_file = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"cifar10-{CIFAR10_SHA256[:12]}.npz"
    data = None if named else _read_cache(cache_file)
    if data is None:
        archive = identify(path, dataset)
        if isinstance(archive, PythonArchive):
            data = read_python_archive(path, archive)
        else:
            data = (named and _read_cache(cache_file)) or _decode(path, cache_file, limit_train, limit_test, verbose)
    return _prefix(data, limit_train, limit_test)


def _decode(path, cache_file, limit_train, limit_test, verbose) -> Arrays:
    """The JPEG archive decoded: whole (and cached), or only the class-balanced prefixes asked for."""
    nc = len(CIFAR10_CLASSES)
    if limit_train is not None or limit_test is not None:
        limits = {"train": limit_train, "test": limit_test}
        return decode_cifar10(path, {s: -(-n // nc) for s, n in limits.items() if n is not None})
    if verbose:
        print(f"decoding {path} once into {cache_file} ...", file=sys.stderr)
    data = decode_cifar10(path)
    _write_cache(cache_file, data)
    return data


def _prefix(data: Arrays, limit_train, limit_test) -> Arrays:
    for name, n, avail in (("--limit-train", limit_train, len(data.y_train)),
                           ("--limit-test", limit_test, len(data.y_test))):
        if n is not None and n > avail:
            raise InputError(f"{name} {n} exceeds the {avail} images of {data.name}")
    nt, ne = limit_train or len(data.y_train), limit_test or len(data.y_test)
    return Arrays(data.name, data.x_train[:nt], data.y_train[:nt], data.x_test[:ne], data.y_test[:ne],
                  data.classes)


def _read_cache(cache_file: Path) -> Arrays | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file) as z:
            data = Arrays("cifar10", z["x_train"], z["y_train"], z["x_test"], z["y_test"], CIFAR10_CLASSES)
        if data.x_train.shape != (50000, 32, 32, 3) or data.x_test.shape != (10000, 32, 32, 3):
            raise ValueError("wrong shapes")
        return data
    except Exception as exc:          # a truncated or foreign cache file: decode again
        print(f"ignoring unreadable cache {cache_file} ({exc}); decoding again", file=sys.stderr)
        return None


def _write_cache(cache_file: Path, data: Arrays) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
        os.replace(tmp, cache_file)
    except OSError as exc:
        print(f"cannot write the cache {cache_file} ({exc}); continuing without it", file=sys.stderr)


# ------------------------------------------------------------------------------------- on the device
class DeviceSplit:
    """One split on the device: uint8 NHWC images and int64 labels; batches come out as normalized
    float NCHW tensors, with random crop (zero padding 4) and horizontal flip done as tensor ops on
    the whole batch (one gather, no per-image Python)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean_std, device, channels_last: bool = False):
        import torch
        self.torch = torch
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        mean, std = mean_std
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self._ar = torch.arange(32, device=self.device)

    def __len__(self):
        return len(self.y)

    def normalize(self, xb):
        """uint8 (B, 32, 32, 3) -> float32 (B, 3, 32, 32), standardized per channel, in the split's
        memory format (channels_last is the NHWC storage the images already have: no copy)."""
        return ((xb.permute(0, 3, 1, 2).float() - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def crop_flip(self, xb, dx, dy, flip):
        """Random crop of the zero-padded (pad 4) images at offsets (dy, dx) in [0, 8], then a
        horizontal flip where ``flip``: one advanced-indexing gather for the whole batch."""
        torch = self.torch
        padded = torch.nn.functional.pad(xb, (0, 0, 4, 4, 4, 4))          # (B, 40, 40, 3)
        rows = dy[:, None] + self._ar                                     # (B, 32)
        cols = dx[:, None] + torch.where(flip[:, None], 31 - self._ar, self._ar)
        b = torch.arange(len(xb), device=xb.device)[:, None, None]
        return padded[b, rows[:, :, None], cols[:, None, :]]

    def epoch_draws(self, seed: int, epoch: int):
        """The permutation and augmentation draws of an epoch: a pure function of (seed, epoch), drawn
        on the host so that every device and every rank sees the same numbers."""
        from convergence.random import stream_seed
        torch = self.torch
        gen = torch.Generator().manual_seed(stream_seed(seed, 0xDA7A, epoch))
        n = len(self)
        perm = torch.randperm(n, generator=gen)
        dx = torch.randint(0, 9, (n,), generator=gen)
        dy = torch.randint(0, 9, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        return [t.to(self.device) for t in (perm, dx, dy, flip)]

    def train_batches(self, batch_size: int, seed: int, epoch: int, augment: bool = True,
                      rank: int = 0, world: int = 1):
        """Shuffled, augmented batches of ``batch_size`` images (the last partial batch is dropped);
        with ``world`` > 1 each rank gets its 1/world slice of every global batch."""
        perm, dx, dy, flip = self.epoch_draws(seed, epoch)
        local = batch_size // world
        for i in range(len(self) // batch_size):
            idx = perm[i * batch_size + rank * local: i * batch_size + (rank + 1) * local]
            xb = self.x[idx]
            if augment:
                xb = self.crop_flip(xb, dx[idx], dy[idx], flip[idx])
            yield self.normalize(xb), self.y[idx]

    def eval_batches(self, batch_size: int, rank: int = 0, world: int = 1, limit: int | None = None):
        """All images (or the first ``limit``) in order, rank r taking the indices r, r + world, ..."""
        n = len(self) if limit is None else min(limit, len(self))
        return self.batches(self.torch.arange(rank, n, world, device=self.device), batch_size)

    def batches(self, idx, batch_size: int):
        """The images ``idx`` (un-augmented) in chunks of ``batch_size``."""
        for chunk in idx.split(batch_size):
            yield self.normalize(self.x[chunk]), self.y[chunk]

    def batches_per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size
