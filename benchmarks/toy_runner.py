"""Speed and memory of the batched toy runner, as ratios against references timed in this process.

    python benchmarks/toy_runner.py                    # R = 1000 runs x K = 2000 steps, 10-d Rosenbrock
    python benchmarks/toy_runner.py --runs 200 --iters 500 --memory-iters 100000

Compares SAM with diminishing steps run by the library against
  (a) a naive reference: Python loops over runs and iterations, 1-D numpy arrays (timed on
      --naive-runs runs and scaled by R / naive-runs: its cost is exactly linear in R), and
  (b) a hand-fused numpy loop over (R, d) arrays with the gradient written inline.
Then the cost of recording (the geometric grid) against no recording, float32 against float64, and
the peak RSS of a long run (it must not grow with K beyond the recorded grid).
Last line: ``speedup_vs_naive=X fused_ratio=Y``. Targets: X >= 50, Y >= 0.5.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from convergence.methods import make_method  # noqa: E402
from convergence.runner import iterate as run  # noqa: E402
from convergence.schedules import diminishing  # noqa: E402
from problems import make_problem  # noqa: E402

T0, P, RHO0, Q = 1e-4, 0.6, 0.05, 0.6


def naive(x0: np.ndarray, iters: int) -> np.ndarray:
    """SAM on Rosenbrock, one run at a time, one iteration at a time, 1-D arrays."""
    def grad(x):
        g = np.zeros_like(x)
        r = 200.0 * (x[1:] - x[:-1] ** 2)
        g[:-1] = -2.0 * x[:-1] * r - 2.0 * (1.0 - x[:-1])
        g[1:] += r
        return g
    out = []
    for x in x0:
        x = x.copy()
        for k in range(iters):
            t, rho = T0 / (k + 1) ** P, RHO0 / (k + 1) ** Q
            g = grad(x)
            n = np.linalg.norm(g)
            d = g / n if n > 0 else 0 * g
            x = x - t * grad(x + rho * d)
        out.append(x)
    return np.array(out)


def fused(X: np.ndarray, iters: int) -> np.ndarray:
    """SAM on Rosenbrock over (R, d) arrays with everything inline: the fastest plain numpy."""
    X = X.copy()
    G = np.empty_like(X)

    def grad(Y):
        head, tail = Y[:, :-1], Y[:, 1:]
        r = 200.0 * (tail - head * head)
        G[:, :-1] = -2.0 * head * r - 2.0 * (1.0 - head)
        G[:, -1] = 0.0
        G[:, 1:] += r
        return G
    for k in range(iters):
        t, rho = T0 / (k + 1) ** P, RHO0 / (k + 1) ** Q
        g = grad(X)
        n = np.sqrt(np.einsum("rd,rd->r", g, g))[:, None]
        Y = X + rho * np.divide(g, n, out=np.zeros_like(g), where=n > 0)
        X -= t * grad(Y)
    return X


def library(problem, X0, iters, grid=None, dtype=np.float64):
    return run(problem, make_method("sam"), diminishing(T0, P), diminishing(RHO0, Q), iters, len(X0),
               x0=X0, grid=grid, dtype=dtype)


def timed(fn, *args, repeat=1, **kw):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_rss_child(runs: int, iters: int) -> float:
    """Peak RSS (MiB) of a fresh process that runs runs x iters SAM steps on 10-d Rosenbrock."""
    code = (f"import sys, resource; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parent.parent)!r});"
            f"from benchmarks.toy_runner import library; from problems import make_problem; import numpy as np;"
            f"p = make_problem('rosenbrock', 10); library(p, p.x0({runs}, 0) * 0.5, {iters});"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--naive-runs", type=int, default=10)
    ap.add_argument("--memory-runs", type=int, default=100)
    ap.add_argument("--memory-iters", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    problem = make_problem("rosenbrock", args.dim)
    X0 = problem.x0(args.runs, 0) * 0.5
    R, K = args.runs, args.iters

    t_lib, trace = timed(library, problem, X0, K, repeat=2)
    t_fused, X_fused = timed(fused, X0, K, repeat=2)
    nr = min(args.naive_runs, R)
    t_naive_part, X_naive = timed(naive, X0[:nr], K)
    t_naive = t_naive_part * R / nr
    agree = np.allclose(trace.final_x[:nr], X_naive, rtol=1e-10) and np.allclose(trace.final_x, X_fused, rtol=1e-10)
    print(f"SAM, diminishing steps, {args.dim}-d Rosenbrock, R = {R} runs x K = {K} steps")
    print(f"  library            {t_lib:8.3f} s   ({R * K / t_lib / 1e6:.2f} M run-steps/s)")
    print(f"  hand-fused numpy   {t_fused:8.3f} s")
    print(f"  naive Python loop  {t_naive:8.3f} s   (timed on {nr} runs, scaled x{R / nr:g})")
    print(f"  same iterates as both references: {agree}")

    t_norec, _ = timed(library, problem, X0, K, grid=np.array([], dtype=np.int64), repeat=2)
    overhead = t_lib / t_norec - 1
    print(f"  recording overhead (geometric grid vs none): {100 * overhead:+.1f} %")
    t32, _ = timed(library, problem, X0.astype(np.float32), K, dtype=np.float32, repeat=2)
    print(f"  float32 / float64 time: {t32 / t_lib:.2f}")

    small = peak_rss_child(args.memory_runs, args.memory_iters // 100)
    large = peak_rss_child(args.memory_runs, args.memory_iters)
    print(f"  peak RSS, {args.memory_runs} runs: {small:.0f} MiB at K = {args.memory_iters // 100}, "
          f"{large:.0f} MiB at K = {args.memory_iters} (ratio {large / small:.2f})")
    print(f"speedup_vs_naive={t_naive / t_lib:.1f} fused_ratio={t_fused / t_lib:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
