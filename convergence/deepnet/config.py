"""The configuration of one deep-net training run (torch-free, so that a sweep can build and check it
on a machine without torch, e.g. a Ray head node): what ``experiments.run_cifar`` builds from its
flags and a CIFAR sweep cell from its axes, and what ``convergence.deepnet.train.train`` runs."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    model: str = "resnet18"
    dataset: str = "cifar10"
    data: str | None = None            # archive path (default: $SAMCONV_CIFAR10 / ../shared/data/...)
    cache_dir: str | None = None
    method: str = "sam"
    method_options: dict = field(default_factory=dict)
    rho: float | None = 0.05           # rho_0 (None with an expression rho_schedule)
    rho_schedule: str = "constant"
    stepsize: str = "constant"
    lr: float | None = 0.1             # t_0 (None with an expression stepsize)
    epochs: int = 200
    batch_size: int = 128
    weight_decay: float = 1e-3
    momentum: float = 0.0
    seed: int = 0
    amp: bool | None = None            # bf16 autocast; None: on CUDA only
    channels_last: bool | None = None  # None: on CUDA only
    compile: bool = False              # torch.compile the training forward
    sync_bn: bool = False              # SyncBatchNorm under torchrun (CUDA)
    out: str = "results/cifar"
    resume: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    grad_subset: int | None = None     # images for grad F (None: the whole training set)
    dnsam_size: int = 512
    eval_batch: int = 1000
    checkpoint_every: int = 1
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    max_grad_norm: float | None = None
    ddp_perturbation: str = "global"    # under torchrun: "global" (all-reduced) or "local" (m-sharpness)
    theory_verdict: str = ""            # why no convergence theorem covers the schedules ('' if one does)
