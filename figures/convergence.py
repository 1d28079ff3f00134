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

PANELS = [("grad_norm", "‖∇f(x_k)‖"), ("f_gap", "f(x_k) − f*"), ("dist_to_opt", "‖x_k − x*‖")]
# Okabe & Ito (2008) colour-blind-safe palette
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

# Type 42 (TrueType) fonts in PDF and PS, as journals ask; ps.fonttype also sets the PDF's subset size
# in matplotlib >= 3.11: at 3, a figure's non-ASCII glyphs (‖∇−⁻) went into a second subset of the font
plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 8,
                     "figure.dpi": 120, "pdf.fonttype": 42, "ps.fonttype": 42})


HUGE = np.finfo(float).max / 8      # a diverged run's value: above every finite one, and no inf - inf


def band(table: dict, column: str):
    """(iterations, median, 10 %, 90 %) over all runs of one trace table at each recorded k.

    A run that diverged counts as +inf from its blow-up on (its blown-up iterate itself is left out),
    so the median is over every run, not over the survivors: it turns infinite (and is not drawn)
    once half of the runs have diverged.
    """
    its, vals, runs = table["iter"], np.asarray(table[column], float), table["run"]
    blown, ends = np.zeros(len(its), dtype=bool), {}
    for r in np.unique(runs[table["status"] == "diverged"]):
        rows = np.flatnonzero(runs == r)
        last = rows[np.argmax(its[rows])]
        blown[last], ends[r] = True, its[last]
    ids = np.unique(runs)
    its, vals, runs = its[~blown], vals[~blown], runs[~blown]
    ks = np.unique(its)
    grid = np.full((len(ks), len(ids)), np.nan)
    grid[np.searchsorted(ks, its), np.searchsorted(ids, runs)] = vals
    for r, end in ends.items():
        grid[ks >= end, np.searchsorted(ids, r)] = HUGE
    grid[np.isinf(grid)] = HUGE
    with np.errstate(all="ignore"):
        stats = np.array([np.percentile(row[~np.isnan(row)], [50, 10, 90]) if (~np.isnan(row)).any()
                          else [np.nan] * 3 for row in grid])
    stats[stats >= HUGE / 2] = np.inf
    return ks, stats[:, 0], stats[:, 1], stats[:, 2]


def run_count(table: dict) -> str:
    """'1 run', '16 runs' or '16 runs, 3 diverged', for a legend."""
    runs = len(np.unique(table["run"]))
    diverged = len(np.unique(table["run"][table["status"] == "diverged"]))
    return f"{runs} run{'s' if runs != 1 else ''}" + (f", {diverged} diverged" if diverged else "")


def draw_band(ax, table, column, colour, label, style="-", marker=None, index=0, alpha=0.18):
    """The median (a line in ``style`` with sparse ``marker``s, shifted by curve ``index`` so that
    coinciding curves stay visible) and the 10-90 % band of ``column``."""
    ks, med, lo, hi = band(table, column)
    x = ks + 1.0                                  # k + 1: k = 0 fits on the log axis
    pos = (med > 0) & np.isfinite(med)
    ax.plot(x[pos], med[pos], color=colour, lw=1.4, ls=style, marker=marker, markevery=(0.025 * (index % 4), 0.1), ms=4,
            label=label)
    top = np.where(np.isfinite(hi[pos]), hi[pos], med[pos])
    ax.fill_between(x[pos], np.maximum(lo[pos], 1e-300), top, color=colour, alpha=alpha, lw=0)


STYLES = [("-", None), ("--", "o"), (":", "s"), ("-.", "^"), ("-", "D"), ("--", "v"), (":", "x"), ("-.", "+")]


def curve_style(j: int) -> tuple[str, str, str | None]:
    """(colour, line style, marker) of curve j of a panel: curves that coincide stay told apart."""
    style, marker = STYLES[j % len(STYLES)]
    return PALETTE[j % len(PALETTE)], style, marker


def clip_y(ax, decades: float = 17.0) -> None:
    """Log y-limits on the informative range: at most ``decades`` below the largest value drawn
    (double precision resolves about 16 decades; below that lies round-off)."""
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(0)])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if len(ys):
        top, low = ys.max(), ys.min()
        ax.set_ylim(max(low, top * 10.0 ** -decades) / 2, top * 2)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(value, pos=None) -> str:
    """A log axis' tick label in Unicode, 10⁻⁵ (mathtext labels cost half of a figure's drawing
    time); '' between powers of ten."""
    if not value > 0:
        return ""
    log = float(np.log10(value))
    return "10" + str(round(log)).translate(SUPERSCRIPT) if abs(log - round(log)) <= 1e-9 else ""


def log_ticks(ax) -> None:
    """At most ~6 labelled powers of ten per log axis spanning two decades or more, with grid lines
    and no minor ticks: at 120 dpi they are barely visible, and their tick objects were half of the
    PNG's drawing time. Shorter log axes keep matplotlib's ticks, whose minor ticks carry labels."""
    from matplotlib import ticker
    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        lo, hi = sorted(limits)
        if scale == "log" and lo > 0 and hi / lo >= 100:
            axis.set_major_locator(ticker.LogLocator(numticks=6))
            axis.set_major_formatter(ticker.FuncFormatter(power_of_ten))
            axis.set_minor_locator(ticker.NullLocator())


def legend(fig, axes):
    """One legend for the figure, naming every curve once, below the panels (returned)."""
    handles = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    return fig.legend(list(handles.values()), list(handles), loc="lower center", frameon=False,
                      ncol=min(len(handles), 3), title="median over runs, band 10–90 %", fontsize=8)


def plot_tables(tables: list[tuple[str, dict]], title: str = "", overlays=()):
    """One figure with a panel per quantity and a median curve + band per (label, table); each curve's
    legend entry gives its number of runs and of diverged ones.

    ``overlays``: (curve, column, label) with curve = {"iter": [...], "median": [...]}, a theoretical
    bound drawn dashed on the panel of ``column``.
    """
    panels = [(c, lab) for c, lab in PANELS if any(np.isfinite(t[c]).any() for _, t in tables)] or PANELS[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (column, ylabel) in zip(axes[0], panels):
        for i, (label, table) in enumerate(tables):
            colour, style, marker = curve_style(i) if len(tables) > 1 else (PALETTE[0], "-", None)
            draw_band(ax, table, column, colour, f"{label} ({run_count(table)})", style, marker,
                      i, 0.18 if len(tables) <= 2 else 0.07)
        for j, (curve, col, label) in enumerate(overlays):
            if col == column:
                x, y = np.asarray(curve["iter"], float) + 1, np.asarray(curve["median"], float)
                ok = np.isfinite(y) & (y > 0)
                ax.plot(x[ok], y[ok], ls="--", lw=1.1, color="0.25" if j % 2 == 0 else "0.5", label=label)
        ax.set(xlabel="iteration k + 1", ylabel=ylabel)
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.set(xscale="log", yscale="log")
            clip_y(ax)
            log_ticks(ax)
            ax.grid(True, which="major", alpha=0.3)
        else:                           # no finite value in any run (see the legend and summary)
            ax.set(xticks=[], yticks=[])
            ax.text(0.5, 0.5, "no finite value", ha="center", va="center", transform=ax.transAxes)
    texts = [fig.suptitle(title)] if title else []
    curves = len({lab for ax in axes[0] for lab in ax.get_legend_handles_labels()[1]})
    texts.append(legend(fig, axes))
    # a title or legend wider than the panels (a user's formula above one panel) widens the figure
    renderer = fig.canvas.get_renderer()
    width = max(t.get_window_extent(renderer).width for t in texts) / fig.dpi + 0.3
    fig.set_size_inches(max(width, fig.get_size_inches()[0]), fig.get_size_inches()[1])
    fixed_margins(fig, len(panels), bool(title), legend_rows=(curves + 2) // 3)
    return fig


PANEL_HEIGHT = 1.55     # inches: a 3-inch figure with a title and one legend row


def fixed_margins(fig, panels: int, title: bool, legend_rows: int) -> None:
    """Margins in inches that hold the tick labels, axis labels, title and the legend below (of
    ``legend_rows`` rows) of a row of ``panels`` log-log panels PANEL_HEIGHT high; the figure's
    height follows. Set, not measured: tight_layout's measuring pass drew every label once more,
    most of a figure's drawing time."""
    left, gap, right = 0.8, 0.85, 0.15          # y tick labels such as 2×10⁻¹ and the y label fit in 0.8
    top = 0.45 if title else 0.15
    bottom = 0.5 + 0.25 + 0.17 * legend_rows + 0.08   # x tick and axis labels, the legend's title
    # and rows, and a margin below them
    width, height = fig.get_size_inches()[0], top + PANEL_HEIGHT + bottom
    fig.set_size_inches(width, height)
    axes_width = (width - left - right - (panels - 1) * gap) / panels
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=gap / axes_width)


def encode_as(fig, ext: str, tight: bool = False) -> bytes:
    """The figure as ``ext`` ("png" or vector "pdf", the PDF without a creation date: same run, same
    bytes). ``tight=False``: the figure as laid out (plot_tables reserves room for everything), which
    saves the tight bounding box's extra drawing pass."""
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, metadata={"CreationDate": None} if ext == "pdf" else None,
                bbox_inches="tight" if tight else None)
    return buf.getvalue()


def encode(fig, tight: bool = True) -> dict[str, bytes]:
    """The figure as PNG and PDF bytes (encode_as); the figure is closed."""
    out = {ext: encode_as(fig, ext, tight) for ext in ("png", "pdf")}
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


