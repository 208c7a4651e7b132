"""The prefix-length lab: ipywidgets controls that retrain on the tiny model and redraw.

    lab = PrefixLengthLab(interactive_config(active_preset()))
    lab                              # the controls and the figures (last line of a cell)
    lab.set(prefix_length=20)        # the same as moving the slider (retrains once)
    lab.show_static()                # the current figures as plain outputs, saved with a notebook

A change of a control retrains with `prefixlab.runs.run_experiment` once the controls have
been still for `debounce` seconds (five quick key presses on the slider are one retrain, of
the last value), so a setting seen before comes from its disk cache at once, and then
updates together: the trainable-parameter
count and the context budget (`prefixlab.accounting`), the loss curve, the context-budget
figure and the attention heatmap (`prefixlab.hooks.attention_report`). Nothing here trains,
counts or measures by itself.

What a person (or the browser test, tests/test_browser.py) can rely on:

- controls described "prefix length" (IntSlider), "method" (Dropdown: prefix tuning / prompt
  tuning), "MLP" (Checkbox, prefix tuning only), "steps" (IntSlider) and "learning rate"
  (FloatLogSlider);
- an HTML line "trainable parameters: 20,480 (...)" and "context: P=10 uses 10 of 256
  positions (...), 246 left for tokens";
- a status line that reads "waiting…" while the controls settle, "training…" while a run is
  going, and starts with "done" (or "failed") when the views show the new setting; "done"
  names the run and the setting shown before it: "done · run 3: prefix tuning, P=45, 60 steps
  (before: prefix tuning, P=40, 60 steps) · validation loss ...";
- each figure in its own Output widget under a caption (class "prefixlab-caption") that names
  what it shows and the prefix length: "loss · ..., P=10, ...", "attention · ..., P=10",
  "context · P=10".
"""

from __future__ import annotations

import html
import math
import traceback

from prefixlab.accounting import context_budget
from prefixlab.config import RunConfig
from prefixlab.lab_settings import (
    LAB_METHODS,
    LR_RANGE,
    METHOD_CHOICES,
    STEPS_RANGE,
    attention_probe,
    fmt_lr,
    info_html,
    interactive_config,
    lab_method,
    prefix_mass_grid,
    result_text,
    run_caption,
    trainable_count,
)
from prefixlab.loading import model_dims
from prefixlab.methods import method
from prefixlab.plotting import plot_attention_heatmap, plot_context_budget, plot_loss_curves
from prefixlab.runs import base_model, run_experiment
from prefixlab.widget_output import caption_html, running_loop, series, show

# Notebook 05 imports interactive_config and trainable_count from here, beside the lab.
__all__ = ["PrefixLengthLab", "interactive_config", "trainable_count"]

# A change from the browser retrains once the controls have been still this long: long enough
# to cover a run of key presses or clicks, short enough not to feel slow.
DEBOUNCE_SECONDS = 0.6
STATUS_CLASS = "prefixlab-status"


class PrefixLengthLab:
    """Widgets for prefix length, method, MLP, steps and learning rate, wired to retraining.

    Args:
        base: the RunConfig every run starts from (default: `interactive_config()` of the
            active preset, so FAST under nbval and CI). The controls set method,
            prefix_length, steps and lr; everything else (data, batch, seed, ...) is `base`'s.
        max_prefix_length: the slider's upper end; lowered so that P plus the longest
            training row (`base.train.max_length`) fits the model's context.
        n_attention_examples: validation pairs in the attention probe.
        auto_run: train (or read from the cache) the initial setting at once.
        debounce: seconds the controls must be still before a change from the browser
            retrains (0: at once). The wait runs on the kernel's asyncio event loop; with no
            running loop (a plain script) a change retrains at once.

    Changing the method or the MLP switch moves the learning-rate slider to that method's
    default rate (`prefixlab.methods`: direct prefixes and soft prompts want
    rates about ten times those of the MLP); move it afterwards to try another.

    A change that arrives while a run trains makes that run stale: it is discarded (nothing
    drawn, `runs` unchanged) and the newer setting trains once the controls settle. The
    "(before)" curve and the status line's "before:" are always the last finished run.

    After each run: `row` and `history` (from run_experiment), `adapted` (the trained
    AdaptedModel), `figures` (name -> matplotlib Figure), `captions` (name -> text) and
    `runs` (how many finished runs the lab has shown).
    """

    def __init__(
        self,
        base: RunConfig | None = None,
        *,
        max_prefix_length: int = 64,
        n_attention_examples: int = 8,
        auto_run: bool = True,
        debounce: float = DEBOUNCE_SECONDS,
    ):
        import ipywidgets as W

        base = interactive_config() if base is None else base
        if not isinstance(base, RunConfig):
            raise ValueError(f"base must be a RunConfig, got {type(base).__name__}.")
        if base.method not in LAB_METHODS:
            base = base.with_(method="prefix")
        if isinstance(max_prefix_length, bool) or not isinstance(max_prefix_length, int):
            raise ValueError(f"max_prefix_length must be an int >= 2, got {max_prefix_length!r}.")
        if max_prefix_length < 2:
            raise ValueError(f"max_prefix_length must be an int >= 2, got {max_prefix_length!r}.")
        if not isinstance(n_attention_examples, int) or n_attention_examples < 1:
            raise ValueError(
                f"n_attention_examples must be an int >= 1, got {n_attention_examples!r}."
            )
        if (
            isinstance(debounce, bool)
            or not isinstance(debounce, (int, float))
            or not math.isfinite(debounce)
            or debounce < 0
        ):
            raise ValueError(
                f"debounce must be a number of seconds >= 0 (0 retrains at once), got {debounce!r}."
            )
        self.base = base
        self.debounce = float(debounce)
        self.model, self.tokenizer = base_model(base)  # frozen, shared with every run
        context = model_dims(self.model).n_positions
        room = context - base.train.max_length if context else max_prefix_length
        if room < 1:
            raise ValueError(
                f"The model's context ({context}) leaves no room for a prefix next to rows of "
                f"max_length={base.train.max_length}; lower max_length."
            )
        self.max_prefix_length = min(max_prefix_length, room)
        self.probe = attention_probe(self.tokenizer, base, n_attention_examples)
        self.row = self.history = self.adapted = None
        self.figures: dict = {}
        self.captions: dict = {}
        self.runs = 0  # finished runs shown so far
        self._previous = None  # (label, history, steps, caption) of the last finished run
        self._muted = False
        self._pending = None  # the asyncio TimerHandle of a retrain waiting for calm, if any
        self._generation = 0  # bumped by every change: a run of an older one is stale

        style = {"description_width": "110px"}
        layout = W.Layout(width="380px")
        self.prefix_length = W.IntSlider(
            value=min(base.prefix_length, self.max_prefix_length), min=1,
            max=self.max_prefix_length, description="prefix length", continuous_update=False,
            style=style, layout=layout,
        )  # fmt: skip
        self.method = W.Dropdown(
            options=METHOD_CHOICES, value=base.adapter_method, description="method",
            style=style, layout=layout,
        )  # fmt: skip
        self.mlp = W.Checkbox(
            value=base.method == "prefix+mlp", description="MLP", indent=False,
            layout=W.Layout(margin="2px 0 2px 114px"),
        )  # fmt: skip
        low, high, step = STEPS_RANGE
        self.steps = W.IntSlider(
            value=base.train.steps, min=min(low, base.train.steps),
            max=max(high, base.train.steps), step=step,
            description="steps", continuous_update=False, style=style, layout=layout,
        )  # fmt: skip
        self.lr = W.FloatLogSlider(
            value=base.lr, base=10, min=LR_RANGE[0], max=LR_RANGE[1], step=0.25,
            readout_format=".1e", description="learning rate", continuous_update=False,
            style=style, layout=layout,
        )  # fmt: skip
        self.info = W.HTML()
        self.status = W.HTML()
        self.status.add_class(STATUS_CLASS)
        self.progress = W.Output(layout=W.Layout(min_width="300px"))
        self.loss_out = W.Output(layout=W.Layout(min_width="460px"))
        self.attention_out = W.Output()
        self.budget_out = W.Output()
        self._controls = {
            "prefix_length": self.prefix_length,
            "method": self.method,
            "mlp": self.mlp,
            "steps": self.steps,
            "lr": self.lr,
        }
        controls = W.VBox(
            [self.prefix_length, self.method, self.mlp, self.steps, self.lr, self.info, self.status]
        )
        figures = W.VBox([W.HBox([self.loss_out, self.attention_out]), self.budget_out])
        self.widget = W.VBox([W.HBox([controls, self.progress]), figures])
        self.widget.add_class("prefixlab-lab")
        for control in self._controls.values():
            control.observe(self._on_change, names="value")
        self._sync_mlp()
        if auto_run:
            self.update()

    # -- state -----------------------------------------------------------------------------
    def config(self) -> RunConfig:
        """The RunConfig the controls describe."""
        return self.base.with_(
            method=lab_method(self.method.value, self.mlp.value),
            prefix_length=int(self.prefix_length.value),
            steps=int(self.steps.value),
            lr=float(self.lr.value),
        )

    def set(self, **values) -> None:
        """Move controls from code and retrain once (what a person does with the mouse).

        Args:
            prefix_length (int), method ("prefix", "prompt", or "prefix+mlp" for prefix with
            the MLP), mlp (bool), steps (int), lr (float). A new method or MLP setting without
            `lr` resets the learning rate to that method's default.
        Raises:
            ValueError: an unknown control or a value outside a control's range.
        """
        unknown = set(values) - set(self._controls)
        if unknown:
            raise ValueError(
                f"Unknown control(s) {sorted(unknown)}; choose from {list(self._controls)}."
            )
        values = dict(values)
        if values.get("method") == "prefix+mlp":
            values["method"], values["mlp"] = "prefix", values.get("mlp", True)
        self._check(values)
        method_changes = any(
            k in values and values[k] != self._controls[k].value for k in ("method", "mlp")
        )
        self._muted = True
        try:
            for name in ("method", "mlp", "prefix_length", "steps", "lr"):
                if name in values:
                    self._controls[name].value = values[name]
            self._sync_mlp()
            if method_changes and "lr" not in values:
                self.lr.value = method(self.config().method).default_lr
        finally:
            self._muted = False
        self._cancel_pending()
        self._generation += 1  # a retrain the browser asked for is superseded by this one
        self.update()

    def _check(self, values: dict) -> None:
        if "method" in values and values["method"] not in ("prefix", "prompt"):
            raise ValueError(
                f"method must be 'prefix', 'prompt' or 'prefix+mlp', got {values['method']!r}."
            )
        if "mlp" in values and not isinstance(values["mlp"], bool):
            raise ValueError(f"mlp must be True or False, got {values['mlp']!r}.")
        for name in ("prefix_length", "steps"):
            if name in values:
                control, value = self._controls[name], values[name]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} must be an int, got {value!r}.")
                if not control.min <= value <= control.max:
                    raise ValueError(
                        f"{name}={value} is outside the slider's range {control.min}..{control.max}."
                    )
        if "lr" in values:
            lr = values["lr"]
            low, high = 10**self.lr.min, 10**self.lr.max
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not low <= lr <= high:
                raise ValueError(f"lr must be a number in [{low:.0e}, {high:.2g}], got {lr!r}.")

    def _sync_mlp(self) -> None:
        """The MLP switch only means something for prefix tuning."""
        self.mlp.disabled = self.method.value != "prefix"

    def _on_change(self, change) -> None:
        """A control moved in the browser: retrain once the controls are still (debounce)."""
        if self._muted:
            return
        if change["owner"] in (self.method, self.mlp):
            self._muted = True
            try:
                self._sync_mlp()
                self.lr.value = method(self.config().method).default_lr
            finally:
                self._muted = False
        self._generation += 1  # a run still training is now stale
        self._cancel_pending()  # the timer restarts on every change
        loop = running_loop()
        if loop is None or self.debounce == 0:
            self._retrain()  # nothing to wait on: no event loop (a script), or no debounce
            return
        config = self.config()
        self.status.value = (
            f"<b>waiting…</b> {html.escape(run_caption(config))}, lr {fmt_lr(config.lr)} "
            f"(trains when the controls are still for {self.debounce:g} s)"
        )
        # call_later runs the retrain on the kernel's own thread, between two messages: no
        # cell is executing then, so it writes the Output widgets' state directly (_show).
        self._pending = loop.call_later(self.debounce, self._retrain)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _retrain(self) -> None:
        """The debounced retrain; errors go to the status line (a callback's traceback would
        land in no cell)."""
        self._pending = None
        try:
            self._update(progress=False)  # a progress bar needs a cell to display in
        except Exception as err:
            self._failed(err)

    # -- the work ----------------------------------------------------------------------------
    def describe(self) -> str:
        """The info text of the current settings: trainable parameters and context budget."""
        return info_html(self.model, self.config())

    def summary(self) -> str:
        """One plain-text paragraph: the setting shown, its accounting and its results."""
        config = self.config()
        text = html.unescape(self.describe().replace("<br>", "\n"))
        lines = [f"{run_caption(config)}, lr {fmt_lr(config.lr)}", text]
        if self.row is not None:
            lines.append(result_text(self.row))
        return "\n".join(lines)

    def update(self) -> None:
        """Retrain the current setting (or read it from the cache) and redraw every view."""
        self._update(progress=True)

    def _update(self, progress: bool) -> None:
        generation = self._generation
        config = self.config()
        caption = run_caption(config)
        self.status.value = f"<b>training…</b> {html.escape(caption)}, lr {fmt_lr(config.lr)}"
        self.progress.outputs = ()
        try:
            if progress:
                with self.progress:  # run_experiment's progress bar shows here
                    row, history, adapted = run_experiment(config)
            else:
                row, history, adapted = run_experiment(config, progress=False)
        except BaseException:
            self.status.value = f"<b>stopped</b> {html.escape(caption)}"
            raise
        if generation != self._generation:
            # The controls changed while this run trained (the kernel handled their message
            # during it): it shows a setting nobody is looking at any more. Draw nothing and
            # keep "before" as it is; the newer setting's retrain is already scheduled.
            self.progress.outputs = ()
            return
        P = config.prefix_length
        label = f"{config.method}: P={P}, lr {config.lr:.2g}"
        if self._previous is not None and self._previous[2] != config.train.steps:
            label += f", {config.train.steps} steps"
        curves = {label: series(history.step, history.loss)}
        val = {label: (history.val_step, history.val_loss)}
        if self._previous is not None and self._previous[0] != label:
            before, old, _, _ = self._previous  # drawn second: a method's second curve is dashed
            curves[f"{before} (before)"] = series(old.step, old.loss)
        figures, captions = self._figures(config, caption, curves, val, adapted)
        before = self._previous[3] if self._previous is not None else "none"
        self.row, self.history, self.adapted = row, history, adapted
        self._previous = (label, history, config.train.steps, caption)
        self.runs += 1
        self.figures, self.captions = figures, captions
        self.info.value = self.describe()
        for name, out in (
            ("loss", self.loss_out),
            ("attention", self.attention_out),
            ("context", self.budget_out),
        ):
            show(out, captions[name], figures[name])
        self.progress.outputs = ()
        self.status.value = (
            f"<b>done</b> · run {self.runs}: {html.escape(caption)} "
            f"(before: {html.escape(before)}) · {html.escape(result_text(row))}"
        )

    def _figures(self, config, caption, curves, val, adapted):
        P = config.prefix_length
        what = "soft prompt" if config.method == "prompt" else "prefix"
        mass = prefix_mass_grid(adapted, self.probe)
        figures = {
            "loss": plot_loss_curves(curves, val=val, smooth=0.6, title=f"Training loss, P={P}"),
            "attention": plot_attention_heatmap(
                mass,
                vmax=1.0,
                title=f"Attention on the {what}, P={P}",
                colorbar_label=f"attention mass on the {what}",
            ),  # fmt: skip
            "context": plot_context_budget(
                context_budget(self.model, P), title=f"Context budget, P={P}"
            ),
        }
        captions = {
            "loss": f"loss · {caption}, lr {fmt_lr(config.lr)}",
            "attention": f"attention · {method(config.method).short_label}, P={P}",
            "context": f"context · P={P}",
        }
        return figures, captions

    def _failed(self, err: BaseException) -> None:
        self.status.value = (
            f"<b>failed</b>: {html.escape(type(err).__name__)}: {html.escape(str(err))}"
        )
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        self.progress.outputs = ({"output_type": "stream", "name": "stderr", "text": text},)

    # -- showing ----------------------------------------------------------------------------
    def show_static(self) -> None:
        """Display the current accounting, captions and figures as plain cell outputs.

        Unlike the widgets, these are saved with the notebook, so a reader without a live
        kernel (GitHub, nbviewer, a PDF) sees the setting too.
        """
        from IPython.display import HTML, display

        if not self.figures:
            raise ValueError("Nothing trained yet: call lab.update() (or lab.set(...)) first.")
        display(HTML(f"<div>{self.describe()}</div>"))
        for name in ("loss", "attention", "context"):
            display(HTML(caption_html(self.captions[name])))
            display(self.figures[name])

    def _repr_mimebundle_(self, **kwargs):
        data = {"text/plain": f"PrefixLengthLab\n{self.summary()}\n(the controls need a live "
                              "Jupyter kernel)"}  # fmt: skip
        data["application/vnd.jupyter.widget-view+json"] = {
            "version_major": 2,
            "version_minor": 0,
            "model_id": self.widget.model_id,
        }
        return data
