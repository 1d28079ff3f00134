"""Per-epoch schedules of the step size t_e and the radius rho_e, as sympy expressions so that the
theory layer can reason about them (no torch here).

k counts EPOCHS here (e = 0, 1, 2, ...; the value changes once per epoch), with v = t_0 or rho_0:
  constant    v
  diminish1   v/(e+1)
  diminish2   v for e = 0, v/e^0.5001 for e >= 1
  diminish3   v for e = 0, v/(n ln n), n = 3 + floor((e-1)/5), for e >= 1
  or an expression in k (= e), e.g. "0.05/(k+1)**0.6" (v unused).
The four names are the learning-rate schedules of the fundamental-SAM CIFAR experiments (lr = 0.1,
rho = 0.05 constant there; DESIGN.md, "Step sizes and radii"). A step held for the B steps of an
epoch changes no series test: sum_k t_k rho_k = B sum_e t_e rho_e, and likewise for sum t_k, sum t_k^2.
"""
from __future__ import annotations

import re

import sympy as sp

from convergence.errors import InputError, unknown
from convergence.schedules import Schedule, k, parse_expression

CIFAR_SCHEDULES = ("constant", "diminish1", "diminish2", "diminish3")


def cifar_expression(name: str, v: float) -> sp.Expr:
    v = sp.Float(v)
    if name == "constant":
        return v
    if name == "diminish1":
        return v / (k + 1)
    if name == "diminish2":
        return sp.Piecewise((v, sp.Eq(k, 0)), (v / k ** sp.Rational(5001, 10000), True))
    if name == "diminish3":
        n = 3 + sp.floor((k - 1) / 5)
        return sp.Piecewise((v, sp.Eq(k, 0)), (v / (n * sp.log(n)), True))
    raise unknown("stepsize", name, CIFAR_SCHEDULES)


def is_named(spec: str) -> bool:
    """A schedule name (a word), as opposed to an expression in k."""
    return re.fullmatch(r"[A-Za-z_]\w*", spec.strip()) is not None and spec.strip() != "k"


def epoch_schedule(spec: str, value: float | None, name: str = "stepsize") -> Schedule:
    """The schedule ``spec`` (a name of CIFAR_SCHEDULES with v = ``value``, or an expression in k =
    the epoch) as a Schedule in k; InputError naming ``name`` for an unknown name or a bad expression,
    or for a ``value`` given with an expression (which would not use it)."""
    if is_named(spec):
        if spec not in CIFAR_SCHEDULES:
            raise unknown(name.replace("_", "-"), spec, CIFAR_SCHEDULES, name)
        return Schedule(cifar_expression(spec, value), f"{spec}({value:g}, per epoch)")
    if value is not None:
        raise InputError(f"{name} '{spec}' is an expression in k (the epoch): it does not use a start value; "
                         f"drop that flag or write the value into the expression", name)
    return Schedule(parse_expression(spec, name), f"{spec} (k = epoch)")


def epoch_schedules(stepsize: str, lr, rho_schedule: str, rho, epochs: int) -> tuple[Schedule, Schedule]:
    """(t, rho) as Schedules in k = the epoch, checked on every epoch of the run (t > 0, rho >= 0)."""
    t = epoch_schedule(stepsize, lr, "stepsize")
    r = epoch_schedule(rho_schedule, rho, "rho_schedule")
    t.check("stepsize", epochs, lambda v: v > 0, "stay positive")
    r.check("rho_schedule", epochs, lambda v: v >= 0, "stay non-negative")
    return t, r
