"""Bars: a metric per method, trainable-parameter counts and the context budget."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .checks import _check_frame
from .theme import (
    _ABOVE,
    _NOTE,
    EXTRA_COLORS,
    _subplots,
    method_color,
    method_label,
    metric_label,
    style,
)

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
        ax.set(title=title, ylabel=ylabel or metric_label(metric))
    return fig
