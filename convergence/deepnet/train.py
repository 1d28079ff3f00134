"""CIFAR training with a SAM-family optimizer and, per epoch, the quantities of the convergence theory.

The objective SGD with weight decay wd minimizes is

    F(w) = f(w) + (wd/2) ||w||^2,    f(w) = mean cross-entropy over the training set,

and the theorems speak of ||grad F(w_k)||, F(w_k) and the steps. Per epoch e (one CSV row, w_e the
weights after it): t_e and rho_e; train loss/accuracy (first pass of each step: augmented, BatchNorm
with batch statistics); test loss/accuracy; ``objective`` F(w_e), ``grad_norm`` ||grad F(w_e)|| and
``loss_grad_norm`` ||grad f(w_e)||, on the un-augmented training set with BatchNorm in eval mode (a
deterministic function of w; the whole set by default, a fixed random subset with ``grad_subset``,
then ``grad_norm_se`` estimates sqrt(E||grad F_subset - grad F||^2) >= the error of grad_norm, from the
spread of equal chunk means, with the finite-population correction); ``step_norm`` ||w_e - w_{e-1}||;
``grad_err`` ||g_k - grad f_S(w_e)||, the method's gradient against the plain one on a fixed training
batch S (the inexactness ``err`` of the toy runs); ``epoch_time_s`` (training) and ``measure_time_s``.

Files in ``out``: ``metrics.csv`` (rewritten atomically every epoch), ``checkpoint.pt`` (every
``checkpoint_every`` epochs and at the end, copied to host memory at the epoch boundary and written
atomically by a background thread while training goes on; ``resume=True`` continues from it,
bit-identically on CPU), ``summary.json`` (at the end), ``tensorboard/`` (when installed).

Speed (CUDA): bf16 autocast and channels_last by default, cudnn.benchmark, fused SGD, optional
torch.compile; no host synchronisation inside a step (loss and accuracy are summed on the device).
Under torchrun the model is wrapped in DistributedDataParallel (all-reduce overlapped with backward;
with ``ddp_perturbation="local"`` the ascent pass runs under no_sync), BatchNorm buffers are broadcast
from rank 0 at the end of every epoch (or synchronised by SyncBatchNorm with ``sync_bn``), rank 0
writes every file, and on resume rank 0 reads the checkpoint and broadcasts it (no shared filesystem).
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from convergence.deepnet.config import TrainConfig
from convergence.deepnet.data import DeviceSplit, load_cifar
from convergence.deepnet.models import make_model
from convergence.deepnet.optim import SAMFamily, freeze_bn_stats
from convergence.deepnet.paramvec import ParamVec
from convergence.deepnet.schedules import epoch_schedules
from convergence.errors import InputError
from convergence.methods import make_method
from convergence.random import stream_seed
from convergence.trace import atomic_write, provenance, write_json
from convergence.vec import norm, tree_map

COLUMNS = ("epoch", "lr", "rho", "train_loss", "train_acc", "test_loss", "test_acc", "objective", "grad_norm",
           "grad_norm_se", "loss_grad_norm", "step_norm", "grad_err", "epoch_time_s", "measure_time_s")
CHECKPOINT_KEYS = ("epoch", "model", "optim", "rows", "config", "rng_cpu")
# a checkpoint continues a run only with the same values of these
RESUME_KEYS = ("model", "dataset", "method", "method_options", "rho", "rho_schedule", "stepsize", "lr",
               "batch_size", "weight_decay", "momentum", "seed", "limit_train", "limit_test", "grad_subset",
               "dnsam_size", "max_grad_norm", "ddp_perturbation", "sync_bn")


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


def schedules(cfg: TrainConfig):
    """(t, rho) of the run's config (convergence.deepnet.schedules.epoch_schedules)."""
    return epoch_schedules(cfg.stepsize, cfg.lr, cfg.rho_schedule, cfg.rho, cfg.epochs)


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(t)
    return t


def _autocast(device, amp):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def load_data(cfg: TrainConfig):
    return load_cifar(cfg.dataset, cfg.data, cfg.cache_dir, cfg.limit_train, cfg.limit_test, verbose=True)


def _csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: (repr(row[c]) if isinstance(row[c], float) else row[c]) for c in COLUMNS})
    return buf.getvalue()


class BackgroundWriter:
    """Checkpoints off the training loop's critical path: the state is copied to host memory at the
    epoch boundary (later steps cannot change the copy), then serialized and written atomically by a
    thread while training goes on. The next write, and ``wait()``, wait for the previous one and raise
    its error, if any."""

    def __init__(self):
        self.thread, self.error = None, None

    def submit(self, path: Path, state) -> None:
        self.wait()
        snapshot = tree_map(lambda v: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v, state)

        def work():
            try:
                buf = io.BytesIO()
                torch.save(snapshot, buf)
                atomic_write(path, buf.getvalue())
            except BaseException as err:             # re-raised in the training thread by wait()
                self.error = err
        self.thread = threading.Thread(target=work, name="checkpoint-writer")
        self.thread.start()

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


# ------------------------------------------------------------------------------------ measurements
def grad_subset_indices(n_train: int, size: int | None, chunk: int, world: int, seed: int):
    """(indices, chunk) of the images grad F is measured on: all of them in order (size None), or a
    fixed random subset of ``size`` rounded down to equal chunks (at least two, ``world`` chunks each
    round) so that the chunk means give a standard error."""
    if size is None or size >= n_train:
        return torch.arange(n_train), chunk
    chunk = max(1, min(chunk, size // (2 * world)))
    used = size // (chunk * world) * chunk * world
    if used < 2 * world:
        raise InputError(f"--grad-subset {size} is too small: give at least {2 * world} images (two chunks "
                         f"per process)")
    gen = torch.Generator().manual_seed(stream_seed(seed, 0x6AD))
    return torch.randperm(n_train, generator=gen)[:used], chunk


@torch.no_grad()
def theory_quantities(model, params, split: DeviceSplit, idx, chunk: int, weight_decay: float, amp: bool,
                      rank: int = 0, world: int = 1) -> dict:
    """F(w), ||grad F(w)||, ||grad f(w)|| and the standard error of ||grad F|| over the images ``idx``
    (un-augmented, BatchNorm in eval mode), rank r taking the chunks r, r + world, ... Leaves the
    model in train mode and the gradients None."""
    device = params[0].device
    chunks = idx.to(device).split(chunk)
    total, stats = None, torch.zeros(2, device=device, dtype=torch.float64)   # loss sum, sum ||chunk mean||^2
    model.eval()
    for xb, yb in (b for i, c in enumerate(chunks) if i % world == rank for b in split.batches(c, chunk)):
        for p in params:
            p.grad = None
        with torch.enable_grad():
            with _autocast(device, amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, reduction="sum")
            loss.backward()
        g = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        if total is None:
            total = g
        else:
            torch._foreach_add_(total, g)
        stats += torch.stack([loss.detach().double(), (norm(ParamVec(g)).double() / len(yb)) ** 2])
    model.train()
    for p in params:
        p.grad = None
    if total is None:                                 # a rank with no chunk (tiny subsets)
        total = [torch.zeros_like(p) for p in params]
    if world > 1:
        flat = torch.cat([ParamVec(total).flat().double(), stats])
        _all_sum(flat, world)
        total, stats = ParamVec.from_flat(flat[:-2], total).tensors, flat[-2:]
    n, B, N = len(idx), len(chunks), len(split)
    w = ParamVec([p.detach() for p in params])
    grad_f = ParamVec(total) / n
    grad_F = grad_f + weight_decay * w
    loss_grad_norm, grad_norm = norm(grad_f).item(), norm(grad_F).item()
    spread = (stats[1].item() - B * loss_grad_norm ** 2) / (B - 1) if B > 1 else 0.0
    se = math.sqrt(max(spread, 0.0) / B * (1 - n / N)) if n < N else 0.0
    return {"objective": stats[0].item() / n + weight_decay / 2 * norm(w).item() ** 2, "grad_norm": grad_norm,
            "grad_norm_se": se, "loss_grad_norm": loss_grad_norm}


def _plain_closure(model, device, amp):
    """closure(x, y): forward (bf16 autocast when ``amp``) and backward of the mean cross-entropy."""
    def closure(xb, yb):
        with _autocast(device, amp):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        return loss
    return closure


def _subset_closure(model, batches, device, amp):
    """closure(): back-propagate the mean cross-entropy over the fixed ``batches`` (DNSAM's full
    gradient, estimated on a fixed training subset at every step)."""
    n = sum(len(y) for _, y in batches)

    def closure():
        for xb, yb in batches:
            with _autocast(device, amp):
                logits = model(xb)
            (F.cross_entropy(logits.float(), yb, reduction="sum") / n).backward()
    return closure


def gradient_error(model, opt: SAMFamily, params, batch, device, amp, full_closure) -> float:
    """||g_k - grad f_S(w)||: the method's gradient (perturbation included) against the plain gradient
    on the fixed batch S (BatchNorm with batch statistics, running ones untouched; no communication)."""
    closure = _plain_closure(model, device, amp)
    for p in params:
        p.grad = None
    with torch.enable_grad(), freeze_bn_stats(model):
        closure(*batch)
    plain = ParamVec([torch.zeros_like(p) if p.grad is None else p.grad for p in params])
    for p in params:
        p.grad = None
    return norm(opt.method_gradient(closure, batch=batch, full_closure=full_closure) - plain).item()


@torch.no_grad()
def evaluate(model, split: DeviceSplit, cfg, amp, rank, world):
    """Mean test loss and accuracy (BatchNorm in eval mode), each rank taking every world-th image."""
    device = split.device
    model.eval()
    sums = torch.zeros(2, device=device, dtype=torch.float64)
    for xb, yb in split.eval_batches(cfg.eval_batch, rank, world):
        with _autocast(device, amp):
            logits = model(xb)
        sums += torch.stack([F.cross_entropy(logits.float(), yb, reduction="sum").double(),
                             (logits.argmax(1) == yb).sum().double()])
    model.train()
    _all_sum(sums, world)
    return (sums[0] / len(split)).item(), (sums[1] / len(split)).item()


def broadcast_buffers(model, world: int) -> None:
    """Every rank takes rank 0's buffers (BatchNorm running statistics)."""
    if world > 1:
        import torch.distributed as dist
        for b in model.buffers():
            dist.broadcast(b, 0)


# ------------------------------------------------------------------------------------------- train
def train_epoch(opt: SAMFamily, forward, batches, full_closure=None, amp: bool = False, bar=None) -> torch.Tensor:
    """The steps of one epoch over ``batches`` (model in train mode); returns the (loss sum, correct
    predictions) of the first passes as a device tensor. No step waits for the device: nothing is
    read back to the host, and no host value is copied to it (image counts are Python integers)."""
    sums = None

    def closure(xb, yb):
        nonlocal sums
        with _autocast(xb.device, amp):
            logits = forward(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        if opt.primary_pass:
            new = torch.stack([loss.detach().double() * len(yb), (logits.argmax(1) == yb).sum().double()])
            sums = new if sums is None else sums.add_(new)
        return loss

    forward.train()
    for step, (xb, yb) in enumerate(batches, start=1):
        opt.step(closure, batch=(xb, yb), full_closure=full_closure)
        if bar is not None:
            bar(step)
    return sums


def train(cfg: TrainConfig, data=None) -> dict:
    """Train, measure and checkpoint; returns the summary (also written to summary.json).
    ``data`` (host ``Arrays``) skips loading, e.g. in tests."""
    rank, world, device = setup_distributed(cfg.device)
    if cfg.batch_size % world:
        raise InputError(f"--batch-size {cfg.batch_size} must be a multiple of the {world} processes")
    cuda = device.type == "cuda"
    amp = cuda if cfg.amp is None else cfg.amp
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = True
    t_sched, r_sched = schedules(cfg)
    out = Path(cfg.out)
    data = data if data is not None else load_data(cfg)
    if len(data.y_train) < cfg.batch_size:
        raise InputError(f"--batch-size {cfg.batch_size} exceeds the {len(data.y_train)} training images")
    train_split = DeviceSplit(data.x_train, data.y_train, data.mean_std, device, channels_last)
    test_split = DeviceSplit(data.x_test, data.y_test, data.mean_std, device, channels_last)
    local_batch = cfg.batch_size // world
    subset, chunk = grad_subset_indices(len(train_split), cfg.grad_subset, cfg.eval_batch, world, cfg.seed)
    probe = next(train_split.eval_batches(local_batch))                   # the fixed batch S of grad_err

    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, len(data.classes))
    if cfg.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    params = [p for p in model.parameters() if p.requires_grad]
    ckpt = out / "checkpoint.pt"
    state = _resume_state(ckpt, cfg, rank, world) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
    else:
        broadcast_buffers(model, world)
        if world > 1:
            import torch.distributed as dist
            for p in model.parameters():
                dist.broadcast(p.data, 0)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None,
                                                        broadcast_buffers=False)
    forward = torch.compile(net) if cfg.compile else net
    opt = SAMFamily(model.parameters(), torch.optim.SGD, rho=r_sched(0), method=cfg.method,
                    method_options=cfg.method_options, model=net, seed=cfg.seed,
                    distributed="local" if world > 1 and cfg.ddp_perturbation == "local" else None,
                    max_grad_norm=cfg.max_grad_norm, lr=t_sched(0), momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay, **({"fused": True} if cuda else {}))
    full_closure = None
    if make_method(cfg.method, **cfg.method_options).needs_full_gradient:
        full_closure = _subset_closure(model, list(train_split.eval_batches(local_batch, limit=cfg.dnsam_size)),
                                       device, amp)

    rows, start = [], 0
    if state is not None:
        opt.load_state_dict(state["optim"])
        rows, start = list(state["rows"]), int(state["epoch"])
        torch.set_rng_state(state["rng_cpu"])
        if cuda and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    elif cfg.resume and rank == 0:
        print(f"--resume: no checkpoint in {out}; starting from epoch 0", file=sys.stderr)

    if cfg.theory_verdict and rank == 0:              # printed once every input check has passed
        print(f"run_cifar: warning: {cfg.theory_verdict}", file=sys.stderr)
    writer = _tensorboard(out) if cfg.tensorboard and rank == 0 else None
    background = BackgroundWriter()
    status, t_run = "ok", time.time()
    for epoch in range(start, cfg.epochs):
        lr, rho = t_sched(epoch), r_sched(epoch)
        opt.set_lr(lr)
        opt.set_rho(rho)
        before = ParamVec([p.detach().clone() for p in params])
        t0 = time.perf_counter()
        steps = train_split.batches_per_epoch(cfg.batch_size)
        bar = _bar(steps, epoch, cfg) if rank == 0 else None
        sums = train_epoch(opt, forward, train_split.train_batches(cfg.batch_size, cfg.seed, epoch, True, rank, world),
                           full_closure, amp, bar)
        if bar is not None:
            bar.close()
        broadcast_buffers(model, world)
        _all_sum(sums, world)
        train_loss, train_acc = (sums / (steps * cfg.batch_size)).tolist()
        t1 = time.perf_counter()
        test_loss, test_acc = evaluate(model, test_split, cfg, amp, rank, world)
        theory = theory_quantities(model, params, train_split, subset, chunk, cfg.weight_decay, amp, rank, world)
        grad_err = gradient_error(model, opt, params, probe, device, amp, full_closure)
        step_norm = norm(ParamVec([p.detach() for p in params]) - before).item()
        row = {"epoch": epoch, "lr": lr, "rho": rho, "train_loss": train_loss, "train_acc": train_acc,
               "test_loss": test_loss, "test_acc": test_acc, **theory, "step_norm": step_norm,
               "grad_err": grad_err, "epoch_time_s": round(t1 - t0, 3),
               "measure_time_s": round(time.perf_counter() - t1, 3)}
        rows.append(row)
        if not (math.isfinite(train_loss) and math.isfinite(theory["grad_norm"])):
            status = "diverged"
        last = epoch == cfg.epochs - 1 or status == "diverged"
        if rank == 0:
            atomic_write(out / "metrics.csv", _csv_text(rows))
            if last or (epoch + 1) % cfg.checkpoint_every == 0:
                background.submit(ckpt, {"epoch": epoch + 1, "model": model.state_dict(), "optim": opt.state_dict(),
                                         "rows": rows, "config": _resume_view(cfg, world),
                                         "rng_cpu": torch.get_rng_state(),
                                         "rng_cuda": torch.cuda.get_rng_state(device) if cuda else None})
            if writer is not None:
                for key in COLUMNS[1:]:
                    writer.add_scalar(key, row[key], epoch)
                writer.flush()
            if cfg.progress:
                print(f"epoch {epoch}: lr {lr:.4g} rho {rho:.4g} train {train_loss:.4f}/{train_acc:.3f} test "
                      f"{test_loss:.4f}/{test_acc:.3f} F {theory['objective']:.4f} |grad F| {theory['grad_norm']:.3e} "
                      f"|w_e - w_e-1| {step_norm:.3e} ({row['epoch_time_s']:.1f} s)", file=sys.stderr)
        if status == "diverged":
            break
    background.wait()
    summary = {"config": asdict(cfg), "world_size": world, "device": str(device), "amp": amp,
               "channels_last": channels_last, "status": status, "epochs_done": len(rows),
               "final": rows[-1] if rows else None, "wall_time_s": round(time.time() - t_run, 2),
               "versions": {**provenance(), "torch": torch.__version__}}
    if rank == 0:
        write_json(out / "summary.json", summary)
        if writer is not None:
            writer.close()
    return summary


def _resume_state(ckpt: Path, cfg: TrainConfig, rank: int, world: int) -> dict | None:
    """The checkpoint to continue from (None: none yet), read by rank 0 and broadcast to the others
    (no shared filesystem); InputError on every rank if it is unreadable or of other settings."""
    found = None
    if rank == 0 and ckpt.is_file():
        try:
            found = _load_checkpoint(ckpt)
        except InputError as err:
            found = str(err)
    if world > 1:
        import torch.distributed as dist
        box = [found]
        dist.broadcast_object_list(box, 0)
        found = box[0]
    if isinstance(found, str):
        raise InputError(found)
    if found is not None:
        mine = _resume_view(cfg, world)
        for key in mine:
            if found["config"].get(key) != mine[key]:
                raise InputError(f"--resume: {ckpt} was made with {key}={found['config'].get(key)!r}, "
                                 f"not {mine[key]!r}: use another --out or the same settings")
    return found


def _load_checkpoint(ckpt: Path) -> dict:
    """The state train() saved in ``ckpt``; InputError if it is unreadable or lacks one of CHECKPOINT_KEYS."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
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


def _bar(total, epoch, cfg):
    """Progress of an epoch: a bar on a terminal, a line every 10 s in a redirected log."""
    from convergence.progress import Progress
    return Progress(total, f"epoch {epoch}", enabled=cfg.progress) if cfg.progress else None


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:                     # tensorboard not installed: CSV only
        return None
    return SummaryWriter(str(out / "tensorboard"))
