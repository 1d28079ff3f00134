"""Simulate the SDE model of a method (Compagnoni et al. 2023: SGD, USAM, SAM, DNSAM; any rule of
convergence.methods whose ascent direction is a function of the step's gradients) next to the
discrete method, and write the loss trajectories, a summary and a figure.

examples:
  python -m experiments.run_sde --method usam --eta 0.01 --rho 0.1 --problem iris
  python -m experiments.run_sde --method sam --eta 0.05 --rho 0.5 --problem noisy_quadratic --paths 2000
  python -m experiments.run_sde --method usam --eta 0.01 --rho 2.5 --problem saddle --time 60

methods: gd (SGD on mini-batches), usam, sam, dnsam, unified (lambda 0.5), asam; not the ones with
state, random numbers or batch splitting (fsam, vasso, rsam, msam).

problems: noisy_quadratic (f_g = 1/2 (x - c_g)^T H (x - c_g), H = diag(1, 0.5), 4 centres),
saddle (H = diag(1, -0.5, -2), full batch: the SDE is a flow), iris (linear MLP, batch 10),
breast_cancer (tanh MLP, batch 20).

Outputs under --out (default results/sde-<problem>-<method>): trajectories.csv (time, path, kind,
loss), summary.json (config, provenance, mean final losses), figure.png/pdf.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from convergence.spec import check_memory
from experiments.common import OneLineParser, check_seed, check_writable, fail, positive

PROBLEMS = ("noisy_quadratic", "saddle", "iris", "breast_cancer")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m experiments.run_sde", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="sam", help="gd, usam, sam, dnsam, unified or asam (default sam)")
    p.add_argument("--eta", type=float, default=0.01, help="learning rate eta (default 0.01)")
    p.add_argument("--rho", type=float, default=0.1, help="perturbation radius rho (default 0.1)")
    p.add_argument("--problem", default="noisy_quadratic", help=f"one of: {', '.join(PROBLEMS)}")
    p.add_argument("--time", type=float, default=None,
                   help="horizon T = steps * eta (default: 3 for the MLPs, 2 noisy_quadratic, 30 saddle)")
    p.add_argument("--dt", type=float, default=None, help="Euler-Maruyama step (default eta)")
    p.add_argument("--paths", type=int, default=3, help="SDE paths = discrete runs (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of inits, batches and Brownian paths (default 0)")
    p.add_argument("--out", default=None, help="output folder (default results/sde-<problem>-<method>)")
    return p


def make_objective(name: str):
    from convergence.errors import unknown
    from convergence.objectives import MLPBatches, NoisyQuadratic
    if name == "noisy_quadratic":
        from experiments.papers.compagnoni2023 import WEAK_C, WEAK_H, WEAK_X0
        obj = NoisyQuadratic(WEAK_H, WEAK_C)
        return obj, lambda runs, seed: np.tile(WEAK_X0, (len(runs), 1))
    if name == "saddle":
        from experiments.papers.compagnoni2023 import SADDLE_EIG
        obj = NoisyQuadratic.diagonal(SADDLE_EIG)
        return obj, lambda runs, seed: np.tile(np.full(len(SADDLE_EIG), 0.1), (len(runs), 1))
    if name in ("iris", "breast_cancer"):
        obj = getattr(MLPBatches, name)()
        return obj, obj.init
    raise unknown("problem", name, PROBLEMS)


def configure(args) -> dict:
    from convergence import sde
    from convergence.errors import InputError
    from convergence.methods import make_method
    sde.SDE(make_method(args.method))
    positive("--eta", args.eta)
    positive("--rho", args.rho, allow_zero=True)
    positive("--paths", args.paths, integer=True)
    check_seed(args.seed)
    obj, _ = make_objective(args.problem)
    # the SDE's arrays are (paths, batches, dim): the batch gradients, their steps and the HVPs
    check_memory(8 * 8 * args.paths * obj.dim * obj.n_batches, "--paths x dimension x batches",
                 fix="lower --paths")             # about 8 float64 arrays of (paths, batches, dim) alive
    T = args.time if args.time is not None else {"saddle": 30.0, "noisy_quadratic": 2.0}.get(args.problem, 3.0)
    positive("--time", T)
    dt = positive("--dt", args.dt) if args.dt is not None else args.eta
    if T / args.eta > 1e6 or T / dt > 1e6:
        raise InputError(f"--time {T} needs more than 10^6 steps: raise --eta/--dt or lower --time")
    if round(T / args.eta) < 1 or T / dt < 1:
        raise InputError(f"--time {T} is shorter than one step (--eta {args.eta}, --dt {dt}): raise --time")
    out = Path(args.out if args.out is not None else f"results/sde-{args.problem}-{args.method}")
    check_writable(str(out) if args.out is None else args.out)
    return {"method": args.method, "eta": args.eta, "rho": args.rho, "problem": args.problem, "time": T,
            "dt": dt, "paths": args.paths, "seed": args.seed, "out": str(out)}


def execute(cfg: dict):
    from convergence import sde
    from convergence.methods import make_method
    obj, init = make_objective(cfg["problem"])
    model = sde.SDE(make_method(cfg["method"]))
    runs = np.arange(cfg["paths"])
    X0 = init(runs, cfg["seed"])
    steps = int(round(cfg["time"] / cfg["eta"]))
    times = np.linspace(0, steps * cfg["eta"], 51)
    with np.errstate(all="ignore"):             # a diverging path is reported, not warned about
        t, vd, _ = sde.discrete(model.rule, obj, cfg["eta"], cfg["rho"], X0, steps, seed=cfg["seed"], times=times)
        _, vs, _ = sde.simulate(model, obj, cfg["eta"], cfg["rho"], X0, steps * cfg["eta"], dt=cfg["dt"],
                                seed=cfg["seed"] + 1, times=times)
    return t, vd, vs


def diverged(v: np.ndarray) -> int:
    """Paths whose loss left the finite numbers."""
    return int((~np.isfinite(v).all(axis=0)).sum())


def write(cfg, t, vd, vs, seconds):
    """trajectories.csv, figure.png/pdf and summary.json, written as one folder (a hidden sibling
    renamed into place: an interrupted write or a full disk leaves the old result or nothing)."""
    from convergence.trace import json_text, provenance
    from experiments.results import write_folder
    from figures.convergence import encode
    from figures.sde import paths
    out = Path(cfg["out"])
    buf = io.StringIO()
    buf.write("time,path,kind,loss\n")
    for kind, v in (("discrete", vd), ("sde", vs)):
        for i, ti in enumerate(t):
            for p in range(v.shape[1]):
                buf.write(f"{ti:.10g},{p},{kind},{v[i, p]:.10g}\n")
    pictures = encode(paths(t, [("discrete", vd), ("SDE", vs)],
                            f"{cfg['method'].upper()} on {cfg['problem']}, η = {cfg['eta']}, ρ = {cfg['rho']}"))
    summary = {"config": cfg, "seed": cfg["seed"], "provenance": provenance(),
               "final_loss_discrete": float(vd[-1].mean()), "final_loss_sde": float(vs[-1].mean()),
               "diverged_paths": {"discrete": diverged(vd), "sde": diverged(vs)}, "seconds": round(seconds, 3)}
    write_folder(out, {"trajectories.csv": buf.getvalue(), "figure.png": pictures["png"],
                       "figure.pdf": pictures["pdf"], "summary.json": json_text(summary)})


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded("python -m experiments.run_sde", _main, argv)


def _main(argv=None) -> int:
    from convergence.errors import InputError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = configure(args)
    except InputError as err:
        return fail(parser.prog, err.for_flags())
    start = time.time()
    t, vd, vs = execute(cfg)
    write(cfg, t, vd, vs, time.time() - start)
    print(f"{cfg['method'].upper()} on {cfg['problem']}: final loss discrete {vd[-1].mean():.6g}, "
          f"SDE {vs[-1].mean():.6g} (mean of {cfg['paths']}); wrote {cfg['out']}")
    bad = {kind: diverged(v) for kind, v in (("discrete", vd), ("SDE", vs)) if diverged(v)}
    if bad:
        print("diverged: " + ", ".join(f"{n} of {cfg['paths']} {kind} paths" for kind, n in bad.items())
              + " (exit status 3)")
    return 3 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
