"""The grid figure of a sweep: median ||grad f|| with a 10-90 % band, a panel per (problem,
stepsize), a curve per (method, t_0, rho_0), runs of all seeds pooled; from in-memory tables."""
from __future__ import annotations

import numpy as np

from figures.convergence import clip_y, curve_style, draw_band, legend, log_ticks, plt, run_count


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
                table = pool(tables)
                label = key[0] + (f" t₀={key[1]}" if several[1] else "") + (f" ρ={key[2]}" if several[2] else "")
                colour, style, marker = curve_style(n)
                draw_band(ax, table, "grad_norm", colour, f"{label}", style, marker, n,
                          0.18 if len(curves) <= 2 else 0.07)
                ax.text(0.02, 0.02 + 0.07 * n, f"{key[0]}: {run_count(table)}", transform=ax.transAxes,
                        fontsize=6, color=colour)
            ax.set(xscale="log", yscale="log", title=f"{prob}, {step}", xlabel="iteration k + 1",
                   ylabel="‖∇f(x_k)‖" if j == 0 else None)
            clip_y(ax)
            log_ticks(ax)
            ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12 + 0.05 * ((len(curves) + 2) // 3) / len(problems), 1, 1))
    legend(fig, axes)
    return fig
