"""Step time of the SAM-family torch optimizer, against SGD and against a plain per-parameter-loop SAM.

    python benchmarks/deepnet_step.py                       # CPU: tiny CNN steps, ResNet-18 optimizer
    python benchmarks/deepnet_step.py --device cuda --amp --channels-last --sync-debug   # GPU: ResNet-18, batch 128
    python benchmarks/deepnet_step.py --model resnet18 --batch 16 --steps 10   # CPU, full steps of a real network

Two phases. Full steps: same model, same (synthetic) batch, same base SGD (fused on CUDA) for every
variant; variants alternate step by step so drifts of the machine hit all of them alike; the median
step time is reported. Optimizer alone: first_step + second_step with fixed gradients on
``--opt-model`` (ResNet-18 by default: 62 tensors, 11.2 M parameters), ours and the loop alternating,
in a phase of its own so that no forward/backward pass (and its busy threads) runs between them. Printed:
  sam_over_sgd      ours (step(closure)) / plain torch SGD; the floor is 2.0 (two forward-backward
                    passes), the target <= 2.05
  ours_over_loop    full step, ours / the per-parameter-loop SAM written below (the widely used PyTorch
                    SAM's structure), next to its floor 2 fwd_bwd / loop: the ratio an optimizer that
                    cost nothing would reach (on a CPU the passes dominate, so the floor is near 1)
  optimizer_only    the optimizer's own time, ours / loop; target <= 0.9
  host_syncs        (--sync-debug, CUDA) synchronisations CUDA reports during 5 SAM steps; target 0
and images/s for each variant. The loop reference and ours reach the same parameters after one
step in float64 (checked, printed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch                                              # noqa: E402
import torch.nn.functional as F                           # noqa: E402

from convergence.deepnet.models import make_model        # noqa: E402
from convergence.deepnet.optim import SAMFamily, disable_running_stats, enable_running_stats  # noqa: E402
from convergence.trace import atomic_write               # noqa: E402


class LoopSAM(torch.optim.Optimizer):
    """Reference: SAM with a Python loop over the parameters (norm, perturb, restore per tensor)."""

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        grads = [p.grad.norm(p=2) for g in self.param_groups for p in g["params"] if p.grad is not None]
        scale = self.param_groups[0]["rho"] / (torch.norm(torch.stack(grads), p=2) + 1e-12)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_(p.grad * scale)

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()


def same_step(model_name, batch):
    """One step of ours and of the loop SAM from the same start, in float64 on the CPU (at most 8
    images): the same parameters (in float32 a deep net amplifies the different roundings of the two
    formulas)."""
    batch = min(batch, 8)
    torch.manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (batch,))
    m_ours = make_model(model_name).double()
    m_loop = make_model(model_name).double()
    m_loop.load_state_dict(m_ours.state_dict())
    kw = dict(lr=0.01, momentum=0.0, weight_decay=1e-3)
    ours = SAMFamily(m_ours.parameters(), torch.optim.SGD, method="sam", rho=0.05, model=m_ours, **kw)
    loop = LoopSAM(m_loop.parameters(), torch.optim.SGD, rho=0.05, **kw)
    ours.step(lambda: F.cross_entropy(m_ours(x), y).backward())
    enable_running_stats(m_loop)
    F.cross_entropy(m_loop(x), y).backward()
    loop.first_step()
    loop.zero_grad(set_to_none=True)
    disable_running_stats(m_loop)
    F.cross_entropy(m_loop(x), y).backward()
    loop.second_step()
    return all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(m_ours.parameters(), m_loop.parameters()))


def timed(variants: dict, steps: int, warmup: int, sync) -> dict:
    """Median seconds per call of each variant, the variants alternating call by call, their order
    rotated every round (so that none always follows the same one)."""
    times = {k: [] for k in variants}
    names = list(variants)
    for i in range(warmup + steps):
        print(f"deepnet_step: {'warm-up' if i < warmup else 'timed'} round {i + 1}/{warmup + steps} of "
              f"{', '.join(names)}", file=sys.stderr, flush=True)
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn = variants[name]
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def optimizer_only(model_name, dev, steps, warmup, sync, kw) -> dict:
    """first_step + second_step of ours and of the loop SAM with fixed gradients (no passes)."""
    torch.manual_seed(0)
    m_ours = make_model(model_name).to(dev)
    m_loop = make_model(model_name).to(dev)
    m_loop.load_state_dict(m_ours.state_dict())
    grads = [torch.randn_like(p) * 1e-3 for p in m_ours.parameters()]
    ours = SAMFamily(m_ours.parameters(), torch.optim.SGD, method="sam", rho=0.05, **kw)
    loop = LoopSAM(m_loop.parameters(), torch.optim.SGD, rho=0.05, **kw)

    def run(model, opt):
        def step():
            for p, g in zip(model.parameters(), grads):
                p.grad = g
            opt.first_step()
            for p, g in zip(model.parameters(), grads):
                p.grad = g
            opt.second_step()
        return step

    med = timed({"ours": run(m_ours, ours), "loop": run(m_loop, loop)}, steps, warmup, sync)
    params = list(m_ours.parameters())
    return {"model": model_name, "tensors": len(params), "parameters": sum(p.numel() for p in params),
            "median_s": med, "ours_over_loop": med["ours"] / med["loop"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None, help="full steps; default: tiny on CPU, resnet18 on CUDA")
    ap.add_argument("--opt-model", default="resnet18", help="the optimizer-alone phase (default resnet18)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 30 CPU, 50 CUDA)")
    ap.add_argument("--opt-steps", type=int, default=None,
                    help="timed optimizer-alone steps (default 40 CPU, 200 CUDA)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--sync-debug", action="store_true",
                    help="CUDA: count the host synchronisations of 5 SAM steps (torch.cuda.set_sync_debug_mode)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file (atomically)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    model_name = args.model or ("resnet18" if cuda else "tiny")
    steps = args.steps or (50 if cuda else 30)
    opt_steps = args.opt_steps or (200 if cuda else 40)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    base = make_model(model_name).to(dev).to(memory_format=fmt)
    state0 = {k: v.clone() for k, v in base.state_dict().items()}
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.amp else None

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def loss_of(model):
        if amp is None:
            return F.cross_entropy(model(x), y)
        with amp():
            return F.cross_entropy(model(x).float(), y)

    def fresh():
        m = make_model(model_name).to(dev).to(memory_format=fmt)
        m.load_state_dict(state0)
        return m

    m_sgd, m_ours, m_two, m_loop, m_fb = fresh(), fresh(), fresh(), fresh(), fresh()
    kw = dict(lr=0.01, momentum=0.0, weight_decay=1e-3, **({"fused": True} if cuda else {}))
    sgd = torch.optim.SGD(m_sgd.parameters(), **kw)
    ours = SAMFamily(m_ours.parameters(), torch.optim.SGD, method="sam", rho=0.05, model=m_ours, **kw)
    two = SAMFamily(m_two.parameters(), torch.optim.SGD, method="sam", rho=0.05, **kw)
    loop = LoopSAM(m_loop.parameters(), torch.optim.SGD, rho=0.05, **kw)

    def step_sgd():
        sgd.zero_grad(set_to_none=True)
        loss_of(m_sgd).backward()
        sgd.step()

    def closure():
        loss = loss_of(m_ours)
        loss.backward()
        return loss

    def step_ours():
        ours.step(closure)

    def step_two():
        enable_running_stats(m_two)
        loss_of(m_two).backward()
        two.first_step(zero_grad=True)
        disable_running_stats(m_two)
        loss_of(m_two).backward()
        two.second_step(zero_grad=True)

    def step_loop():
        enable_running_stats(m_loop)
        loss_of(m_loop).backward()
        loop.first_step()
        loop.zero_grad(set_to_none=True)
        disable_running_stats(m_loop)
        loss_of(m_loop).backward()
        loop.second_step()
        loop.zero_grad(set_to_none=True)

    def step_fb():                                       # one forward-backward, no optimizer
        for p in m_fb.parameters():
            p.grad = None
        loss_of(m_fb).backward()

    med = timed({"sgd": step_sgd, "sam_ours": step_ours, "sam_ours_two_call": step_two,
                 "sam_loop": step_loop, "fwd_bwd": step_fb}, steps, args.warmup, sync)
    alone = optimizer_only(args.opt_model, dev, opt_steps, args.warmup, sync, kw)
    same = same_step(model_name, args.batch)
    syncs = count_syncs(step_ours, 5) if args.sync_debug and cuda else None
    fb = med["fwd_bwd"]
    res = {"device": str(dev), "model": model_name, "batch": args.batch, "steps": steps, "amp": args.amp,
           "channels_last": args.channels_last, "host_syncs": syncs,
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "median_step_s": med,
           "images_per_s": {k: args.batch / v for k, v in med.items()},
           "sam_over_sgd": med["sam_ours"] / med["sgd"],
           "sam_two_call_over_sgd": med["sam_ours_two_call"] / med["sgd"],
           "ours_over_loop": med["sam_ours"] / med["sam_loop"],
           "two_call_over_loop": med["sam_ours_two_call"] / med["sam_loop"],
           "floor_over_loop": 2 * fb / med["sam_loop"],
           "optimizer_only": alone,
           "same_parameters_ours_vs_loop": same}
    print(f"{model_name} batch {args.batch} on {dev} ({steps} steps, median)")
    for k, v in med.items():
        print(f"  {k:<20} {v * 1e3:9.2f} ms/step  {args.batch / v:10.1f} images/s")
    print(f"  sam_over_sgd          {res['sam_over_sgd']:.3f}   (floor 2.0, target <= 2.05)")
    print(f"  sam_two_call_over_sgd {res['sam_two_call_over_sgd']:.3f}")
    print(f"  ours_over_loop        {res['ours_over_loop']:.3f}   (floor {res['floor_over_loop']:.3f} = "
          f"2 fwd_bwd / loop)")
    print(f"  two_call_over_loop    {res['two_call_over_loop']:.3f}")
    print(f"optimizer alone, {alone['model']} ({alone['tensors']} tensors, {alone['parameters']:,} parameters, "
          f"{opt_steps} steps): ours {alone['median_s']['ours'] * 1e3:.2f} ms, loop "
          f"{alone['median_s']['loop'] * 1e3:.2f} ms")
    print(f"  optimizer_only ours/loop {alone['ours_over_loop']:.3f}   (target <= 0.9)")
    print(f"  same parameters (ours vs loop): {same}")
    if args.sync_debug:
        print(f"  host_syncs in 5 SAM steps: {syncs if cuda else 'not measured (CUDA only)'}   (target 0)")
    if args.json:
        atomic_write(args.json, json.dumps(res, indent=2) + "\n")
    return res


def count_syncs(step, n: int) -> int:
    """Synchronisations with the host that CUDA's sync debug mode reports during ``n`` calls of step."""
    import warnings
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(n):
                step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


if __name__ == "__main__":
    main()
