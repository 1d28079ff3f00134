"""CIFAR training with a SAM-family optimizer and per-epoch convergence measurements.

Per epoch (one CSV row): lr t_e and rho; train loss/accuracy (first pass of each step); test
loss/accuracy; ``grad_norm_est`` = ||grad f|| estimated on a fixed, un-augmented subset of the
training set (``probe_size`` images; f = mean cross-entropy, without the weight-decay term,
BatchNorm with batch statistics of ``batch_size`` chunks, running statistics untouched);
``grad_err`` = ||g_k - grad f|| with g_k the method's gradient (perturbation included) on the first
``batch_size`` images of that subset.

Files in ``out``: ``metrics.csv`` (rewritten atomically every epoch), ``checkpoint.pt`` (atomic, every
epoch; ``resume=True`` continues from it, bit-identically on CPU), ``summary.json`` (at the end),
``tensorboard/`` (when tensorboard is installed). Under torchrun every rank trains on its slice of
each global batch; rank 0 writes.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from convergence.deepnet.data import DeviceSplit, load_cifar10, load_cifar100
from convergence.deepnet.models import make_model
from convergence.deepnet.optim import SAMFamily, freeze_bn_stats
from convergence.deepnet.paramvec import ParamVec
from convergence.deepnet.schedules import cifar_schedule
from convergence.errors import InputError
from convergence.methods import make_method
from convergence.trace import atomic_write, provenance, write_json

COLUMNS = ("epoch", "lr", "rho", "train_loss", "train_acc", "test_loss", "test_acc", "grad_norm_est",
           "grad_err", "epoch_time_s")
CHECKPOINT_KEYS = ("epoch", "model", "optim", "rows", "config", "rng_cpu")
# a checkpoint continues a run only with the same values of these
RESUME_KEYS = ("model", "dataset", "method", "method_options", "rho", "stepsize", "lr", "batch_size",
               "weight_decay", "momentum", "seed", "amp", "limit_train", "limit_test", "probe_size",
               "dnsam_size", "max_grad_norm", "ddp_perturbation")


@dataclass
class TrainConfig:
    model: str = "resnet18"
    dataset: str = "cifar10"
    data: str | None = None            # archive path (default: SAMCONV_CIFAR10 / ../shared/data/...)
    cache_dir: str | None = None
    method: str = "sam"
    method_options: dict = field(default_factory=dict)
    rho: float = 0.05
    stepsize: str = "constant"
    lr: float = 0.1
    epochs: int = 200
    batch_size: int = 128
    weight_decay: float = 1e-3
    momentum: float = 0.0
    seed: int = 0
    amp: bool = False                  # bf16 autocast
    out: str = "results/cifar"
    resume: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    probe_size: int = 2048
    dnsam_size: int = 512
    eval_batch: int = 1000
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    max_grad_norm: float | None = None
    ddp_perturbation: str = "global"    # under torchrun: "global" (all-reduced) or "local" (m-sharpness)


# ----------------------------------------------------------------------------------------- helpers
def setup_distributed(device: str):
    """(rank, world, device): torchrun's environment when present, else one process."""
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local)
        return rank, world, torch.device("cpu")
    if device == "auto":
        device = "cuda" if use_cuda else "cpu"
    return 0, 1, torch.device(device)


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(t)
    return t


def _autocast(device, amp):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def load_data(cfg: TrainConfig):
    if cfg.dataset == "cifar10":
        return load_cifar10(cfg.data, cfg.cache_dir, cfg.limit_train, cfg.limit_test, verbose=True)
    if cfg.dataset == "cifar100":
        return load_cifar100(cfg.data, cfg.limit_train, cfg.limit_test)
    raise InputError(f"unknown dataset '{cfg.dataset}'; choose cifar10 or cifar100")


def _csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: (repr(row[c]) if isinstance(row[c], float) else row[c]) for c in COLUMNS})
    return buf.getvalue()


def _atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


class Probe:
    """The fixed probe subset: the full-gradient estimate and the method's gradient error."""

    def __init__(self, split: DeviceSplit, size: int, chunk: int, device, amp):
        self.x, self.y = [], []
        for xb, yb in split.eval_batches(chunk, limit=size):
            self.x.append(xb)
            self.y.append(yb)
        self.n = sum(len(y) for y in self.y)
        self.device, self.amp = device, amp

    def backward(self, model, limit=None):
        """Back-propagate the mean loss over the subset (or its first ``limit`` images)."""
        n = self.n if limit is None else min(limit, self.n)
        seen = 0
        for xb, yb in zip(self.x, self.y):
            if seen >= n:
                break
            xb, yb = xb[:n - seen], yb[:n - seen]
            with _autocast(self.device, self.amp):
                out = model(xb)
            (F.cross_entropy(out.float(), yb, reduction="sum") / n).backward()
            seen += len(yb)

    def full_gradient(self, model, params) -> ParamVec:
        for p in params:
            p.grad = None
        with torch.enable_grad(), freeze_bn_stats(model):
            self.backward(model)
        g = ParamVec([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        for p in params:
            p.grad = None
        return g


# ------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig, data=None) -> dict:
    """Train, measure and checkpoint; returns the summary (also written to summary.json).
    ``data`` (host ``Arrays``) skips loading, e.g. in tests."""
    rank, world, device = setup_distributed(cfg.device)
    if cfg.batch_size % world:
        raise InputError(f"--batch-size {cfg.batch_size} must be a multiple of the {world} processes")
    out = Path(cfg.out)
    data = data if data is not None else load_data(cfg)
    if len(data.y_train) < cfg.batch_size:
        raise InputError(f"--batch-size {cfg.batch_size} exceeds the {len(data.y_train)} training images")
    train_split = DeviceSplit(data.x_train, data.y_train, data.mean_std, device)
    test_split = DeviceSplit(data.x_test, data.y_test, data.mean_std, device)
    local_batch = cfg.batch_size // world
    probe = Probe(train_split, min(cfg.probe_size, len(train_split)), local_batch, device, cfg.amp)

    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, len(data.classes)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = SAMFamily(model.parameters(), torch.optim.SGD, method=cfg.method, rho=cfg.rho,
                    method_options=cfg.method_options, model=model, seed=cfg.seed,
                    distributed=cfg.ddp_perturbation if world > 1 else None,
                    max_grad_norm=cfg.max_grad_norm, lr=cfg.lr, momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay)
    schedule = cifar_schedule(cfg.stepsize, cfg.lr)
    full_closure = None
    if make_method(cfg.method, **cfg.method_options).needs_full_gradient:
        def full_closure():
            probe.backward(model, cfg.dnsam_size)

    rows, start = [], 0
    ckpt = out / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        state = _load_checkpoint(ckpt, device)
        mine = _resume_view(cfg, world)
        for key in mine:
            if state["config"].get(key) != mine[key]:
                raise InputError(f"--resume: {ckpt} was made with {key}={state['config'].get(key)!r}, "
                                 f"not {mine[key]!r}: use another --out or the same settings")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        rows, start = list(state["rows"]), int(state["epoch"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    elif cfg.resume and rank == 0:
        print(f"--resume: no checkpoint in {out}; starting from epoch 0", file=sys.stderr)
    elif world > 1:
        import torch.distributed as dist
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)

    writer = _tensorboard(out) if cfg.tensorboard and rank == 0 else None
    status, t_run = "ok", time.time()
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        lr = schedule(epoch)
        opt.set_lr(lr)
        opt.set_rho(cfg.rho)
        model.train()
        sums = torch.zeros(3, device=device, dtype=torch.float64)

        def closure(xb, yb):
            with _autocast(device, cfg.amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            loss.backward()
            if opt.primary_pass:
                sums.add_(torch.stack([loss.detach().double() * len(yb),
                                       (logits.argmax(1) == yb).sum().double(),
                                       torch.tensor(float(len(yb)), device=device, dtype=torch.float64)]))
            return loss

        batches = train_split.train_batches(cfg.batch_size, cfg.seed, epoch, True, rank, world)
        bar = _bar(train_split.batches_per_epoch(cfg.batch_size), epoch, cfg) if rank == 0 else None
        for xb, yb in batches:
            opt.step(closure, batch=(xb, yb), full_closure=full_closure)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        _all_sum(sums, world)
        train_loss, train_acc = (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()
        test_loss, test_acc = evaluate(model, test_split, cfg, device, rank, world)
        grad_norm, grad_err = measure(model, opt, params, probe, local_batch, device, cfg.amp, full_closure)
        row = {"epoch": epoch, "lr": lr, "rho": cfg.rho, "train_loss": train_loss, "train_acc": train_acc,
               "test_loss": test_loss, "test_acc": test_acc, "grad_norm_est": grad_norm,
               "grad_err": grad_err, "epoch_time_s": round(time.time() - t0, 3)}
        rows.append(row)
        if not math.isfinite(train_loss) or not all(math.isfinite(p.detach().sum().item()) for p in params[:1]):
            status = "diverged"
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / "metrics.csv", _csv_text(rows))
            _atomic_torch_save({"epoch": epoch + 1, "model": model.state_dict(), "optim": opt.state_dict(),
                                "rows": rows, "config": _resume_view(cfg, world),
                                "rng_cpu": torch.get_rng_state(),
                                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                               ckpt)
            if writer is not None:
                for key in COLUMNS[1:]:
                    writer.add_scalar(key, row[key], epoch)
                writer.flush()
            if cfg.progress:
                print(f"epoch {epoch}: lr {lr:.4g} train {train_loss:.4f}/{train_acc:.3f} "
                      f"test {test_loss:.4f}/{test_acc:.3f} |grad f|~{grad_norm:.3e} err {grad_err:.3e}",
                      file=sys.stderr)
        if status == "diverged":
            break
    summary = {"config": asdict(cfg), "world_size": world, "device": str(device), "status": status,
               "epochs_done": len(rows), "final": rows[-1] if rows else None,
               "wall_time_s": round(time.time() - t_run, 2),
               "versions": {**provenance(), "torch": torch.__version__}}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", summary)
        if writer is not None:
            writer.close()
    return summary


def _load_checkpoint(ckpt: Path, device) -> dict:
    """The state train() saved in ``ckpt``; InputError if it is unreadable or lacks one of CHECKPOINT_KEYS."""
    try:
        state = torch.load(ckpt, map_location=device, weights_only=True)
    except Exception as err:      # truncated, not a checkpoint, or written by another program
        why = f"is corrupt or unreadable ({type(err).__name__})"
    else:
        missing = [key for key in CHECKPOINT_KEYS if key not in (state if isinstance(state, dict) else ())]
        if not missing and isinstance(state["config"], dict):
            return state
        why = f"is not a run_cifar checkpoint (no valid '{missing[0] if missing else 'config'}')"
    raise InputError(f"--resume: {ckpt} {why}: delete it to start over, or choose another --out")


def _resume_view(cfg: TrainConfig, world: int) -> dict:
    view = {key: getattr(cfg, key) for key in RESUME_KEYS}
    view["method_options"] = {k: str(v) for k, v in sorted(cfg.method_options.items())}
    view["world_size"] = world
    return view


@torch.no_grad()
def evaluate(model, split: DeviceSplit, cfg, device, rank, world):
    """Mean test loss and accuracy (BatchNorm in eval mode), each rank taking every world-th image."""
    model.eval()
    sums = torch.zeros(3, device=device, dtype=torch.float64)
    for xb, yb in split.eval_batches(cfg.eval_batch, rank, world):
        with _autocast(device, cfg.amp):
            logits = model(xb)
        sums += torch.stack([F.cross_entropy(logits.float(), yb, reduction="sum").double(),
                             (logits.argmax(1) == yb).sum().double(),
                             torch.tensor(float(len(yb)), device=device, dtype=torch.float64)])
    model.train()
    _all_sum(sums, world)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


def measure(model, opt, params, probe: Probe, batch, device, amp, full_closure):
    """(||grad f|| on the probe subset, ||g_k - grad f|| with g_k the method's gradient on the first
    ``batch`` probe images); identical on every rank (no communication), nothing changed."""
    model.train()
    gf = probe.full_gradient(model, params)
    xb, yb = probe.x[0][:batch], probe.y[0][:batch]

    def closure(xb, yb):
        with _autocast(device, amp):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        return loss

    g = opt.method_gradient(closure, batch=(xb, yb), full_closure=full_closure)
    return gf.norm().item(), (g - gf).norm().item()


def _bar(total, epoch, cfg):
    if not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=f"epoch {epoch}", unit="step", leave=False, mininterval=1.0)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:                     # tensorboard not installed: CSV only
        return None
    return SummaryWriter(str(out / "tensorboard"))
