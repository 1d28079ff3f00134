"""Speed and memory of the batched toy runner, as ratios against references timed in this process.

    python benchmarks/toy_runner.py                    # R = 1000 runs x K = 2000 steps, 10-d Rosenbrock
    python benchmarks/toy_runner.py --runs 200 --iters 500 --memory-iters 100000

Compares SAM with diminishing steps run by the library against
  (a) a naive reference: Python loops over runs and iterations, 1-D numpy arrays (timed on
      --naive-runs runs and scaled by R / naive-runs: its cost is exactly linear in R), and
  (b) a hand-fused numpy loop over (R, d) arrays with the gradient written inline.
Then the cost of recording (the geometric grid) against no recording, float32 against float64, and
the peak RSS of a long run (it must not grow with K beyond the recorded grid).
With JAX installed (pip install -e ".[jax]"), the compiled backend (convergence.jax_runner, the same
rule objects, recording on the geometric grid) against (c) a hand-written JAX loop (jit + vmap +
lax.fori_loop, float64, no recording) and against the numpy library, at R x K x d and at the
quickstart's shape 16 x 100000 x 2 (--quick-iters); both timed after a first, compiling call. The
backend has XLA:CPU compile its loop into one kernel (convergence.jax_runner._compile); the reference
is compiled as JAX compiles any jitted function.
Last line: ``speedup_vs_naive=X fused_ratio=Y jax_vs_reference=A jax_vs_numpy=B
jax_vs_reference_quickstart=C jax_vs_numpy_quickstart=D`` (ratios > 1: the second is slower).
Targets: X >= 50, Y >= 0.5, A and C >= 0.8.
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
        n = np.sqrt(np.vecdot(g, g))[:, None]
        Y = X + rho * np.divide(g, n, out=np.zeros_like(g), where=n > 0)
        X -= t * grad(Y)
    return X


def jax_reference(X0: np.ndarray, iters: int):
    """SAM on Rosenbrock hand-written in JAX: one run's loop (lax.fori_loop), vmapped, jitted."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)

    def grad(x):
        r = 200.0 * (x[1:] - x[:-1] ** 2)
        return jnp.zeros_like(x).at[:-1].set(-2.0 * x[:-1] * r - 2.0 * (1.0 - x[:-1])).at[1:].add(r)

    def one(x):
        def body(k, x):
            t, rho = T0 / (k + 1.0) ** P, RHO0 / (k + 1.0) ** Q
            g = grad(x)
            n = jnp.sqrt(g @ g)
            d = jnp.where(n > 0, g / jnp.where(n > 0, n, 1.0), 0.0)
            return x - t * grad(x + rho * d)
        return jax.lax.fori_loop(0, iters, body, x)
    fn = jax.jit(jax.vmap(one))
    return lambda: jax.block_until_ready(fn(jnp.asarray(X0)))


def jax_figures(problem, X0, iters, numpy_time=None):
    """(hand-written JAX, jax backend, numpy library) seconds and whether their iterates agree;
    each JAX loop timed on its second call (the first compiles), best of two."""
    from convergence import jax_runner
    from convergence.sampling import FullBatch
    rule, sampler = make_method("sam"), FullBatch()
    t_sched, r_sched = diminishing(T0, P), diminishing(RHO0, Q)

    def backend():
        return jax_runner.iterate(problem, rule, t_sched, r_sched, iters, len(X0), x0=X0, sampler=sampler)
    reference = jax_reference(X0, iters)
    reference()
    t_ref, X_ref = timed(reference, repeat=2)
    compile_clock = time.perf_counter()
    backend()
    t_first = time.perf_counter() - compile_clock
    t_jax, trace = timed(backend, repeat=2)
    if numpy_time is None:
        numpy_time, np_trace = timed(library, problem, X0, iters)
        agree_np = np.allclose(np_trace.final_x, trace.final_x, rtol=1e-10)
    else:
        agree_np = True
    agree = agree_np and np.allclose(np.asarray(X_ref), trace.final_x, rtol=1e-10)
    return t_ref, t_jax, numpy_time, t_first - t_jax, agree


def library(problem, X0, iters, grid=None, dtype=np.float64):
    return run(problem, make_method("sam"), diminishing(T0, P), diminishing(RHO0, Q), iters, len(X0),
               x0=X0, grid=grid, dtype=dtype)


def timed(fn, *args, repeat=1, **kw):
    """Best wall time of ``repeat`` calls, and the last result; says on stderr what it times."""
    print(f"toy_runner: timing {fn.__name__} ({repeat}x) ...", file=sys.stderr, flush=True)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_rss_child(runs: int, iters: int) -> float:
    """Peak RSS (MiB) of a fresh process that runs runs x iters SAM steps on 10-d Rosenbrock."""
    print(f"toy_runner: peak memory of {runs} runs x {iters} steps in a fresh process ...", file=sys.stderr, flush=True)
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
    ap.add_argument("--quick-iters", type=int, default=100_000,
                    help="iterations of the quickstart-shaped JAX comparison (16 runs, 2-d)")
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX comparisons")
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
    last = f"speedup_vs_naive={t_naive / t_lib:.1f} fused_ratio={t_fused / t_lib:.2f}"
    try:
        import jax  # noqa: F401
    except ImportError:
        args.no_jax = True
        print('  jax: not installed (pip install -e ".[jax]"): no JAX figures')
    if not args.no_jax:
        quick = make_problem("rosenbrock", 2)
        for suffix, label, prob, X, iters, t_np in (
                ("", f"{R} x {K} x {args.dim}", problem, X0, K, t_lib),
                ("_quickstart", f"16 x {args.quick_iters} x 2", quick, quick.x0(16, 0) * 0.5, args.quick_iters, None)):
            t_ref, t_jax, t_np, t_compile, same = jax_figures(prob, X, iters, t_np)
            print(f"  JAX at {label}: hand-written {t_ref:.4f} s, jax backend {t_jax:.4f} s (+{t_compile:.2f} s "
                  f"compile on its first call), numpy library {t_np:.3f} s; same iterates: {same}")
            last += f" jax_vs_reference{suffix}={t_ref / t_jax:.2f} jax_vs_numpy{suffix}={t_np / t_jax:.1f}"
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
