"""Figures of the Oikonomou & Loizou (2025) reproduction that are not convergence curves: the size of
the constant-step neighbourhood against the radius rho, measured and predicted. Each function returns
a matplotlib figure; ``figures.convergence.save`` writes it."""
from __future__ import annotations

import numpy as np

from figures.convergence import PALETTE, plt


def neighbourhood(panels, title: str = ""):
    """One log-log panel per (title, rhos, plateaus (len(rhos), runs), predicted or None, fit or None):
    the plateau of f - f* of every run (dots), its mean (line), the predicted size (dashed) and the
    fitted power law (dotted, with its exponent and 95 % CI in the legend)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.3), squeeze=False)
    for j, (sub, rhos, plateaus, predicted, fit) in enumerate(panels):
        ax = axes[0][j]
        rhos = np.asarray(rhos, float)
        P = np.asarray(plateaus, float)
        for r in range(P.shape[1]):
            ax.plot(rhos, P[:, r], "o", ms=3.5, color=PALETTE[0], alpha=0.5,
                    label="plateau of each run" if r == 0 else None)
        ax.plot(rhos, P.mean(axis=1), color=PALETTE[0], lw=1.4, label="mean")
        if predicted is not None:
            ax.plot(rhos, predicted, ls="--", color=PALETTE[1], lw=1.4, label="predicted (2-cycle)")
        if fit is not None:
            c = np.exp(np.mean(np.log(P.mean(axis=1))) - fit["slope"] * np.mean(np.log(rhos)))
            ax.plot(rhos, c * rhos ** fit["slope"], ls=":", color="0.2", lw=1.2,
                    label=rf"fit $\rho^{{{fit['slope']:.4f}}}$ (95 % CI [{fit['lo']:.4f}, {fit['hi']:.4f}])")
        ax.set(xscale="log", yscale="log", xlabel=r"radius $\rho$", ylabel=r"plateau of $f(x_k) - f^\star$",
               title=sub)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
