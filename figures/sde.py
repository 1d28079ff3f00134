"""Figures of the SDE models and the diagonal linear networks, from in-memory arrays: loss paths of a
discrete method next to its SDE, weak errors against eta, measured against predicted covariances,
norms at a saddle, and the diagonal networks' test loss against rho and m. Each function returns a
matplotlib figure; ``figures.convergence.save`` writes it."""
from __future__ import annotations

import numpy as np

from figures.convergence import PALETTE, curve_style, log_ticks, plt


def _finish(ax, **labels):
    ax.set(**labels)
    log_ticks(ax)
    ax.grid(True, alpha=0.3)


def paths(t, series, title: str, ylabel: str = "loss f"):
    """One curve per path (thin) and their mean (thick) for each (label, values (len(t), paths))."""
    fig, ax = plt.subplots(figsize=(4.4, 3.2))
    for j, (label, v) in enumerate(series):
        ax.plot(t, v, color=PALETTE[j], lw=0.6, alpha=0.4)
        ax.plot(t, v.mean(axis=1), color=PALETTE[j], lw=1.8, label=f"{label} (mean of {v.shape[1]})")
    positive = all(np.all(v > 0) for _, v in series)
    _finish(ax, yscale="log" if positive else "linear", xlabel=r"time $t = k\eta$", ylabel=ylabel, title=title)
    ax.legend(frameon=False)
    return fig


def mean_losses(panels, rhos):
    """A panel per (title, t, discrete means (len(t), len(rhos)), SDE means): solid discrete, dashed SDE."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (title, t, md, ms) in zip(axes[0], panels):
        for j, rho in enumerate(rhos):
            ax.plot(t, md[:, j], color=PALETTE[j], lw=1.4, label=rf"$\rho$={rho} discrete")
            ax.plot(t, ms[:, j], color=PALETTE[j], lw=1.2, ls="--", label=rf"$\rho$={rho} SDE")
        _finish(ax, yscale="log", xlabel=r"time $t = k\eta$", ylabel="training loss", title=title)
    axes[0][0].legend(frameon=False, fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _style(j: int) -> dict:
    """curve_style(j) as plot keywords, always with a marker (these curves have few points)."""
    colour, style, marker = curve_style(j)
    return {"color": colour, "ls": style, "marker": marker or "o"}


def weak_errors(etas, rows, title: str, ylabel: str, paths: int | None = None):
    """log-log error against eta for each (label, errors, standard errors) with ±2 standard errors
    (over ``paths`` sample paths), and a slope-1 guide."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    etas = np.asarray(etas, float)
    for i, (label, errs, ses) in enumerate(rows):
        ax.errorbar(etas, errs, yerr=2 * np.asarray(ses), lw=1.4, ms=5, capsize=2, label=label, **_style(i))
    ax.plot(etas, rows[0][1][0] * etas / etas[0], "k:", lw=1, label="slope 1")
    _finish(ax, xscale="log", yscale="log", xlabel=r"step size $\eta$", ylabel=ylabel, title=title)
    ax.legend(frameon=False, fontsize=7, title=f"± 2 s.e., {paths} paths each" if paths else None,
              title_fontsize=7)
    return fig


def parity(points, title: str, xlabel: str = "predicted", ylabel: str = "measured"):
    """Measured against predicted values (|entries|, log-log) for each (label, predicted, measured)."""
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    everything = np.concatenate([np.abs(np.ravel(a)) for _, p, m in points for a in (p, m)])
    lo, hi = everything[everything > 0].min() / 2, everything.max() * 2
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="equal")
    for j, (label, pred, meas) in enumerate(points):
        ax.scatter(np.abs(np.ravel(pred)), np.maximum(np.abs(np.ravel(meas)), lo), s=18, color=PALETTE[j],
                   marker=_style(j)["marker"], label=label)
    _finish(ax, xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(frameon=False, fontsize=7)
    return fig


def norms(t, curves, title: str, floor: float = 1e-6):
    """log ||X_t|| against t for each (label, values)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for j, (label, v) in enumerate(curves):
        ax.plot(t, np.maximum(v, floor), lw=1.4, ms=4, markevery=(0.03 * (j % 4), 0.12), label=label, **_style(j))
    _finish(ax, yscale="log", xlabel="time t", ylabel=r"$\|X_t\|$", title=title)
    ax.legend(frameon=False, fontsize=7)
    return fig


def rho_sweep(rhos, rows, baselines, title: str):
    """Test loss and l1 norm of the solution against rho: rows = [(label, test, l1)] over ``rhos``,
    baselines = [(label, test or None, l1 or None)] drawn as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.0))
    for k, (ax, ylabel) in enumerate(zip(axes, ("test loss", r"$\|u \odot v\|_1$ of the solution"))):
        for j, (label, *values) in enumerate(baselines):
            if values[k] is not None:
                ax.axhline(values[k], color=PALETTE[7 - 5 * j], lw=1.2, ls="--" if j == 0 else ":", label=label)
        for j, (label, *values) in enumerate(rows):
            y = np.asarray(values[k], float)
            good = np.isfinite(y) & (np.abs(y) < 1e6)
            ax.plot(np.asarray(rhos)[good], y[good], lw=1.4, ms=3, label=label, **_style(j))
        _finish(ax, xscale="log", yscale="log", xlabel=r"perturbation radius $\rho$", ylabel=ylabel)
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def m_sharpness(ms, best, reference: float, title: str):
    """Test loss at the best rho against m (one curve per entry of ``best``: label -> values, the first
    drawn thick in black), with the reference (GD) as a line."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.axhline(reference, color="0.5", lw=1.2, ls="--", label="GD")
    for j, (label, values) in enumerate(best.items()):
        ax.plot(ms, values, "o-", color=PALETTE[7] if j == 0 else PALETTE[(j - 1) % 7], lw=2.0 if j == 0 else 0.8,
                ms=4, label=label, zorder=3 if j == 0 else 2)
    _finish(ax, xscale="log", yscale="log", xlabel="m (examples per ascent direction)",
            ylabel=r"test loss at the best $\rho$", title=title)
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.legend(frameon=False, fontsize=6, ncol=2 if len(best) > 4 else 1)
    return fig
