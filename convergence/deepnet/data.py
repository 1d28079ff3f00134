"""CIFAR data: decoded once into uint8 arrays, kept on the device, augmented there with tensor ops.

CIFAR-10 comes from the JPEG archive ``cifar10-jpeg.tar.gz`` (``train/<class>/NNNN.jpg``,
``test/<class>/NNNN.jpg``; see ../shared/data/README.md), checked against its sha256 and decoded with
Pillow into ``<cache>/cifar10-<sha[:12]>.npz`` (about 5 s, once). CIFAR-100 comes from a user-supplied
standard ``cifar-100-python.tar.gz``.

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

CIFAR10_SHA256 = "d877bdec11f54282b92da36e9f045bd305d663b1223e3822baff39ca9ff6690a"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_SIZES = {"train": 5000, "test": 1000}            # images per class
MEAN_STD = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
            "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
REPO_ROOT = Path(__file__).resolve().parents[2]


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


def _check_archive(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"CIFAR-10 archive not found at {path}: pass --data PATH or set SAMCONV_CIFAR10 "
                         f"to cifar10-jpeg.tar.gz")
    digest = sha256(path)
    if digest != CIFAR10_SHA256:
        raise InputError(f"CIFAR-10 archive {path} is corrupt or not the expected file (sha256 {digest[:16]}..., "
                         f"expected {CIFAR10_SHA256[:16]}...): copy cifar10-jpeg.tar.gz again")


_MEMBER = re.compile(r"^(?:\./)?(train|test)/([a-z]+)/(\d+)\.jpg$")


def decode_cifar10(path: Path, per_class: dict | None = None) -> Arrays:
    """Decode the JPEG archive (all of it, or the first ``per_class[split]`` images of each class)."""
    from PIL import Image
    per_class = per_class or {}
    want = {s: per_class.get(s) or n for s, n in CIFAR10_SIZES.items()}
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


def load_cifar10(path=None, cache_dir=None, limit_train: int | None = None,
                 limit_test: int | None = None, verbose: bool = False) -> Arrays:
    """CIFAR-10 as uint8 arrays (the first ``limit_*`` images of each split when given).

    The full decode is cached in ``cache_dir`` (default ~/.cache/samconv), named by the archive's
    sha256, so a later run needs no archive; a path given explicitly (argument or $SAMCONV_CIFAR10)
    is still checked against that sha256 (≈0.1 s for 180 MB: less than reading the cache takes), so
    a wrong file is refused, never silently replaced by the cache. A limited load uses the cache when
    present, else decodes only the images it needs (nothing cached).
    """
    nc = len(CIFAR10_CLASSES)
    for flag, n, split in (("--limit-train", limit_train, "train"), ("--limit-test", limit_test, "test")):
        if n is not None and not 0 < n <= CIFAR10_SIZES[split] * nc:
            raise InputError(f"{flag} {n} must lie in [1, {CIFAR10_SIZES[split] * nc}] (CIFAR-10 {split} images)")
    explicit = bool(path or os.environ.get("SAMCONV_CIFAR10"))
    path = Path(path) if path else default_cifar10_path()
    if explicit:                     # a path the user named must be the archive, cache or not
        _check_archive(path)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_file = cache / f"cifar10-{CIFAR10_SHA256[:12]}.npz"
    limits = {"train": limit_train, "test": limit_test}
    data = _read_cache(cache_file)
    if data is None:
        if not explicit:
            _check_archive(path)
        if limit_train is not None or limit_test is not None:
            per_class = {s: -(-n // nc) for s, n in limits.items() if n is not None}
            data = decode_cifar10(path, per_class)
        else:
            if verbose:
                print(f"decoding {path} once into {cache_file} ...", file=sys.stderr)
            data = decode_cifar10(path)
            _write_cache(cache_file, data)
    return _prefix(data, limit_train, limit_test)


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


CIFAR100_FORMAT = ("expected the standard cifar-100-python.tar.gz (pickled dicts 'train' and 'test' with "
                   "b'data' rows of 3072 uint8 and b'fine_labels' in 0..99)")


def load_cifar100(path, limit_train: int | None = None, limit_test: int | None = None) -> Arrays:
    """CIFAR-100 from the standard ``cifar-100-python.tar.gz`` (pickled dicts with b'data' rows of
    3072 bytes, CHW, and b'fine_labels'). Only open an archive you trust: it is unpickled."""
    if not path:
        path = os.environ.get("SAMCONV_CIFAR100")
    if not path or not Path(path).is_file():
        raise InputError(f"CIFAR-100 archive not found at {path}: pass --data PATH to a cifar-100-python.tar.gz "
                         f"(or set SAMCONV_CIFAR100)")
    parts = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in ("train", "test", "meta"):
                    parts[name] = pickle.load(tf.extractfile(member), encoding="bytes")
    except Exception as exc:          # not a tar archive, truncated, or a pickle of something else
        raise InputError(f"cannot read CIFAR-100 archive {path} ({type(exc).__name__}): "
                         f"{CIFAR100_FORMAT}") from None
    if not {"train", "test"} <= set(parts):
        raise InputError(f"{path} has no train/test members: {CIFAR100_FORMAT}")

    def arrays(name):
        try:
            d = parts[name]
            x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(d[b"fine_labels"], np.int64)
            ok = len(x) > 0 and y.shape == (len(x),) and 0 <= y.min() and y.max() < 100
        except (KeyError, TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise InputError(f"member '{name}' of {path} is not CIFAR-100 data: {CIFAR100_FORMAT}")
        return np.ascontiguousarray(x), y

    (xt, yt), (xe, ye) = arrays("train"), arrays("test")
    meta = parts.get("meta")
    names = meta.get(b"fine_label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and len(names) == 100):      # names are cosmetic: number the classes
        names = range(100)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    data = Arrays("cifar100", xt, yt, xe, ye, classes)
    return _prefix(data, limit_train, limit_test)


# ------------------------------------------------------------------------------------- on the device
class DeviceSplit:
    """One split on the device: uint8 NHWC images and int64 labels; batches come out as normalized
    float NCHW tensors, with random crop (zero padding 4) and horizontal flip done as tensor ops on
    the whole batch (one gather, no per-image Python)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean_std, device):
        import torch
        self.torch = torch
        self.device = torch.device(device)
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        mean, std = mean_std
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self._ar = torch.arange(32, device=self.device)

    def __len__(self):
        return len(self.y)

    def normalize(self, xb):
        """uint8 (B, 32, 32, 3) -> float32 (B, 3, 32, 32), standardized per channel."""
        return (xb.permute(0, 3, 1, 2).float() - self.mean) / self.std

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
        idx_all = self.torch.arange(rank, n, world, device=self.device)
        for i in range(0, len(idx_all), batch_size):
            idx = idx_all[i:i + batch_size]
            yield self.normalize(self.x[idx]), self.y[idx]

    def batches_per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size
