"""Two gloo processes on CPU: which gradient the perturbation uses under data parallelism.

  distributed="global"  every gradient all-reduced: equals one process on the global batch (SAM)
  distributed="local"   ascent gradient of each rank's own half, g_k all-reduced: equals one
                        process running m-SAM with m = the per-rank batch
  DDP-wrapped model, distributed=None: DDP's hooks average every backward -> the same as "global"
  DDP-wrapped model, distributed="local": the ascent pass under no_sync, DDP averages only the
                        final pass (one all-reduce per step) -> the same as "local"
and the training loop under a 2-process group keeps the ranks in step, BatchNorm buffers included,
and resumes on rank 1 from the checkpoint rank 0 alone holds (no shared filesystem).
"""
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the deep-net module needs torch: pip install -e \".[deepnet]\"")
torch.set_num_threads(1)        # tiny CPU models: spinning OpenMP threads cost 40x on a busy 2-core machine
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from torch.distributed.algorithms.ddp_comm_hooks import default_hooks  # noqa: E402

from convergence.deepnet.optim import SAMFamily  # noqa: E402

pytestmark = pytest.mark.torch

STEPS, BATCH = 3, 8


def _problem():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(BATCH, 5, generator=g, dtype=torch.float64)
    b = torch.randn(BATCH, generator=g, dtype=torch.float64)
    w0 = torch.randn(5, generator=g, dtype=torch.float64)
    return A, b, w0


class _Net(torch.nn.Module):
    def __init__(self, w0):
        super().__init__()
        self.w = torch.nn.Parameter(w0[:3].clone())
        self.v = torch.nn.Parameter(w0[3:].clone())

    def forward(self, A):
        return A @ torch.cat([self.w, self.v])


def _run(net, method, A, b, distributed=None, options=None, module=None):
    opt = SAMFamily(net.parameters(), torch.optim.SGD, method=method, method_options=options, rho=0.3,
                    lr=0.2, distributed=distributed, model=module)
    module = module or net

    def closure(Ab, bb):
        loss = torch.log1p((module(Ab) - bb) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(STEPS):
        opt.step(closure, batch=(A, b))
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def _train_worker(rank, world, port, tmp):
    """Train one epoch, then resume to two; rank r writes (rank 0 only) into its own folder, so rank 1
    can only resume from what rank 0 broadcasts."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from convergence.deepnet.data import Arrays
    from convergence.deepnet.train import TrainConfig, train
    rng = np.random.default_rng(0)
    y = np.arange(128) % 10
    x = (rng.integers(0, 128, (128, 32, 32, 3)) + 12 * y[:, None, None, None]).astype(np.uint8)
    data = Arrays("cifar10", x, y, x[:40], y[:40], tuple(str(i) for i in range(10)))
    out = os.path.join(tmp, f"rank{rank}")
    import convergence.deepnet.train as train_module
    models, real = [], train_module.broadcast_buffers

    def spy(model, world):                  # keeps this rank's model, to compare its buffers
        models.append(model)
        real(model, world)
    train_module.broadcast_buffers = spy
    for epochs in (1, 2):
        cfg = TrainConfig(model="tiny", method="sam", epochs=epochs, batch_size=32, eval_batch=32, out=out,
                          resume=epochs == 2, progress=False, tensorboard=False, device="cpu",
                          ddp_perturbation="local")
        summary = train(cfg, data)
    torch.save({"final": summary["final"], "world": summary["world_size"], "epochs": summary["epochs_done"],
                "buffers": {k: v.clone() for k, v in models[-1].named_buffers()}},
               os.path.join(tmp, f"train{rank}.pt"))
    _leave()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, tmp):
    mp.spawn(fn, args=(2, _free_port(), str(tmp)), nprocs=2, join=True)


@pytest.mark.slow
def test_perturbation_global_local_and_ddp_wrapped(tmp_path):
    _spawn(_optim_worker, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    A, b, w0 = _problem()
    sam_global = _run(_Net(w0), "sam", A, b)                                # one process, 8 rows
    msam_half = _run(_Net(w0), "msam", A, b, options={"m": BATCH // 2})     # chunks of 4 = each rank's half
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"{key}: ranks disagree"
    torch.testing.assert_close(r0["global"], sam_global, rtol=0, atol=1e-12)
    torch.testing.assert_close(r0["local"], msam_half, rtol=0, atol=1e-12)
    torch.testing.assert_close(r0["ddp_wrapped"], sam_global, rtol=0, atol=1e-12)
    torch.testing.assert_close(r0["ddp_local"], msam_half, rtol=0, atol=1e-12)
    assert r0["ddp_local_allreduces"].item() == STEPS          # the final pass only: one bucket per step
    assert (r0["local"] - r0["global"]).abs().max() > 1e-6                  # they are different methods


@pytest.mark.slow
def test_training_loop_under_two_processes(tmp_path):
    _spawn(_train_worker, tmp_path)
    t0, t1 = (torch.load(tmp_path / f"train{r}.pt", weights_only=True) for r in (0, 1))
    assert t0["world"] == 2 and t0["final"]["epoch"] == 1 and t0["epochs"] == t1["epochs"] == 2
    assert {k: v for k, v in t0["final"].items() if not k.endswith("time_s")} == \
        {k: v for k, v in t1["final"].items() if not k.endswith("time_s")}
    assert (tmp_path / "rank0" / "metrics.csv").is_file() and (tmp_path / "rank0" / "checkpoint.pt").is_file()
    assert not (tmp_path / "rank1").exists()                  # rank 1 wrote nothing, read nothing
    assert len(t0["buffers"]) == 6                            # rank 0's BN statistics on both ranks
    for key, value in t0["buffers"].items():
        assert torch.equal(value, t1["buffers"][key]), key
    assert t0["buffers"]["bn1.num_batches_tracked"].item() == 2 * 128 // 32


def _optim_worker(rank, world, port, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    A, b, w0 = _problem()
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    out = {"global": _run(_Net(w0), "sam", A[half], b[half], "global"),
           "local": _run(_Net(w0), "sam", A[half], b[half], "local")}
    net = _Net(w0)
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    out["ddp_wrapped"] = _run(net, "sam", A[half], b[half], None, module=ddp)
    net = _Net(w0)
    local = torch.nn.parallel.DistributedDataParallel(net)
    calls = []

    def counting(state, bucket):
        calls.append(1)
        return default_hooks.allreduce_hook(None, bucket)
    local.register_comm_hook(None, counting)
    out["ddp_local"] = _run(net, "sam", A[half], b[half], "local", module=local)
    out["ddp_local_allreduces"] = torch.tensor(len(calls))
    torch.save(out, os.path.join(tmp, f"rank{rank}.pt"))
    del ddp, local                          # release DDP's reducers before the group goes
    _leave()


def _leave():
    """End a worker once every rank has saved its results: a barrier, then an immediate exit. The
    gloo group's teardown at interpreter exit once aborted a worker (std::terminate from a thread
    still joinable) after its results were written; the test is about the results, not teardown."""
    dist.barrier()
    os._exit(0)
