"""prefixlab.widgets: the prefix-length lab's accounting text, controls, retraining and views.

The accounting is checked on the random fixture models (GPT-2 and Llama style); the lab itself
trains on the embedded tiny model with a micro config (a few steps, seconds in all) and a
fresh cache folder, and is skipped when the tiny model is missing.
"""

from __future__ import annotations

import asyncio
import re

import matplotlib
import pytest

pytest.importorskip("ipywidgets")

from prefixlab import lab_settings, widgets  # noqa: E402
from prefixlab.accounting import context_budget, parameter_counts  # noqa: E402
from prefixlab.config import CPU, DEFAULT_LR, FAST  # noqa: E402
from prefixlab.prefix import PrefixTuning  # noqa: E402
from prefixlab.prompt import PromptTuning  # noqa: E402

matplotlib.use("Agg")

# What the browser test reads (tests/browser/checks.py: parse_count, PrefixLabCheck).
COUNT_RE = re.compile(r"trainable parameters:\s*([0-9][0-9,]*)")
P_RE = re.compile(r"\bP\s*=\s*(\d+)")

MICRO = FAST.with_(
    steps=3, batch_size=2, n_train_mrs=4, n_val_mrs=2, eval_mrs=1, max_new_tokens=4,
    eval_every=None, eval_batches=1,
)  # fmt: skip


def shown_count(text: str) -> int:
    return int(COUNT_RE.search(text).group(1).replace(",", ""))


def tiny_available() -> bool:
    try:
        from prefixlab.paths import tiny_model_dir

        return (tiny_model_dir() / "model.safetensors").is_file()
    except (FileNotFoundError, ImportError):
        return False


needs_tiny = pytest.mark.skipif(not tiny_available(), reason="the embedded tiny model is missing")


# ------------------------------------------------------------------------ pure helpers


def test_lab_method():
    assert widgets.lab_method("prefix", True) == "prefix+mlp"
    assert widgets.lab_method("prefix", False) == "prefix"
    assert widgets.lab_method("prompt", True) == "prompt"  # the MLP is a prefix-only option
    with pytest.raises(ValueError, match="'prefix' or 'prompt'"):
        widgets.lab_method("lora", False)


def test_interactive_config_caps_the_cpu_preset_and_keeps_fast():
    light = widgets.interactive_config(CPU)
    assert light.train.steps == lab_settings.INTERACTIVE_STEPS < CPU.train.steps
    assert light.eval_mrs == lab_settings.INTERACTIVE_EVAL_MRS
    assert light.train.batch_size == CPU.train.batch_size and light.data == CPU.data
    assert widgets.interactive_config(FAST) == FAST
    assert light.train.eval_every is None  # 50 does not fit twice into 60 steps: end only
    short = widgets.interactive_config(FAST.with_(steps=20, eval_every=5))
    assert short.train.eval_every == 5
    with pytest.raises(ValueError, match="RunConfig"):
        widgets.interactive_config({"steps": 3})


@pytest.mark.parametrize("method", ["prefix", "prefix+mlp", "prompt"])
def test_info_html_counts_what_the_adapter_trains(tiny_model, method):
    config = FAST.with_(method=method, prefix_length=7, mlp_hidden=16)
    if method == "prompt":
        adapter = PromptTuning(tiny_model, 7)
    else:
        adapter = PrefixTuning(tiny_model, 7, reparam=config.reparam, mlp_hidden=16)
    text = widgets.info_html(tiny_model, config)
    assert shown_count(text) == sum(p.numel() for p in adapter.parameters())
    assert shown_count(text) == lab_settings.trainable_count(tiny_model, config)
    budget = context_budget(tiny_model, 7)
    context = text.split("<br>")[1]
    assert context.startswith("context: P=7 uses 7 of")
    assert f"{budget['left_for_tokens']} left for tokens" in context
    kept = "kept after training" in text
    assert kept == (method == "prefix+mlp")  # the MLP is thrown away after training


def test_info_html_follows_the_mlp_width(tiny_model):
    narrow = widgets.info_html(tiny_model, FAST.with_(method="prefix+mlp", mlp_hidden=8))
    wide = widgets.info_html(tiny_model, FAST.with_(method="prefix+mlp", mlp_hidden=16))
    rows = {r["method"]: r for r in parameter_counts(tiny_model, 10, mlp_hidden=16)}
    assert shown_count(wide) == rows["prefix+mlp"]["trainable"] > shown_count(narrow)


# ------------------------------------------------------------------------ the lab


@pytest.fixture
def lab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def lab(lab_cache):
    if not tiny_available():
        pytest.skip("the embedded tiny model is missing")
    return widgets.PrefixLengthLab(MICRO, n_attention_examples=3)


def captions_name(lab, P: int) -> bool:
    return all(P_RE.findall(c) == [str(P)] for c in lab.captions.values())


@needs_tiny
def test_controls_carry_the_labels_the_browser_test_finds(lab):
    import ipywidgets as W

    wanted = {
        "prefix length": W.IntSlider,
        "method": W.Dropdown,
        "MLP": W.Checkbox,
        "steps": W.IntSlider,
        "learning rate": W.FloatLogSlider,
    }
    found = {c.description: type(c) for c in lab._controls.values()}
    assert found == wanted
    assert [label for label, _ in lab.method.options] == ["prefix tuning", "prompt tuning"]
    assert widgets.STATUS_CLASS in lab.status._dom_classes


@needs_tiny
def test_first_run_shows_every_view_for_the_initial_setting(lab):
    assert lab.status.value.startswith("<b>done</b>")
    assert shown_count(lab.info.value) == 10 * 4 * 2 * 128  # P x layers x 2 x kv_dim
    assert set(lab.figures) == {"loss", "attention", "context"}
    assert all(isinstance(f, matplotlib.figure.Figure) for f in lab.figures.values())
    assert captions_name(lab, 10)
    assert lab.captions["loss"].startswith("loss · ")
    assert lab.captions["context"] == "context · P=10"
    assert lab.row["steps_done"] == MICRO.train.steps and lab.row["cached"] is False
    assert lab.config() == MICRO.with_(method="prefix", lr=DEFAULT_LR["prefix"])
    heatmap = lab.figures["attention"].axes[0].images[0].get_array()
    assert heatmap.shape == (4, 4)  # layers x heads of the tiny model
    assert ((heatmap >= 0) & (heatmap <= 1)).all()


@needs_tiny
def test_moving_the_slider_retrains_and_a_setting_seen_before_comes_from_the_cache(lab):
    lab.prefix_length.value = 12  # what the browser does
    assert captions_name(lab, 12)
    assert "context: P=12 uses 12 of 256 positions" in lab.info.value
    assert shown_count(lab.info.value) == 12 * 4 * 2 * 128
    assert lab.row["cached"] is False and lab.row["prefix_length"] == 12
    assert lab.adapted.prefix_length == 12
    lab.prefix_length.value = 10
    assert lab.row["cached"] is True and "from the cache" in lab.status.value
    assert captions_name(lab, 10)


@needs_tiny
def test_the_mlp_switch_changes_the_count_as_the_accounting_says(lab):
    before = shown_count(lab.info.value)
    lab.mlp.value = True
    after = shown_count(lab.info.value)
    rows = {r["method"]: r["trainable"] for r in parameter_counts(lab.model, 10)}
    assert after - before == rows["prefix+mlp"] - rows["prefix"] != 0
    assert lab.config().method == "prefix+mlp"
    assert lab.lr.value == pytest.approx(DEFAULT_LR["prefix+mlp"])  # the MLP's own rate
    assert lab.row["trainable_params"] == after


@needs_tiny
def test_prompt_tuning_disables_the_mlp_switch(lab):
    lab.method.value = "prompt"
    assert lab.mlp.disabled and lab.config().method == "prompt"
    assert shown_count(lab.info.value) == 10 * 128  # P x d_model
    assert lab.captions["attention"].startswith("attention · prompt tuning")
    lab.method.value = "prefix"
    assert not lab.mlp.disabled


@needs_tiny
def test_set_moves_several_controls_and_retrains_once(lab, monkeypatch):
    calls = []
    real = widgets.run_experiment

    def counting(config, **kwargs):
        calls.append((config, lab.status.value))  # what the status says while it trains
        return real(config, **kwargs)

    monkeypatch.setattr(widgets, "run_experiment", counting)
    lab.set(prefix_length=5, method="prefix+mlp", steps=4)
    assert len(calls) == 1
    config, status = calls[0]
    assert status.startswith("<b>training…</b>") and "P=5" in status
    assert (config.method, config.prefix_length, config.train.steps) == ("prefix+mlp", 5, 4)
    assert config.lr == pytest.approx(DEFAULT_LR["prefix+mlp"])
    assert lab.mlp.value is True and lab.steps.value == 4
    lab.set(lr=0.01)
    assert lab.config().lr == pytest.approx(0.01) and lab.config().method == "prefix+mlp"


@needs_tiny
def test_set_rejects_what_the_controls_cannot_show(lab):
    with pytest.raises(ValueError, match="Unknown control"):
        lab.set(prefix_lenght=3)
    with pytest.raises(ValueError, match="outside the slider's range"):
        lab.set(prefix_length=lab.prefix_length.max + 1)
    with pytest.raises(ValueError, match="method must be"):
        lab.set(method="lora")
    with pytest.raises(ValueError, match="lr must be"):
        lab.set(lr=3.0)
    assert lab.config().prefix_length == 10  # nothing moved


@needs_tiny
def test_a_failing_run_shows_in_the_status_line(lab, monkeypatch):
    def broken(config, **kwargs):
        raise ValueError("no room for this prefix")

    monkeypatch.setattr(widgets, "run_experiment", broken)
    lab.prefix_length.value = 11  # a callback: must not raise into the widget machinery
    assert lab.status.value.startswith("<b>failed</b>")
    assert "no room for this prefix" in lab.status.value
    (traceback,) = lab.progress.outputs  # the traceback, under the controls
    assert traceback["name"] == "stderr" and "no room for this prefix" in traceback["text"]
    with pytest.raises(ValueError, match="no room"):
        lab.set(prefix_length=12)  # from code it raises


@needs_tiny
def test_slider_end_leaves_room_for_the_longest_row(lab_cache):
    lab = widgets.PrefixLengthLab(MICRO.with_(max_length=240), auto_run=False)
    assert lab.max_prefix_length == lab.prefix_length.max == 256 - 240
    assert lab.row is None and lab.figures == {}
    with pytest.raises(ValueError, match="Nothing trained yet"):
        lab.show_static()


@needs_tiny
def test_repr_carries_the_widget_and_a_text_fallback(lab):
    bundle = lab._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == lab.widget.model_id
    text = bundle["text/plain"]
    assert "trainable parameters: 10,240" in text and "P=10" in text
    assert "validation loss" in text


@needs_tiny
def test_debounce_must_be_seconds_at_least_zero(lab_cache):
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="debounce must be a number of seconds >= 0"):
            widgets.PrefixLengthLab(MICRO, auto_run=False, debounce=bad)


# ------------------------------------------------------------------------ debounced retraining


class ManualLoop:
    """Stands in for the kernel's asyncio loop: `call_later` callbacks run when the test moves
    the clock with `advance`, so the timing is exact whatever the machine's load."""

    class Handle:
        def __init__(self, when, callback):
            self.when, self.callback, self.cancelled = when, callback, False

        def cancel(self):
            self.cancelled = True

    def __init__(self):
        self.now = 0.0
        self.handles = []

    def call_later(self, delay, callback):
        handle = self.Handle(self.now + delay, callback)
        self.handles.append(handle)
        return handle

    def waiting(self) -> int:
        return sum(not h.cancelled for h in self.handles)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [h for h in self.handles if not h.cancelled and h.when <= self.now]
            if not due:
                return
            handle = min(due, key=lambda h: h.when)
            self.handles.remove(handle)
            handle.callback()  # may schedule new handles


@pytest.fixture
def trained(lab, monkeypatch):
    """The prefix lengths run_experiment is asked to train, in order (it still trains)."""

    calls, real = [], widgets.run_experiment

    def counting(config, **kwargs):
        calls.append(config.prefix_length)
        return real(config, **kwargs)

    monkeypatch.setattr(widgets, "run_experiment", counting)
    return calls


@pytest.fixture
def manual_loop(monkeypatch):
    loop = ManualLoop()
    monkeypatch.setattr(widgets, "running_loop", lambda: loop)
    return loop


def before_curves(lab) -> list[str]:
    labels = [t.get_text() for t in lab.figures["loss"].axes[0].get_legend().get_texts()]
    return [label for label in labels if "(before)" in label]


@needs_tiny
def test_rapid_changes_retrain_once_with_the_last_value(lab, trained, manual_loop):
    assert lab.runs == 1 and lab.debounce == widgets.DEBOUNCE_SECONDS
    for P in (11, 12, 13, 14, 15):  # five key presses, each well within the debounce
        lab.prefix_length.value = P
        manual_loop.advance(lab.debounce * 0.9)  # the timer restarts on every change
    assert trained == [] and manual_loop.waiting() == 1
    assert lab.status.value.startswith("<b>waiting…</b>") and "P=15" in lab.status.value
    manual_loop.advance(lab.debounce * 0.2)
    assert trained == [15] and lab.runs == 2
    assert lab.row["prefix_length"] == 15 and captions_name(lab, 15)
    assert "run 2: prefix tuning, P=15" in lab.status.value
    assert "(before: prefix tuning, P=10," in lab.status.value  # the last finished setting
    assert [P_RE.findall(c) for c in before_curves(lab)] == [["10"]]
    for out in (lab.loss_out, lab.attention_out, lab.budget_out):  # what the browser shows
        caption, figure = out.outputs
        assert P_RE.findall(caption["data"]["text/html"]) == ["15"]
        assert "Figure" in figure["data"]["text/plain"]
    manual_loop.advance(10 * lab.debounce)
    assert trained == [15]  # nothing else was waiting


@needs_tiny
def test_a_change_during_a_run_discards_it_and_before_stays_the_last_finished(
    lab, trained, manual_loop, monkeypatch
):

    counting = widgets.run_experiment

    def moved_while_training(config, **kwargs):
        result = counting(config, **kwargs)
        if config.prefix_length == 12:
            lab.prefix_length.value = 13  # the kernel handles the next key press meanwhile
        return result

    monkeypatch.setattr(widgets, "run_experiment", moved_while_training)
    lab.prefix_length.value = 12
    manual_loop.advance(lab.debounce)
    assert trained == [12]
    assert lab.runs == 1 and lab.row["prefix_length"] == 10  # P=12 was stale: not shown
    assert lab.status.value.startswith("<b>waiting…</b>") and "P=13" in lab.status.value
    manual_loop.advance(lab.debounce)
    assert trained == [12, 13] and lab.runs == 2 and captions_name(lab, 13)
    assert "(before: prefix tuning, P=10," in lab.status.value
    assert [P_RE.findall(c) for c in before_curves(lab)] == [["10"]]


@needs_tiny
def test_set_from_code_cancels_a_pending_retrain_and_trains_once_at_once(lab, trained, manual_loop):
    lab.prefix_length.value = 12  # from the browser: waits
    assert trained == [] and manual_loop.waiting() == 1
    lab.set(prefix_length=20)  # from code: trains now, and the browser's change is dropped
    assert trained == [20] and manual_loop.waiting() == 0
    assert lab.row["prefix_length"] == 20 and lab.status.value.startswith("<b>done</b> · run 2")
    manual_loop.advance(10 * lab.debounce)
    assert trained == [20]


@needs_tiny
def test_debounce_runs_on_a_real_asyncio_loop(lab, trained):
    """As in the kernel: the changes arrive as callbacks on a running loop, the retrain is a
    call_later on it."""
    lab.debounce = 0.2

    async def presses():
        for P in (11, 12, 13):
            lab.prefix_length.value = P
            await asyncio.sleep(0)  # the next message, at once
        assert trained == []
        for _ in range(100):  # bounded: at most 100 x 0.1 s
            await asyncio.sleep(0.1)
            if lab.runs == 2:
                break

    asyncio.run(presses())
    assert trained == [13] and lab.runs == 2 and captions_name(lab, 13)
