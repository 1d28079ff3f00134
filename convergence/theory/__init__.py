"""The convergence theory the toolkit checks runs against.

asymptotics  schedule asymptotics: sums, limits and bounds of t_k, rho_k decided with sympy
catalogue    the theorem catalogue: theorems as data (scope, assumptions, hypotheses, prediction)
hypotheses   which theorems cover a run and which of their hypotheses hold
bounds       derived bounds that every iterate of a deterministic run satisfies
steps        theory steps: Oikonomou & Loizou's (gamma*, rho*) and their decreasing rule
report       the theory report of a run: predictions against the observed runs
"""
from convergence.theory.catalogue import CONVERGENCE, HYPOTHESES, THEOREMS, Theorem, theorem
from convergence.theory.hypotheses import Assessment, Context, assess, check
from convergence.theory.report import applicability, report, schedule_verdict
from convergence.theory.steps import pl_decreasing, theory_steps, unified_pl_steps

__all__ = ["CONVERGENCE", "HYPOTHESES", "THEOREMS", "Theorem", "theorem", "Assessment", "Context", "assess",
           "check", "applicability", "report", "schedule_verdict", "pl_decreasing", "theory_steps",
           "unified_pl_steps"]
