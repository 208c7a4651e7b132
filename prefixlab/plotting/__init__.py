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

The modules, one family of figures each:

- theme.py        colours per method (METHOD_COLORS), STYLE_RC and `style()`, figure scaffolding
- checks.py       input checks shared by every plot function
- curves.py       loss curves, gradient norms, mean and spread over seeds, curves per rate
- sweeps.py       a final metric against learning rate, prefix length, model size or
                  training-set size (with intervals), and the spread over seeds
- bars.py         a metric per method, trainable-parameter counts, context budget
- heatmaps.py     attention mass per layer and head, or per token (matplotlib)
- interactive.py  the plotly figures and `setup_notebook()`
"""

from .bars import plot_context_budget, plot_metric_bars, plot_parameter_counts
from .curves import plot_grad_norms, plot_loss_curves, plot_rate_curves, plot_seed_bands
from .heatmaps import (
    MAX_TICK_LABELS,
    MAX_TOKEN_LABELS,
    plot_attention_grid,
    plot_attention_heatmap,
    plot_token_attention,
)
from .interactive import (
    attention_grid_plotly,
    attention_heatmap_plotly,
    loss_curves_plotly,
    serving_plotly,
    setup_notebook,
)
from .sweeps import (
    plot_along_axis,
    plot_estimates,
    plot_length_sweep,
    plot_lr_sweep,
    plot_scale_axis,
    plot_seed_spread,
    plot_stability_sweep,
)
from .theme import (
    EXTRA_COLORS,
    HEATMAP_CMAP,
    MASS_LABEL,
    METHOD_COLORS,
    METHOD_LABELS,
    NEUTRAL_COLOR,
    STYLE_RC,
    method_color,
    method_label,
    metric_label,
    style,
)

__all__ = [
    "EXTRA_COLORS",
    "HEATMAP_CMAP",
    "MASS_LABEL",
    "MAX_TICK_LABELS",
    "MAX_TOKEN_LABELS",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "NEUTRAL_COLOR",
    "STYLE_RC",
    "attention_grid_plotly",
    "attention_heatmap_plotly",
    "loss_curves_plotly",
    "serving_plotly",
    "method_color",
    "method_label",
    "metric_label",
    "plot_along_axis",
    "plot_attention_grid",
    "plot_attention_heatmap",
    "plot_context_budget",
    "plot_grad_norms",
    "plot_length_sweep",
    "plot_loss_curves",
    "plot_lr_sweep",
    "plot_stability_sweep",
    "plot_scale_axis",
    "plot_estimates",
    "plot_metric_bars",
    "plot_parameter_counts",
    "plot_rate_curves",
    "plot_seed_bands",
    "plot_seed_spread",
    "plot_token_attention",
    "setup_notebook",
    "style",
]
