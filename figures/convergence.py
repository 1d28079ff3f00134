"""Paper-style convergence figures: log-scale ||grad f||, f - f*, ||x - x*|| against k.

Each curve is the median over runs with a 10-90 % band; several result folders share one figure.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from convergence.trace import atomic_write  # noqa: E402

PANELS = [("grad_norm", r"$\|\nabla f(x_k)\|$"), ("f_gap", r"$f(x_k) - f^\star$"),
          ("dist_to_opt", r"$\|x_k - x^\star\|$")]
# Okabe & Ito (2008) colour-blind-safe palette
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 8,
                     "figure.dpi": 120, "savefig.bbox": "tight", "pdf.fonttype": 42})


def band(table: dict, column: str):
    """(iterations, median, 10 %, 90 %) over the runs of one trace table at each recorded k.

    The blown-up iterate that ends a diverged run is left out: it would swamp the scale.
    """
    its, vals = table["iter"], table[column]
    blown = np.zeros(len(its), dtype=bool)
    for r in np.unique(table["run"][table["status"] == "diverged"]):
        rows = np.flatnonzero(table["run"] == r)
        blown[rows[np.argmax(its[rows])]] = True
    its, vals = its[~blown], vals[~blown]
    ks = np.unique(its)
    stats = []
    for k in ks:
        v = vals[its == k]
        v = v[np.isfinite(v)]
        stats.append(np.percentile(v, [50, 10, 90]) if len(v) else [np.nan] * 3)
    stats = np.array(stats)
    return ks, stats[:, 0], stats[:, 1], stats[:, 2]


def plot_tables(tables: list[tuple[str, dict]], title: str = "", overlays=()):
    """One figure with a panel per quantity and a median curve + band per (label, table).

    ``overlays``: (curve, column, label) with curve = {"iter": [...], "median": [...]}, a theoretical
    bound drawn dashed on the panel of ``column``.
    """
    panels = [(c, lab) for c, lab in PANELS if any(np.isfinite(t[c]).any() for _, t in tables)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (column, ylabel) in zip(axes[0], panels):
        for i, (label, table) in enumerate(tables):
            ks, med, lo, hi = band(table, column)
            x = ks + 1.0                                  # k + 1: k = 0 fits on the log axis
            pos = (med > 0) & np.isfinite(med)
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(x[pos], med[pos], color=colour, lw=1.4, label=label)
            ax.fill_between(x[pos], np.maximum(lo[pos], 1e-300), hi[pos], color=colour, alpha=0.2, lw=0)
        for j, (curve, col, label) in enumerate(overlays):
            if col == column:
                x, y = np.asarray(curve["iter"], float) + 1, np.asarray(curve["median"], float)
                ok = np.isfinite(y) & (y > 0)
                ax.plot(x[ok], y[ok], ls="--", lw=1.1, color="0.25" if j % 2 == 0 else "0.5", label=label)
        ax.set(xscale="log", yscale="log", xlabel="iteration $k + 1$", ylabel=ylabel)
        if overlays and any(col == column for _, col, _ in overlays):
            ax.legend(frameon=False, fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(title="median, 10-90 %", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def encode(fig) -> dict[str, bytes]:
    """The figure as PNG and vector PDF bytes (the PDF without a creation date: same run, same
    bytes); the figure is closed."""
    out = {}
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, metadata={"CreationDate": None} if ext == "pdf" else None)
        out[ext] = buf.getvalue()
    plt.close(fig)
    return out


def save(fig, stem) -> list[Path]:
    """Save PNG and vector PDF beside each other (atomically); returns the two paths."""
    paths = []
    for ext, data in encode(fig).items():
        path = Path(f"{stem}.{ext}")
        atomic_write(path, data)
        paths.append(path)
    return paths


