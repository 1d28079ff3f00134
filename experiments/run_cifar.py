"""Train a CIFAR network with a SAM-family optimizer and log per-epoch convergence measurements.

examples:
  python -m experiments.run_cifar --model resnet18 --method sam --stepsize diminish1 --epochs 200
  python -m experiments.run_cifar --model wrn28_10 --method fsam --beta 0.6 --amp --out results/wrn-fsam
  python -m experiments.run_cifar --model tiny --epochs 2 --limit-train 512 --limit-test 256 --device cpu
  torchrun --nproc_per_node 4 -m experiments.run_cifar --model resnet18 --method sam --batch-size 512

Defaults follow the fundamental-SAM CIFAR experiments: rho 0.05, SGD with momentum 0 and weight decay
1e-3, batch 128, 200 epochs, lr 0.1. Schedules (once per epoch e = 0, 1, ...): constant t_e = lr;
diminish1 lr/(e+1); diminish2 lr then lr/e^0.5001; diminish3 lr then lr/(n ln n), n = 3 + floor((e-1)/5).

Writes metrics.csv (one row per epoch: lr, rho, train/test loss and accuracy, ||grad f|| estimate on
a fixed training subset, ||g - grad f|| on a probe batch), checkpoint.pt (every epoch, atomic) and
summary.json under --out. Exit status: 0, 2 for bad input (nothing written), 3 if training diverged.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments.common import OneLineParser, add_method_flags, check_writable, fail, method_options, positive

PROG = "python -m experiments.run_cifar"


def build_parser() -> argparse.ArgumentParser:
    from convergence.methods import METHODS
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="resnet18, resnet34, wrn28_10 or tiny (default resnet18)")
    p.add_argument("--dataset", default="cifar10", help="cifar10 or cifar100 (default cifar10)")
    p.add_argument("--data", default=None,
                   help="archive: cifar10-jpeg.tar.gz (default $SAMCONV_CIFAR10, else ../shared/data/) or "
                        "cifar-100-python.tar.gz (default $SAMCONV_CIFAR100)")
    p.add_argument("--cache-dir", default=None, help="where CIFAR-10 is cached decoded (default $SAMCONV_CACHE "
                                                      "or ~/.cache/samconv)")
    p.add_argument("--method", default="sam", help=f"one of: {', '.join(METHODS)} (default sam)")
    p.add_argument("--rho", type=float, default=0.05, help="perturbation radius (default 0.05)")
    p.add_argument("--stepsize", default="constant",
                   help="constant, diminish1, diminish2 or diminish3 (default constant)")
    p.add_argument("--lr", type=float, default=0.1, help="t_0 (default 0.1)")
    p.add_argument("--epochs", type=int, default=200, help="epochs (default 200)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="SGD weight decay (default 1e-3)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order, augmentation, RSAM (default 0)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the forward passes")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="clip g_k to this norm (default: no clipping)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt when present")
    p.add_argument("--out", default=None,
                   help="output folder (default results/cifar-<dataset>-<model>-<method>-<stepsize>-seed<seed>)")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images (class-balanced)")
    p.add_argument("--limit-test", type=int, default=None, help="use the first N test images (class-balanced)")
    p.add_argument("--probe-size", type=int, default=2048,
                   help="training images of the fixed subset for the ||grad f|| estimate (default 2048)")
    p.add_argument("--dnsam-size", type=int, default=512,
                   help="dnsam: images of that subset for its full-gradient norm, every step (default 512)")
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


def configure(args, local: bool = True):
    """Validate every flag (InputError on bad input) and return the TrainConfig; writes nothing.
    ``local=False`` (a sweep planning runs for other machines) skips the check of this machine's GPUs."""
    from convergence.errors import InputError, unknown
    from convergence.methods import make_method
    try:
        from convergence.deepnet.models import MODELS
        from convergence.deepnet.schedules import CIFAR_SCHEDULES
        from convergence.deepnet.train import TrainConfig
    except ImportError as exc:
        raise InputError(f"run_cifar needs torch ({exc}): pip install -e \".[deepnet]\"") from None
    if args.model not in MODELS:
        raise unknown("model", args.model, MODELS)
    if args.dataset not in ("cifar10", "cifar100"):
        raise unknown("dataset", args.dataset, ("cifar10", "cifar100"))
    if args.stepsize not in CIFAR_SCHEDULES:
        raise unknown("stepsize", args.stepsize, CIFAR_SCHEDULES)
    positive("--rho", args.rho, allow_zero=True)
    positive("--lr", args.lr)
    positive("--epochs", args.epochs, integer=True)
    positive("--batch-size", args.batch_size, integer=True)
    positive("--weight-decay", args.weight_decay, allow_zero=True)
    positive("--momentum", args.momentum, allow_zero=True)
    positive("--probe-size", args.probe_size, integer=True)
    positive("--dnsam-size", args.dnsam_size, integer=True)
    if args.momentum >= 1:
        raise InputError(f"--momentum must be below 1, got {args.momentum}")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    for flag in ("limit_train", "limit_test"):
        if getattr(args, flag) is not None:
            positive("--" + flag.replace("_", "-"), getattr(args, flag), integer=True)
    if args.clip_grad_norm is not None:
        positive("--clip-grad-norm", args.clip_grad_norm)
    check_device(args.device, local)
    options = method_options(args)
    try:
        rule = make_method(args.method, **options)                   # unknown names, foreign flags
    except InputError as err:
        raise InputError(err.for_flags()) from None
    if rule.splits_batch:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = args.batch_size // world
        if local % rule.m:
            raise InputError(f"--m {rule.m} must divide the per-process batch {local}")
    if args.limit_train is not None and args.limit_train < args.batch_size:
        raise InputError(f"--limit-train {args.limit_train} is below --batch-size {args.batch_size}")
    out = Path(args.out or f"results/cifar-{args.dataset}-{args.model}-{args.method}-{args.stepsize}-seed{args.seed}")
    check_writable(out)
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise InputError(f"--out {out} already holds a checkpoint: pass --resume to continue it, or choose "
                         f"another --out")
    return TrainConfig(model=args.model, dataset=args.dataset, data=args.data, cache_dir=args.cache_dir,
                       method=args.method, method_options=options, rho=args.rho, stepsize=args.stepsize,
                       lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                       weight_decay=args.weight_decay, momentum=args.momentum, seed=args.seed, amp=args.amp,
                       out=str(out), resume=args.resume, limit_train=args.limit_train,
                       limit_test=args.limit_test, probe_size=args.probe_size, dnsam_size=args.dnsam_size,
                       device=args.device, progress=not args.no_progress,
                       tensorboard=not args.no_tensorboard, max_grad_norm=args.clip_grad_norm,
                       ddp_perturbation=args.ddp_perturbation)


def main(argv=None) -> int:
    from convergence.errors import InputError
    args = build_parser().parse_args(argv)
    try:
        cfg = configure(args)
        from convergence.deepnet.train import train
        summary = train(cfg)
    except InputError as exc:
        return fail(PROG, str(exc))
    final = summary["final"] or {}
    if summary["status"] == "diverged":
        print(f"diverged at epoch {final.get('epoch')}; results in {cfg.out}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":
        print(f"{cfg.method} {cfg.model} {cfg.stepsize}: {summary['epochs_done']} epochs, test accuracy "
              f"{final.get('test_acc', float('nan')):.4f}, ||grad f|| ~ {final.get('grad_norm_est', float('nan')):.3e}"
              f"; results in {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
