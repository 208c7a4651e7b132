"""plotly figures: hover for values, zoom in; same data as the matplotlib ones."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .checks import _check_mass, _check_masses, _vmax
from .curves import _curves_data, _ema
from .theme import HEATMAP_CMAP, method_label

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
    arrays = _check_masses(masses)
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

    def scatter(label, x, y, **kwargs):  # one trace, grouped in the legend by curve label
        return go.Scatter(x=_json_list(x), y=_json_list(y), legendgroup=str(label), **kwargs)

    def hover(name: str) -> str:
        return f"{name}<br>{xlabel} %{{x}}<br>{ylabel} %{{y:.4g}}<extra></extra>"

    fig = go.Figure()
    for label, (x, y) in lines.items():
        color, ls, name = styles[label]
        line = {"color": color, "dash": _PLOTLY_DASH[ls], "width": 2}
        if smooth:  # the raw values, faint and silent, under the smoothed line
            raw = {**line, "width": 1}
            fig.add_trace(
                scatter(
                    label,
                    x,
                    y,
                    mode="lines",
                    opacity=0.25,
                    showlegend=False,
                    line=raw,
                    hoverinfo="skip",
                )
            )
            y = _ema(y, smooth)
        fig.add_trace(
            scatter(label, x, y, mode="lines", name=name, line=line, hovertemplate=hover(name))
        )
    for label, (x, y) in points.items():
        color, _, name = styles[label]
        marker = {"color": color, "size": 8, "line": {"color": "white", "width": 1}}
        name = f"{name} (validation)"
        fig.add_trace(
            scatter(
                label, x, y, mode="markers", name=name, marker=marker, hovertemplate=hover(name)
            )
        )
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text=ylabel, type="log" if logy else "linear")
    return _plotly_layout(fig, title, height=420)


def serving_plotly(rows, *, title: str | None = None):
    """Per-user serving from the benchmark's rows: throughput and memory against N users.

    Args:
        rows: one mapping per user count with "users", "bank_rows_per_s", "copies_rows_per_s",
            "bank_bytes", "copies_bytes" and "copies_measured" (benchmarks/serving.json's
            "rows", written by benchmarks/sections/serving.py).
    Returns:
        plotly.graph_objects.Figure: two panels (rows/s, MiB of parameters held), both against
        N on a log axis; one trace per way of serving; computed copies drawn as open markers.
    """
    keys = ("users", "bank_rows_per_s", "copies_rows_per_s", "bank_bytes", "copies_bytes")
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError("rows must be a non-empty list of dicts (serving.json's 'rows').")
    missing = sorted({k for r in rows for k in (*keys, "copies_measured") if k not in r})
    if missing:
        raise ValueError(f"serving rows lack {missing}; pass benchmarks/serving.json's 'rows'.")
    users = [int(r["users"]) for r in rows]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("throughput (rows/s)", "parameters held (MiB)")
    )
    ways = (("one frozen model + a bank of N prefixes", "bank", "#0072B2"),
            ("N fine-tuned copies", "copies", "#D55E00"))  # fmt: skip
    for name, way, color in ways:
        symbols = [
            "circle" if way == "bank" or r["copies_measured"] else "circle-open" for r in rows
        ]
        for col, value, unit in ((1, "rows_per_s", "rows/s"), (2, "bytes", "MiB")):
            y = [float(r[f"{way}_{value}"]) / (2**20 if value == "bytes" else 1) for r in rows]
            how = [
                "measured" if way == "bank" or r["copies_measured"] else "computed" for r in rows
            ]
            fig.add_trace(
                go.Scatter(
                    x=users,
                    y=_json_list(np.array(y)),
                    mode="lines+markers",
                    name=name,
                    legendgroup=way,
                    showlegend=col == 1,
                    line={"color": color, "width": 2},
                    marker={"color": color, "size": 9, "symbol": symbols},
                    customdata=how,
                    hovertemplate=f"{name}<br>N %{{x}}<br>%{{y:.4g}} {unit} (%{{customdata}})"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(type="log", title_text="users N")
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    return _plotly_layout(fig, title, height=400)


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

    It also lets pandas show table cells in full (`display.max_colwidth`): the lab's tables
    hold generated texts, and a text cut at 50 characters cannot be read.
    """
    import pandas as pd

    pd.set_option("display.max_colwidth", None)
    if renderer is None:
        renderer = os.environ.get("PLOTLY_RENDERER") or (
            "colab" if "google.colab" in sys.modules else "plotly_mimetype"
        )
    pio.renderers.default = renderer
    return renderer
