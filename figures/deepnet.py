"""Deep-net figures from in-memory tables: the theory's quantities per epoch of CIFAR runs.

``theory_figure(rows, stem)``: rows are dicts with ``schedule``, ``seed``, ``epoch``, ``grad_norm``
(||grad F(w_e)||) and ``step_norm`` (||w_e - w_{e-1}||), e.g. the metrics.csv rows of several runs;
one curve per schedule (median over seeds, min-max band), log scale, PNG and PDF written atomically.
"""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from figures.convergence import PALETTE, plt, save

PANELS = (("grad_norm", r"$\|\nabla F(w_e)\|$, F = training loss + (wd/2)$\|w\|^2$"),
          ("step_norm", r"$\|w_e - w_{e-1}\|$"))


def theory_figure(rows: list[dict], stem, title: str = ""):
    """Plot the rows (see the module docstring) and save ``stem``.png/.pdf; returns the paths."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(10, 3.8))
    schedules = list(dict.fromkeys(r["schedule"] for r in rows))
    for ax, (column, label) in zip(axes, PANELS):
        for i, schedule in enumerate(schedules):
            seeds = sorted({r["seed"] for r in rows if r["schedule"] == schedule})
            runs = [[r[column] for r in sorted((r for r in rows if r["schedule"] == schedule and r["seed"] == s),
                                               key=lambda r: r["epoch"])] for s in seeds]
            n = min(len(run) for run in runs)
            values = np.array([run[:n] for run in runs], dtype=float)
            epochs = np.arange(n)
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(epochs, np.median(values, axis=0), color=colour, label=f"{schedule} ({len(seeds)} seeds)")
            if len(seeds) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("epoch e")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, stem)
