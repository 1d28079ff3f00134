"""Train a CIFAR network with a SAM-family optimizer and log, per epoch, what the convergence theory
speaks of: ||grad F||, F and ||w_e - w_{e-1}|| for F = mean training loss + (wd/2)||w||^2.

examples:
  python -m experiments.run_cifar --model resnet18 --method sam --stepsize diminish1 --epochs 200
  python -m experiments.run_cifar --model resnet18 --stepsize diminish1 --rho-schedule diminish1 --require-theory
  python -m experiments.run_cifar --model wrn28_10 --method fsam --beta 0.6 --out results/wrn-fsam
  python -m experiments.run_cifar --dataset cifar100 --data ~/data/cifar-100-python.tar.gz
  python -m experiments.run_cifar --model tiny --epochs 2 --limit-train 512 --limit-test 256 --device cpu
  torchrun --nproc_per_node 4 -m experiments.run_cifar --model resnet18 --method sam --batch-size 512

Defaults follow the fundamental-SAM CIFAR experiments: rho 0.05, SGD with momentum 0 and weight decay
1e-3, batch 128, 200 epochs, lr 0.1. Schedules of t_e (--stepsize) and rho_e (--rho-schedule), once per
epoch e = 0, 1, ...: constant v; diminish1 v/(e+1); diminish2 v then v/e^0.5001; diminish3 v then
v/(n ln n), n = 3 + floor((e-1)/5) (v = --lr or --rho); or an expression in k = the epoch, such as
"0.05/(k+1)**0.6" (then without --lr/--rho). The schedules are checked against the convergence
theorems' hypotheses before training (a warning; --require-theory: exit 2).

Data: CIFAR-10 from cifar10-jpeg.tar.gz (the default, ../shared/data/) or the standard
cifar-10-python.tar.gz; CIFAR-100 from cifar-100-python.tar.gz; each identified by its sha256.

Writes metrics.csv (one row per epoch), checkpoint.pt (every --checkpoint-every epochs and at the end,
atomic, written in the background) and summary.json under --out. Exit status: 0, 2 for bad input
(nothing written), 3 if training diverged.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from convergence.deepnet import MODEL_NAMES
from convergence.theory import schedule_verdict
from experiments.common import (OneLineParser, add_method_flags, check_seed, check_writable, fail, method_options,
                                positive, slug)

PROG = "python -m experiments.run_cifar"


def build_parser() -> argparse.ArgumentParser:
    from convergence.methods import METHODS
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="resnet18, resnet34, wrn28_10 or tiny (default resnet18)")
    p.add_argument("--dataset", default="cifar10", help="cifar10 or cifar100 (default cifar10)")
    p.add_argument("--data", default=None,
                   help="archive: cifar10-jpeg.tar.gz or cifar-10-python.tar.gz (default $SAMCONV_CIFAR10, else "
                        "../shared/data/cifar10-jpeg.tar.gz), or cifar-100-python.tar.gz (default $SAMCONV_CIFAR100)")
    p.add_argument("--cache-dir", default=None, help="where the JPEG archive is cached decoded (default "
                                                      "$SAMCONV_CACHE or ~/.cache/samconv)")
    p.add_argument("--method", default="sam", help=f"one of: {', '.join(METHODS)} (default sam)")
    p.add_argument("--rho", type=float, default=None, help="rho_0 of a named --rho-schedule (default 0.05)")
    p.add_argument("--rho-schedule", default="constant",
                   help="constant, diminish1, diminish2, diminish3 or an expression in k = epoch (default constant)")
    p.add_argument("--stepsize", default="constant",
                   help="constant, diminish1, diminish2, diminish3 or an expression in k = epoch (default constant)")
    p.add_argument("--lr", type=float, default=None, help="t_0 of a named --stepsize (default 0.1)")
    p.add_argument("--require-theory", action="store_true",
                   help="refuse (exit 2) schedules under which no convergence theorem's hypotheses hold")
    p.add_argument("--epochs", type=int, default=200, help="epochs (default 200)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="SGD weight decay (default 1e-3)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order, augmentation, RSAM (default 0)")
    amp = p.add_mutually_exclusive_group()
    amp.add_argument("--amp", action="store_const", const=True, dest="amp", default=None,
                     help="bf16 autocast for the forward passes (default on CUDA)")
    amp.add_argument("--no-amp", action="store_const", const=False, dest="amp", help="float32 forward passes")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW memory format on CUDA too")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    p.add_argument("--sync-bn", action="store_true", help="under torchrun on CUDA: SyncBatchNorm (batch "
                                                           "statistics of the global batch)")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="clip g_k to this norm (default: no clipping)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt when present")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default 1; "
                                                                     "the last epoch always)")
    p.add_argument("--out", default=None,
                   help="output folder (default results/cifar-<dataset>-<model>-<method>-<stepsize>-seed<seed>)")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images (class-balanced)")
    p.add_argument("--limit-test", type=int, default=None, help="use the first N test images (class-balanced)")
    p.add_argument("--grad-subset", type=int, default=None,
                   help="measure grad F on a fixed random subset of N training images, with its standard "
                        "error (default: the whole training set)")
    p.add_argument("--dnsam-size", type=int, default=512,
                   help="dnsam: training images of the fixed subset for its full-gradient norm, every step "
                        "(default 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--ddp-perturbation", default="global", choices=["global", "local"],
                   help="under torchrun: ascent gradient all-reduced (global) or per process (local = "
                        "m-sharpness, m = per-process batch) (default global)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs even if installed")
    add_method_flags(p)
    return p


def check_device(name: str, local: bool = True) -> None:
    """Refuse a --device torch cannot parse or that is not auto, cpu, cuda or cuda:N; with ``local``
    (the run happens on this machine) also a CUDA device this machine lacks."""
    import torch

    from convergence.errors import InputError
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got '{name}'")
    if device.type == "cpu" or not local:
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        raise InputError(f"--device {name}: CUDA is not available here (torch {torch.__version__}): "
                         f"use --device cpu or auto")
    if (device.index or 0) >= count:
        raise InputError(f"--device {name}: this machine has {count} CUDA device(s): choose cuda:0 to "
                         f"cuda:{count - 1}")


def check_archive(dataset: str, data, cache_dir) -> None:
    """Refuse, before any work, a run whose data archive is missing here (where the loader would find
    it: --data, $SAMCONV_CIFAR10/100, else the default archive or its decoded cache)."""
    from convergence.deepnet.data import ARCHIVES, CIFAR10_SHA256, ENV, default_cache_dir, default_cifar10_path
    from convergence.errors import InputError
    named = data or os.environ.get(ENV.get(dataset, ""))
    if not named and dataset == "cifar100":
        raise InputError("CIFAR-100 needs its archive: pass --data PATH to cifar-100-python.tar.gz (or set "
                         "SAMCONV_CIFAR100)")
    if not named:
        cache = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"cifar10-{CIFAR10_SHA256[:12]}.npz"
        if cache.is_file():
            return
    path = Path(named) if named else default_cifar10_path()
    if not path.is_file():
        names = " or ".join(dict.fromkeys(getattr(a, "file", a) for a in ARCHIVES.values()
                                          if getattr(a, "dataset", "cifar10") == dataset))
        raise InputError(f"{dataset} archive not found at {path}: pass --data PATH to {names} "
                         f"(or set {ENV.get(dataset, 'SAMCONV_CIFAR10')})")


def validate(args, local: bool = True) -> dict:
    """Check every flag that torch is not needed for (InputError on bad input; writes nothing):
    names, numbers, seed, method options, the epoch schedules against the theorems, --out. Returns
    what configure() builds on: the method options, lr and rho, the output folder, the theory verdict."""
    import re

    from convergence.deepnet.schedules import epoch_schedules, is_named
    from convergence.errors import InputError, unknown
    from convergence.methods import make_method
    if args.model not in MODEL_NAMES:
        raise unknown("model", args.model, MODEL_NAMES)
    if args.dataset not in ("cifar10", "cifar100"):
        raise unknown("dataset", args.dataset, ("cifar10", "cifar100"))
    for flag in ("rho", "lr"):
        if getattr(args, flag) is not None:
            positive("--" + flag, getattr(args, flag), allow_zero=flag == "rho")
    positive("--epochs", args.epochs, integer=True)
    positive("--batch-size", args.batch_size, integer=True)
    positive("--weight-decay", args.weight_decay, allow_zero=True)
    positive("--momentum", args.momentum, allow_zero=True)
    positive("--dnsam-size", args.dnsam_size, integer=True)
    positive("--checkpoint-every", args.checkpoint_every, integer=True)
    if args.momentum >= 1:
        raise InputError(f"--momentum must be below 1, got {args.momentum}")
    check_seed(args.seed)
    for flag in ("limit_train", "limit_test", "grad_subset"):
        if getattr(args, flag) is not None:
            positive("--" + flag.replace("_", "-"), getattr(args, flag), integer=True)
    if args.clip_grad_norm is not None:
        positive("--clip-grad-norm", args.clip_grad_norm)
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", args.device):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got '{args.device}'")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    options = method_options(args)
    try:
        rule = make_method(args.method, **options)                   # unknown names, foreign flags
    except InputError as err:
        raise InputError(err.for_flags()) from None
    if rule.splits_batch and (args.batch_size // world) % rule.m:
        raise InputError(f"--m {rule.m} must divide the per-process batch {args.batch_size // world}")
    if args.limit_train is not None and args.limit_train < args.batch_size:
        raise InputError(f"--limit-train {args.limit_train} is below --batch-size {args.batch_size}")
    out = Path(args.out if args.out is not None else f"results/cifar-{args.dataset}-{args.model}-{args.method}-"
                           f"{slug(args.stepsize, 40)}-seed{args.seed}")
    given = {flag: getattr(args, flag) for flag in ("lr", "rho")}
    for flag, spec, default in (("lr", args.stepsize, 0.1), ("rho", args.rho_schedule, 0.05)):
        if is_named(spec) and given[flag] is None:
            given[flag] = default
    try:
        t, r = epoch_schedules(args.stepsize, given["lr"], args.rho_schedule, given["rho"], args.epochs)
    except InputError as err:
        raise InputError(err.for_flags()) from None
    verdict = schedule_verdict(rule, t, r, args.epochs)
    if verdict and args.require_theory:
        raise InputError(f"--require-theory: {verdict}")
    check_writable(str(out) if args.out is None else args.out)
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise InputError(f"--out {out} already holds a checkpoint: pass --resume to continue it, or choose "
                         f"another --out")
    return {"options": options, "lr": given["lr"], "rho": given["rho"], "out": out, "verdict": verdict,
            "world": world}


def configure(args, local: bool = True, archive: bool = False, needs_torch: bool = True):
    """validate() the flags and build the run's TrainConfig, whose ``theory_verdict`` says why no
    convergence theorem covers the schedules ('' when one does); writes nothing. Where torch is
    installed, also the device (``local=False``: a sweep planning runs for other machines skips this
    machine's GPUs); ``archive``: refuse a data archive missing here; ``needs_torch``: the run happens
    in this process, so refuse it without torch."""
    from convergence.deepnet.config import TrainConfig
    from convergence.errors import InputError
    v = validate(args, local)
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        missing = InputError(f"run_cifar needs torch ({exc}): pip install -e \".[deepnet]\"")
    else:
        missing = None
        check_device(args.device, local)
    if archive:                              # the device first, then the data, then what is missing
        check_archive(args.dataset, args.data, args.cache_dir)
    if missing and needs_torch:
        raise missing
    if args.sync_bn and (v["world"] == 1 or args.device == "cpu" or (local and not missing and not _cuda())):
        raise InputError("--sync-bn needs torchrun with CUDA devices (torch's SyncBatchNorm runs on GPUs only): "
                         "drop it")
    cfg = TrainConfig(model=args.model, dataset=args.dataset, data=args.data, cache_dir=args.cache_dir,
                      method=args.method, method_options=v["options"], rho=v["rho"], rho_schedule=args.rho_schedule,
                      stepsize=args.stepsize, lr=v["lr"], epochs=args.epochs, batch_size=args.batch_size,
                      weight_decay=args.weight_decay, momentum=args.momentum, seed=args.seed, amp=args.amp,
                      channels_last=False if args.no_channels_last else None, compile=args.compile,
                      sync_bn=args.sync_bn, out=str(v["out"]), resume=args.resume, limit_train=args.limit_train,
                      limit_test=args.limit_test, grad_subset=args.grad_subset, dnsam_size=args.dnsam_size,
                      checkpoint_every=args.checkpoint_every, device=args.device, progress=not args.no_progress,
                      tensorboard=not args.no_tensorboard, max_grad_norm=args.clip_grad_norm,
                      ddp_perturbation=args.ddp_perturbation)
    cfg.theory_verdict = v["verdict"]
    return cfg


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()



def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    from convergence.errors import InputError
    args = build_parser().parse_args(argv)
    try:
        cfg = configure(args, archive=True)
    except InputError as exc:
        return fail(PROG, exc.for_flags())
    return train_and_report(cfg)


def run_config(flags: list[str], local: bool = True, archive: bool = True, needs_torch: bool = True, **fields):
    """The TrainConfig of one run of a sweep (experiments.sweep, experiments.cifar_table): ``flags``,
    the user's extra run_cifar flags, parsed by this command's parser; ``fields`` (its attributes, e.g.
    stepsize, seed, out) set on top; then configure()d. A bad flag raises the InputError it names."""
    import contextlib
    import io

    from convergence.errors import InputError
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(flags)
        except SystemExit:
            raise InputError(err.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]) from None
    vars(args).update(fields)
    return configure(args, local, archive, needs_torch)


def train_and_report(cfg) -> int:
    """Train the run (convergence.deepnet.train.train) and print its one-line result; the exit status:
    0, 3 if it diverged, 2 for bad input found while loading (a corrupt data archive: one line)."""
    from convergence.deepnet.train import train
    from convergence.errors import InputError
    try:
        summary = train(cfg)
    except InputError as exc:
        return fail(PROG, exc.for_flags())
    final = summary["final"] or {}
    if summary["status"] == "diverged":
        print(f"diverged at epoch {final.get('epoch')}; results in {cfg.out}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":
        print(f"{cfg.method} {cfg.model} {cfg.stepsize}/{cfg.rho_schedule}: {summary['epochs_done']} epochs, "
              f"test accuracy {final.get('test_acc', float('nan')):.4f}, ||grad F|| "
              f"{final.get('grad_norm', float('nan')):.3e}; results in {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
