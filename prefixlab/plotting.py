"""Figures for the notebook series: data in, figure out.

Every function here takes numbers that were computed elsewhere (training logs, attention
masses from `prefixlab.attention`, counts from `prefixlab.accounting`) and returns a figure.
Nothing here trains a model or computes attention.

- matplotlib functions (`plot_*`) return a `matplotlib.figure.Figure`. The figure is made with
  pyplot and immediately closed (unregistered from pyplot), so a notebook cell that ends with
  the call shows it exactly once, no "More than 20 figures" warning piles up, and `plt.show()`
  is never needed. In a script, save it with `fig.savefig(path)` (pyplot no longer manages it,
  so `plt.show()` would not open it). A bare `matplotlib.figure.Figure()` would avoid pyplot
  altogether, but Jupyter's inline backend registers its PNG formatter only when the backend
  is loaded, which pyplot does lazily on its first figure; until then such a figure shows up
  as its text repr "<Figure size 640x480 with 1 Axes>".
- plotly functions (`*_plotly`) return a `plotly.graph_objects.Figure`: plain data, no random
  element ids, so notebook outputs do not change between runs. Call `setup_notebook()` once
  per notebook (see there for why).

Colours: one per method across the whole series (`METHOD_COLORS`, from the Okabe-Ito
colour-blind-safe palette). A curve label is either a method key ("prefix") or
"method: detail" ("prefix: P=10"); both get the method's colour, and several curves of one
method are told apart by line style. Labels that name no method get `EXTRA_COLORS` in order.
"""

from __future__ import annotations

import os
import sys
import textwrap
import warnings
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from matplotlib import colors as mcolors
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from plotly.subplots import make_subplots

# --------------------------------------------------------------------------- palette

METHOD_COLORS: dict[str, str] = {
    "prefix": "#0072b2",  # blue (Okabe-Ito)
    "prefix+mlp": "#56b4e9",  # sky blue: the same method family as "prefix", trained via an MLP
    "prompt": "#d55e00",  # vermillion: the contrasting method
    "lora": "#009e73",  # bluish green
    "full": "#cc79a7",  # reddish purple
    "none": "#4d4d4d",  # dark grey: the frozen model, nothing trained
}

METHOD_LABELS: dict[str, str] = {
    "prefix": "prefix tuning",
    "prefix+mlp": "prefix tuning + MLP",
    "prompt": "prompt tuning",
    "lora": "LoRA",
    "full": "full fine-tuning",
    "none": "frozen model",
}

NEUTRAL_COLOR = "#9e9e9e"  # method_color() of a name that is not a method
# Labels that name no method ("P=5", "seed 0") take these in order: Okabe-Ito orange, then
# colour-blind-safe colours from Paul Tol's palettes that no method uses.
EXTRA_COLORS = ("#e69f00", "#882255", "#44aa99", "#332288", "#999933", "#aa4499", "#000000")
LINE_STYLES = ("-", "--", ":", "-.")  # several curves of one method: same colour, new style
HEATMAP_CMAP = "Blues"  # same scale name in matplotlib and plotly
MASS_LABEL = "attention mass on prefix"

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


# --------------------------------------------------------------------------- validation


def _to_array(values, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; plotting never needs its autograd graph
        values = values.detach().cpu()
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be numeric, got {type(values).__name__} ({err}).") from err


def _check_mapping(mapping, what: str, expected: str) -> None:
    if not isinstance(mapping, Mapping) or len(mapping) == 0:
        got = "an empty mapping" if isinstance(mapping, Mapping) else type(mapping).__name__
        raise ValueError(f"{what} must be a non-empty dict label -> {expected}; got {got}.")


def _array_nd(values, ndim: int, what: str, expected: str) -> np.ndarray:
    array = _to_array(values, what)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{what} must be a non-empty {expected}; got shape {array.shape}.")
    return array


def _xy(values, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one curve: a pandas Series keeps its index, a sequence counts 0..n-1."""
    if isinstance(values, pd.Series):
        y = _array_nd(values.to_numpy(), 1, what, "1-D sequence [steps]")
        return _to_array(values.index, f"the index of {what}"), y
    y = _array_nd(values, 1, what, "1-D sequence [steps] (or a pandas Series indexed by step)")
    return np.arange(len(y), dtype=float), y


def _val_xy(pair, label) -> tuple[np.ndarray, np.ndarray]:
    what = f"val[{label!r}]"
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{what} must be a pair (steps, values) of 1-D sequences.")
    steps = _array_nd(pair[0], 1, f"{what} steps", "1-D sequence")
    values = _array_nd(pair[1], 1, f"{what} values", "1-D sequence")
    if len(steps) != len(values):
        raise ValueError(f"{what}: {len(steps)} steps but {len(values)} values; they must match.")
    return steps, values


def _check_smooth(smooth) -> float:
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not 0 <= smooth < 1:
        raise ValueError(
            f"smooth is an exponential-moving-average weight in [0, 1) (0 = off, 0.9 = strong); "
            f"got {smooth!r}."
        )
    return float(smooth)


def _check_frame(df, columns: Sequence[str], what: str = "df") -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame) or df.empty:
        got = "an empty DataFrame" if isinstance(df, pd.DataFrame) else type(df).__name__
        raise ValueError(f"{what} must be a non-empty pandas DataFrame; got {got}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; expected columns {list(columns)}, "
            f"found {list(df.columns)}."
        )
    return df


def _check_mass(mass, what: str = "mass") -> np.ndarray:
    array = _array_nd(mass, 2, what, "2-D array [layers, heads] of attention mass (0..1)")
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise ValueError(
            f"{what} holds attention mass, a share between 0 and 1; got values from "
            f"{finite.min():.3g} to {finite.max():.3g}."
        )
    return array


# --------------------------------------------------------------------------- line plots


def _ema(y: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard draws it); NaNs stay gaps."""
    out = np.full_like(y, np.nan)
    acc, n = 0.0, 0
    for i, v in enumerate(y):
        if np.isfinite(v):
            acc = weight * acc + (1 - weight) * v
            n += 1
            out[i] = acc / (1 - weight**n)
    return out


def _curves_data(curves, val, smooth):
    """Validated curves and validation points, in drawing order, with their styles."""
    _check_mapping(curves, "curves", "1-D sequence of values per step")
    smooth = _check_smooth(smooth)
    lines = {label: _xy(values, f"curves[{label!r}]") for label, values in curves.items()}
    points = {}
    if val is not None:
        _check_mapping(val, "val", "(steps, values)")
        points = {label: _val_xy(pair, label) for label, pair in val.items()}
    styles = _line_styles(list(lines) + [k for k in points if k not in lines])
    return lines, points, styles, smooth


def _draw_curves(ax, curves, *, val, smooth, logy) -> None:
    lines, points, styles, smooth = _curves_data(curves, val, smooth)
    for label, (x, y) in lines.items():
        color, ls, name = styles[label]
        if smooth:  # raw values stay visible underneath, faintly
            ax.plot(x, y, color=color, ls=ls, lw=1.0, alpha=0.25, label="_raw")
            y = _ema(y, smooth)
        ax.plot(x, y, color=color, ls=ls, label=name)
    for label, (x, y) in points.items():
        color, _, name = styles[label]
        name = "_val" if label in lines else f"{name} (validation)"
        ax.plot(x, y, color=color, label=name, **_VAL_MARKER)
    if logy:
        ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if points and set(points) & set(lines):
        handles.append(Line2D([], [], color=NEUTRAL_COLOR, **_VAL_MARKER))
        labels.append("validation")
    _legend(ax, handles, labels)


def plot_loss_curves(
    curves: Mapping,
    *,
    title: str,
    ylabel: str = "loss (nats/token)",
    xlabel: str = "step",
    smooth: float = 0,
    logy: bool = False,
    val: Mapping | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Training curves, one line per label, coloured by method.

    Args:
        curves: label -> values [steps] (x = 0..steps-1), or a pandas Series indexed by step.
            A label is a method key ("prefix"), "method: detail" ("prompt: P=20") or anything.
        smooth: exponential-moving-average weight in [0, 1); the raw curve stays, faint.
        val: label -> (steps [n], values [n]), drawn as markers in the curve's colour.
        ax: draw into this Axes instead of a new figure.
    Returns:
        Figure with one Axes: one line per curve (two when smoothing) and one per val entry.
    """
    with style():
        fig, ax = _own_axes(ax, (8.2, 4.0))
        _draw_curves(ax, curves, val=val, smooth=smooth, logy=logy)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_grad_norms(
    norms: Mapping,
    *,
    title: str,
    ylabel: str = "gradient norm",
    xlabel: str = "step",
    smooth: float = 0,
    ax: Axes | None = None,
) -> Figure:
    """Gradient norms per step on a log axis, one line per label (as `plot_loss_curves`).

    Args:
        norms: label -> values [steps] or a pandas Series indexed by step.
    """
    with style():
        fig, ax = _own_axes(ax, (8.2, 4.0))
        _draw_curves(ax, norms, val=None, smooth=smooth, logy=True)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_seed_bands(
    runs: Mapping,
    *,
    title: str,
    band: str = "minmax",
    steps=None,
    ylabel: str = "loss (nats/token)",
    xlabel: str = "step",
    logy: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Mean over seeds as a line, with the spread across seeds as a shaded band.

    Args:
        runs: label -> values [seeds, steps].
        band: "minmax" (the band spans the best and worst seed) or "std" (mean +- 1 std).
        steps: x values [steps]; default 0..steps-1.
    Returns:
        Figure with one Axes: one line and one band per label.
    """
    if band not in ("minmax", "std"):
        raise ValueError(f'band must be "minmax" or "std", got {band!r}.')
    _check_mapping(runs, "runs", "2-D array [seeds, steps]")
    arrays = {
        label: _array_nd(v, 2, f"runs[{label!r}]", "2-D array [seeds, steps]")
        for label, v in runs.items()
    }
    styles = _line_styles(arrays)
    with style():
        fig, ax = _own_axes(ax, (8.2, 4.0))
        for label, values in arrays.items():
            color, ls, name = styles[label]
            n_seeds, n_steps = values.shape
            if steps is None:
                x = np.arange(n_steps, dtype=float)
            else:
                x = _array_nd(steps, 1, "steps", "1-D sequence [steps]")
                if len(x) != n_steps:
                    raise ValueError(
                        f"steps has {len(x)} entries but runs[{label!r}] has {n_steps} steps "
                        f"(shape [seeds, steps] = {values.shape})."
                    )
            with warnings.catch_warnings():  # all-NaN columns (diverged everywhere) stay gaps
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(values, axis=0)
                if band == "std":
                    spread = np.nanstd(values, axis=0)
                    low, high = mean - spread, mean + spread
                else:
                    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
            ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0)
            ax.plot(x, mean, color=color, ls=ls, label=f"{name} ({seeds})")
        if logy:
            ax.set_yscale("log")
        spread = "min-max over seeds" if band == "minmax" else "mean \u00b1 1 std over seeds"
        handles, labels = ax.get_legend_handles_labels()
        handles.append(plt.Rectangle((0, 0), 1, 1, color=NEUTRAL_COLOR, alpha=0.3, lw=0))
        labels.append(f"band: {spread}")
        _legend(ax, handles, labels)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


# --------------------------------------------------------------------------- sweeps


def _sweep(ax, df, x: str, y: str, hue: str, diverged: np.ndarray | None = None) -> list:
    """Points per row and a median line per hue; returns legend handles, one per hue."""
    groups = list(pd.unique(df[hue]))
    styles = _line_styles(groups)
    handles = []
    for group in groups:
        rows = df[df[hue] == group]
        keep = np.isfinite(rows[y].to_numpy(float))
        if diverged is not None:
            keep &= ~diverged[(df[hue] == group).to_numpy()]
        ok = rows[keep]
        color, ls, name = styles[group]
        ax.scatter(ok[x], ok[y], s=26, color=color, alpha=0.45, lw=0, zorder=2)
        median = ok.groupby(x, sort=True)[y].median()
        ax.plot(median.index, median.to_numpy(), color=color, ls=ls, marker="o", ms=5, zorder=3)
        handles.append(Line2D([], [], color=color, ls=ls, marker="o", ms=5, label=name))
    return handles


def plot_lr_sweep(
    df: pd.DataFrame,
    *,
    x: str = "lr",
    y: str = "final_val_loss",
    hue: str = "method",
    title: str,
    xlabel: str = "learning rate",
    ylabel: str | None = None,
    diverged_above: float | None = None,
) -> Figure:
    """Final metric against learning rate (log x): a dot per run, a line through the medians.

    Runs whose value is NaN or infinite (or above `diverged_above`) diverged: they are drawn
    as crosses along the top edge, above every finite value, under the legend entry "diverged".

    Args:
        df: one row per run (method, lr, seed, ...), with columns `x`, `y` and `hue`; the
            default `y` is the column `run_grid` writes (`final_val_loss`).
    """
    _check_frame(df, [x, y, hue])
    lrs = df[x].to_numpy(float)
    if not (np.isfinite(lrs) & (lrs > 0)).all():
        raise ValueError(f"Column {x!r} must hold positive, finite learning rates (log axis).")
    values = df[y].to_numpy(float)
    diverged = ~np.isfinite(values)
    if diverged_above is not None:
        diverged |= np.nan_to_num(values, nan=0.0) > diverged_above
    with style():
        fig, axes = _subplots(figsize=(8.2, 4.2))
        ax = axes[0, 0]
        handles = _sweep(ax, df, x, y, hue, diverged)
        if diverged.any():
            counted = _draw_diverged(ax, df, x, hue, diverged, values)
            label = "diverged (k/n runs)" if counted else "diverged"
            handles.append(Line2D([], [], color=NEUTRAL_COLOR, label=label, **_CROSS))
            ax.margins(x=0.07)  # room for the "k/n" beside the outermost crosses
        ax.set_xscale("log")
        _legend(ax, handles)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel or y.replace("_", " "))
    return fig


def _draw_diverged(ax, df, x: str, hue: str, diverged: np.ndarray, values: np.ndarray) -> bool:
    """Crosses in a shaded strip along the top, one lane per method, "k/n" runs beside each.

    Returns whether any "k/n" count was written (several runs at one learning rate).
    """
    frame = df.assign(_diverged=diverged)
    groups = list(pd.unique(df[hue]))
    styles = _line_styles(groups)
    lanes = [g for g in groups if frame.loc[frame[hue] == g, "_diverged"].any()]
    lane_height = 0.055
    strip = 0.02 + lane_height * len(lanes)  # share of the axes height, at the top
    ax.add_patch(plt.Rectangle((0, 1 - strip), 1, strip, transform=ax.transAxes, **_STRIP))
    top = transforms.blended_transform_factory(ax.transData, ax.transAxes)  # x data, y axes
    counted = False
    for lane, group in enumerate(lanes):
        height = 1 - 0.01 - lane_height * (lane + 0.5)
        runs = frame[frame[hue] == group].groupby(x, sort=True)["_diverged"].agg(["sum", "size"])
        for lr, (n_diverged, n_runs) in runs[runs["sum"] > 0].iterrows():
            ax.plot([lr], [height], transform=top, color=styles[group][0], clip_on=False, **_CROSS)
            if n_runs > 1:
                counted = True
                note = f"{n_diverged}/{n_runs}"
                ax.annotate(note, (lr, height), xycoords=top, fontsize=8, color="#555", **_BESIDE)
    finite = values[~diverged]
    if not finite.size:  # nothing finite: the y axis has no scale to show
        ax.set_yticks([])
    else:  # rescale so every finite value sits below the strip
        low, high = finite.min(), finite.max()
        span = (high - low) or abs(high) or 1.0
        bottom = low - 0.06 * span
        ax.set_ylim(bottom, bottom + (high - bottom) / (1 - strip - 0.05))
    return counted


def plot_length_sweep(df: pd.DataFrame, *, title: str) -> Figure:
    """Validation loss (and BLEU, if given) against prefix length P, one line per method.

    Args:
        df: columns method, prefix_length, val_loss and optionally bleu; one row per run
            (several seeds per (method, P) are drawn as dots with a line through the medians).
    Returns:
        Figure with two Axes (val loss, BLEU), or one when there is no bleu column.
    """
    _check_frame(df, ["method", "prefix_length", "val_loss"])
    lengths = df["prefix_length"].to_numpy(float)
    if not (np.isfinite(lengths) & (lengths > 0)).all():
        raise ValueError("Column 'prefix_length' must hold positive prefix lengths P.")
    panels = [("val_loss", "validation loss (nats/token)")]
    if "bleu" in df.columns:
        panels.append(("bleu", "BLEU"))
    ticks = np.unique(lengths)
    with style():
        fig, axes = _subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0))
        for ax, (column, label) in zip(axes[0], panels, strict=True):
            handles = _sweep(ax, df, "prefix_length", column, "method")
            if ticks.max() / ticks.min() >= 8:
                ax.set_xscale("log")
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set(xlabel="prefix length P (virtual tokens)", ylabel=label)
        _legend(axes[0, -1], handles)
        _suptitle(fig, title)
    return fig


# --------------------------------------------------------------------------- bars


def _fmt_percent(p: float) -> str:
    if p >= 10:
        return f"{p:.0f}%"
    if p >= 1:
        return f"{p:.1f}%"
    return f"{p:.2g}%"


def _human_count(value, _pos=None) -> str:
    """Tick label for a count: 7680 -> "7.68k", 2e6 -> "2M"."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _fit_bar_labels(fig, ax, labels, ends, low: float, log: bool) -> None:
    """Widen the x axis just enough that every bar's label ends inside the axes."""
    for label in labels:
        label.set_in_layout(False)  # constrained layout must not shrink the axes around them
    fig.draw_without_rendering()
    box = ax.get_window_extent()
    scale = np.log10 if log else (lambda v: v)
    needed = 0.0
    for label, end in zip(labels, ends, strict=True):
        share = (label.get_window_extent().x1 - ax.transData.transform((end, 0))[0]) / box.width
        needed = max(needed, (scale(end) - scale(low)) / max(0.97 - share, 0.2))
    right = 10 ** (np.log10(low) + needed) if log else low + needed
    ax.set_xlim(low, max(right, ends.max()))


def plot_parameter_counts(rows, *, title: str, log: bool = True) -> Figure:
    """Trainable parameters per method as horizontal bars, each labelled "184,320 (0.15%)".

    Args:
        rows: list of dicts with keys method, label, trainable, percent_of_base, as returned
            by `prefixlab.accounting.parameter_counts` (a DataFrame with those columns works).
        log: log x axis (the counts span several orders of magnitude).
    """
    keys = ["method", "label", "trainable", "percent_of_base"]
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    if not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty list of dicts with keys {keys}.")
    for row in rows:
        if not isinstance(row, Mapping) or any(k not in row for k in keys):
            raise ValueError(f"Every row must be a dict with keys {keys}; got {row!r}.")
    counts = np.array([float(r["trainable"]) for r in rows])
    if log and (counts <= 0).any():
        raise ValueError("trainable counts must be > 0 on a log axis; pass log=False.")
    with style():
        fig, axes = _subplots(figsize=(7.5, 0.55 * len(rows) + 1.3))
        ax = axes[0, 0]
        y = np.arange(len(rows))
        bars = ax.barh(y, counts, height=0.62, color=[method_color(r["method"]) for r in rows])
        texts = [f"{int(r['trainable']):,} ({_fmt_percent(r['percent_of_base'])})" for r in rows]
        labels = ax.bar_label(bars, labels=texts, padding=5, fontsize=10, color="#333333")
        ax.set_yticks(y, [str(r["label"]) for r in rows])
        ax.invert_yaxis()  # first row on top
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            low = 10 ** np.floor(np.log10(counts.min()))
        else:
            low = 0.0
        ax.set_xlim(low, counts.max())
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_human_count))
        _fit_bar_labels(fig, ax, labels, counts, low, log)
        ax.set(title=title, xlabel="trainable parameters" + (" (log scale)" if log else ""))
    return fig


def plot_context_budget(budget: Mapping, *, title: str | None = None) -> Figure:
    """How much of the context window the P virtual positions take, as one stacked bar.

    Args:
        budget: dict with keys context, prefix_length, left_for_tokens, percent_used
            (`prefixlab.accounting.context_budget`).
    """
    keys = ["context", "prefix_length", "left_for_tokens", "percent_used"]
    if not isinstance(budget, Mapping) or any(k not in budget for k in keys):
        raise ValueError(f"budget must be a dict with keys {keys}; got {budget!r}.")
    context, used, left = (int(budget[k]) for k in keys[:3])
    pct = float(budget["percent_used"])
    if context <= 0 or used < 0 or left < 0 or used + left != context:
        raise ValueError(
            f"budget must satisfy prefix_length + left_for_tokens == context (all >= 0); "
            f"got {used} + {left} vs {context}."
        )
    with style():
        fig, axes = _subplots(figsize=(8.0, 2.0))
        ax = axes[0, 0]
        ax.barh(0, used, height=0.5, color=EXTRA_COLORS[0], label="prefix / soft prompt")
        ax.barh(0, left, left=used, height=0.5, color="#e6e6e6", label="left for real tokens")
        rest = f"{left:,} positions left for real tokens"
        ax.text(used + 0.01 * context, 0, rest, va="center", **_NOTE)
        prefix = f"P = {used:,} virtual positions ({_fmt_percent(pct)})"
        ax.annotate(
            prefix,
            xy=(used / 2, 0.25),
            xytext=(0, 14),
            textcoords="offset points",
            ha="left" if used < 0.5 * context else "center",
            arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.8},
            **_NOTE,
        )
        ax.set_xlim(0, context)
        ax.set_ylim(-0.45, 0.95)
        ax.set_yticks([])
        ax.grid(False)
        ax.spines["left"].set_visible(False)
        ax.set_xlabel(f"position in the context window (0 .. {context:,})")
        ax.set_title(
            title or f"Context budget: the prefix uses {_fmt_percent(pct)} of {context:,} positions"
        )
    return fig


def _decimals(values: np.ndarray) -> int:
    """One number of decimals for a set of values: 3 significant digits for the largest."""
    finite = np.abs(values[np.isfinite(values)])
    top = finite.max() if finite.size else 0.0
    return 0 if top >= 100 else 1 if top >= 10 else 2 if top >= 1 else 3


def plot_metric_bars(
    df: pd.DataFrame,
    *,
    metric: str,
    hue: str = "method",
    title: str,
    ylabel: str | None = None,
) -> Figure:
    """One bar per method (one row of `df` each), with error bars from `{metric}_std` if present.

    Args:
        df: one row per `hue` value; aggregate seeds first, e.g.
            df.groupby("method").agg(bleu=("bleu", "mean"), bleu_std=("bleu", "std")).
    """
    if isinstance(df, pd.DataFrame) and hue not in df.columns and df.index.name == hue:
        df = df.reset_index()  # the groupby result above
    _check_frame(df, [hue, metric])
    if df[hue].duplicated().any():
        raise ValueError(
            f"plot_metric_bars expects one row per {hue!r}; aggregate first, e.g. "
            f'df.groupby("{hue}").agg({metric}=("{metric}", "mean"), '
            f'{metric}_std=("{metric}", "std")).reset_index().'
        )
    names = df[hue].tolist()
    values = df[metric].to_numpy(float)
    std_column = f"{metric}_std"
    errors = df[std_column].to_numpy(float) if std_column in df.columns else None
    with style():
        fig, axes = _subplots(figsize=(max(4.5, 1.25 * len(names) + 1.5), 4.0))
        ax = axes[0, 0]
        x = np.arange(len(names))
        ax.bar(x, values, width=0.62, color=[method_color(n) for n in names], zorder=2)
        if errors is not None:
            bars = {"ecolor": "#333333", "elinewidth": 1.2, "capsize": 4, "zorder": 3}
            ax.errorbar(x, values, yerr=errors, fmt="none", **bars)
        tops = values + (np.nan_to_num(errors) if errors is not None else 0)
        decimals = _decimals(values)
        for xi, top, value in zip(x, tops, values, strict=True):
            if np.isfinite(value):
                ax.annotate(f"{value:.{decimals}f}", (xi, top), **_ABOVE, **_NOTE)
        ax.set_xticks(
            x, [textwrap.fill(method_label(n), 14, break_on_hyphens=False) for n in names]
        )
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", length=0)
        ax.margins(y=0.12)
        ax.set(title=title, ylabel=ylabel or metric.replace("_", " "))
    return fig


# --------------------------------------------------------------------------- heatmaps


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "#1a1a1a"


# Tick labels on every cell up to this many columns; beyond it, a thinned integer axis.
MAX_TICK_LABELS = 32
# Token labels (rotated 45 degrees) stay readable down to about 0.19 in per cell: 48 cells in the
# 9-inch width that `plot_token_attention` uses at most.
MAX_TOKEN_LABELS = 48


def _draw_heatmap(
    ax,
    values,
    *,
    vmax,
    annotate,
    xticklabels=None,
    xlabel="head",
    ylabel="layer",
    max_xlabels=MAX_TICK_LABELS,
):
    """Annotated [rows, columns] heatmap with white gaps between cells; returns the image."""
    rows, cols = values.shape
    cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="#f2f2f2")
    norm = mcolors.Normalize(vmin=0.0, vmax=vmax)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
    # The largest font (<= 9 pt) at which "0.00" fits a cell; no labels by default below 6 pt.
    box = ax.get_position()
    cell_width = box.width * ax.figure.get_figwidth() / cols  # inches
    cell_height = box.height * ax.figure.get_figheight() / rows
    size = min(9.0, 28 * cell_width, 40 * cell_height)
    if annotate is None:
        annotate = size >= 6
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            text, color = (
                ("\u2013", "#777777")
                if not np.isfinite(v)
                else (f"{v:.2f}", _text_color(cmap(norm(v))))
            )
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color=color)
    ax.set_xticks(np.arange(cols), xticklabels if xticklabels is not None else None)
    ax.set_yticks(np.arange(rows))
    if cols > max_xlabels:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if rows > MAX_TICK_LABELS:
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xticks(np.arange(cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    return image


def _vmax(arrays, vmax) -> float:
    if vmax is not None:
        if not np.isfinite(vmax) or vmax <= 0:
            raise ValueError(f"vmax must be a positive number, got {vmax!r}.")
        return float(vmax)
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _colorbar(fig, image, ax, label: str = MASS_LABEL):
    bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02, aspect=25)
    bar.outline.set_visible(False)
    bar.ax.tick_params(length=0, labelsize=9)
    bar.set_label(label, fontsize=10)
    return bar


def _cell_size(rows: int, cols: int, max_width: float = 9.0) -> tuple[float, float]:
    """Width and height (inches) of a heatmap of rows x cols cells: near-square, bounded."""
    return float(np.clip(0.5 * cols, 2.2, max_width)), float(np.clip(0.42 * rows, 1.6, 7.0))


def plot_attention_heatmap(
    mass,
    *,
    title: str,
    vmax: float | None = None,
    annotate: bool | None = None,
    ax: Axes | None = None,
    colorbar_label: str = MASS_LABEL,
) -> Figure:
    """Attention mass on the prefix per layer and head, annotated, with a colour bar.

    Args:
        mass: [layers, heads], values in 0..1 (`prefixlab.attention.prefix_attention_mass`).
        vmax: top of the colour scale (default: the largest value; pass 1.0 for absolute).
        annotate: write the value in each cell (default: when cells are big enough to read).
        ax: draw into this Axes (its figure gets the colour bar) instead of a new figure.
        colorbar_label: what the values are (another share of attention, e.g. the mass on the
            first token from `prefixlab.attention.sink_attention_mass`).
    Returns:
        Figure: the heatmap Axes plus a colour-bar Axes.
    """
    values = _check_mass(mass)
    with style():
        width, height = _cell_size(*values.shape)
        fig, ax = _own_axes(ax, (width + 1.6, height + 1.0))
        image = _draw_heatmap(ax, values, vmax=_vmax([values], vmax), annotate=annotate)
        _colorbar(fig, image, ax, colorbar_label)
        ax.set_title(title)
    return fig


def plot_attention_grid(
    masses: Mapping,
    *,
    title: str,
    vmax: float | None = None,
    annotate: bool | None = None,
    colorbar_label: str = MASS_LABEL,
) -> Figure:
    """Side-by-side `plot_attention_heatmap` panels on one shared colour scale.

    Args:
        masses: label -> [layers, heads] (e.g. {"prefix": ..., "prompt": ...}).
        colorbar_label: what the values are (as in `plot_attention_heatmap`).
    Returns:
        Figure with one Axes per label plus one shared colour-bar Axes.
    """
    _check_mapping(masses, "masses", "2-D array [layers, heads]")
    arrays = {label: _check_mass(m, f"masses[{label!r}]") for label, m in masses.items()}
    top = _vmax(arrays.values(), vmax)
    rows = max(a.shape[0] for a in arrays.values())
    cols = max(a.shape[1] for a in arrays.values())
    with style():
        width, height = _cell_size(rows, cols, max_width=8.5 / len(arrays))
        same_shape = len({a.shape for a in arrays.values()}) == 1
        fig, axes = _subplots(
            1,
            len(arrays),
            figsize=(len(arrays) * (width + 0.5) + 1.4, height + 1.3),
            sharey=same_shape,
        )
        for ax, (label, values) in zip(axes[0], arrays.items(), strict=True):
            image = _draw_heatmap(ax, values, vmax=top, annotate=annotate)
            ax.set_title(method_label(label), fontsize=11.5, color=method_color(label))
            if same_shape and ax is not axes[0, 0]:
                ax.set_ylabel("")
        _colorbar(fig, image, list(axes[0]), colorbar_label)
        _suptitle(fig, title)
    return fig


def _token_text(token) -> str:
    text = str(token).replace("\n", "\\n").replace("\t", "\\t")
    if not text.strip():
        text = repr(str(token))
    return text.replace("$", r"\$")  # a "$" would otherwise start mathtext


def plot_token_attention(
    values,
    tokens: Sequence[str],
    *,
    title: str,
    vmax: float | None = None,
    annotate: bool | None = None,
) -> Figure:
    """Attention mass on the prefix for each query token (x) in each layer (y).

    Args:
        values: [layers, n_tokens], values in 0..1 (`prefixlab.attention.prefix_mass_per_token`
            averaged over heads).
        tokens: the n_tokens query tokens as strings (decoded, e.g. tokenizer.decode([id])).
    Returns:
        Figure: the heatmap Axes plus a colour-bar Axes.
    """
    array = _array_nd(values, 2, "values", "2-D array [layers, n_tokens] of attention mass")
    array = _check_mass(array, "values")
    tokens = list(tokens)
    if len(tokens) != array.shape[1]:
        raise ValueError(
            f"values has shape [layers, n_tokens] = {list(array.shape)}, so {array.shape[1]} "
            f"tokens are expected, but {len(tokens)} were given."
        )
    layers, n_tokens = array.shape
    with style():
        width, height = _cell_size(layers, n_tokens)
        longest = max(len(_token_text(t)) for t in tokens)
        fig, axes = _subplots(figsize=(width + 1.8, height + 0.9 + 0.07 * min(longest, 20)))
        ax = axes[0, 0]
        image = _draw_heatmap(
            ax,
            array,
            vmax=_vmax([array], vmax),
            annotate=annotate,
            xticklabels=[_token_text(t) for t in tokens],
            xlabel="query token",
            max_xlabels=MAX_TOKEN_LABELS,
        )
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        _colorbar(fig, image, ax)
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- plotly

_PLOTLY_FONT = {"family": "Helvetica Neue, Helvetica, Arial, sans-serif", "size": 13}


def _plotly_layout(fig, title: str | None, **layout):
    fig.update_layout(
        template="plotly_white",  # explicit, so the output does not depend on pio defaults
        title={"text": title, "x": 0.02, "xanchor": "left"} if title else None,
        font=_PLOTLY_FONT,
        margin={"l": 60, "r": 30, "t": 70 if title else 30, "b": 55},
        **layout,
    )
    return fig


def _json_list(values: np.ndarray) -> list:
    """Plain floats for the figure's JSON (readable, stable), with None where a value is NaN."""
    return [v if np.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def _hover_grid(values: np.ndarray, prefix: str = "") -> list[list[str]]:
    """Hover text per cell: "layer 2<br>head 3<br>mass 0.412"."""
    return [
        [
            f"{prefix}layer {i}<br>head {j}<br>mass " + (f"{v:.3f}" if np.isfinite(v) else "n/a")
            for j, v in enumerate(row)
        ]
        for i, row in enumerate(values)
    ]


def _heatmap_trace(values: np.ndarray, prefix: str = "", annotate: bool | None = None, **kw):
    rows, cols = values.shape
    if annotate is None:
        annotate = rows * cols <= 300 and cols <= 24
    return go.Heatmap(
        z=[_json_list(row) for row in values],
        x=list(range(cols)),
        y=list(range(rows)),
        text=_hover_grid(values, prefix),
        hovertemplate="%{text}<extra></extra>",
        texttemplate="%{z:.2f}" if annotate else None,
        xgap=2,
        ygap=2,
        **kw,
    )


def attention_heatmap_plotly(
    mass, *, title: str, vmax: float | None = None, annotate: bool | None = None
):
    """Interactive `plot_attention_heatmap`: hover a cell for its layer, head and mass.

    Args:
        mass: [layers, heads], values in 0..1.
    Returns:
        plotly.graph_objects.Figure with one Heatmap trace.
    """
    values = _check_mass(mass)
    trace = _heatmap_trace(
        values,
        annotate=annotate,
        colorscale=HEATMAP_CMAP,
        zmin=0.0,
        zmax=_vmax([values], vmax),
        colorbar={"title": {"text": "mass on prefix"}},
    )
    fig = go.Figure(trace)
    fig.update_xaxes(title_text="head", dtick=1, showgrid=False)
    fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", showgrid=False)
    return _plotly_layout(fig, title, height=int(np.clip(140 + 34 * values.shape[0], 320, 900)))


def attention_grid_plotly(
    masses: Mapping,
    *,
    title: str | None = None,
    vmax: float | None = None,
    annotate: bool | None = None,
):
    """Interactive `plot_attention_grid`: one heatmap per label on a shared colour scale.

    Args:
        masses: label -> [layers, heads].
    Returns:
        plotly.graph_objects.Figure with one Heatmap trace per label and one colour bar.
    """
    _check_mapping(masses, "masses", "2-D array [layers, heads]")
    arrays = {label: _check_mass(m, f"masses[{label!r}]") for label, m in masses.items()}
    same_shape = len({a.shape for a in arrays.values()}) == 1
    fig = make_subplots(
        rows=1,
        cols=len(arrays),
        shared_yaxes=same_shape,
        horizontal_spacing=0.05,
        subplot_titles=[method_label(label) for label in arrays],
    )
    for col, (label, values) in enumerate(arrays.items(), start=1):
        prefix = f"{method_label(label)}<br>"
        trace = _heatmap_trace(values, prefix, annotate, coloraxis="coloraxis", name=str(label))
        fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text="head", dtick=1, showgrid=False, row=1, col=col)
    fig.update_yaxes(dtick=1, autorange="reversed", showgrid=False)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    rows = max(a.shape[0] for a in arrays.values())
    return _plotly_layout(
        fig,
        title,
        height=int(np.clip(150 + 34 * rows, 320, 900)),
        coloraxis={
            "colorscale": HEATMAP_CMAP,
            "cmin": 0.0,
            "cmax": _vmax(arrays.values(), vmax),
            "colorbar": {"title": {"text": _mass_title(arrays)}},
        },
    )


def _mass_title(masses: Mapping) -> str:
    """Colour-bar title: a soft prompt's virtual positions are not a prefix."""
    methods = {str(label).split(" ")[0] for label in masses}
    if methods and all(m.startswith("prompt") for m in methods):
        return "mass on soft prompt"
    if any(m.startswith("prompt") for m in methods):
        return "mass on prefix / soft prompt"
    return "mass on prefix"


_PLOTLY_DASH = {"-": "solid", "--": "dash", ":": "dot", "-.": "dashdot"}


def loss_curves_plotly(
    curves: Mapping,
    *,
    title: str,
    ylabel: str = "loss (nats/token)",
    xlabel: str = "step",
    smooth: float = 0,
    logy: bool = False,
    val: Mapping | None = None,
):
    """Interactive `plot_loss_curves` (same arguments): zoom in, hover for exact values.

    Returns:
        plotly.graph_objects.Figure: one Scatter trace per curve (plus a faint raw trace per
        curve when smoothing) and one marker trace per val entry.
    """
    lines, points, styles, smooth = _curves_data(curves, val, smooth)
    fig = go.Figure()
    for label, (x, y) in lines.items():
        color, ls, name = styles[label]
        line = {"color": color, "dash": _PLOTLY_DASH[ls], "width": 2}
        hover = f"{name}<br>{xlabel} %{{x}}<br>{ylabel} %{{y:.4g}}<extra></extra>"
        if smooth:
            fig.add_trace(
                go.Scatter(
                    x=_json_list(x),
                    y=_json_list(y),
                    mode="lines",
                    opacity=0.25,
                    showlegend=False,
                    line={**line, "width": 1},
                    legendgroup=str(label),
                    hoverinfo="skip",
                )
            )
            y = _ema(y, smooth)
        fig.add_trace(
            go.Scatter(
                x=_json_list(x),
                y=_json_list(y),
                mode="lines",
                name=name,
                line=line,
                legendgroup=str(label),
                hovertemplate=hover,
            )
        )
    for label, (x, y) in points.items():
        color, _, name = styles[label]
        fig.add_trace(
            go.Scatter(
                x=_json_list(x),
                y=_json_list(y),
                mode="markers",
                name=f"{name} (validation)",
                marker={"color": color, "size": 8, "line": {"color": "white", "width": 1}},
                legendgroup=str(label),
                hovertemplate=f"{name} (validation)<br>{xlabel} %{{x}}<br>{ylabel} %{{y:.4g}}"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text=ylabel, type="log" if logy else "linear")
    return _plotly_layout(fig, title, height=420)


def setup_notebook(renderer: str | None = None) -> str:
    """Choose how plotly figures are shown, once per notebook; returns the renderer's name.

    The choice, in order: `renderer` if given, the PLOTLY_RENDERER environment variable,
    "colab" inside Google Colab, else "plotly_mimetype".

    Why: "plotly_mimetype" stores only the figure's JSON in the cell output, and JupyterLab,
    Notebook 7 and VS Code draw it with the plotly.js they ship (the jupyterlab-plotly
    extension), so figures work offline, notebooks stay small and an executed notebook's
    outputs are the same on every run. The alternatives either embed the whole plotly.js
    bundle (several MB) in the notebook ("notebook"), load it from a CDN and go blank offline
    ("notebook_connected", "iframe_connected"), or write files next to the notebook ("iframe").
    Colab has no such extension and renders HTML itself, so it needs "colab".
    """
    if renderer is None:
        renderer = os.environ.get("PLOTLY_RENDERER") or (
            "colab" if "google.colab" in sys.modules else "plotly_mimetype"
        )
    pio.renderers.default = renderer
    return renderer


__all__ = [
    "EXTRA_COLORS",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "NEUTRAL_COLOR",
    "STYLE_RC",
    "attention_grid_plotly",
    "attention_heatmap_plotly",
    "loss_curves_plotly",
    "method_color",
    "method_label",
    "plot_attention_grid",
    "plot_attention_heatmap",
    "plot_context_budget",
    "plot_grad_norms",
    "plot_length_sweep",
    "plot_loss_curves",
    "plot_lr_sweep",
    "plot_metric_bars",
    "plot_parameter_counts",
    "plot_seed_bands",
    "plot_token_attention",
    "setup_notebook",
    "style",
]
