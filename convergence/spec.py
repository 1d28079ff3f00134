"""A run spec: everything that determines a batch of toy runs, built and validated once.

``ToyRun`` holds the objects themselves (problem, rule, sampler, step-size and radius schedules) and
the sizes (iters, runs, seed, dtype, grid). Built from command-line flags, a sweep cell, a paper
module or Python, it is carried unchanged through the run (convergence.runner), the verdicts, the
theory report and the files. ``toy_run(...)`` builds one from names and numbers, the way the
command line and the sweep describe runs; its errors name the parameter (InputError.param), which a
command line maps to its flag.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from convergence.errors import InputError, unknown
from convergence.methods import Rule, batch_key as rule_key, make_method
from convergence.random import Streams
from convergence.sampling import FullBatch, make_sampler
from convergence.schedules import SHAPES, Schedule, make_schedule
from convergence.trace import NUMERIC, geometric_grid

DTYPES = ("float64", "float32")
BACKENDS = ("numpy", "jax")   # jax: the compiled backend (convergence.jax_runner), an optional extra
MAX_SEED = 2**63 - 1
COPIES = 8                 # arrays of the iterate's size alive at once in a step (x, g, d, x + rho d, ...)
DEFAULT_DECAY = 0.6        # p of t_k = t_0/(k+1)^p and q of rho_k = rho_0/(k+1)^q: the theory's hypotheses hold


@dataclass(frozen=True, eq=False)
class ToyRun:
    """One validated run spec. ``config`` is how it was described (names and numbers, recorded in
    summary.json); the objects are what runs."""

    problem: object
    rule: Rule
    stepsize: Schedule
    radius: Schedule
    iters: int = 100_000
    runs: int = 16
    seed: int = 0
    sampler: object = field(default_factory=FullBatch)
    dtype: str = "float64"
    grid: tuple | None = None
    theory_variant: str = "authors"
    config: dict = field(default_factory=dict, repr=False)
    max_memory: float | None = None     # bytes this run may take (default: the memory available now)
    backend: str = "numpy"              # numpy (runner.iterate) or jax (jax_runner.iterate, compiled)

    def __post_init__(self):
        _integer("iters", self.iters, 1, 10**12)
        _integer("runs", self.runs, 1, 10**12)
        _integer("seed", self.seed, 0, MAX_SEED, "2^63)")
        if self.dtype not in DTYPES:
            raise unknown("dtype", self.dtype, DTYPES, "dtype")
        check_memory(self.memory_estimate(), "this run", self.max_memory)
        if self.sampler.name != "full":
            self.sampler.check(self.problem)
        self.stepsize.check("stepsize", self.iters, lambda v: v > 0, "stay positive")
        self.radius.check("radius", self.iters, lambda v: v >= 0, "stay non-negative")
        self._dry_run()
        if self.backend not in BACKENDS:
            raise unknown("backend", self.backend, BACKENDS, "backend")
        if self.backend == "jax":
            from convergence.jax_runner import check
            check(self.problem, self.rule, self.sampler, self.dtype)

    def memory_estimate(self) -> int:
        """Bytes the run allocates: the iterates and the step's temporaries, the schedules' values,
        the recorded grid, and the problem's data (already built)."""
        dim = self.problem.dim
        grid = len(geometric_grid(self.iters)) if self.grid is None else len(self.grid)
        data = sum(v.nbytes for v in vars(self.problem).values() if isinstance(v, np.ndarray))
        return 8 * (COPIES * self.runs * dim + 2 * self.iters + (grid + 1) * self.runs * len(NUMERIC)) + data

    def _dry_run(self) -> None:
        """One step of one run: a method/problem/sampler mismatch fails here, before any work (an
        overflow, as in the run, is the run's divergence to report, not a numpy warning)."""
        streams = Streams(0, [0], 0)
        x = self.problem.x0(1, 0)
        with np.errstate(over="ignore"):
            self.rule.gradient(0, x, self.sampler.oracle(self.problem, streams), self.rule.init(x), 0.0, streams)

    @property
    def deterministic(self) -> bool:
        return self.sampler.name == "full"

    @cached_property
    def x0(self) -> np.ndarray:
        """Starting points: the problem's box, run r's drawn from (seed, r)."""
        return self.problem.x0(self.runs, self.seed)

    @cached_property
    def theory_steps(self) -> tuple | None:
        """Oikonomou & Loizou's (gamma*, rho*) for this run, where they exist."""
        from convergence.theory import theory_steps
        try:
            return theory_steps(self.problem, self.sampler, self.rule, self.theory_variant)
        except InputError:
            return None

    @cached_property
    def theory_context(self):
        from convergence.theory.report import context
        return context(self)

    @cached_property
    def assessments(self) -> list:
        """The theorem catalogue assessed for this run (once)."""
        from convergence.theory.report import assessments
        return assessments(self)

    def describe(self) -> dict:
        """The config recorded in summary.json: as described (``config``), else from the objects."""
        return self.config or {
            "problem": self.problem.name, "dim": self.problem.dim, "method": self.rule.name,
            "method_options": {k: str(v) for k, v in self.rule.options().items()},
            "sampling": self.sampler.name, "batch": getattr(self.sampler, "batch", None),
            "stepsize": self.stepsize.label, "rho_schedule": self.radius.label, "iters": self.iters,
            "runs": self.runs, "seed": self.seed, "dtype": self.dtype}


def batch_key(spec: ToyRun) -> tuple:
    """Specs with equal keys run as one batch (runner.run_batch): the same problem, rule (up to
    scalar hyper-parameters), sampler, sizes and recording grid. Per-run schedule tables and rule
    parameters need float64 (float32 rounds a per-run array differently from a scalar); problems
    whose formulas are not row by row (matrix products: BLAS blocks rows) never share a batch."""
    own = (id(spec),) if not getattr(spec.problem, "batch_invariant", True) else ()
    exact = () if spec.dtype == "float64" else (str(spec.stepsize.expr), str(spec.radius.expr), repr(spec.rule))
    return (id(spec.problem), rule_key(spec.rule), spec.sampler.name, getattr(spec.sampler, "batch", None),
            spec.iters, spec.dtype, spec.grid, spec.backend) + own + exact


def _integer(name: str, value, lo: int, hi: int, upper: str | None = None) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi):
        raise InputError(f"{name} must be an integer in [{lo}, {upper or f'{hi:.3g}]'}, got {value}", name)
    return int(value)


def _positive(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.number)) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(f"{name} must be a finite {'non-negative' if allow_zero else 'positive'} number, "
                         f"got {value}", name)
    return float(value)


def _bounded(name: str, value, allow_zero: bool = False) -> float:
    """_positive, and at most MAX_VALUE: the theory's float64 bounds square and multiply t_0 and
    rho_0 (1e308 would overflow them)."""
    from convergence.schedules import MAX_VALUE
    value = _positive(name, value, allow_zero)
    if value > MAX_VALUE:
        raise InputError(f"{name} must be at most {MAX_VALUE:g}, got {value:g}: give a smaller value", name)
    return value


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or half the physical memory where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def check_memory(need: float, what: str, limit: float | None = None,
                 fix: str = "lower `runs`, `dim` or `iters` (or allow more with `max_memory`)") -> None:
    """Refuse work whose estimated memory exceeds ``limit`` (default: the memory available now)
    before any of it is done, instead of a MemoryError or the kernel's OOM killer midway."""
    have = available_memory() if limit is None else limit
    if need > have:
        raise InputError(f"{what} needs about {need / 2**30:.3g} GiB, more than the {have / 2**30:.3g} GiB "
                         f"{'available' if limit is None else 'allowed'}: {fix}")


def data_bytes(problem: str, dim: int | None, options: dict) -> int:
    """Bytes a shipped problem allocates when built (its generated data), known before building it;
    0 for problems without data, user data (checked as read) and user problems."""
    from problems import PROBLEMS
    cls = PROBLEMS.get(problem)
    if cls is None or not hasattr(cls, "build_bytes") or {"data", "A", "b"} & set(options):
        return 0
    return cls.build_bytes(dim, options.get("n"))


_PROBLEMS: dict = {}


def shared_problem(name: str, dim: int | None = None, options: dict | None = None):
    """make_problem(name, dim, **options), one instance per (name, dim, options) in this process:
    specs that share it can share a batch, and the problem's data are built once (options holding
    arrays build a problem of their own each time)."""
    from problems import make_problem
    options = options or {}
    if not all(isinstance(v, (str, int, float, tuple, type(None))) for v in options.values()):
        return make_problem(name, dim, **options)       # arrays (A=, b=): no key that repr would not truncate
    key = (name, dim, repr(sorted(options.items())))
    if key not in _PROBLEMS:
        _PROBLEMS[key] = make_problem(name, dim, **options)
    return _PROBLEMS[key]


def radius_schedule(stepsize: str, rho_schedule: str | None = None) -> str:
    """The radius schedule a run uses: the one given, else constant for a constant step size, the
    same rule for pl-decreasing, and diminishing otherwise."""
    return rho_schedule or {"constant": "constant", "pl-decreasing": "pl-decreasing"}.get(stepsize, "diminishing")


def toy_run(problem: str = "quadratic", method: str = "sam", stepsize: str = "diminishing", lr=None, rho=None,
            rho_schedule: str | None = None, decay: float | None = None, rho_decay: float | None = None,
            dim: int | None = None, iters: int = 100_000, runs: int = 16, seed: int = 0, sampling: str = "full",
            batch: int | None = None, dtype: str = "float64", method_options: dict | None = None,
            theory_variant: str = "authors", max_memory: float | None = None,
            problem_options: dict | None = None, backend: str = "numpy") -> ToyRun:
    """A ToyRun from names and numbers: ``problem`` a name, "expr:<formula>" or "file.py:Class" with
    ``problem_options`` (data, box, f_star, x_star: see problems.make_problem); ``stepsize`` constant
    (t_k = lr), diminishing (lr/(k+1)^decay),
    pl-decreasing (Oikonomou & Loizou's rule, with rho) or an expression in k; ``lr`` a number, '1/L'
    (the default) or 'theory' (gamma*); ``rho`` a number (default 0.05) or 'theory' (rho*);
    ``rho_schedule`` like ``stepsize`` (default: constant with a constant step, else diminishing)."""
    from convergence.theory import pl_decreasing, theory_steps
    from convergence.theory.steps import VARIANTS
    method_options = dict(method_options or {})
    for name, value in (("decay", decay), ("rho_decay", rho_decay)):
        if value is not None:
            _positive(name, value, allow_zero=True)
    if dim is not None:
        _integer("dim", dim, 1, 10**12)
    if theory_variant not in VARIANTS:
        raise unknown("theory_variant", theory_variant, VARIANTS, "theory_variant")
    check_memory(8 * COPIES * runs * (dim or 1) if isinstance(runs, int) else 0, "runs x dim", max_memory)
    problem_options = {k: v for k, v in (problem_options or {}).items() if v is not None}
    check_memory(data_bytes(problem, dim, problem_options), "the problem's data (n x d and d x d)", max_memory)
    the_problem = shared_problem(problem, dim, problem_options)
    rule = make_method(method, **method_options)
    sampler = make_sampler(sampling, batch, the_problem)
    radius = radius_schedule(stepsize, rho_schedule)
    for name, value, schedule, where in (("decay", decay, stepsize, "stepsize"),
                                         ("rho_decay", rho_decay, radius, "rho_schedule")):
        if value is not None and schedule != "diminishing":
            raise InputError(f"{name} applies to `{where}` diminishing only, not '{schedule}': drop it or use "
                             f"`{where}` diminishing", name)
    for name, value, schedule, where in (("lr", lr, stepsize, "stepsize"), ("rho", rho, radius, "rho_schedule")):
        if value is not None and schedule not in SHAPES + ("pl-decreasing",):
            raise InputError(f"{name} applies to `{where}` constant, diminishing or pl-decreasing; the expression "
                             f"'{schedule}' sets the values itself: drop `{name}`", name)
    steps = None
    if "theory" in (str(lr), str(rho)) or stepsize == "pl-decreasing":
        steps = theory_steps(the_problem, sampler, rule, theory_variant)
    lr_value = _bounded("lr", 1.0 / the_problem.L if lr in (None, "1/L") else steps[0] if lr == "theory"
                         else _number("lr", lr))
    rho_value = _bounded("rho", 0.05 if rho is None else steps[1] if rho == "theory" else _number("rho", rho),
                          allow_zero=True)
    if "pl-decreasing" in (stepsize, radius):
        if stepsize != radius:
            raise InputError("stepsize pl-decreasing sets t_k and rho_k together: use it for `rho_schedule` "
                             "too (its default)", "stepsize")
        t, r = pl_decreasing(lr_value, rho_value, the_problem.mu)
    else:
        words = SHAPES + ("pl-decreasing",)
        t = make_schedule(stepsize, lr_value, DEFAULT_DECAY if decay is None else decay, "stepsize", words)
        r = make_schedule(radius, rho_value, DEFAULT_DECAY if rho_decay is None else rho_decay, "radius", words)
    config = {"problem": problem, **{k: _plain(v) for k, v in problem_options.items()},
              "dim": the_problem.dim, "method": method,
              "method_options": {k: str(v) for k, v in method_options.items()}, "sampling": sampling,
              "batch": batch, "stepsize": stepsize, "lr": lr_value,
              "decay": DEFAULT_DECAY if decay is None else decay, "rho": rho_value, "rho_schedule": radius,
              "rho_decay": DEFAULT_DECAY if rho_decay is None else rho_decay, "iters": iters, "runs": runs,
              "seed": seed, "dtype": dtype}
    if theory_variant != "authors":
        config["theory_variant"] = theory_variant
    if backend != "numpy":
        config["backend"] = backend
    return ToyRun(the_problem, rule, t, r, iters, runs, seed, sampler, dtype, None, theory_variant, config,
                  max_memory, backend)


def _plain(value):
    """A problem option as JSON has it (tuples and arrays as lists)."""
    return np.asarray(value).tolist() if isinstance(value, (tuple, list, np.ndarray)) else value


def _number(name: str, text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or 'theory', got '{text}'", name) from None
