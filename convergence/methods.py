"""SAM-family methods as rules for the ascent direction d_k of inexact gradient descent

    x_{k+1} = x_k - t_k g_k,    g_k = grad f_S(x_k + rho_k d_k).

A rule defines only d_k, from the gradient oracle of this step's sample S and its own state, and
declares the properties the rest of the toolkit needs (normalized, its Unified SAM lambda, needs the
full gradient, splits the batch, draws random numbers, keeps state, its error model): nothing
outside this module branches on a method's name. The runner (numpy), the SDE models and the torch
optimizers (convergence.deepnet) execute the same rule objects.

Oracle contract: ``oracle.grad(y)`` is the gradient of this step's sampled function at y,
``oracle.full_grad(y)`` the gradient of f, ``oracle.L`` the smoothness of the sampled function
(None when unknown) and ``oracle.split(m)`` the oracles of m-sized chunks of the sample.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from convergence.errors import InputError, unknown
from convergence.vec import norm, normalize


@dataclass(frozen=True)
class Hyper:
    """A rule's hyper-parameter: its paper's default, what it means, and the values it takes."""

    default: object
    help: str
    kind: str = "float"          # float | int | choice | lam (a number in [0, 1] or a schedule in k)
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()

    @property
    def range(self) -> str:
        if self.kind == "choice":
            return " or ".join(self.choices)
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def value(self, name: str, value):
        """``value`` checked (text from a command line is parsed first); InputError naming ``name``."""
        if self.kind == "choice":
            if value not in self.choices:
                raise unknown(f"{name}", value, self.choices, name)
            return value
        if self.kind == "lam" and not isinstance(value, (int, float, np.ndarray)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                return lam_schedule(value, name)
        if isinstance(value, str):
            try:
                value = int(value) if self.kind == "int" else float(value)
            except ValueError:
                raise InputError(f"{name} must be {'an integer' if self.kind == 'int' else 'a number'}, "
                                 f"got '{value}'", name) from None
        numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if self.kind == "int" and not (numeric and float(value).is_integer()):
            raise InputError(f"{name} must be an integer in {self.range}, got {value}", name)
        ok = numeric and (value > self.lo if self.lo_open else value >= self.lo) and (
            value < self.hi if self.hi_open else value <= self.hi)
        if not ok:
            what = "be an integer in" if self.kind == "int" else "lie in"
            raise InputError(f"{name} must {what} {self.range}, got {value}", name)
        return int(value) if self.kind == "int" else float(value)


def lam_schedule(text, name: str = "lam"):
    """Unified SAM's lambda as a schedule in k: Oikonomou & Loizou's '1/t' (lam_k = 1/(k+1)) and
    '1-1/t' (lam_k = 1 - 1/(k+1)), t counted from 1, or an expression in k; in [0, 1] on k < SCAN."""
    from convergence.schedules import SCAN, Schedule, k, parse_expression
    if isinstance(text, Schedule):
        schedule = text
    else:
        text = str(text)
        expr = {"1/t": 1 / (k + 1), "1-1/t": 1 - 1 / (k + 1)}.get(text.replace(" ", ""))
        schedule = Schedule(parse_expression(text, name) if expr is None else expr, text)
    schedule.check(name, SCAN, lambda v: (v >= 0) & (v <= 1), "lie in [0, 1]")
    return schedule


class Rule:
    """Base rule: stateless, one ascent direction per step, and the properties others read."""

    name = ""
    paper = ""
    hyper: dict[str, Hyper] = {}
    stateful = False             # keeps state between steps (F-SAM's EMA, VaSSO's v)
    normalized = False           # ||d_k|| = 1 wherever the vector it normalizes is not 0
    needs_full_gradient = False  # d_k uses grad f(x_k) besides the sampled gradient (DNSAM)
    splits_batch = False         # each chunk of the sample gets its own direction (m-sharpness)
    draws_random = False         # d_k uses random numbers (RSAM)
    unified_lambda = None        # lam when d_k = (1 - lam + lam/||g||) g: the rule is Unified SAM
    # (a, b) with ||d_k|| <= a ||grad f(x_k)|| + b in the deterministic case, so that
    # ||g_k - grad f(x_k)|| <= L rho_k (a ||grad f(x_k)|| + b): the inexactness the theory uses;
    # None where no such bound holds
    error_model = (0.0, 1.0)

    def __init__(self, **options):
        for name, value in options.items():
            setattr(self, name, self.hyper[name].value(name, value))

    def options(self) -> dict:
        """The hyper-parameters of this rule instance."""
        return {name: getattr(self, name) for name in self.hyper}

    def on_full_batch(self) -> "Rule":
        """The rule this one equals when every sample is the whole function (DNSAM: SAM)."""
        return self

    @property
    def gradients_at_x_only(self) -> bool:
        """d_k needs only the sampled gradient at x_k (the two-call first_step/second_step API)."""
        return not (self.draws_random or self.splits_batch)

    def init(self, x):
        return None

    def direction(self, k, x, oracle, state, rng):
        raise NotImplementedError

    def gradient(self, k, x, oracle, state, rho, rng, bound=True):
        """g_k = grad f_S(x_k + rho_k d_k), and the bound L_S rho_k ||d_k|| >= ||g_k - grad f_S(x_k)||
        that L_S-smoothness of the sampled function gives (None when L_S is unknown, or not asked
        for: ``bound=False``, at the steps a runner does not record)."""
        d, state = self.direction(k, x, oracle, state, rng)
        g = oracle.grad(x + rho * d)
        return g, (oracle.L * rho * norm(d) if bound and oracle.L is not None else None), state

    def take(self, rows) -> "Rule":
        """This rule for a subset of a batch's runs: per-run hyper-parameters indexed by ``rows``."""
        per_run = {h: v for h, v in self.options().items() if isinstance(v, np.ndarray)}
        if not per_run:
            return self
        clone = copy.copy(self)
        for h, v in per_run.items():
            setattr(clone, h, v[rows])
        return clone

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}({args})"


class GD(Rule):
    """Plain (stochastic) gradient descent: d_k = 0."""

    name, paper = "gd", "Cauchy (1847); Robbins & Monro (1951) for SGD"
    error_model = (0.0, 0.0)

    def direction(self, k, x, oracle, state, rng):
        return 0.0 * x, state


class SAM(Rule):
    """SAM, Foret et al. (2021), eq. (2) of Khanh et al. (2024): d_k = g / ||g||, g = grad f_S(x_k)."""

    name, paper = "sam", "Foret et al. (2021); Khanh et al. (2024) eq. (2)"
    normalized, unified_lambda = True, 1.0

    def direction(self, k, x, oracle, state, rng):
        return normalize(oracle.grad(x)), state


class USAM(Rule):
    """Unnormalized SAM, Andriushchenko & Flammarion (2022), eq. (3): d_k = g = grad f_S(x_k)."""

    name, paper = "usam", "Andriushchenko & Flammarion (2022) eq. (3)"
    unified_lambda = 0.0
    error_model = (1.0, 0.0)

    def direction(self, k, x, oracle, state, rng):
        return oracle.grad(x), state


class Unified(Rule):
    """Unified SAM, Oikonomou & Loizou (2025), Sec. 3: d_k = (1 - lam + lam/||g||) g.

    lam = 0 is USAM, lam = 1 is SAM; lam is a number in [0, 1] or a schedule in k (their code's
    '1/t' is lam_k = 1/(k+1), '1-1/t' is lam_k = 1 - 1/(k+1)).
    """

    name, paper = "unified", "Oikonomou & Loizou (2025), Unified SAM (Sec. 3)"
    hyper = {"lam": Hyper(0.5, "mixing lambda in [0, 1] (0: USAM, 1: SAM), or '1/t', '1-1/t', an "
                               "expression in k", kind="lam", lo=0.0, hi=1.0)}

    def __init__(self, lam=0.5):
        super().__init__(lam=lam)

    @property
    def unified_lambda(self):
        return None if callable(self.lam) else self.lam

    @property
    def normalized(self):
        return self.unified_lambda is not None and np.all(self.lam == 1.0)

    @property
    def error_model(self):
        return (1.0, 1.0) if callable(self.lam) else (1.0 - self.lam, self.lam)

    def direction(self, k, x, oracle, state, rng):
        lam = self.lam(k) if callable(self.lam) else self.lam
        g = oracle.grad(x)
        return (1 - lam) * g + lam * normalize(g), state


class DNSAM(Rule):
    """Deterministic-normalization SAM, Compagnoni et al. (2023), Sec. 3: d_k = g / ||grad f(x_k)||,
    the stochastic gradient g normalized by the norm of the full gradient."""

    name, paper = "dnsam", "Compagnoni et al. (2023), DNSAM (Sec. 3)"
    needs_full_gradient = True

    def on_full_batch(self):
        return SAM()

    def direction(self, k, x, oracle, state, rng):
        return normalize(oracle.grad(x), by=oracle.full_grad(x)), state


class FSAM(Rule):
    """Friendly SAM, Li et al. (2024), Algorithm 1: remove the full-gradient component (estimated
    by an EMA m of past gradients) from the ascent direction.

        u_k = g - sigma m_{k-1},  m_k = beta m_{k-1} + (1 - beta) g,  d_k = u_k / ||u_k||;
        first step: m_0 = g, u_0 = g (plain SAM). Defaults sigma = 1, beta = 0.9 (official code;
        its scripts also use beta = 0.6 and 0.95).
    """

    name, paper = "fsam", "Li et al. (2024), Friendly SAM, Algorithm 1"
    hyper = {"sigma": Hyper(1.0, "weight of the gradient EMA removed from the ascent direction", lo=0.0, hi=1.0),
             "beta": Hyper(0.9, "factor of the gradient EMA", lo=0.0, hi=1.0, hi_open=True)}
    stateful, normalized = True, True

    def __init__(self, sigma=1.0, beta=0.9):
        super().__init__(sigma=sigma, beta=beta)

    def direction(self, k, x, oracle, state, rng):
        g = oracle.grad(x)
        if state is None:
            return normalize(g), g
        u = g - self.sigma * state
        return normalize(u), self.beta * state + (1 - self.beta) * g


class VaSSO(Rule):
    """Variance-suppressed SAM, Li & Giannakis (2023), Sec. 4: an EMA v of the gradients as the
    ascent direction, v_k = (1 - theta) v_{k-1} + theta g, v_1 = g, d_k = v_k / ||v_k||.
    theta = 0.9 (official code); theta = 1 is SAM."""

    name, paper = "vasso", "Li & Giannakis (2023), VaSSO (Sec. 4)"
    hyper = {"theta": Hyper(0.9, "weight of the new gradient in the EMA v", lo=0.0, hi=1.0, lo_open=True)}
    stateful, normalized = True, True

    def __init__(self, theta=0.9):
        super().__init__(theta=theta)

    def direction(self, k, x, oracle, state, rng):
        g = oracle.grad(x)
        v = g if state is None else (1 - self.theta) * state + self.theta * g
        return normalize(v), v


class RSAM(Rule):
    """Random SAM, Liu et al. (2022): a gradient at a random point x + delta, delta ~ N(0, noise^2 I),
    mixed with delta: v = lam_r grad f_S(x + delta) + delta, d_k = v / ||v|| (as analysed by Khanh
    et al. 2024, Sec. 3). lam_r = 2; the official code scales delta per filter, here isotropic."""

    name, paper = "rsam", "Liu et al. (2022), Random SAM; Khanh et al. (2024) Sec. 3"
    hyper = {"lam_r": Hyper(2.0, "weight of the gradient at the random point x + delta", lo=0.0,
                            lo_open=True, hi_open=True),
             "noise": Hyper(0.01, "standard deviation of the random point delta", lo=0.0, hi_open=True)}
    normalized, draws_random = True, True

    def __init__(self, lam_r=2.0, noise=0.01):
        super().__init__(lam_r=lam_r, noise=noise)

    def direction(self, k, x, oracle, state, rng):
        delta = self.noise * rng.normal_like(x)
        return normalize(self.lam_r * oracle.grad(x + delta) + delta), state


class ASAM(Rule):
    """Adaptive SAM, Kwon et al. (2021), eq. (8) with T_x = diag(|x|): d_k = T^2 g / ||T g||, the
    scale-invariant ascent of the widely used PyTorch SAM's ``adaptive=True``."""

    name, paper = "asam", "Kwon et al. (2021), ASAM, eq. (8)"
    error_model = None           # ||d_k|| <= max_i |x_i|: no bound in ||grad f|| alone

    def direction(self, k, x, oracle, state, rng):
        g = oracle.grad(x)
        scale = abs(x)
        return scale * normalize(scale * g), state


class MSharpness(Rule):
    """m-sharpness, Andriushchenko & Flammarion (2022), Sec. 3: split the sample into chunks of m
    examples; each chunk c takes its own ascent direction d_c (by the ``base`` rule) and gradient
    grad f_c(x + rho d_c); g_k is their average. m = 1 with base usam is their 1-SAM."""

    name, paper = "msam", "Andriushchenko & Flammarion (2022), m-sharpness (Sec. 3)"
    hyper = {"m": Hyper(1, "examples per chunk", kind="int", lo=1.0),
             "base": Hyper("sam", "rule of each chunk", kind="choice", choices=("sam", "usam"))}
    splits_batch = True
    error_model = None           # chunks have their own smoothness: not covered by the bounds

    def __init__(self, m=1, base="sam"):
        super().__init__(m=m, base=base)
        self.rule = make_method(self.base)

    def gradient(self, k, x, oracle, state, rho, rng, bound=True):
        grads, bounds = [], []
        for chunk in oracle.split(self.m):
            g, chunk_bound, _ = self.rule.gradient(k, x, chunk, None, rho, rng, bound)
            grads.append(g)
            bounds.append(chunk_bound)
        g = sum(grads[1:], grads[0]) / len(grads)
        bound = None if any(b is None for b in bounds) else sum(bounds) / len(bounds)
        return g, bound, state


METHODS: dict[str, type[Rule]] = {cls.name: cls for cls in (
    GD, SAM, USAM, Unified, FSAM, VaSSO, RSAM, DNSAM, ASAM, MSharpness)}


def make_method(name: str, **options) -> Rule:
    """Build a registered rule by name; option values may be text (as typed on a command line).
    Unknown names get the closest valid one suggested; options of other rules are refused."""
    if name not in METHODS:
        raise unknown("method", name, METHODS, "method")
    cls = METHODS[name]
    extra = sorted(set(options) - set(cls.hyper))
    if extra:
        accepted = ", ".join(cls.hyper) or "none"
        raise InputError(f"{extra[0]} does not apply to method '{name}' (its options: {accepted})", extra[0])
    return cls(**options)


def hyper_parameters() -> dict[str, list[tuple[str, Hyper]]]:
    """Every hyper-parameter name with the (method, Hyper) pairs that take it: the CLI flags."""
    out: dict = {}
    for name, cls in METHODS.items():
        for h, spec in cls.hyper.items():
            out.setdefault(h, []).append((name, spec))
    return out


def stack(rules: list[Rule], sizes) -> Rule:
    """One rule for a batch of runs in which rule i has the next ``sizes[i]`` runs: hyper-parameters
    that differ become per-run (runs, 1) arrays (every formula is elementwise in them); all else
    (the class, schedules, choices) must be equal. InputError when the rules cannot share a batch."""
    first = rules[0]
    if any(type(r) is not type(first) for r in rules):
        raise InputError("rules of different methods cannot share a batch")
    out = copy.copy(first)
    for h in first.hyper:
        values = [getattr(r, h) for r in rules]
        if all(_same(v, values[0]) for v in values):
            continue
        if not all(isinstance(v, float) for v in values):
            raise InputError(f"{h} differs between the rules of a batch and is not a number")
        setattr(out, h, np.repeat(np.array(values, dtype=float), sizes)[:, None])
    return out


def _same(a, b) -> bool:
    if callable(a) or callable(b):
        return getattr(a, "expr", a) == getattr(b, "expr", b)
    return a == b


def batch_key(rule: Rule) -> tuple:
    """Rules with the same key can run in one batch (``stack``): same method, and the same
    hyper-parameters other than numbers."""
    return (rule.name,) + tuple((h, str(getattr(rule, h))) for h in rule.hyper
                                if not isinstance(getattr(rule, h), float))
