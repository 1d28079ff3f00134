"""KL theory rows (issue 16 item 3): the catalogue's KL theorems, judged from path_length and
dist_to_opt, each test failing for a named wrong implementation."""
import numpy as np
import pytest

from convergence.methods import make_method
from convergence.runner import iterate
from convergence.schedules import constant, diminishing
from convergence.spec import toy_run
from convergence.theory import Context, check, theorem
from convergence.theory.report import kl_rate_exponent, observe
from convergence.verdicts import assess
from experiments import run_toy
from experiments.mutants import FrozenRadius
from problems import make_problem


def _row(trace, key):
    return next(r for r in trace.theory if r["theorem"] == key)


def test_run_toy_prints_the_kl_rows(tmp_path, capsys):
    """Wrong implementation rejected: KL rows missing from the catalogue, or gated on an assumption
    the KL problems lack (e.g. global smoothness: quartic's L holds on a box only)."""
    assert run_toy.main(["--problem", "quartic", "--method", "sam", "--stepsize", "diminishing", "--iters", "5000",
                         "--runs", "2", "--out", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    assert "theory agrees: khanh2024-sam-kl-iterates" in out and "predicts finite_length" in out
    assert "path length" in out


@pytest.mark.parametrize("theta,exponent", [(0.75, -0.5), (5 / 6, -0.25), (0.6, -2.0)])
def test_rate_exponent(theta, exponent):
    """Wrong implementation rejected: -theta/(2 theta - 1) or -(1 - theta)/(2 theta) (both give
    other values at theta = 3/4)."""
    assert kl_rate_exponent(theta) == pytest.approx(exponent)


def test_finite_length_rejects_a_path_of_infinite_length():
    """SAM with the rho_k schedule not applied (rho frozen at 0.5, sum t_k rho = oo) oscillates around
    x* = 0 of the quartic: ||x_k - x*|| still falls (so a judge that looks at dist_to_opt alone
    would agree), but its path keeps growing. Wrong implementation rejected: finite_length judged
    from dist_to_opt -> 0 only."""
    quartic = make_problem("quartic", 2)
    t = diminishing(1 / quartic.L, 0.6)
    right = iterate(quartic, make_method("sam"), t, diminishing(0.5, 0.6), 10_000, runs=3, seed=6)
    wrong = iterate(quartic, FrozenRadius(make_method("sam"), 0.5), t, diminishing(0.5, 0.6), 10_000, runs=3, seed=6)
    assess(right), assess(wrong)
    for r in range(3):
        assert observe("finite_length", right, r)[0] == "agrees"
        assert wrong.final["dist_to_opt"][r] < 1e-2 * wrong.data["dist_to_opt"][0, r]    # dist alone: "converged"
        assert observe("finite_length", wrong, r)[0] == "mismatch"


def test_kl_rate_agrees_only_with_the_predicted_exponent():
    """GD with constant steps on the quartic (x_k ~ (2 t k)^-1/2) agrees with k^-1/2; with
    diminishing steps t_k = t_0/(k+1)^0.6 it decays like k^-0.2 and must not agree. Wrong
    implementation rejected: a kl_rate judge that accepts any decreasing power law."""
    quartic = make_problem("quartic", 2)
    x0 = np.full((1, 2), 0.9)
    gd = make_method("gd")
    const = iterate(quartic, gd, constant(0.3), constant(0.0), 20_000, x0=x0)
    dimin = iterate(quartic, gd, diminishing(0.3, 0.6), constant(0.0), 20_000, x0=x0)
    assess(const), assess(dimin)
    assert observe("kl_rate", const, 0, theta=0.75)[0] == "agrees"
    assert observe("kl_rate", dimin, 0, theta=0.75)[0] != "agrees"


def test_relative_error_scope_and_step():
    """The rate theorem covers relative-error rules only. Wrong implementations rejected: a scope
    'any rule with an error model' (SAM's error L rho is absolute: constant-step SAM stalls on the
    quartic), and a step check that ignores nu (t = 0.3 > (1 - nu)/(L (1 + nu)^2) at nu = 0.3)."""
    th = theorem("attouch-bolte2009-kl-rate")
    assert th.covers(make_method("gd")) and th.covers(make_method("usam"))
    assert th.covers(make_method("unified", lam=0.0))
    assert not any(th.covers(make_method(m)) for m in ("sam", "fsam", "vasso", "rsam"))
    L = 3.0
    ok = Context(constant(0.2), constant(0.05), L, error_model=(1.0, 0.0))        # nu = 0.15: bound 0.214
    assert check("relative_step", ok)
    assert not check("relative_step", Context(constant(0.3), constant(0.1), L, error_model=(1.0, 0.0)))
    assert not check("relative_step", Context(constant(0.1), constant(0.05), L, error_model=(0.0, 1.0)))


def test_kl_rows_need_a_kl_exponent_above_one_half():
    """Wrong implementation rejected: KL rows applied to PL problems (theta = 1/2: the rate formula
    divides by zero) or to problems without a known exponent."""
    spec = toy_run(problem="quadratic", method="sam", stepsize="diminishing", iters=200, runs=1)
    row = next(a for a in spec.assessments if a.theorem.key == "khanh2024-sam-kl-iterates")
    assert not row.covered and "kl" in row.failures[0][1]
    spec = toy_run(problem="sextic", method="sam", stepsize="diminishing", iters=200, runs=1)
    assert next(a for a in spec.assessments if a.theorem.key == "khanh2024-sam-kl-iterates").holds
