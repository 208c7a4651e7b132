"""The series' look: one colour per method, the matplotlib style, and figure scaffolding."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prefixlab.methods import METHOD_TABLE

# --------------------------------------------------------------------------- palette

# One colour and one short name per method, from the method table (prefixlab/methods.py).
METHOD_COLORS: dict[str, str] = {m.name: m.color for m in METHOD_TABLE}
METHOD_LABELS: dict[str, str] = {m.name: m.short_label for m in METHOD_TABLE}

NEUTRAL_COLOR = "#9e9e9e"  # method_color() of a name that is not a method
# Labels that name no method ("P=5", "seed 0") take these in order: colour-blind-safe colours
# from Paul Tol's palettes that no method uses (tests/test_plotting.py checks that they stay
# apart from METHOD_COLORS when a method is added).
EXTRA_COLORS = ("#882255", "#44aa99", "#999933", "#aa4499", "#ddcc77", "#000000")
LINE_STYLES = ("-", "--", ":", "-.")  # several curves of one method: same colour, new style
HEATMAP_CMAP = "Blues"  # same scale name in matplotlib and plotly
MASS_LABEL = "attention mass on prefix"
# Readable names of the study metrics (panel titles and axis labels); others: "_" -> " ".
METRIC_LABELS = {
    "final_val_loss": "validation loss (nats/token)",
    "best_val_loss": "best validation loss (nats/token)",
    "val_loss": "validation loss (nats/token)",
    "table_gain": "table gain (nats/token)",
    "slot_error_rate": "slot error rate",
    "held_out_slot_error_rate": "slot error rate, held-out values",
    "bleu": "BLEU",
}

# Shared artist styles.
_NOTE = {"fontsize": 10, "color": "#333333"}  # value labels and annotations
_ABOVE = {"xytext": (0, 3), "textcoords": "offset points", "ha": "center", "va": "bottom"}
_BESIDE = {"xytext": (7, 0), "textcoords": "offset points", "va": "center"}
_VAL_MARKER = {"ls": "none", "marker": "o", "ms": 6, "mec": "white", "mew": 1.2, "zorder": 3}
_CROSS = {"ls": "none", "marker": "X", "ms": 8, "mec": "white", "mew": 0.8, "zorder": 4}
_STRIP = {"color": "#f3f3f3", "lw": 0, "zorder": 0}

STYLE_RC: dict = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "font.size": 11,
    "axes.titlesize": 13.5,
    "axes.titleweight": "bold",
    "figure.titlesize": 13.5,
    "figure.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 10,
    "axes.labelsize": 11,
    "axes.labelcolor": "#333333",
    "axes.edgecolor": "#666666",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e8e8e8",
    "grid.linewidth": 0.8,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.frameon": False,
    "legend.fontsize": 10,
    "lines.linewidth": 2.0,
    "lines.solid_capstyle": "round",
    "axes.prop_cycle": matplotlib.cycler(color=list(METHOD_COLORS.values())),
    "image.cmap": HEATMAP_CMAP,
}


def _method_key(label) -> str | None:
    """The method a label names: "prefix" and "prefix: P=10" -> "prefix"; else None."""
    text = str(label).strip().lower()
    if text in METHOD_COLORS:
        return text
    head = text.split(":", 1)[0].strip()
    return head if head in METHOD_COLORS else None


def method_color(name) -> str:
    """Colour of a method ("prefix" or "prefix: detail"); NEUTRAL_COLOR for any other name."""
    key = _method_key(name)
    return METHOD_COLORS[key] if key else NEUTRAL_COLOR


def metric_label(name) -> str:
    """A metric's readable name: `METRIC_LABELS`, else its name with spaces."""
    return METRIC_LABELS.get(str(name), str(name).replace("_", " "))


def method_label(name) -> str:
    """Human name: "prefix" -> "prefix tuning", "prompt: P=5" -> "prompt tuning: P=5".

    Any other name is returned unchanged.
    """
    key = _method_key(name)
    if key is None:
        return str(name)
    text = str(name).strip()
    detail = text.split(":", 1)[1].strip() if ":" in text else ""
    return f"{METHOD_LABELS[key]}: {detail}" if detail else METHOD_LABELS[key]


def _line_styles(labels) -> dict:
    """label -> (colour, line style, legend name) for a set of curves drawn together."""
    out, per_method, n_extra = {}, {}, 0
    for label in labels:
        key = _method_key(label)
        if key is None:
            color, ls = EXTRA_COLORS[n_extra % len(EXTRA_COLORS)], "-"
            n_extra += 1
        else:
            k = per_method.get(key, 0)
            per_method[key] = k + 1
            color, ls = METHOD_COLORS[key], LINE_STYLES[k % len(LINE_STYLES)]
        out[label] = (color, ls, method_label(label))
    return out


def style(rc: dict | None = None):
    """Context manager with the series' look (clean axes, light grid, readable sizes).

    Every `plot_*` function already draws inside it; use it for figures of your own:

        with style():
            fig, ax = plt.subplots()

    or apply it to a whole notebook with `plt.rcParams.update(STYLE_RC)`.
    """
    return matplotlib.rc_context({**STYLE_RC, **(rc or {})})


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure that pyplot forgets at once (so it is shown exactly once)."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=figsize, layout="constrained", squeeze=False, **kwargs
    )
    plt.close(fig)  # the caller displays or saves the returned object; pyplot keeps no handle
    return fig, axes


def _legend(ax, handles=None, labels=None):
    """Legend outside the plot, on the right, so it never hides a curve."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    kwargs = {"labels": labels} if labels is not None else {}
    return ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs
    )


def _suptitle(fig, title: str) -> None:
    fig.suptitle(title, x=0.02, ha="left")


def _own_axes(ax: Axes | None, figsize) -> tuple[Figure, Axes]:
    if ax is None:
        fig, axes = _subplots(figsize=figsize)
        return fig, axes[0, 0]
    if not isinstance(ax, Axes):
        raise ValueError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}.")
    return ax.figure, ax
