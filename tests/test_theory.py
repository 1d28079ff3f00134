"""Theory layer: the schedule checker against known answers, rate fits, theorems against runs."""
import numpy as np
import pytest
import sympy as sp

from convergence.runner import run
from convergence.schedules import Schedule, k, parse_expression
from convergence.spec import toy_run
from convergence.theory import THEOREMS, Context, check
from convergence.theory import asymptotics as series
from convergence.theory.report import observe
from convergence.verdicts import fit_rate
from experiments import check_schedule, run_toy

# Diminish 1-3 of Khanh et al.'s CIFAR experiments (epochs e = 0, 1, ...; DESIGN.md)
_n = 3 + sp.floor((k - 1) / 5)
DIMINISH1 = sp.Float(0.1) / (k + 1)
DIMINISH2 = sp.Piecewise((sp.Float(0.1), k < 1), (sp.Float(0.1) / k ** sp.Float(0.5001), True))
DIMINISH3 = sp.Piecewise((sp.Float(0.1), k < 1), (sp.Float(0.1) / (_n * sp.log(_n)), True))

# (a_k, sum a_k < oo, lim a_k)
TABLE = [
    ("0.1", False, 0.1), ("1/(k+1)", False, 0), ("1/(k+1)**2", True, 0), ("1/(k+1)**0.5", False, 0),
    ("(1/(k+1)**0.5)**2", False, 0), ("(1/(k+1)**0.5001)**2", True, 0), ("(1/(k+1)**0.4999)**2", False, 0),
    ("1/(k+1)**1.0001", True, 0), ("1/(k+1)**0.9999", False, 0), ("1/((k+2)*log(k+2))", False, 0),
    ("1/((k+2)*log(k+2)**2)", True, 0), ("exp(-k)", True, 0), ("0.9**k", True, 0),
    ("1/sqrt(k+1)/log(k+2)", False, 0), ("k/(k**2+1)", False, 0), ("(k+1)**(-1.5)*log(k+2)**3", True, 0),
    ("min(0.5, (2*k+1)/((k+1)**2*0.1))", False, 0), ("min(0.5, (2*k+1)/((k+1)**2*0.1))**2", True, 0),
    ("0.1/(k+1)**0.6*0.05", False, 0), ("0.1/(k+1)**0.6*0.05/(k+1)**0.5", True, 0),
    ("3/(2+k)**(1/2)*1/(1+k)**(1/2)", False, 0),
]
EPOCH_TABLE = [(DIMINISH1, False), (DIMINISH1**2, True), (DIMINISH2, False), (DIMINISH2**2, True),
               (DIMINISH3, False), (DIMINISH3**2, True)]


@pytest.mark.parametrize("text,converges,lim", TABLE)
def test_series_checker_on_known_schedules(text, converges, lim):
    expr = parse_expression(text)
    d = series.sum_converges(expr)
    assert d.holds is converges, d.detail
    assert d.method == "symbolic"
    assert series.limit(expr)[0] == pytest.approx(lim)
    assert series.tends_to_zero(expr).holds is (lim == 0)


@pytest.mark.parametrize("expr,converges", EPOCH_TABLE, ids=["D1", "D1^2", "D2", "D2^2", "D3", "D3^2"])
def test_series_checker_on_the_cifar_schedules(expr, converges):
    assert series.sum_converges(expr).holds is converges
    assert series.tends_to_zero(expr).holds


def test_numerical_fallback_is_reported_as_such():
    """A bounded oscillating term dominated by k^-2 keeps the symbolic order; a factor with no limit
    (2 + sin(log k)) needs the numerical fit, labelled so, and near the border p = 1 the fit decides
    nothing. Wrong implementations rejected: one labelling every decision "symbolic" (or every one
    "numerical"), and one deciding a fitted order 1.019 as convergent (the unsafe direction)."""
    d = series.sum_converges(sp.Float(1) / (k + 1) ** 2 + sp.sin(k) ** 2 / (k + 1) ** 3)
    assert (d.holds, d.method) == (True, "symbolic") and "k^-2" in d.detail
    weird = sp.Float(1) / (k + 1) ** sp.Float(1.5) * (2 + sp.sin(sp.log(k + 2)))
    d = series.sum_converges(weird)
    assert (d.holds, d.method) == (True, "numerical")
    for p in ("1.01", "0.99"):
        border = series.sum_converges(sp.Float(1) / (k + 1) ** sp.Rational(p) * (2 + sp.sin(sp.log(k + 2))))
        assert (border.holds, border.method) == (None, "numerical"), border.detail


@pytest.mark.parametrize("slope", [-0.5, -0.73, -1.0, -2.4])
def test_rate_fit_recovers_a_power_law_within_two_percent(slope):
    rng = np.random.default_rng(0)
    ks = np.unique(np.geomspace(1, 1e5, 200).astype(int))
    values = 3.0 * ks**slope * np.exp(0.05 * rng.standard_normal(len(ks)))
    fit = fit_rate(ks.astype(float), values)
    assert abs(fit["slope"] - slope) <= 0.02 * abs(slope)
    assert fit["lo"] <= slope <= fit["hi"]


def test_rate_fit_recovers_a_linear_rate():
    ks = np.arange(0, 500, 5).astype(float)
    fit = fit_rate(ks, 2.0 * 0.97**ks, log_x=False)
    assert fit["slope"] == pytest.approx(np.log(0.97), rel=1e-10)


def _schedule(text):
    return Schedule(parse_expression(text), text)


def test_hypotheses_of_sam_theorem_on_schedules():
    good = Context(_schedule("0.1/(k+1)**0.6"), _schedule("0.05/(k+1)**0.5"), L=8)
    assert all(check(h, good) for h in ("sum_t_inf", "sum_t2_fin", "sum_trho_fin", "t_to_0",
                                        "t_at_most_1_over_L"))
    constant_rho = Context(_schedule("0.1/(k+1)**0.6"), _schedule("0.05"), L=8)
    assert not check("sum_trho_fin", constant_rho)
    big_step = Context(_schedule("0.3"), _schedule("0.05"), L=8)
    assert not check("t_at_most_1_over_L", big_step) and not check("t_below_2_over_L", big_step)


def _spec(**kw):
    """A small run spec (3 runs of 3000 iterations by default), as toy_run describes runs."""
    options = dict(iters=3000, runs=3)
    options.update(kw)
    return toy_run(**options)


# one run per theorem under which its hypotheses hold; the observed verdict must agree with it
EXERCISES = {
    "khanh2024-sam-nonconvex": dict(problem="sinpl", dim=2, iters=20000),
    "khanh2024-sam-convex": dict(iters=60000),
    "khanh2024-usam": dict(method="usam", stepsize="constant", lr="0.5"),
    "khanh2024-constant-sam-fails": dict(stepsize="constant", lr="0.5", iters=5000),
    "derived-constant-unit-direction-fails": dict(method="vasso", stepsize="constant", lr="0.5", iters=5000),
    "oikonomou2025-pl-constant-usam": dict(method="usam", problem="least_squares", dim=20, stepsize="constant",
                                           lr="theory", rho="theory"),
    "oikonomou2025-pl-constant": dict(problem="least_squares", dim=20, stepsize="constant", lr="theory",
                                      rho="theory"),
    "oikonomou2025-pl-decreasing": dict(method="unified", method_options={"lam": 0.5}, problem="least_squares", dim=20,
                                        sampling="tau-nice", batch=18, stepsize="pl-decreasing",
                                        lr="theory", rho="theory", iters=60000),
    "derived-min-grad-bound": dict(problem="robust_regression", dim=5, iters=5000),
    "derived-pl-bound": dict(method="usam", problem="sinpl", dim=3, lr="0.1", iters=5000),
    "khanh2024-sam-kl-iterates": dict(problem="quartic", iters=20000),
    "attouch-bolte2009-kl-length": dict(method="usam", problem="quartic", stepsize="constant", lr="0.2", rho="0.05",
                                        iters=20000),
    "attouch-bolte2009-kl-rate": dict(method="usam", problem="quartic", stepsize="constant", lr="0.2", rho="0.05",
                                      iters=20000),
}


def test_every_theorem_is_exercised():
    assert set(EXERCISES) == {th.key for th in THEOREMS}


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if EXERCISES[k].get("iters", 0) >= 50_000
                                 else k for k in sorted(EXERCISES)])
def test_theorem_agrees_with_a_run_that_satisfies_it(key, tmp_path):
    trace = run(_spec(**EXERCISES[key]))
    row = next(r for r in trace.theory if r["theorem"] == key)
    assert row["holds"], row["failures"]
    assert row["runs_agree"] == row["runs"] == 3, row["observed"]


def test_require_theory_refuses_a_schedule_whose_hypotheses_fail(tmp_path, capsys):
    flags = ["--stepsize", "constant", "--require-theory", "--out", str(tmp_path / "x")]
    assert run_toy.main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Σ t_k² < ∞" in err[0]
    assert not (tmp_path / "x").exists()


def test_check_schedule_cli(capsys):
    assert check_schedule.main(["--method", "sam", "--stepsize", "0.1/(k+1)**0.6", "--rho",
                                "0.05/(k+1)**0.5", "--L", "8"]) == 0
    out = capsys.readouterr().out
    assert "APPLIES  khanh2024-sam-nonconvex" in out
    assert check_schedule.main(["--method", "sam", "--stepsize", "0.1", "--rho", "0.05", "--L", "8"]) == 1
    assert "x sum_t2_fin" in capsys.readouterr().out
    assert check_schedule.main(["--method", "sam", "--stepsize", "0.1/(k", "--rho", "1", "--L", "8"]) == 2


# ------------------------------------------------------------------ cases a reviewer found wrong
@pytest.mark.parametrize("text,converges", [
    ("1/((k+1)*log(k+2))", False),                              # p = q = 1 exactly: diverges
    ("0.1/((k+1)*log(k+2)*log(log(k+3))**2)", None),            # converges, beyond the log scale: undecided
    ("1/((k+1)*log(k+2)**2)", True),
    ("max(1/(k+1)**2, 1e-30/(k+1))", False),                    # the max is ~1e-30/k: the winner by ratio
    ("min(0.1, 1/(k+1)**2)", True),
])
def test_sum_decisions_at_the_border(text, converges):
    assert series.sum_converges(parse_expression(text)).holds is converges


def test_floor_that_cancels_is_not_replaced_by_its_argument():
    """k/2 - floor(k/2) is 1/2 at every odd k: t_k^2 is not summable and t_k does not tend to 0."""
    t = parse_expression("k/2 - floor(k/2) + 0.1/(k+1)**0.6")
    assert series.sum_converges(t**2).holds is None and series.tends_to_zero(t).holds is None
    assert series.tends_to_zero(parse_expression("1/(floor(k/10)+1)")).holds is True   # a floor that grows


def test_undecided_hypothesis_is_marked_and_the_theorem_does_not_apply(capsys):
    assert check_schedule.main(["--method", "sam", "--stepsize", "k/2 - floor(k/2) + 0.1/(k+1)**0.6",
                                "--rho", "0.05/(k+1)**0.6", "--L", "8"]) == 1
    assert "? sum_t2_fin: floor/ceiling" in capsys.readouterr().out


def test_hypotheses_are_scanned_over_the_run_length():
    """A bump in rho at k = 50000 breaks L sup rho < 1 for a run of 10^5 steps."""
    rho = parse_expression("0.05 + 1.2*exp(-(k-50000)**2/1000000)")
    t = parse_expression("0.1")
    assert check("rho_below_1_over_L", Context(Schedule(t), Schedule(rho), L=1)).holds      # k < 10^4: missed
    assert not check("rho_below_1_over_L", Context(Schedule(t), Schedule(rho), L=1, horizon=100_000)).holds


def _trace_of(gap, status):
    """A one-run Trace with the given f - f* (f* = 1, ||grad f|| = sqrt(gap)) on the standard grid."""
    from convergence.trace import Trace, geometric_grid
    grid = geometric_grid(100_000)
    trace = Trace("sam", "quadratic", grid, 1)
    values = gap(np.maximum(grid, 1).astype(float))
    trace.data["f_gap"][:, 0], trace.data["f"][:, 0] = values, values + 1.0         # f* = 1
    trace.data["grad_norm"][:, 0] = np.sqrt(values)
    last = gap(np.array([100_000.0]))[0]
    trace.final["f_gap"][0], trace.final["f"][0] = last, last + 1.0
    trace.final["grad_norm"][0] = np.sqrt(last)
    trace.final_iter[0] = 100_000
    trace.status, trace.details = [status], [{"ratio": 1e-3}]
    return trace


def test_opposite_predictions_cannot_both_agree_and_a_power_law_is_not_linear():
    slow = _trace_of(lambda k: 1 / k, "max_iter")
    assert observe("grad_to_zero", slow, 0)[0] == "consistent"                # still decreasing: not proof
    assert observe("no_convergence", slow, 0)[0] == "mismatch"
    assert observe("linear", slow, 0)[0] == "mismatch"                        # 1/k: a power of k
    assert observe("linear", _trace_of(lambda k: 0.9999 ** k + 1e-300, "max_iter"), 0)[0] == "agrees"
    plateau = _trace_of(lambda k: 1e-2 + 0 * k, "stalled")
    assert observe("no_convergence", plateau, 0)[0] == "agrees"
    assert observe("grad_to_zero", plateau, 0)[0] == "mismatch"


def test_neighbourhood_needs_a_plateau_above_f_star():
    """Linear convergence to a neighbourhood of f* (Unified SAM, lambda > 0) is a plateau above f*:
    a run that reaches f* itself (what USAM does) or still falls is no evidence for it."""
    assert observe("neighbourhood", _trace_of(lambda k: 1e-4 + 0.5 ** k, "stalled"), 0)[0] == "agrees"
    assert observe("neighbourhood", _trace_of(lambda k: 0.5 ** k + 1e-300, "converged"), 0)[0] == "mismatch"
    assert observe("neighbourhood", _trace_of(lambda k: 1 / k, "max_iter"), 0)[0] == "mismatch"


def test_pl_bound_allows_the_round_off_of_f_minus_f_star():
    """USAM at a constant step on a PL problem: the bound underflows to 0 while f - f* stops at
    round-off; that is no counterexample."""
    trace = _trace_of(lambda k: np.maximum(0.5 ** k, 1e-16), "converged")
    its, _ = trace.column("f_gap", 0)
    bound = 0.5 ** its.astype(float) * 1.0001
    verdict, note = observe("bound_pl", trace, 0, bound)
    assert verdict == "agrees", note
    assert observe("bound_pl", trace, 0, bound * 1e-3)[0] == "mismatch"         # a real violation is caught


def test_derived_bounds_need_the_first_iterate_on_the_grid():
    """The bounds start from f(x_0) - f*: a grid without k = 0 leaves them unchecked, not wrong."""
    from dataclasses import replace
    base = _spec(stepsize="constant", lr=0.5, iters=200, runs=2)
    rows = {}
    for grid in ((0, 10, 100), (10, 100)):
        trace = run(replace(base, grid=grid))
        rows[grid[0]] = {row["theorem"]: row for row in trace.theory}
    assert rows[0]["derived-min-grad-bound"]["runs_agree"] == 2
    assert rows[10]["derived-min-grad-bound"]["holds"] and "runs_agree" not in rows[10]["derived-min-grad-bound"]


def test_rate_1_over_k_is_not_judged_before_the_steps_decrease():
    """Importance sampling on ridge: gamma* is so small that (2k+1)/((k+1)^2 mu) < gamma* only after
    ~10^6 steps; a 2000-step run shows the constant-step phase, which is no evidence either way."""
    trace = run(_spec(method="unified", method_options={"lam": 0.5}, problem="ridge", sampling="importance",
                      stepsize="pl-decreasing", lr="theory", rho="theory", iters=2000))
    row = next(r for r in trace.theory if r["theorem"] == "oikonomou2025-pl-decreasing")
    assert row["holds"] and "runs_agree" not in row and not row.get("mismatch")
    assert row["unreached"].startswith("not reached: the steps decrease from beyond the run's K = 2000")


def test_derived_bounds_at_the_recorded_iterates_against_sums_by_hand():
    """SAM on the quadratic (error model a = 0, b = 1, so c = 1): at each recorded iterate it, the
    MIN-GRAD bound at k = min(it + 1, K), sqrt((2 (f(x_0) - f*) + L^2 sum_{j<k} t_j rho_j^2) /
    sum_{j<k} t_j), and the PL bound at k = it from the recursion, both summed here in a Python loop.
    A shift off by one (the bound at it for the running min up to it), or another cell's forced part
    (the PL bounds of two cells that differ only in rho), fails this."""
    from convergence.theory import bounds
    for rho in (0.05, 0.2):
        spec = toy_run(problem="quadratic", method="sam", stepsize="diminishing", rho=rho, iters=3000, runs=3)
        trace, ctx = run(spec), spec.theory_context
        K, gap0, L, mu = int(trace.final_iter.max()), trace.data["f_gap"][0], spec.problem.L, spec.problem.mu
        t, r = spec.stepsize.values(K).tolist(), spec.radius.values(K).tolist()
        num, den, pl = [0.0], [0.0], [0.0]           # sums over j < k, and the PL recursion's forced part
        for tj, rj in zip(t, r):
            num.append(num[-1] + tj * rj * rj)
            den.append(den[-1] + tj)
            pl.append((1 - tj * mu) * pl[-1] + 0.5 * tj * L**2 * rj**2)
        contraction = np.concatenate([[1.0], np.cumprod([1 - tj * mu for tj in t])])
        its = np.append(trace.grid, trace.final_iter)
        k = np.minimum(its + 1, K)
        want = np.sqrt((2 * gap0[None, :] + L**2 * np.array(num)[k, None]) / np.array(den)[k, None])
        assert np.allclose(bounds.bound_at("bound_min_grad", ctx, trace)(its), want, rtol=1e-12, atol=0)
        want = contraction[np.minimum(its, K), None] * gap0[None, :] + np.array(pl)[np.minimum(its, K), None]
        assert np.allclose(bounds.bound_at("bound_pl", ctx, trace)(its), want, rtol=1e-12, atol=0)


def test_the_pl_bounds_forced_part_is_computed_once_for_equal_schedules():
    """Cells that differ only in seed share Q (their schedules are equal); other inputs get their own."""
    from convergence.theory.bounds import _forced_part
    contraction, forcing = np.full(1000, 0.99), np.full(1000, 1e-3)
    first = _forced_part(contraction, forcing)
    assert _forced_part(contraction.copy(), forcing.copy()) is first
    assert first[1] == 1e-3 and first[2] == 0.99 * 1e-3 + 1e-3
    other = _forced_part(contraction, 2 * forcing)
    assert other is not first and other[1] == 2e-3
