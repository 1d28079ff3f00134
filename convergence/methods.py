"""SAM-family methods as rules for the ascent direction d_k of inexact gradient descent

    x_{k+1} = x_k - t_k g_k,    g_k = grad f_S(x_k + rho_k d_k).

A rule defines only d_k, from the gradient oracle of this step's sample S and its own state. The
runner (numpy) and the torch optimizers (convergence.deepnet) execute the same rule objects.

Oracle contract: ``oracle.grad(y)`` is the gradient of this step's sampled function at y,
``oracle.full_grad(y)`` the gradient of f, ``oracle.L`` the smoothness of the sampled function
(None when unknown) and ``oracle.split(m)`` the oracles of m-sized chunks of the sample.
"""
from __future__ import annotations

from convergence.errors import InputError, unknown
from convergence.vec import norm, normalize


class Rule:
    """Base rule: stateless, one ascent direction per step."""

    name = ""
    paper = ""
    hyper: dict = {}        # hyper-parameters and their defaults (the paper's)
    stateful = False
    # (a, b) with ||d_k|| <= a ||grad f(x_k)|| + b in the deterministic case, so that
    # ||g_k - grad f(x_k)|| <= L rho_k (a ||grad f(x_k)|| + b): the inexactness the theory uses
    error_model = (0.0, 1.0)

    def init(self, x):
        return None

    def direction(self, k, x, oracle, state, rng):
        raise NotImplementedError

    def gradient(self, k, x, oracle, state, rho, rng):
        """g_k = grad f_S(x_k + rho_k d_k), and the bound L_S rho_k ||d_k|| >= ||g_k - grad f_S(x_k)||
        that L_S-smoothness of the sampled function gives (None when L_S is unknown)."""
        d, state = self.direction(k, x, oracle, state, rng)
        g = oracle.grad(x + rho * d)
        bound = None if oracle.L is None else oracle.L * rho * norm(d)
        return g, bound, state

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k in self.hyper)
        return f"{self.name}({args})"


def _check(name, value, lo, hi, lo_open=False, hi_open=False):
    """Reject a hyper-parameter outside its range with the flag's name and the range."""
    ok = isinstance(value, (int, float)) and (value > lo if lo_open else value >= lo) and (
        value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise InputError(f"--{name.replace('_', '-')} must lie in {rng}, got {value}")
    return value


class GD(Rule):
    """Plain (stochastic) gradient descent: d_k = 0."""

    name, paper = "gd", "Cauchy (1847); Robbins & Monro (1951) for SGD"
    error_model = (0.0, 0.0)

    def direction(self, k, x, oracle, state, rng):
        return 0.0 * x, state


class SAM(Rule):
    """SAM, Foret et al. (2021), eq. (2) of Khanh et al. (2024): d_k = g / ||g||, g = grad f_S(x_k)."""

    name, paper = "sam", "Foret et al. (2021); Khanh et al. (2024) eq. (2)"

    def direction(self, k, x, oracle, state, rng):
        return normalize(oracle.grad(x)), state


class USAM(Rule):
    """Unnormalized SAM, Andriushchenko & Flammarion (2022), eq. (3): d_k = g = grad f_S(x_k)."""

    name, paper = "usam", "Andriushchenko & Flammarion (2022) eq. (3)"
    error_model = (1.0, 0.0)

    def direction(self, k, x, oracle, state, rng):
        return oracle.grad(x), state


class Unified(Rule):
    """Unified SAM, Oikonomou & Loizou (2025), Sec. 3: d_k = (1 - lam + lam/||g||) g.

    lam = 0 is USAM, lam = 1 is SAM. ``lam`` is a number in [0, 1] or a Schedule in k (their code's
    '1/t' is lam_k = 1/(k+1), '1-1/t' is lam_k = 1 - 1/(k+1)), checked to lie in [0, 1] on k < SCAN.
    """

    name, paper = "unified", "Oikonomou & Loizou (2025), Unified SAM (Sec. 3)"
    hyper = {"lam": 0.5}

    def __init__(self, lam=0.5):
        if callable(lam):
            from convergence.schedules import SCAN
            lam.check("--lam", SCAN, lambda v: (v >= 0) & (v <= 1), "lie in [0, 1]")
            self.lam = lam
        else:
            self.lam = _check("lam", lam, 0, 1)

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
    hyper = {"sigma": 1.0, "beta": 0.9}
    stateful = True

    def __init__(self, sigma=1.0, beta=0.9):
        self.sigma, self.beta = _check("sigma", sigma, 0, 1), _check("beta", beta, 0, 1, hi_open=True)

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
    hyper = {"theta": 0.9}
    stateful = True

    def __init__(self, theta=0.9):
        self.theta = _check("theta", theta, 0, 1, lo_open=True)

    def direction(self, k, x, oracle, state, rng):
        g = oracle.grad(x)
        v = g if state is None else (1 - self.theta) * state + self.theta * g
        return normalize(v), v


class RSAM(Rule):
    """Random SAM, Liu et al. (2022): a gradient at a random point x + delta, delta ~ N(0, noise^2 I),
    mixed with delta: v = lam_r grad f_S(x + delta) + delta, d_k = v / ||v|| (as analysed by Khanh
    et al. 2024, Sec. 3). lam_r = 2; the official code scales delta per filter, here isotropic."""

    name, paper = "rsam", "Liu et al. (2022), Random SAM; Khanh et al. (2024) Sec. 3"
    hyper = {"lam_r": 2.0, "noise": 0.01}

    def __init__(self, lam_r=2.0, noise=0.01):
        self.lam_r = _check("lam_r", lam_r, 0, float("inf"), lo_open=True, hi_open=True)
        self.noise = _check("noise", noise, 0, float("inf"), hi_open=True)

    def direction(self, k, x, oracle, state, rng):
        delta = self.noise * rng.normal_like(x)
        return normalize(self.lam_r * oracle.grad(x + delta) + delta), state


class MSharpness(Rule):
    """m-sharpness, Andriushchenko & Flammarion (2022), Sec. 3: split the sample into chunks of m
    examples; each chunk c takes its own ascent direction d_c (by the ``base`` rule) and gradient
    grad f_c(x + rho d_c); g_k is their average. m = 1 with base usam is their 1-SAM."""

    name, paper = "msam", "Andriushchenko & Flammarion (2022), m-sharpness (Sec. 3)"
    hyper = {"m": 1, "base": "sam"}

    def __init__(self, m=1, base="sam"):
        if not (isinstance(m, int) and m >= 1):
            raise InputError(f"--m must be a positive integer, got {m}")
        self.m, self.base = m, base
        self.rule = make_method(base)
        self.error_model = None        # chunks have their own smoothness: not covered by the bounds
        if self.rule.stateful or isinstance(self.rule, MSharpness):
            raise InputError(f"msam needs a stateless base rule; '{base}' is not one: use sam or usam")

    def gradient(self, k, x, oracle, state, rho, rng):
        grads, bounds = [], []
        for chunk in oracle.split(self.m):
            g, bound, _ = self.rule.gradient(k, x, chunk, None, rho, rng)
            grads.append(g)
            bounds.append(bound)
        g = sum(grads[1:], grads[0]) / len(grads)
        bound = None if any(b is None for b in bounds) else sum(bounds) / len(bounds)
        return g, bound, state


METHODS: dict[str, type[Rule]] = {cls.name: cls for cls in (
    GD, SAM, USAM, Unified, FSAM, VaSSO, RSAM, DNSAM, MSharpness)}


def make_method(name: str, **hyper) -> Rule:
    """Build a registered rule by name; unknown names get the closest valid one suggested."""
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    cls = METHODS[name]
    extra = set(hyper) - set(cls.hyper)
    if extra:
        accepted = ", ".join(f"--{h.replace('_', '-')}" for h in cls.hyper) or "none"
        raise InputError(f"{', '.join('--' + h.replace('_', '-') for h in sorted(extra))} does not apply to "
                         f"method '{name}' (its options: {accepted})")
    return cls(**hyper)


def method_options(options: dict) -> dict:
    """Method options as the rules take them: --lam may be a number, '1/t', '1-1/t' (Oikonomou &
    Loizou's schedules, t = k + 1) or an expression in k."""
    from convergence.schedules import Schedule, k, parse_expression
    out = dict(options)
    if "lam" in out:
        text = str(out["lam"])
        try:
            out["lam"] = float(text)
        except ValueError:
            expr = {"1/t": 1 / (k + 1), "1-1/t": 1 - 1 / (k + 1)}.get(text.replace(" ", ""))
            out["lam"] = Schedule(parse_expression(text) if expr is None else expr, text)
    return out
