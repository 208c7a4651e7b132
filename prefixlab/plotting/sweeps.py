"""Sweeps: a final metric against learning rate or prefix length, one line per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import transforms
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .checks import _check_frame
from .theme import (
    _BESIDE,
    _CROSS,
    _STRIP,
    EXTRA_COLORS,
    NEUTRAL_COLOR,
    _legend,
    _line_styles,
    _subplots,
    _suptitle,
    method_label,
    metric_label,
    style,
)

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
    chosen: str | None = None,
) -> Figure:
    """Final metric against learning rate (log x): a dot per run, a line through the medians.

    Runs whose value is NaN or infinite (or above `diverged_above`) diverged: they are drawn
    as crosses along the top edge, above every finite value, under the legend entry "diverged".

    Args:
        df: one row per run (method, lr, seed, ...), with columns `x`, `y` and `hue`; the
            default `y` is the column `run_grid` writes (`final_val_loss`).
        chosen: a boolean column marking each hue's chosen rate (e.g. `sweep_table`'s
            "chosen"), drawn as a ring under the legend entry "chosen rate".
    """
    _check_frame(df, [x, y, hue, *([chosen] if chosen is not None else [])])
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
        if chosen is not None:
            marked = df[df[chosen].astype(bool).to_numpy() & ~diverged]
            styles = _line_styles(list(pd.unique(df[hue])))
            for group, rows in marked.groupby(hue, sort=False):
                ax.scatter(rows[x], rows[y], s=190, facecolors="none", lw=1.8, zorder=4,
                           edgecolors=styles[group][0])  # fmt: skip
            if len(marked):
                handles.append(Line2D([], [], ls="none", marker="o", ms=11, mfc="none",
                                      mec="#333333", mew=1.6, label="chosen rate"))  # fmt: skip
        if diverged.any():
            counted = _draw_diverged(ax, df, x, hue, diverged, values)
            label = "diverged (k/n runs)" if counted else "diverged"
            handles.append(Line2D([], [], color=NEUTRAL_COLOR, label=label, **_CROSS))
            ax.margins(x=0.07)  # room for the "k/n" beside the outermost crosses
        ax.set_xscale("log")
        _legend(ax, handles)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel or metric_label(y))
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


def plot_scale_axis(df: pd.DataFrame, *, title: str) -> Figure:
    """A difference between two methods against model size, one panel per metric.

    Args:
        df: columns metric, parameters, estimate, low, high and optionally model (a name
            written beside each point); one row per (metric, model size), e.g. the
            "difference" rows of `prefixlab.studies.verdict_table` with a parameters column.
    Returns:
        Figure with one Axes per metric: the estimate with its interval as an error bar, the
        points joined in order of size, and a line at 0 (no difference).
    """
    _check_frame(df, ["metric", "parameters", "estimate", "low", "high"])
    sizes = df["parameters"].to_numpy(float)
    if not (np.isfinite(sizes) & (sizes > 0)).all():
        raise ValueError("Column 'parameters' must hold positive parameter counts.")
    metrics = list(pd.unique(df["metric"]))
    with style():
        fig, axes = _subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8))
        for ax, name in zip(axes[0], metrics, strict=True):
            rows = df[df["metric"] == name].sort_values("parameters")
            x, y = rows["parameters"].to_numpy(float), rows["estimate"].to_numpy(float)
            below = y - rows["low"].to_numpy(float)
            above = rows["high"].to_numpy(float) - y
            ax.axhline(0.0, color=NEUTRAL_COLOR, lw=1.0, zorder=1)
            ax.errorbar(x, y, yerr=[below, above], fmt="o-", color="#333333", ecolor="#333333",
                        elinewidth=1.2, capsize=4, ms=6, zorder=3)  # fmt: skip
            if "model" in rows.columns:
                for xi, yi, label in zip(x, y, rows["model"], strict=True):
                    ax.annotate(str(label), (xi, yi), **_BESIDE)
            ax.set_xscale("log")
            ax.set_xticks(x, [f"{v / 1e6:.2g}M" for v in x])
            ax.minorticks_off()
            ax.set(xlabel="model parameters", ylabel="difference", title=metric_label(name))
        _suptitle(fig, title)
    return fig


def _distinct_colours(arms) -> dict:
    """arm -> colour: its method's colour (`_line_styles`), except that an arm whose colour an
    earlier arm already has (two arms of one method, e.g. the hybrid's two schedules) takes the
    first extra colour nobody has, so every dot in a figure of estimates is told apart."""
    out, taken = {}, set()
    for arm, (color, _ls, _name) in _line_styles(arms).items():
        if color in taken:
            color = next((c for c in EXTRA_COLORS if c not in taken), color)
        out[arm] = color
        taken.add(color)
    return out


def plot_estimates(
    df: pd.DataFrame, *, title: str, reference: float | None = None, colors_of=None
) -> Figure:
    """Estimates with their intervals, one row per label and one panel per metric.

    A row is coloured by its arm (a difference "A - B" by A). Arms that are not one of the
    lab's methods take the extra colours in order of appearance, so to give an arm the same
    colour in an estimates figure and a differences figure pass both the same `colors_of`.

    Args:
        df: columns metric, label, estimate, low, high (e.g. `verdict_table` rows with a label
            column: an arm for estimates, "A - B" for differences); rows in the order to draw,
            top to bottom.
        reference: a vertical line at this value in every panel (0 for differences).
        colors_of: the arms in the order their colours are handed out (default: the rows'
            arms as they appear); it must include every row's arm.
    Returns:
        Figure with one Axes per metric: a dot per label and its interval as a bar.
    """
    _check_frame(df, ["metric", "label", "estimate", "low", "high"])
    metrics = list(pd.unique(df["metric"]))
    labels = list(pd.unique(df["label"]))
    arm_of = {label: str(label).split(" - ")[0] for label in labels}  # "A - B" is coloured as A
    arms = list(dict.fromkeys(arm_of.values()))
    if colors_of is not None:
        if isinstance(colors_of, str) or not all(isinstance(a, str) for a in colors_of):
            raise ValueError(
                f"colors_of must be a list of arm names, got {colors_of!r}; e.g. "
                "colors_of=list(estimates.label)."
            )
        missing = [a for a in arms if a not in colors_of]
        if missing:
            raise ValueError(
                f"colors_of has no colour for {missing}; pass every arm that labels a row "
                f"(the rows' arms: {arms})."
            )
        arms = list(dict.fromkeys(colors_of))
    colour = _distinct_colours(arms)
    longest = max(len(str(label)) for label in labels)  # the y labels take this much width
    with style():
        fig, axes = _subplots(1, len(metrics), figsize=(3.3 * len(metrics) + max(1.6, 0.075 * longest),
                                                        0.42 * len(labels) + 1.6),
                              sharey=True)  # fmt: skip
        for ax, name in zip(axes[0], metrics, strict=True):
            rows = df[df["metric"] == name].set_index("label").reindex(labels)
            y = np.arange(len(labels))[::-1]
            if reference is not None:
                ax.axvline(reference, color=NEUTRAL_COLOR, lw=1.0, zorder=1)
            for yi, (label, row) in zip(y, rows.iterrows(), strict=True):
                if not np.isfinite(row["estimate"]):
                    continue
                color = colour[arm_of[label]]
                ax.plot([row["low"], row["high"]], [yi, yi], color=color, lw=2.4, zorder=2,
                        solid_capstyle="butt")  # fmt: skip
                ax.plot([row["estimate"]], [yi], "o", color=color, ms=6.5, zorder=3)
            ax.set_yticks(y, [str(label) for label in labels])
            ax.set(title=metric_label(name))
            ax.grid(axis="y", visible=False)
        _suptitle(fig, title)
    return fig


def _axis_ticks(ax, values: np.ndarray, log: bool | None) -> None:
    """The axis values as ticks; a log scale when asked, or (log=None) when they span 8x."""
    ticks = np.unique(values)
    if log or (log is None and ticks.min() > 0 and ticks.max() / ticks.min() >= 8):
        ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _dodge(ax, n_hues: int, i: int, x: np.ndarray) -> np.ndarray:
    """x moved sideways for hue i of n, so that intervals at one x do not hide each other (a
    factor on a log axis, an offset on a linear one)."""
    if n_hues < 2:
        return x
    shift = (i - (n_hues - 1) / 2) * 0.035
    if ax.get_xscale() == "log":
        return x * 10**shift
    span = np.ptp(x) if len(x) > 1 and np.ptp(x) > 0 else 1.0
    return x + shift * span


def plot_along_axis(
    df: pd.DataFrame,
    axis: str,
    *,
    title: str,
    hue: str = "arm",
    reference: float | None = None,
    log: bool | None = None,
    xlabel: str | None = None,
) -> Figure:
    """Estimates with their intervals against a study axis (training-set size, prefix length),
    one line per `hue` and one panel per metric: a learning curve with error bars.

    Args:
        df: columns metric, `axis`, `hue`, estimate, low, high; one row per (metric, axis
            value, hue), e.g. the "estimate" rows of `prefixlab.studies.verdict_table` for a
            study with that axis, or its "difference" rows with a label column "A - B" (then
            pass hue="label" and reference=0). Rows with a NaN estimate are skipped.
        axis: the column on the x axis (positive numbers, e.g. "n_train_mrs").
        reference: a horizontal line at this value in every panel (0 for differences).
        log: log x axis (None: when the values span at least 8x).
    Returns:
        Figure with one Axes per metric; points of different hues are moved a little sideways
        so that their intervals stay visible.
    """
    _check_frame(df, ["metric", axis, hue, "estimate", "low", "high"])
    values = pd.to_numeric(df[axis], errors="coerce").to_numpy(float)
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"Column {axis!r} must hold positive numbers (the axis values).")
    metrics = list(pd.unique(df["metric"]))
    hues = list(pd.unique(df[hue]))
    styles = _line_styles(hues)  # "A - B" labels name no method: one colour each
    with style():
        fig, axes = _subplots(1, len(metrics), figsize=(4.4 * len(metrics) + 1.8, 3.9))
        for ax, name in zip(axes[0], metrics, strict=True):
            _axis_ticks(ax, values, log)
            if reference is not None:
                ax.axhline(reference, color=NEUTRAL_COLOR, lw=1.0, zorder=1)
            handles = []
            for i, group in enumerate(hues):
                rows = df[(df["metric"] == name) & (df[hue] == group)].copy()
                rows["_x"] = pd.to_numeric(rows[axis]).astype(float)
                rows = rows[np.isfinite(rows["estimate"].to_numpy(float))].sort_values("_x")
                color, ls, _ = styles[group]
                handles.append(Line2D([], [], color=color, ls=ls, marker="o", ms=5,
                                      label=str(group)))  # fmt: skip
                if rows.empty:
                    continue
                x = _dodge(ax, len(hues), i, rows["_x"].to_numpy(float))
                y = rows["estimate"].to_numpy(float)
                err = [y - rows["low"].to_numpy(float), rows["high"].to_numpy(float) - y]
                ax.errorbar(x, y, yerr=err, color=color, ls=ls, marker="o", ms=5, capsize=3,
                            elinewidth=1.2, zorder=3)  # fmt: skip
            ax.set(xlabel=xlabel or axis.replace("_", " "), ylabel=metric_label(name))
        _legend(axes[0, -1], handles)
        _suptitle(fig, title)
    return fig


def plot_seed_spread(
    df: pd.DataFrame, axis: str, *, title: str, ylabel: str = "value", xlabel: str | None = None
) -> Figure:
    """One dot per seed, grouped by an axis value and coloured by arm, with each group's mean
    and standard deviation over seeds beside the dots: how far seeds land apart.

    Args:
        df: columns `axis`, arm, value (and optionally seed); one row per run, e.g.
            `prefixlab.studies.seed_table(...)`.
        axis: the grouping column (e.g. "n_train_mrs"), one group of arms per value.
    Returns:
        Figure with one Axes: per axis value a block of arms; each arm's seeds as dots and a
        bar for mean +- one standard deviation.
    """
    _check_frame(df, [axis, "arm", "value"])
    groups = list(pd.unique(df[axis]))
    arms = list(pd.unique(df["arm"]))
    styles = _line_styles(arms)
    width = len(arms) + 1
    with style():
        fig, axes = _subplots(figsize=(1.1 * width * len(groups) + 2.4, 3.9))
        ax = axes[0, 0]
        for g, group in enumerate(groups):
            for a, arm in enumerate(arms):
                values = df[(df[axis] == group) & (df["arm"] == arm)]["value"].to_numpy(float)
                values = values[np.isfinite(values)]
                if not len(values):
                    continue
                x = g * width + a
                color = styles[arm][0]
                jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
                ax.scatter(x - 0.15 + np.asarray(jitter), values, s=22, color=color, alpha=0.7,
                           lw=0, zorder=3)  # fmt: skip
                if len(values) > 1:
                    mean, sd = values.mean(), values.std(ddof=1)
                    ax.errorbar([x + 0.2], [mean], yerr=[sd], fmt="s", color=color, ms=5,
                                capsize=3, elinewidth=1.4, zorder=3)  # fmt: skip
        centres = [g * width + (len(arms) - 1) / 2 for g in range(len(groups))]
        ax.set_xticks(centres, [str(g) for g in groups])
        ax.set_xlabel(xlabel or axis.replace("_", " "))
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        handles = [Line2D([], [], color=styles[a][0], ls="none", marker="o", ms=6, label=a)
                   for a in arms]  # fmt: skip
        handles.append(Line2D([], [], color="#333333", ls="none", marker="s", ms=5,
                              label="mean ± SD over seeds"))  # fmt: skip
        _legend(ax, handles)
        _suptitle(fig, title)
    return fig


def plot_stability_sweep(runs: pd.DataFrame, *, title: str, axis: str = "init") -> Figure:
    """Each form's final validation loss against its rate *relative to its own best rate*, one
    panel per `axis` value (the inits of `mlp_stability`): how far each form can stray from
    its best rate before it fails.

    Args:
        runs: `prefixlab.studies.run_outcomes(...)` rows (stage "tune"): columns `axis`, arm,
            lr, best_lr, final_val_loss, start_val_loss, outcome.
    Returns:
        Figure, one Axes per axis value: a dot per run and a line through the medians per arm
        (x = lr / best_lr, log); a run whose loss ended at or above where it started
        (outcome "failed") is a cross; each arm's loss before step 1 is a dashed line in its
        colour (above it, training made the model worse). Runs with a non-finite loss are
        crosses along the top edge.
    """
    _check_frame(runs, [axis, "arm", "lr", "best_lr", "final_val_loss", "start_val_loss",
                        "outcome"], "runs")  # fmt: skip
    frame = runs.assign(relative=runs["lr"].to_numpy(float) / runs["best_lr"].to_numpy(float))
    frame = frame[np.isfinite(frame["relative"]) & (frame["relative"] > 0)]
    if not len(frame):
        raise ValueError("runs has no run with a chosen rate to be relative to (best_lr).")
    panels = list(pd.unique(frame[axis]))
    arms = list(pd.unique(frame["arm"]))
    # each arm in its method's colour (the series' colours: blue direct, sky blue MLP), so the
    # forms read the same here as in every curve of the same notebook; two arms of one method
    # are told apart by `_distinct_colours`
    colours = _distinct_colours(arms)
    styles = {a: (colours[a], "-", method_label(a)) for a in arms}
    with style():
        fig, axes = _subplots(1, len(panels), figsize=(4.3 * len(panels) + 1.2, 4.0), sharey=True)
        finite = frame["final_val_loss"].to_numpy(float)
        finite = finite[np.isfinite(finite)]
        starts = frame["start_val_loss"].to_numpy(float)
        starts = starts[np.isfinite(starts)]
        # the axis ends a little above the highest start: a run that ended far above it (or
        # not finite) is a cross on the top edge, so the trained runs keep the axis's height
        top = finite.max() if finite.size else 1.0
        if starts.size and top > 1.15 * starts.max():
            top = 1.15 * starts.max()
        low = min(finite.min(), top) if finite.size else 0.0
        for ax, value in zip(axes[0], panels, strict=True):
            here = frame[frame[axis] == value]
            for arm in arms:
                rows = here[here["arm"] == arm]
                color, ls, name = styles[arm]
                loss = rows["final_val_loss"].to_numpy(float)
                failed = (rows["outcome"] == "failed").to_numpy()
                ok = np.isfinite(loss) & (loss <= top)  # the rest: crosses on the top edge
                ax.scatter(rows["relative"][ok & ~failed], loss[ok & ~failed], s=24, color=color,
                           alpha=0.5, lw=0, zorder=2)  # fmt: skip
                ax.scatter(rows["relative"][ok & failed], loss[ok & failed], s=40, color=color,
                           marker="x", lw=1.6, zorder=3)  # fmt: skip
                ax.scatter(rows["relative"][~ok], np.full((~ok).sum(), top), s=40, color=color,
                           marker="x", lw=1.6, zorder=3, clip_on=False)  # fmt: skip
                finite_rows = rows[np.isfinite(loss)]
                median = finite_rows.groupby("relative", sort=True)["final_val_loss"].median()
                ax.plot(median.index, np.minimum(median.to_numpy(), top), color=color, ls=ls,
                        marker="o", ms=4, zorder=3, clip_on=False)  # fmt: skip
                start = rows["start_val_loss"].to_numpy(float)
                start = start[np.isfinite(start)]
                if start.size:
                    ax.axhline(float(np.median(start)), color=color, ls=(0, (4, 3)), lw=1.1,
                               alpha=0.8, zorder=1)  # fmt: skip
            ax.set_ylim(low - 0.04 * (top - low), top)
            ax.axvline(1.0, color=NEUTRAL_COLOR, lw=0.8, alpha=0.6, zorder=0)
            ax.set_xscale("log")
            ax.set(title=f"{axis}={value}", xlabel="rate / the form's best rate")
        axes[0, 0].set_ylabel("final " + metric_label("final_val_loss"))
        handles = [Line2D([], [], color=styles[a][0], ls=styles[a][1], marker="o", ms=4,
                          label=styles[a][2]) for a in arms]  # fmt: skip
        handles += [
            Line2D([], [], color=NEUTRAL_COLOR, ls="none", marker="x", mew=1.6, ms=7,
                   label="failed (ended at or above its start);\non the top edge: ended above the axis"),
            Line2D([], [], color=NEUTRAL_COLOR, ls=(0, (4, 3)), lw=1.1,
                   label="loss before step 1 (median)"),
        ]  # fmt: skip
        _legend(axes[0, -1], handles)
        _suptitle(fig, title)
    return fig
