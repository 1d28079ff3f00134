"""The compiled backend: runner.iterate's loop under jax.jit, executing the same rule objects.

    x_{k+1} = x_k - t_k g_k,   g_k = grad f_S(x_k + rho_k d_k),   d_k from the method's rule.

Nothing here knows a method, a problem or a sampler: the rules of convergence.methods, the
problems' f/grad and the samplers run unchanged on jax arrays (convergence.vec, problems and
samplers take jax.numpy through ``array_namespace``); random numbers and samples come from the same
counter-based SplitMix64 streams (uint64), so both backends agree to round-off (tested to 1e-12
relative on every recorded value). Between two steps of the recording grid the loop is one
``lax.fori_loop``, and a ``lax.scan`` over the grid's rows makes the whole run one compiled call
(float64 throughout; ``progress`` hears only the end), which XLA:CPU compiles into a single kernel
where the problem has no matrix products with data (``_compile``).

Divergence: a run whose iterate leaves [-BLOWUP, BLOWUP] (or is NaN) is frozen at that first
diverged iterate and flagged (the numpy runner removes it from the batch instead); its last
record, like the numpy runner's, is that iterate, at final_iter = the step after which it diverged.
"""
from __future__ import annotations

import numpy as np

from convergence.errors import InputError
from convergence.random import Streams
from convergence.runner import BLOWUP, PerRun, _record_final
from convergence.sampling import FullBatch
from convergence.trace import Trace, geometric_grid
from convergence.vec import norm

INSTALL = 'the jax backend needs JAX, which is not installed: pip install -e ".[jax]"'
RECORDED = ("f", "f_gap", "grad_norm", "dist_to_opt", "step", "rho", "err", "err_bound", "path_length")


def require_jax():
    """The jax module, float64 enabled; InputError with the install line when JAX is missing."""
    try:
        import jax
    except ImportError:
        raise InputError(INSTALL, "backend") from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _table(schedule, iters: int, runs: int):
    """(values, index): values (iters,) of one schedule, or (iters, distinct) of a PerRun with each
    run's column in index (runs,); index is None for one schedule."""
    if isinstance(schedule, PerRun):
        return np.stack([s.values(iters) for s in schedule.schedules], axis=1), np.asarray(schedule.index)
    if hasattr(schedule, "values"):
        return np.asarray(schedule.values(iters), dtype=np.float64), None
    return np.array([schedule(k) for k in range(iters)], dtype=np.float64), None


def _at(table, index, k):
    """The schedule at step k: a scalar, or (runs, 1) per-run values."""
    row = table[k]
    return row if index is None else row[index][:, None]


_FULL = FullBatch()        # the default sampler, one object: compiled loops are cached per sampler
_COMPILED: dict = {}      # (ids of problem, rule, sampler, schedule kinds) -> (those objects, functions, executables)


def _loop_fns(jax, problem, rule, sampler, per_run_t: bool, per_run_rho: bool):
    """The jitted loops of one (problem, rule, sampler), with a cache of their compiled executables:
    ``first(consts, carry)``: step 0 alone, recorded (a rule's state may change form after it);
    ``advance(consts, carry, start, stop)``: steps start..stop-1, unrecorded (one fori_loop);
    ``rows(consts, carry, starts, stops)``: for each grid row, step starts[i] recorded, then the steps
    up to stops[i] in a fori_loop (a lax.scan over the rows: the whole run is one call).

    The carry is (X, rule state, path length, final_iter); a run is alive at step k while
    final_iter > k (final_iter starts at iters + 1 and becomes k + 1 when x_{k+1} diverges): the
    mask needs no array of its own, and only the carry is masked."""
    key = (id(problem), id(rule), id(sampler), per_run_t, per_run_rho)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] == (problem, rule, sampler):
        return hit[1], hit[2]
    jnp, lax = jax.numpy, jax.lax

    def step(consts, carry, k, record):
        X, state, length, final_iter = carry
        alive = final_iter > k
        t = _at(consts["t"], consts["t_index"] if per_run_t else None, k)
        rho = _at(consts["rho"], consts["rho_index"] if per_run_rho else None, k)
        streams = Streams(consts["seed"], consts["run_ids"], k)
        oracle = sampler.oracle(problem, streams)
        G, bound, state = rule.gradient(k, X, oracle, state, rho, streams)
        rec = _record(jnp, problem, X, G, bound, t, rho, length, alive) if record else None
        move = t * G
        X_next = X - move
        ok = jnp.all(jnp.abs(X_next) <= BLOWUP, axis=1)             # False on NaN
        length = length + jnp.where(alive, jnp.sqrt(jnp.sum(move * move, axis=1)), 0.0)
        return (jnp.where(alive[:, None], X_next, X), state, length, jnp.where(alive & ~ok, k + 1, final_iter)), rec

    def plain(consts, carry, start, stop):
        return lax.fori_loop(start, stop, lambda k, c: step(consts, c, k, False)[0], carry)

    def first(consts, carry, record):
        return step(consts, carry, jnp.int64(0), record)

    def rows(consts, carry, starts, stops):
        def row(c, bounds):
            c, rec = step(consts, c, bounds[0], True)
            return plain(consts, c, bounds[0] + 1, bounds[1]), rec
        return lax.scan(row, carry, (starts, stops))

    fns = {"step": step, "first_rec": lambda c, x: first(c, x, True), "first": lambda c, x: first(c, x, False)[0],
           "advance": plain, "rows": rows,
           # matrix products with data (batch_invariant False) want XLA's matrix kernels: 13x faster
           # at 16 runs x 100-d least squares, and rounded as numpy's are
           "one_kernel": getattr(problem, "batch_invariant", True)}
    if len(_COMPILED) > 16:
        _COMPILED.clear()
    _COMPILED[key] = ((problem, rule, sampler), fns, {})
    return fns, _COMPILED[key][2]


def _run(jax, fns, executables, clock, name, *args):
    """fns[name](*args) through a cached compiled executable; compile seconds go to clock."""
    import time
    leaves, tree = jax.tree_util.tree_flatten(args)
    sig = (name, tree, tuple((np.shape(v), str(getattr(v, "dtype", type(v)))) for v in leaves))
    exe = executables.get(sig)
    if exe is None:
        tick = time.perf_counter()
        exe = _compile(jax, fns[name], args, fns["one_kernel"])
        clock["compile"] += time.perf_counter() - tick
        executables[sig] = exe
    return exe(*args)


ONE_KERNEL = {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_copy_insertion_use_region_analysis": True}


def _compile(jax, fn, args, one_kernel: bool):
    """``fn`` compiled, into one XLA:CPU kernel when ``one_kernel`` and XLA can.

    XLA:CPU launches each fused operation of a loop body as a kernel of its own (some 20 ns each,
    handed between threads when the loop touches large arrays, and with a copy of the loop state):
    at 16 runs x 2-d the launches, not the arithmetic, are the step (4-5x slower than one kernel;
    1.4x at 1000 x 10-d). A call that carries the frontend attribute xla_cpu_small_call is compiled
    into one kernel (the path XLA takes by itself for while loops under 1 kB). ONE_KERNEL: that
    emitter has no code for XNNPACK fusions, and region analysis spares the copies of the loop
    state; where it has no code for some other operation (a sort) the call is compiled the usual
    way."""
    inner = jax.jit(fn)
    try:
        from jax.experimental.xla_metadata import set_xla_metadata
    except ImportError:                  # older JAX: no metadata, and one function per program anyway
        one_kernel = False
    if not one_kernel:
        return inner.lower(*args).compile()

    def one_call(*a):                    # the attributes go on the call alone; not inlineable: else
        return set_xla_metadata(inner(*a), xla_cpu_small_call="true", inlineable="false")  # XLA inlines it
    try:
        return jax.jit(one_call).lower(*args).compile(ONE_KERNEL)
    except jax.errors.JaxRuntimeError:
        return inner.lower(*args).compile()


def _record(jnp, problem, X, G, bound, t, rho, length, alive):
    """runner._record's columns at x_k, as (runs,) arrays, NaN for runs already diverged."""
    runs = X.shape[0]
    fx = problem.f(X)
    true_grad = problem.grad(X)
    out = {"f": fx, "grad_norm": norm(true_grad)[:, 0], "err": norm(G - true_grad)[:, 0],
           "step": jnp.broadcast_to(jnp.ravel(t), (runs,)), "rho": jnp.broadcast_to(jnp.ravel(rho), (runs,)),
           "path_length": length}
    if problem.f_star is not None:
        out["f_gap"] = fx - problem.f_star
    dist = problem.dist_to_opt(X)
    if dist is not None:
        out["dist_to_opt"] = dist
    if bound is not None:
        out["err_bound"] = jnp.broadcast_to(bound, (runs, 1))[:, 0]
    return {name: jnp.where(alive, v, jnp.nan) for name, v in out.items()}


def _refusal(err, problem, rule, sampler) -> InputError:
    return InputError(f"backend jax cannot run method '{rule.name}' on problem '{problem.name}' with sampling "
                      f"'{sampler.name}' ({type(err).__name__}: {' '.join(str(err).split()).split('. ')[0][:120]}): use "
                      f"backend numpy", "backend")


def check(problem, rule, sampler=None, dtype: str = "float64") -> None:
    """Refuse, in one line (InputError), what the compiled backend cannot run, before any work: JAX
    missing, float32, or a problem, rule or sampler whose formulas do not run on jax arrays (traced
    once, abstractly: nothing is compiled)."""
    jax = require_jax()
    jnp = jax.numpy
    if np.dtype(dtype) != np.float64:
        raise InputError("dtype float32 is not available on backend jax (float64 only): use backend numpy",
                         "dtype")
    for value in rule.options().values():
        if callable(value) and hasattr(value, "values"):
            value.values(2)
    consts = {"t": jnp.zeros(2), "rho": jnp.zeros(2), "t_index": None, "rho_index": None,
              "seed": jnp.zeros((), dtype=jnp.uint64), "run_ids": jnp.zeros(1, dtype=jnp.uint64)}
    x = np.zeros((1, problem.dim))                  # traced abstractly: only its shape counts
    carry = (jnp.asarray(x), rule.init(x), jnp.zeros(1), jnp.ones(1, dtype=jnp.int64))
    sampler = sampler or _FULL
    fns, _ = _loop_fns(jax, problem, rule, sampler, False, False)
    try:
        jax.eval_shape(lambda c, x: fns["step"](c, x, jnp.int64(0), True), consts, carry)
    except InputError:
        raise
    except Exception as err:
        raise _refusal(err, problem, rule, sampler) from None


def iterate(problem, rule, stepsize, radius, iters: int, runs: int = 1, seed=0, x0: np.ndarray | None = None,
            sampler=None, dtype=np.float64, grid=None, progress=None, run_ids=None, timings: dict | None = None
            ) -> Trace:
    """runner.iterate on the compiled backend: the same arguments, the same Trace (float64 only).
    ``timings``, when given, receives 'compile' and 'iterations' seconds (the first jitted call of
    each kind, compilation included, is counted as compile time)."""
    import time
    jax = require_jax()
    jnp = jax.numpy
    if np.dtype(dtype) != np.float64:
        raise InputError("dtype float32 is not available on backend jax (float64 only): use backend numpy",
                         "dtype")
    sampler = sampler or _FULL
    X = np.array(problem.x0(runs, seed) if x0 is None else x0, dtype=np.float64)
    if X.shape != (runs, problem.dim):
        raise ValueError(f"x0 has shape {X.shape}, expected ({runs}, {problem.dim})")
    seeds = np.asarray(seed)
    run_ids = np.arange(runs) if run_ids is None else np.asarray(run_ids)
    grid = geometric_grid(iters) if grid is None else np.asarray(grid)
    grid = grid[(grid >= 0) & (grid < iters)]
    for value in rule.options().values():           # schedules in k a rule reads (Unified's lam): tabled
        if callable(value) and hasattr(value, "values"):
            value.values(iters)
    t_tab, t_index = _table(stepsize, iters, runs)
    rho_tab, rho_index = _table(radius, iters, runs)
    consts = {"t": jnp.asarray(t_tab), "rho": jnp.asarray(rho_tab),
              "t_index": None if t_index is None else jnp.asarray(t_index),
              "rho_index": None if rho_index is None else jnp.asarray(rho_index),
              "seed": jnp.asarray(seeds.astype(np.uint64)), "run_ids": jnp.asarray(run_ids.astype(np.uint64))}
    fns, executables = _loop_fns(jax, problem, rule, sampler, t_index is not None, rho_index is not None)
    trace = Trace(rule.name, problem.name, grid, runs, eps=float(np.finfo(np.float64).eps))
    carry = (jnp.asarray(X), rule.init(X), jnp.zeros(runs), jnp.full(runs, iters + 1, dtype=jnp.int64))
    clock = {"compile": 0.0, "iterations": 0.0}
    start = time.perf_counter()
    i64 = np.int64
    try:
        # step 0 alone when the rule's state changes form in it (F-SAM's, VaSSO's None -> an array)
        leaves, tree = jax.tree_util.tree_flatten((consts, carry))
        sig = ("changes form", tree, tuple((np.shape(v), str(getattr(v, "dtype", type(v)))) for v in leaves))
        if sig not in executables:
            after = jax.eval_shape(lambda c, x: fns["step"](c, x, jnp.int64(0), False)[0], consts, carry)
            executables[sig] = jax.tree_util.tree_structure(after) != jax.tree_util.tree_structure(carry)
            clock["compile"] += time.perf_counter() - start          # tracing counts as compiling
        records = []
        rows, pos = [int(g) for g in grid], 0
        if iters and executables[sig]:
            if rows and rows[0] == 0:
                carry, rec = _run(jax, fns, executables, clock, "first_rec", consts, carry)
                records.append(([0], {n: v[None] for n, v in rec.items()}))
                rows = rows[1:]
            else:
                carry = _run(jax, fns, executables, clock, "first", consts, carry)
            pos = 1
        if rows and rows[0] > pos or not rows and pos < iters:
            carry = _run(jax, fns, executables, clock, "advance", consts, carry, i64(pos),
                         i64(rows[0] if rows else iters))
        if rows:
            stops = np.array(rows[1:] + [iters], dtype=np.int64)
            carry, rec = _run(jax, fns, executables, clock, "rows", consts, carry, np.array(rows, dtype=np.int64),
                              stops)
            records.append((rows, rec))
    except InputError:
        raise
    except Exception as err:       # a formula that does not run on jax arrays: one line, no trace
        if clock["compile"]:
            raise
        raise _refusal(err, problem, rule, sampler) from None
    jax.block_until_ready(carry)
    if progress is not None:
        progress(iters)
    position = {int(g): i for i, g in enumerate(grid)}
    for steps, rec in records:
        at = [position[g] for g in steps]
        for name, values in rec.items():
            trace.data[name][at] = np.asarray(values)
    X, length, final_iter = (np.asarray(carry[i]) for i in (0, 2, 3))
    alive = final_iter > iters
    final_iter = np.minimum(final_iter, iters)
    clock["iterations"] = time.perf_counter() - start - clock["compile"]
    everyone = np.arange(runs)
    _record_final(trace, everyone, None, problem, X, final_iter)
    trace.final["path_length"][:] = length
    trace.diverged[:] = ~alive
    trace.final_x = X[alive]
    trace.final_runs = everyone[alive]
    if timings is not None:
        timings.update(clock)
    return trace
