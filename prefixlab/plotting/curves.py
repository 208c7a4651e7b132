"""Training curves: loss and gradient norms per step, and the spread across seeds."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .checks import _array_nd, _check_mapping, _check_smooth, _val_xy, _xy
from .theme import (
    _VAL_MARKER,
    NEUTRAL_COLOR,
    _legend,
    _line_styles,
    _own_axes,
    _subplots,
    _suptitle,
    style,
)

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
    norms: Mapping, *, title: str, ylabel: str = "gradient norm", **kwargs
) -> Figure:
    """Gradient norms per step on a log axis, one line per label (as `plot_loss_curves`).

    Args:
        norms: label -> values [steps] or a pandas Series indexed by step.
        kwargs: xlabel, smooth, ax (as `plot_loss_curves`; the axis is always logarithmic).
    """
    unknown = sorted(set(kwargs) - {"xlabel", "smooth", "ax"})
    if unknown:
        raise TypeError(f"plot_grad_norms got {unknown}; it takes xlabel, smooth and ax.")
    return plot_loss_curves(norms, title=title, ylabel=ylabel, logy=True, **kwargs)


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


def plot_rate_curves(
    panels: Mapping,
    *,
    title: str,
    chosen: Mapping | None = None,
    ylabel: str = "validation loss (nats/token)",
    xlabel: str = "step",
) -> Figure:
    """Curves at several learning rates, one panel per form: the colour runs from the lowest
    rate (light) to the highest (dark), the chosen rate is drawn thick and black.

    Args:
        panels: panel title -> {lr: pandas Series indexed by step} (e.g.
            `prefixlab.studies.rate_curves` per form), side by side with a shared y axis.
        chosen: panel title -> the chosen lr of that panel (drawn thick, "(chosen)" in its
            legend entry).
    Returns:
        Figure with one Axes per panel, each with its own legend of rates.
    """
    _check_mapping(panels, "panels", "{lr: Series indexed by step}")
    chosen = dict(chosen or {})
    for name, curves in panels.items():
        _check_mapping(curves, f"panels[{name!r}]", "{lr: Series indexed by step}")
        for lr in curves:
            if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
                raise ValueError(f"panels[{name!r}] has a rate {lr!r}; rates must be positive.")
    cmap = plt.get_cmap("viridis_r")
    with style():
        fig, axes = _subplots(1, len(panels), figsize=(6.2 * len(panels), 3.9), sharey=True)
        for ax, (name, curves) in zip(axes[0], panels.items(), strict=True):
            rates = sorted(curves)
            span = np.log(rates[-1] / rates[0]) if len(rates) > 1 else 1.0
            for lr in rates:
                x, y = _xy(curves[lr], f"panels[{name!r}][{lr!r}]")
                is_chosen = name in chosen and np.isclose(lr, chosen[name])
                shade = 0.15 + 0.8 * (np.log(lr / rates[0]) / span if span else 0.0)
                ax.plot(x, y, color="black" if is_chosen else cmap(shade),
                        lw=2.6 if is_chosen else 1.5, zorder=3 if is_chosen else 2,
                        label=f"lr {lr:g}" + (" (chosen)" if is_chosen else ""))  # fmt: skip
            ax.set(title=str(name), xlabel=xlabel)
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        axes[0, 0].set_ylabel(ylabel)
        _suptitle(fig, title)
    return fig
