"""The grid figure of a sweep: median ||grad f|| with a 10-90 % band, a panel per (problem,
stepsize), a curve per (method, t_0, rho_0), runs of all seeds pooled; from in-memory tables."""
from __future__ import annotations

import numpy as np

from figures.convergence import PALETTE, band, plt


def pool(tables: list[dict]) -> dict:
    """Several trace tables as one, runs renumbered so that they stay distinct."""
    table = {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}
    offset = np.cumsum([0] + [int(t["run"].max()) + 1 for t in tables[:-1]])
    table["run"] = np.concatenate([t["run"] + o for t, o in zip(tables, offset)])
    return table


def grid_figure(cells: list[tuple[dict, dict]], title: str):
    """``cells``: (axes, table) per sweep cell, axes with problem, stepsize, method, lr, rho."""
    problems = list(dict.fromkeys(a["problem"] for a, _ in cells))
    stepsizes = list(dict.fromkeys(a["stepsize"] for a, _ in cells))
    curves = list(dict.fromkeys((a["method"], a["lr"], a["rho"]) for a, _ in cells))
    several = {i: len({key[i] for key in curves}) > 1 for i in (1, 2)}
    fig, axes = plt.subplots(len(problems), len(stepsizes), squeeze=False,
                             figsize=(3.4 * len(stepsizes), 2.8 * len(problems)))
    for i, prob in enumerate(problems):
        for j, step in enumerate(stepsizes):
            ax = axes[i][j]
            for n, key in enumerate(curves):
                tables = [t for a, t in cells if (a["problem"], a["stepsize"]) == (prob, step)
                          and (a["method"], a["lr"], a["rho"]) == key]
                if not tables:
                    continue
                ks, med, lo, hi = band(pool(tables), "grad_norm")
                ok = np.isfinite(med) & (med > 0)
                label = key[0] + (f" t0={key[1]}" if several[1] else "") + (f" rho={key[2]}" if several[2] else "")
                colour = PALETTE[n % len(PALETTE)]
                ax.plot(ks[ok] + 1.0, med[ok], color=colour, lw=1.3, label=label)
                ax.fill_between(ks[ok] + 1.0, np.maximum(lo[ok], 1e-300), hi[ok], color=colour, alpha=0.2, lw=0)
            ax.set(xscale="log", yscale="log", title=f"{prob}, {step}", xlabel="iteration $k + 1$",
                   ylabel=r"$\|\nabla f(x_k)\|$" if j == 0 else None)
            ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(title="median, 10-90 %", frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
