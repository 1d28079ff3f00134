"""The epoch-based learning-rate schedules of the fundamental-SAM CIFAR experiments, as sympy
expressions so that the theory layer can reason about them (no torch here).

k counts EPOCHS here (e = 0, 1, 2, ...; the rate changes once per epoch), with t_0 = ``lr``:
  constant    t_e = lr
  diminish1   t_e = lr/(e+1)
  diminish2   t_0 = lr, t_e = lr/e^0.5001 for e >= 1
  diminish3   t_0 = lr, t_e = lr/(n ln n), n = 3 + floor((e-1)/5), for e >= 1
(lr = 0.1 in the paper's code for the diminishing ones; DESIGN.md, "Step sizes and radii").
"""
from __future__ import annotations

import sympy as sp

from convergence.errors import unknown
from convergence.schedules import Schedule, k

CIFAR_SCHEDULES = ("constant", "diminish1", "diminish2", "diminish3")


def cifar_expression(name: str, lr: float) -> sp.Expr:
    t0 = sp.Float(lr)
    if name == "constant":
        return t0
    if name == "diminish1":
        return t0 / (k + 1)
    if name == "diminish2":
        return sp.Piecewise((t0, sp.Eq(k, 0)), (t0 / k ** sp.Rational(5001, 10000), True))
    if name == "diminish3":
        n = 3 + sp.floor((k - 1) / 5)
        return sp.Piecewise((t0, sp.Eq(k, 0)), (t0 / (n * sp.log(n)), True))
    raise unknown("stepsize", name, CIFAR_SCHEDULES)


def cifar_schedule(name: str, lr: float) -> Schedule:
    """The schedule ``name`` with t_0 = lr, a Schedule in k = the epoch."""
    return Schedule(cifar_expression(name, lr), f"{name}(lr={lr:g}, per epoch)")
