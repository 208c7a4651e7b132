"""Attention heatmaps (matplotlib): mass on the prefix per layer and head, or per token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .checks import _array_nd, _check_mass, _check_masses, _vmax
from .theme import (
    HEATMAP_CMAP,
    MASS_LABEL,
    _own_axes,
    _subplots,
    _suptitle,
    method_color,
    method_label,
    style,
)

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
    arrays = _check_masses(masses)
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
