"""Which convergence theorems does a schedule satisfy? Each hypothesis is decided symbolically
(sympy limits of the asymptotic order) or, where sympy cannot, numerically (reported as such).

examples:
  python -m experiments.check_schedule --method sam --stepsize "0.1/(k+1)**0.6" --rho "0.05/(k+1)**0.5" --L 8
  python -m experiments.check_schedule --method usam --stepsize 0.05 --rho 0.05 --L 4 --mu 0.5
  python -m experiments.check_schedule --method sam --stepsize "0.1/((k+2)*log(k+2))" --rho 0.05 --L 1 --convex

The function is taken to be L-smooth and bounded below; --mu makes it mu-PL, --convex convex,
--quadratic a strongly convex quadratic. Exit status 0 when a convergence theorem applies, 1 if none.
"""
from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from experiments.common import OneLineParser, fail, positive


def main(argv=None) -> int:
    """The command line (Ctrl-C: one line, exit 130; a full disk: one line, exit 1)."""
    from experiments.common import guarded
    return guarded("check_schedule", _main, argv)


def _main(argv=None) -> int:
    from convergence.errors import InputError
    from convergence.methods import METHODS
    from convergence.schedules import MAX_VALUE, SCAN, Schedule, parse_expression
    from convergence.theory import Context, assess
    p = OneLineParser(prog="python -m experiments.check_schedule", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="sam", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--lam", type=float, default=None, help="unified: lambda in [0, 1] (default 0.5)")
    p.add_argument("--stepsize", required=True, help="t_k as an expression in k (k = 0, 1, ...)")
    p.add_argument("--rho", required=True, help="rho_k as an expression in k")
    p.add_argument("--L", type=float, required=True, help="smoothness constant of f")
    p.add_argument("--mu", type=float, default=None, help="PL constant (makes f mu-PL)")
    p.add_argument("--convex", action="store_true", help="f is convex")
    p.add_argument("--quadratic", action="store_true", help="f is a strongly convex quadratic")
    p.add_argument("--stochastic", action="store_true", help="stochastic (not full-batch) gradients")
    p.add_argument("--gamma-star", type=float, default=None, help="Oikonomou & Loizou's gamma* (theory steps)")
    p.add_argument("--rho-star", type=float, default=None, help="Oikonomou & Loizou's rho*")
    args = p.parse_args(argv)
    try:
        from convergence.methods import make_method
        rule = make_method(args.method, **({"lam": args.lam} if args.lam is not None else {}))
        for flag in ("L", "mu", "gamma_star", "rho_star"):
            value = getattr(args, flag)
            if value is not None:
                name = f"--{flag.replace('_', '-')}"
                positive(name, value)
                if not 1 / MAX_VALUE <= value <= MAX_VALUE:      # the theory squares and divides them
                    raise InputError(f"{name} must lie in [{1 / MAX_VALUE:g}, {MAX_VALUE:g}], got {value:g}: "
                                     f"rescale the problem")
        if (args.gamma_star is None) != (args.rho_star is None):
            raise InputError("--gamma-star and --rho-star go together (Oikonomou & Loizou's pair): give both")
        if args.mu is not None and args.mu > args.L:
            raise InputError(f"--mu {args.mu:g} exceeds --L {args.L:g}: give mu <= L (a PL constant "
                             f"never exceeds the smoothness constant)")
        t = Schedule(parse_expression(args.stepsize, "stepsize"), args.stepsize)
        rho = Schedule(parse_expression(args.rho, "rho"), args.rho)
        for name, s in (("stepsize", t), ("rho", rho)):
            s.check(name, SCAN, lambda v: v > 0, "stay positive")
            s.check(name, SCAN, lambda v: v <= MAX_VALUE, f"stay at most {MAX_VALUE:g}")
    except InputError as err:
        return fail("check_schedule", err.for_flags())
    problem = SimpleNamespace(name="a strongly convex quadratic" if args.quadratic else "f", L=args.L, mu=args.mu,
                              convex=args.convex or args.quadratic, strongly_convex_quadratic=args.quadratic,
                              lower_bounded=True, smoothness_note="global", f_star=None if args.mu is None else 0.0)
    ol = None if args.gamma_star is None else (args.gamma_star, args.rho_star)
    seen = rule if args.stochastic else rule.on_full_batch()
    ctx = Context(t, rho, args.L, args.mu, seen.error_model, ol)
    try:
        rows = assess(rule, problem, ctx, deterministic=not args.stochastic)
    except ArithmeticError as err:             # a float64 bound of the theory overflowed
        return fail("check_schedule", f"the theory's float64 bounds overflow for these schedules and "
                                      f"constants ({err}): rescale them")
    print(f"{args.method}: t_k = {t.expr}, rho_k = {rho.expr}, L = {args.L:g}"
          + (f", mu = {args.mu:g}" if args.mu else ""))
    applies = False
    for a in rows:
        th = a.theorem
        head = f"{th.key} [{th.paper}, {th.where}, {th.source}]"
        if a.holds:
            applies |= th.predicts in ("grad_to_zero", "linear", "rate_1_over_k")
            print(f"  APPLIES  {head}\n           -> {th.conclusion}")
        elif a.covered:
            print(f"  fails    {head}")
            for h, d in a.failures:
                mark = "?" if a.checks[h].holds is None else "x"       # undecided, or shown false
                print(f"           {mark} {h}: {d}")
        else:
            print(f"  n/a      {head}: {a.failures[0][1]}")
        for h, d in a.checks.items():
            if d.holds:
                print(f"           ok {h}: {d.detail} [{d.method}]")
    return 0 if applies else 1


if __name__ == "__main__":
    sys.exit(main())
