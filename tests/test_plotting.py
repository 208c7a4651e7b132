"""prefixlab.plotting: figure types, element counts, colours, hover text and input checks."""

from __future__ import annotations

import os
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from prefixlab import plotting as P

matplotlib.use("Agg")  # no display in tests, whatever MPLBACKEND says

RNG = np.random.default_rng(0)
MASS = np.array([[0.1, 0.25, 0.5, 0.912], [0.0, 0.333, 0.75, 1.0]])  # [layers=2, heads=4]


@pytest.fixture(autouse=True)
def no_figures_left_in_pyplot():
    """Every plot function hands its figure to the caller and leaves pyplot's registry alone."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def line_colors(ax) -> list[str]:
    return [to_hex(line.get_color()) for line in ax.get_lines()]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def sweep_frame() -> pd.DataFrame:
    rows = []
    for method in ("prefix", "prompt"):
        for lr in (1e-4, 1e-3, 1e-2):
            for seed in range(3):
                loss = np.nan if (method == "prompt" and lr == 1e-2 and seed < 2) else 2 + seed
                rows.append({"method": method, "lr": lr, "seed": seed, "final_val_loss": loss})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- palette and style


def test_every_method_has_a_distinct_colour_and_a_label():
    methods = {"prefix", "prefix+mlp", "prompt", "infix", "lora", "full", "none", "prefix+lora"}
    assert set(P.METHOD_COLORS) == methods == set(P.METHOD_LABELS)
    assert len(set(P.METHOD_COLORS.values())) == len(methods)
    assert P.NEUTRAL_COLOR not in P.METHOD_COLORS.values()
    assert not set(P.EXTRA_COLORS) & {*P.METHOD_COLORS.values(), P.NEUTRAL_COLOR}
    assert len(set(P.EXTRA_COLORS)) == len(P.EXTRA_COLORS)


@pytest.mark.parametrize("name", ["prefix", "Prefix", "prefix: P=10", " prefix :lr 1e-3"])
def test_method_colour_reads_method_and_detail_labels(name):
    assert P.method_color(name) == P.METHOD_COLORS["prefix"]


def test_unknown_names_get_the_neutral_colour_and_keep_their_name():
    assert P.method_color("adapter") == P.NEUTRAL_COLOR
    assert P.method_color("") == P.NEUTRAL_COLOR
    assert P.method_label("adapter") == "adapter"
    assert P.method_label("prompt: P=5") == "prompt tuning: P=5"
    assert P.method_label("prefix+mlp") == "prefix tuning + MLP"


def test_metric_labels_name_units_and_fall_back_to_spaces():
    assert P.metric_label("final_val_loss") == "validation loss (nats/token)"
    assert P.metric_label("bleu") == "BLEU"
    assert P.metric_label("some_new_metric") == "some new metric"
    fig = P.plot_estimates(
        pd.DataFrame({"metric": ["table_gain"], "label": ["prefix"], "estimate": [0.3],
                      "low": [0.2], "high": [0.4]}), title="t")  # fmt: skip
    assert "table gain (nats/token)" in {fig.axes[0].get_title(loc) for loc in ("left", "center")}


def test_style_is_a_context_that_restores_rcparams():
    before = matplotlib.rcParams["axes.spines.top"]
    with P.style():
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.rcParams["axes.spines.right"] is False
        assert matplotlib.rcParams["axes.grid"] is True
    with P.style({"font.size": 20}):
        assert matplotlib.rcParams["font.size"] == 20
    assert matplotlib.rcParams["axes.spines.top"] == before


# ------------------------------------------------------------------------- line plots


def test_loss_curves_one_line_per_curve_in_the_method_colour():
    fig = P.plot_loss_curves(
        {"prefix": [3.0, 2.0, 1.5], "prompt": [3.0, 2.5, 2.2], "none": [3.0, 3.0, 3.0]},
        title="loss",
    )
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    assert line_colors(ax) == [P.METHOD_COLORS[m] for m in ("prefix", "prompt", "none")]
    assert legend_texts(ax) == ["prefix tuning", "prompt tuning", "frozen model"]
    assert ax.get_title("left") == "loss"
    assert ax.get_ylabel() == "loss (nats/token)"
    assert ax.get_yscale() == "linear"


def test_loss_curves_same_method_twice_keeps_colour_changes_line_style():
    fig = P.plot_loss_curves({"prefix: P=1": [2, 1], "prefix: P=10": [2, 0.5]}, title="t")
    a, b = fig.axes[0].get_lines()
    assert to_hex(a.get_color()) == to_hex(b.get_color()) == P.METHOD_COLORS["prefix"]
    assert a.get_linestyle() != b.get_linestyle()
    assert legend_texts(fig.axes[0]) == ["prefix tuning: P=1", "prefix tuning: P=10"]


def test_labels_that_name_no_method_get_distinct_colours():
    fig = P.plot_loss_curves({"run a": [2, 1], "run b": [2, 1]}, title="t")
    colors = line_colors(fig.axes[0])
    assert colors == [P.EXTRA_COLORS[0], P.EXTRA_COLORS[1]]


def test_loss_curves_series_index_is_the_step_and_val_draws_markers():
    series = pd.Series([3.0, 2.0, 1.0], index=[10, 20, 30])
    fig = P.plot_loss_curves(
        {"prefix": series}, title="t", val={"prefix": ([10, 30], [3.1, 1.2])}, logy=True
    )
    ax = fig.axes[0]
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [10, 20, 30]
    assert val.get_linestyle() == "None" and val.get_marker() == "o"
    assert to_hex(val.get_color()) == P.METHOD_COLORS["prefix"]
    assert legend_texts(ax) == ["prefix tuning", "validation"]
    assert ax.get_yscale() == "log"


def test_smoothing_keeps_a_faint_raw_line_and_smooths_the_main_one():
    values = RNG.normal(2, 0.5, 50)
    fig = P.plot_loss_curves({"prompt": values}, title="t", smooth=0.9)
    raw, smooth = fig.axes[0].get_lines()
    assert raw.get_alpha() < 1
    assert np.allclose(raw.get_ydata(), values)
    assert np.std(np.diff(smooth.get_ydata())) < np.std(np.diff(values))
    assert smooth.get_ydata()[0] == pytest.approx(values[0])  # debiased: starts at the data


def test_loss_curves_draw_into_a_given_axes():
    with P.style():
        fig, axes = plt.subplots(1, 2)
    try:
        assert P.plot_loss_curves({"lora": [1, 0.5]}, title="t", ax=axes[1]) is fig
        assert len(axes[1].get_lines()) == 1 and len(axes[0].get_lines()) == 0
    finally:
        plt.close(fig)


def test_grad_norms_use_a_log_axis():
    fig = P.plot_grad_norms({"prefix": [10, 1, 0.1], "prompt": [5, 2, 1]}, title="grads")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert line_colors(ax) == [P.METHOD_COLORS["prefix"], P.METHOD_COLORS["prompt"]]


@pytest.mark.parametrize("band", ["minmax", "std"])
def test_seed_bands_mean_line_and_band_per_label(band):
    runs = {"prefix": RNG.normal(2, 0.1, (4, 20)), "prompt": RNG.normal(3, 0.1, (2, 20))}
    fig = P.plot_seed_bands(runs, title="seeds", band=band)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2
    assert len(ax.collections) == 2  # one fill_between per label
    assert np.allclose(ax.get_lines()[0].get_ydata(), runs["prefix"].mean(axis=0))
    assert line_colors(ax) == [P.METHOD_COLORS["prefix"], P.METHOD_COLORS["prompt"]]
    assert legend_texts(ax)[:2] == ["prefix tuning (4 seeds)", "prompt tuning (2 seeds)"]


def test_seed_bands_accept_steps_and_survive_nan_columns():
    values = np.array([[1.0, np.nan, 3.0], [1.0, np.nan, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = P.plot_seed_bands({"prefix": values}, title="t", steps=[0, 50, 100])
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0, 50, 100]


# ------------------------------------------------------------------------- sweeps and bars


def test_lr_sweep_log_x_median_lines_and_diverged_markers():
    df = sweep_frame()
    fig = P.plot_lr_sweep(df, title="lr")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert legend_texts(ax) == ["prefix tuning", "prompt tuning", "diverged (k/n runs)"]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "X"]
    assert len(crosses) == 1  # prompt at lr 1e-2: one cross for its 2 of 3 diverged seeds
    assert to_hex(crosses[0].get_color()) == P.METHOD_COLORS["prompt"]
    assert "2/3" in [t.get_text() for t in ax.texts]
    medians = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [to_hex(m.get_color()) for m in medians] == [
        P.METHOD_COLORS["prefix"],
        P.METHOD_COLORS["prompt"],
    ]
    assert list(medians[0].get_ydata()) == [3.0, 3.0, 3.0]  # median of seeds 2, 3, 4
    assert medians[1].get_ydata()[-1] == 4.0  # only the finite seed counts
    low, high = ax.get_ylim()
    assert high > 4.0 > low  # every finite value is inside, below the diverged strip


def test_lr_sweep_without_divergence_has_no_diverged_entry():
    df = sweep_frame().dropna()
    fig = P.plot_lr_sweep(df, title="lr")
    assert "diverged" not in " ".join(legend_texts(fig.axes[0]))


def test_lr_sweep_threshold_marks_huge_losses_as_diverged():
    df = sweep_frame().fillna(1e6)
    fig = P.plot_lr_sweep(df, title="lr", diverged_above=100)
    assert legend_texts(fig.axes[0])[-1].startswith("diverged")
    assert fig.axes[0].get_ylim()[1] < 100


def test_length_sweep_two_panels_with_bleu_one_without():
    df = pd.DataFrame(
        {
            "method": ["prefix"] * 3 + ["prompt"] * 3,
            "prefix_length": [1, 10, 100] * 2,
            "val_loss": [3.0, 2.5, 2.2, 3.3, 3.0, 2.9],
            "bleu": [40, 55, 60, 30, 40, 45],
        }
    )
    fig = P.plot_length_sweep(df, title="P")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert line_colors(ax) == [P.METHOD_COLORS["prefix"], P.METHOD_COLORS["prompt"]]
        assert ax.get_xscale() == "log"
    assert fig.axes[1].get_ylabel() == "BLEU"
    assert len(P.plot_length_sweep(df.drop(columns="bleu"), title="P").axes) == 1


def test_parameter_counts_bars_annotated_with_count_and_share():
    rows = [
        {
            "method": "prefix",
            "label": "prefix tuning",
            "trainable": 184_320,
            "percent_of_base": 100 * 184_320 / 124_439_808,
        },
        {
            "method": "prompt",
            "label": "prompt tuning",
            "trainable": 7_680,
            "percent_of_base": 100 * 7_680 / 124_439_808,
        },
        {
            "method": "full",
            "label": "full fine-tuning",
            "trainable": 124_439_808,
            "percent_of_base": 100.0,
        },
    ]
    fig = P.plot_parameter_counts(rows, title="params")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == [
        P.METHOD_COLORS[m] for m in ("prefix", "prompt", "full")
    ]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["184,320 (0.15%)", "7,680 (0.0062%)", "124,439,808 (100%)"]
    assert ax.get_xlim()[1] > 124_439_808
    linear = P.plot_parameter_counts(pd.DataFrame(rows), title="params", log=False)
    assert linear.axes[0].get_xscale() == "linear"


def test_parameter_counts_from_accounting():
    from transformers import GPT2Config

    from prefixlab.accounting import parameter_counts

    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=97)
    rows = parameter_counts(config, 5)
    fig = P.plot_parameter_counts(rows, title="tiny")
    assert len(fig.axes[0].patches) == len(rows)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [r["label"] for r in rows]


def test_context_budget_is_one_stacked_bar():
    budget = {"context": 1024, "prefix_length": 10, "left_for_tokens": 1014, "percent_used": 0.98}
    fig = P.plot_context_budget(budget)
    ax = fig.axes[0]
    prefix, rest = ax.patches
    assert prefix.get_width() == 10 and rest.get_x() == 10 and rest.get_width() == 1014
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "1,014 positions left" in texts and "P = 10" in texts
    assert "0.98%" in ax.get_title("left")


def test_metric_bars_with_and_without_error_bars():
    df = pd.DataFrame({"method": ["prompt", "prefix", "lora"], "bleu": [48.2, 62.5, 66.0]})
    fig = P.plot_metric_bars(df, metric="bleu", title="BLEU")
    ax = fig.axes[0]
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == [
        P.METHOD_COLORS[m] for m in ("prompt", "prefix", "lora")
    ]
    assert [t.get_text() for t in ax.texts] == ["48.2", "62.5", "66.0"]
    assert not ax.containers[1:]  # no error bars
    df["bleu_std"] = [1.0, 2.0, 0.5]
    ax = P.plot_metric_bars(df, metric="bleu", title="BLEU").axes[0]
    errorbars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(errorbars) == 1


def test_metric_bars_accept_a_groupby_result():
    seeds = pd.DataFrame({"method": ["prefix", "prefix", "prompt"], "bleu": [60.0, 62.0, 50.0]})
    table = seeds.groupby("method").agg(bleu=("bleu", "mean"), bleu_std=("bleu", "std"))
    fig = P.plot_metric_bars(table, metric="bleu", title="BLEU")
    assert len(fig.axes[0].patches) == 2


# ------------------------------------------------------------------------- heatmaps


def test_attention_heatmap_annotations_equal_the_input():
    fig = P.plot_attention_heatmap(MASS, title="mass")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # heatmap + colour bar
    ax = fig.axes[0]
    values = np.array([float(t.get_text()) for t in ax.texts]).reshape(MASS.shape)
    assert np.allclose(values, np.round(MASS, 2))
    image = ax.images[0]
    assert image.get_array().shape == MASS.shape
    assert image.get_clim() == (0.0, pytest.approx(1.0))
    assert ax.get_xlabel() == "head" and ax.get_ylabel() == "layer"


def test_attention_heatmap_vmax_nan_cells_and_no_annotation():
    mass = MASS.copy()
    mass[0, 0] = np.nan
    fig = P.plot_attention_heatmap(mass, title="m", vmax=0.5)
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (0.0, 0.5)
    assert ax.texts[0].get_text() == "\u2013"
    assert not P.plot_attention_heatmap(MASS, title="m", annotate=False).axes[0].texts


def test_attention_heatmap_accepts_torch_tensors_and_a_given_axes():
    torch = pytest.importorskip("torch")
    mass = torch.tensor(MASS, requires_grad=True)
    with P.style():
        fig, ax = plt.subplots()
    try:
        assert P.plot_attention_heatmap(mass, title="m", ax=ax) is fig
        assert len(fig.axes) == 2
    finally:
        plt.close(fig)


def test_attention_grid_shares_one_colour_scale():
    fig = P.plot_attention_grid({"prefix": MASS, "prompt": MASS * 0.5}, title="grid")
    assert len(fig.axes) == 3  # two heatmaps + one colour bar
    clims = {ax.images[0].get_clim() for ax in fig.axes[:2]}
    assert clims == {(0.0, 1.0)}
    assert [ax.get_title("left") for ax in fig.axes[:2]] == ["prefix tuning", "prompt tuning"]
    assert fig.get_suptitle() == "grid"


def test_attention_heatmaps_name_what_the_colour_bar_shows():
    default = P.plot_attention_heatmap(MASS, title="m")
    assert default.axes[1].get_ylabel() == P.MASS_LABEL
    label = "attention mass on first token"
    single = P.plot_attention_heatmap(MASS, title="m", colorbar_label=label)
    assert single.axes[1].get_ylabel() == label
    grid = P.plot_attention_grid({"none": MASS, "prefix": MASS}, title="g", colorbar_label=label)
    assert grid.axes[-1].get_ylabel() == label


def test_token_attention_labels_every_token_of_a_short_example():
    n = P.MAX_TOKEN_LABELS
    tokens = [f"t{i}" for i in range(n)]
    fig = P.plot_token_attention(RNG.uniform(0, 1, (2, n)), tokens, title="tokens")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == tokens
    long = [f"t{i}" for i in range(n + 1)]
    fig = P.plot_token_attention(RNG.uniform(0, 1, (2, n + 1)), long, title="tokens")
    assert len(fig.axes[0].get_xticks()) < n + 1  # too many to label each: a thinned axis


def test_token_attention_labels_tokens_and_escapes_dollars():
    values = RNG.uniform(0, 1, (3, 4))
    tokens = ["The", " $5", "\n", " meal"]
    fig = P.plot_token_attention(values, tokens, title="tokens")
    ax = fig.axes[0]
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["The", r" \$5", "\\n", " meal"]
    assert ax.get_xlabel() == "query token"


# ------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: P.plot_loss_curves({}, title="t"), "non-empty dict"),
        (lambda: P.plot_loss_curves([1, 2], title="t"), "non-empty dict"),
        (lambda: P.plot_loss_curves({"prefix": [[1, 2]]}, title="t"), "1-D"),
        (lambda: P.plot_loss_curves({"prefix": []}, title="t"), "1-D"),
        (lambda: P.plot_loss_curves({"prefix": ["a"]}, title="t"), "numeric"),
        (lambda: P.plot_loss_curves({"prefix": [1, 2]}, title="t", smooth=1), "smooth"),
        (lambda: P.plot_loss_curves({"p": [1]}, title="t", val={"p": ([1, 2], [1])}), "match"),
        (lambda: P.plot_grad_norms({}, title="t"), "non-empty dict"),
        (lambda: P.plot_seed_bands({"prefix": [1, 2, 3]}, title="t"), "[seeds, steps]"),
        (lambda: P.plot_seed_bands({"p": np.ones((2, 3))}, title="t", band="iqr"), "band"),
        (lambda: P.plot_seed_bands({"p": np.ones((2, 3))}, title="t", steps=[1]), "steps"),
        (lambda: P.plot_lr_sweep(pd.DataFrame(), title="t"), "non-empty"),
        (lambda: P.plot_lr_sweep(sweep_frame(), y="bleu", title="t"), "bleu"),
        (lambda: P.plot_lr_sweep(sweep_frame().assign(lr=0.0), title="t"), "positive"),
        (lambda: P.plot_length_sweep(sweep_frame(), title="t"), "prefix_length"),
        (lambda: P.plot_parameter_counts([], title="t"), "non-empty list"),
        (lambda: P.plot_parameter_counts([{"method": "prefix"}], title="t"), "keys"),
        (lambda: P.plot_context_budget({"context": 10}), "keys"),
        (
            lambda: P.plot_context_budget(
                {"context": 10, "prefix_length": 4, "left_for_tokens": 4, "percent_used": 40}
            ),
            "context",
        ),
        (lambda: P.plot_metric_bars(sweep_frame(), metric="final_val_loss", title="t"), "one row"),
        (lambda: P.plot_metric_bars(sweep_frame(), metric="bleu", title="t"), "bleu"),
        (lambda: P.plot_attention_heatmap(np.ones(4), title="t"), "[layers, heads]"),
        (lambda: P.plot_attention_heatmap(np.ones((2, 2, 2)), title="t"), "[layers, heads]"),
        (lambda: P.plot_attention_heatmap(MASS * 3, title="t"), "between 0 and 1"),
        (lambda: P.plot_attention_heatmap(MASS, title="t", vmax=0), "vmax"),
        (lambda: P.plot_attention_grid({}, title="t"), "non-empty dict"),
        (lambda: P.plot_attention_grid({"p": np.ones(3)}, title="t"), "[layers, heads]"),
        (lambda: P.plot_token_attention(np.ones((2, 3)), ["a", "b"], title="t"), "3 tokens"),
        (lambda: P.plot_token_attention(np.ones(3), ["a", "b", "c"], title="t"), "n_tokens"),
        (lambda: P.attention_heatmap_plotly(np.ones((2, 2, 2)), title="t"), "[layers, heads]"),
        (lambda: P.attention_grid_plotly({}), "non-empty dict"),
        (lambda: P.loss_curves_plotly({"p": np.ones((2, 2))}, title="t"), "1-D"),
    ],
)
def test_bad_inputs_raise_value_errors_that_say_what_is_expected(call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


def test_many_figures_raise_no_pyplot_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = [P.plot_loss_curves({"prefix": [2, 1]}, title=str(i)) for i in range(25)]
    assert len(figures) == 25


# ------------------------------------------------------------------------- plotly


def test_attention_heatmap_plotly_hover_carries_layer_head_and_mass():
    fig = P.attention_heatmap_plotly(MASS, title="mass")
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert isinstance(trace, go.Heatmap)
    assert np.allclose(np.array(trace.z, dtype=float), MASS)
    assert trace.text[0][3] == "layer 0<br>head 3<br>mass 0.912"
    assert trace.text[1][1] == "layer 1<br>head 1<br>mass 0.333"
    assert "%{text}" in trace.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"  # layer 0 on top, as in matplotlib


def test_attention_grid_plotly_one_trace_per_label_and_a_shared_scale():
    fig = P.attention_grid_plotly({"prefix": MASS, "prompt": MASS / 2}, title="grid")
    assert len(fig.data) == 2
    assert {t.coloraxis for t in fig.data} == {"coloraxis"}
    assert fig.layout.coloraxis.cmax == pytest.approx(1.0)
    assert fig.data[1].text[0][2] == "prompt tuning<br>layer 0<br>head 2<br>mass 0.250"
    assert fig.layout.coloraxis.colorbar.title.text == "mass on prefix / soft prompt"
    only_prefix = P.attention_grid_plotly({"trained": MASS, "random init": MASS})
    assert only_prefix.layout.coloraxis.colorbar.title.text == "mass on prefix"


def test_loss_curves_plotly_colours_and_smoothing():
    curves = {"prefix": [3.0, 2.0, 1.0], "prompt: P=5": [3.0, 2.5, 2.0]}
    fig = P.loss_curves_plotly(curves, title="loss", val={"prefix": ([0, 2], [3.1, 1.1])})
    assert [t.name for t in fig.data] == [
        "prefix tuning",
        "prompt tuning: P=5",
        "prefix tuning (validation)",
    ]
    assert fig.data[0].line.color == P.METHOD_COLORS["prefix"]
    assert fig.data[2].mode == "markers"
    smooth = P.loss_curves_plotly(curves, title="loss", smooth=0.5, logy=True)
    assert len(smooth.data) == 4 and smooth.layout.yaxis.type == "log"


def test_plotly_figures_are_stable_data():
    def build():
        return (
            P.attention_heatmap_plotly(MASS, title="m").to_json(),
            P.attention_grid_plotly({"prefix": MASS, "prompt": MASS}).to_json(),
            P.loss_curves_plotly({"prefix": [2.0, 1.0]}, title="l").to_json(),
        )

    first, second = build(), build()
    assert first == second
    assert all('"uid"' not in text for text in first)


def test_setup_notebook_picks_a_renderer_that_does_not_embed_plotly_js(monkeypatch):
    import sys

    import plotly.io as pio

    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert P.setup_notebook() == "plotly_mimetype" == pio.renderers.default
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert P.setup_notebook() == "colab"
    monkeypatch.setenv("PLOTLY_RENDERER", "json")
    assert P.setup_notebook() == "json"
    assert P.setup_notebook("png") == "png"


# ------------------------------------------------------------------------- in a real kernel


@pytest.mark.slow
def test_a_returned_figure_displays_exactly_once_in_jupyter(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # prefixlab.plotting imports nothing else from prefixlab, so the kernel loads the plotting
    # package on its own and skips the package's torch import (seconds saved; same display path).
    folder = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "prefixlab", "plotting"
    )
    init = os.path.join(folder, "__init__.py")
    cells = [
        "import importlib.util, sys\nimport numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('plotting', {init!r}, "
        f"submodule_search_locations=[{folder!r}])\n"
        "P = importlib.util.module_from_spec(spec)\nsys.modules['plotting'] = P\n"
        "spec.loader.exec_module(P)\nP.setup_notebook()",
        "P.plot_loss_curves({'prefix': [3.0, 2.0]}, title='t')",
        "fig = P.plot_attention_heatmap(np.full((2, 4), 0.3), title='m')",
        "fig",
        "P.attention_heatmap_plotly(np.full((2, 4), 0.3), title='m')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # The kernel inherits this environment: use the inline backend, as the notebook runs do.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError:
        raise
    except Exception as err:  # no usable kernel here: nothing to check
        pytest.skip(f"no Jupyter kernel: {err}")

    def data_keys(cell):
        return [sorted(out.get("data", {})) for out in cell.outputs]

    assert data_keys(nb.cells[1]) == [["image/png", "text/plain"]]
    assert data_keys(nb.cells[2]) == []  # assigned, not shown
    assert data_keys(nb.cells[3]) == [["image/png", "text/plain"]]
    assert data_keys(nb.cells[4]) == [["application/vnd.plotly.v1+json"]]


# ------------------------------------------------------------------------- package layout


def test_the_package_exports_every_name_the_notebooks_use():
    import json
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, "notebooks")
    used = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".ipynb"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                cells = json.load(f)["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            used |= set(re.findall(r"\bplotting\.([A-Za-z_]\w*)", code))
    assert used, "no notebook calls plotting.X; the search pattern is wrong"
    assert used <= set(P.__all__)
    for name in P.__all__:
        assert getattr(P, name) is not None, name
    public_plots = {n for n in dir(P) if n.startswith("plot_") or n.endswith("_plotly")}
    assert public_plots <= set(P.__all__)


def test_one_home_for_the_method_colours():
    from prefixlab.plotting import bars, curves, heatmaps, theme

    assert P.METHOD_COLORS is theme.METHOD_COLORS
    assert P.METHOD_LABELS is theme.METHOD_LABELS
    for module in (bars, curves, heatmaps):
        assert "METHOD_COLORS" not in vars(module)  # each draws through theme.method_color


def test_scale_axis_plot_draws_one_panel_per_metric_and_checks_sizes():
    import pandas as pd

    from prefixlab.plotting import plot_scale_axis

    df = pd.DataFrame({
        "metric": ["loss", "loss", "gain", "gain"],
        "model": ["nano", "tiny", "nano", "tiny"],
        "parameters": [2e5, 1e6, 2e5, 1e6],
        "estimate": [-0.1, -0.05, 0.2, 0.1],
        "low": [-0.2, -0.1, 0.1, 0.0],
        "high": [0.0, 0.0, 0.3, 0.2],
    })  # fmt: skip
    fig = plot_scale_axis(df, title="gap by size")
    titles = ["".join(ax.get_title(loc) for loc in ("left", "center", "right")) for ax in fig.axes]
    assert titles == ["loss", "gain"]
    with pytest.raises(ValueError, match="positive parameter counts"):
        plot_scale_axis(df.assign(parameters=0), title="bad")


def test_estimates_plot_draws_each_interval_where_the_data_says():
    import numpy as np
    import pandas as pd

    from prefixlab.plotting import plot_estimates

    df = pd.DataFrame({
        "metric": ["loss", "loss", "bleu", "bleu"],
        "label": ["prompt", "prefix - prompt", "prompt", "prefix - prompt"],
        "estimate": [1.2, -0.05, 20.0, np.nan],
        "low": [1.1, -0.1, 18.0, np.nan],
        "high": [1.3, 0.02, 22.0, np.nan],
    })  # fmt: skip
    fig = plot_estimates(df, title="t", reference=0.0)
    loss, bleu = fig.axes
    assert [t.get_text() for t in loss.get_yticklabels()] == ["prompt", "prefix - prompt"]
    bars = [x for x in (line.get_xdata() for line in loss.lines) if len(x) == 2 and x[0] != x[1]]
    assert sorted(tuple(b) for b in bars) == [(-0.1, 0.02), (1.1, 1.3)]
    assert sum(len(line.get_xdata()) == 2 for line in bleu.lines) == 2  # zero line + prompt
    with pytest.raises(ValueError, match="label"):
        plot_estimates(df.drop(columns="label"), title="bad")


def test_estimates_plot_keeps_an_arms_colour_across_figures_with_colors_of():
    import pandas as pd
    from matplotlib.colors import to_hex

    from prefixlab.plotting import plot_estimates

    def dot_colours(fig):  # label -> colour of its dot, read from the first panel
        ax = fig.axes[0]
        names = [t.get_text() for t in ax.get_yticklabels()]  # in the order the rows are drawn
        dots = [line for line in ax.lines if len(line.get_xdata()) == 1]
        return {name: to_hex(dot.get_color()) for name, dot in zip(names, dots, strict=True)}

    arms = ["random", "text", "vocab"]
    est = pd.DataFrame({"metric": "loss", "label": arms, "estimate": [1.0, 0.9, 0.95],
                        "low": [0.9, 0.8, 0.85], "high": [1.1, 1.0, 1.05]})  # fmt: skip
    dif = pd.DataFrame({"metric": "loss", "label": ["text - random", "vocab - random"],
                        "estimate": [-0.1, -0.05], "low": [-0.2, -0.1], "high": [0.0, 0.0]})  # fmt: skip
    by_arm = dot_colours(plot_estimates(est, title="t"))
    assert len(set(by_arm.values())) == 3
    default = dot_colours(plot_estimates(dif, title="t", reference=0.0))
    assert default["text - random"] != by_arm["text"]  # without colors_of: first extra colour
    kept = dot_colours(plot_estimates(dif, title="t", reference=0.0, colors_of=arms))
    assert kept == {"text - random": by_arm["text"], "vocab - random": by_arm["vocab"]}
    with pytest.raises(ValueError, match="no colour for \\['vocab'\\]"):
        plot_estimates(dif, title="t", colors_of=["random", "text"])
    with pytest.raises(ValueError, match="list of arm names"):
        plot_estimates(dif, title="t", colors_of="text")
    two_of_one_method = est.assign(label=["prefix+lora: joint", "prefix+lora: later", "prefix"])
    assert len(set(dot_colours(plot_estimates(two_of_one_method, title="t")).values())) == 3


def test_lr_sweep_rings_the_chosen_rate():
    import pandas as pd

    from prefixlab.plotting import plot_lr_sweep

    df = pd.DataFrame({"arm": ["prompt"] * 3 + ["prefix"] * 3, "lr": [0.01, 0.1, 1.0] * 2,
                       "final_val_loss": [1.3, 1.1, 1.2, 1.2, 1.0, 1.5],
                       "chosen": [False, True, False, False, True, False]})  # fmt: skip
    fig = plot_lr_sweep(df, hue="arm", chosen="chosen", title="t")
    ax = fig.axes[0]
    rings = [c for c in ax.collections if c.get_sizes().max() > 100]
    assert sorted(tuple(c.get_offsets()[0]) for c in rings) == [(0.1, 1.0), (0.1, 1.1)]
    assert "chosen rate" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="picked"):
        plot_lr_sweep(df, hue="arm", chosen="picked", title="t")


def test_along_axis_draws_each_interval_on_a_log_axis_and_checks_the_axis():
    import numpy as np
    import pandas as pd

    from prefixlab.plotting import plot_along_axis

    df = pd.DataFrame({
        "metric": ["bleu"] * 4 + ["slot_error_rate"] * 4,
        "n_train_mrs": [50, 1000] * 4,
        "arm": ["prefix", "prefix", "full", "full"] * 2,
        "estimate": [20.0, 30.0, 15.0, np.nan, 0.5, 0.3, 0.6, 0.2],
        "low": [18.0, 28.0, 13.0, np.nan, 0.4, 0.2, 0.5, 0.1],
        "high": [22.0, 32.0, 17.0, np.nan, 0.6, 0.4, 0.7, 0.3],
    })  # fmt: skip
    fig = plot_along_axis(df, "n_train_mrs", title="learning curve")
    bleu, slots = fig.axes
    assert bleu.get_xscale() == "log" and bleu.get_ylabel() == "BLEU"
    assert [t.get_text() for t in bleu.get_xticklabels()] == ["50", "1000"]
    # one error-bar container per arm that has data; the NaN point of "full" is left out
    (prefix, full) = bleu.containers
    assert list(prefix.lines[0].get_ydata()) == [20.0, 30.0] and len(full.lines[0].get_ydata()) == 1
    segments = [s for c in prefix.lines[2] for s in c.get_segments()]
    assert sorted((seg[0][1], seg[1][1]) for seg in segments) == [(18.0, 22.0), (28.0, 32.0)]
    x_prefix, x_full = prefix.lines[0].get_xdata()[0], full.lines[0].get_xdata()[0]
    assert x_prefix < 50 < x_full  # moved apart so both intervals stay visible
    assert [t.get_text() for t in slots.get_legend().get_texts()] == ["prefix", "full"]
    diffs = df.assign(label="prefix - full")
    diffs = pd.concat([diffs, diffs.assign(label="prefix - lora")])
    fig = plot_along_axis(diffs, "n_train_mrs", hue="label", reference=0.0, title="t")
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in fig.axes[0].lines)
    colors = {c.lines[0].get_color() for c in fig.axes[0].containers}
    assert len(colors) == 2  # two differences that start with the same arm: two colours
    with pytest.raises(ValueError, match="positive numbers"):
        plot_along_axis(df.assign(n_train_mrs=0), "n_train_mrs", title="bad")
    with pytest.raises(ValueError, match="lacks column"):
        plot_along_axis(df, "prefix_length", title="bad")


def test_seed_spread_one_dot_per_seed_and_mean_sd_per_group():
    import numpy as np
    import pandas as pd

    from prefixlab.plotting import plot_seed_spread

    values = {("random", 50): [1.0, 5.0, 9.0], ("vocab", 50): [4.0, 5.0, 6.0],
              ("random", 500): [7.0, 8.0, 9.0], ("vocab", 500): [8.0, 8.0, 8.0]}  # fmt: skip
    df = pd.DataFrame([{"arm": a, "n_train_mrs": n, "seed": i, "value": v}
                       for (a, n), vs in values.items() for i, v in enumerate(vs)])  # fmt: skip
    fig = plot_seed_spread(df, "n_train_mrs", title="spread", ylabel="BLEU")
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection

    dots = sorted(float(y) for c in ax.collections if isinstance(c, PathCollection)
                  for _, y in c.get_offsets())  # fmt: skip
    assert dots == sorted(v for vs in values.values() for v in vs)
    means = sorted(c.lines[0].get_ydata()[0] for c in ax.containers)
    assert means == sorted(np.mean(v) for v in values.values())
    random_50 = [c for c in ax.containers if c.lines[0].get_ydata()[0] == 5.0
                 and c.lines[0].get_xdata()[0] < 1]  # fmt: skip
    (segment,) = random_50[0].lines[2][0].get_segments()
    assert segment[1][1] - segment[0][1] == pytest.approx(2 * np.std([1, 5, 9], ddof=1))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "500"]
    assert ax.get_xlabel() == "n train mrs"
    with pytest.raises(ValueError, match="lacks column"):
        plot_seed_spread(df.drop(columns="value"), "n_train_mrs", title="bad")


def test_serving_plotly_draws_both_ways_in_two_panels_with_computed_copies_open():
    rows = [
        {"users": n, "bank_rows_per_s": 100.0, "copies_rows_per_s": 50.0 + n,
         "bank_bytes": 2**20 * (4 + n), "copies_bytes": 2**20 * 4 * n, "copies_measured": n <= 10}
        for n in (1, 10, 100)
    ]  # fmt: skip
    fig = P.serving_plotly(rows, title="serving")
    assert len(fig.data) == 4  # (bank, copies) x (rows/s, MiB)
    copies_memory = [t for t in fig.data if t.legendgroup == "copies" and t.xaxis == "x2"][0]
    assert list(copies_memory.y) == [4.0, 40.0, 400.0]
    assert list(copies_memory.marker.symbol) == ["circle", "circle", "circle-open"]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert fig.to_json() == P.serving_plotly(rows, title="serving").to_json()  # no random ids
    with pytest.raises(ValueError, match="lack"):
        P.serving_plotly([{"users": 1}])
    with pytest.raises(ValueError, match="non-empty"):
        P.serving_plotly([])


def test_plot_rate_curves_one_panel_per_form_chosen_rate_marked():
    steps = [0, 50, 100]
    panels = {
        "direct": {0.03: pd.Series([3.0, 2.0, 1.5], index=steps),
                   0.3: pd.Series([3.0, 2.5, 2.4], index=steps)},
        "MLP": {0.003: pd.Series([3.0, 1.8, 1.4], index=steps)},
    }  # fmt: skip
    fig = P.plot_rate_curves(panels, title="t", chosen={"direct": 0.03})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    direct = fig.axes[0]
    labels = [line.get_label() for line in direct.get_lines()]
    assert labels == ["lr 0.03 (chosen)", "lr 0.3"]
    chosen_line = direct.get_lines()[0]
    assert to_hex(chosen_line.get_color()) == "#000000" and chosen_line.get_linewidth() > 2
    assert list(direct.get_lines()[1].get_xdata()) == steps
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["lr 0.003"]
    with pytest.raises(ValueError, match="rates must be positive"):
        P.plot_rate_curves({"direct": {-1.0: pd.Series([1.0])}}, title="t")
    with pytest.raises(ValueError, match="non-empty dict"):
        P.plot_rate_curves({}, title="t")


def _stability_runs():
    rows = []
    for init in ("random", "zero"):
        for arm, best in (("prefix", 0.03), ("prefix+mlp", 0.003)):
            for k, loss in ((-1, 1.5), (0, 1.2), (1, 1.4), (2, 3.0)):
                failed = loss >= 2.5
                if init == "zero" and arm == "prefix" and k == 2:
                    loss = np.nan  # a run whose loss went NaN
                rows.append({"init": init, "arm": arm, "lr": best * 3.0**k, "best_lr": best,
                             "final_val_loss": loss, "start_val_loss": 2.5,
                             "outcome": "failed" if failed else "trained"})  # fmt: skip
    return pd.DataFrame(rows)


def test_plot_stability_sweep_panels_crosses_and_relative_rates():
    fig = P.plot_stability_sweep(_stability_runs(), title="t")
    titles = [" ".join(ax.get_title(loc) for loc in ("left", "center", "right")).strip()
              for ax in fig.axes[:2]]  # fmt: skip
    assert titles == ["init=random", "init=zero"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    xs = np.concatenate([line.get_xdata() for line in ax.lines if len(line.get_xdata()) > 2])
    assert np.allclose(sorted(set(np.round(xs, 6))), [1 / 3, 1, 3, 9])  # medians at lr / best
    crosses = [c for c in ax.collections if len(c.get_offsets()) and c.get_sizes()[0] == 40]
    assert sum(len(c.get_offsets()) for c in crosses) == 2  # each form's failed run at 9x
    colours = {to_hex(line.get_color()) for line in ax.lines if len(line.get_xdata()) > 2}
    assert len(colours) == 2  # the two forms apart
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any(label.startswith("failed (ended at or above its start)") for label in labels)
    top = fig.axes[0].get_ylim()[1]
    assert top == pytest.approx(1.15 * 2.5)  # the axis ends above the start, not at 3.0
    plt.close(fig)


def test_plot_stability_sweep_is_validated():
    with pytest.raises(ValueError, match="best_lr"):
        P.plot_stability_sweep(_stability_runs().drop(columns="best_lr"), title="t")
    with pytest.raises(ValueError, match="chosen rate"):
        P.plot_stability_sweep(_stability_runs().assign(best_lr=np.nan), title="t")
