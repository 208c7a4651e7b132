"""Training: reproducible, loss goes down, NaN and Ctrl-C stop cleanly; History."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import char_tokenizer

from prefixlab.adapted import AdaptedModel
from prefixlab.batching import encode_for_training
from prefixlab.config import TrainConfig
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning
from prefixlab.train import History, progress_enabled, train

PAIRS = [(f"name[N{i}]", "a good pub.") for i in range(8)]
QUICK = TrainConfig(steps=8, batch_size=4, lr=0.1, eval_every=4, warmup_ratio=0.25)


@pytest.fixture(scope="module")
def encoded():
    return encode_for_training(char_tokenizer(), PAIRS, 40)


def adapted_for(model, method, seed=0):
    adapter = PrefixTuning(model, 3, seed=seed) if method == "prefix" else PromptTuning(model, 3)
    return AdaptedModel(model, adapter)


def comparable(history: History) -> dict:
    """Everything in a History except wall time."""
    data = history.to_dict()
    data.pop("time")
    return data


# -- reproducibility and learning ------------------------------------------------------------


def test_same_seed_same_history(tiny_model, method, encoded):
    first = train(adapted_for(tiny_model, method), encoded, QUICK, val_data=encoded, progress=False)
    again = train(adapted_for(tiny_model, method), encoded, QUICK, val_data=encoded, progress=False)
    assert comparable(first) == comparable(again)
    assert first.step == list(range(1, 9)) and first.val_step == [0, 4, 8]
    other = train(
        adapted_for(tiny_model, method), encoded, QUICK.with_(seed=1), val_data=encoded,
        progress=False,
    )  # fmt: skip
    assert other.loss != first.loss  # another batch order


def test_loss_decreases(tiny_model, method, encoded):
    history = train(
        adapted_for(tiny_model, method), encoded, QUICK.with_(steps=12, lr=0.3), val_data=encoded,
        progress=False,
    )  # fmt: skip
    assert history.stopped_reason == "completed"
    assert history.val_loss[-1] < history.val_loss[0]


def test_history_records_schedule_and_raw_grad_norm(tiny_model, encoded):
    config = QUICK.with_(schedule="cosine", clip_grad_norm=1e-4)
    history = train(adapted_for(tiny_model, "prefix"), encoded, config, progress=False)
    assert history.lr == [config.lr_at(s) for s in history.step]
    unclipped = train(
        adapted_for(tiny_model, "prefix"), encoded, config.with_(clip_grad_norm=None),
        progress=False,
    )  # fmt: skip
    # the norm is recorded before clipping: step 1 sees the same gradient either way
    assert history.grad_norm[0] == pytest.approx(unclipped.grad_norm[0])
    assert history.grad_norm[0] > 1e-4
    assert all(t2 >= t1 for t1, t2 in zip(history.time, history.time[1:], strict=False))


def test_train_accepts_pairs_with_a_tokenizer(tiny_model):
    history = train(
        adapted_for(tiny_model, "prompt"), PAIRS, QUICK.with_(steps=2, eval_every=None),
        tokenizer=char_tokenizer(), val_data=PAIRS, progress=False,
    )  # fmt: skip
    assert len(history) == 2 and history.val_step == [2]


# -- stopping --------------------------------------------------------------------------------


class LossGoesNaN(AdaptedModel):
    """Returns a NaN loss on forward call number `at` (1-based), else the real loss."""

    def __init__(self, model, adapter, at):
        super().__init__(model, adapter)
        self.at, self.calls = at, 0

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        if self.training_call():
            out.loss = out.loss * float("nan")
        return out

    def training_call(self):
        if not torch.is_grad_enabled():  # validation runs under no_grad
            return False
        self.calls += 1
        return self.calls == self.at


def test_nan_stops_and_keeps_last_finite_state(tiny_model, encoded):
    adapted = LossGoesNaN(tiny_model, PrefixTuning(tiny_model, 3), at=5)
    states = []
    with pytest.warns(RuntimeWarning, match="learning rate"):
        history = train(
            adapted, encoded, QUICK.with_(eval_every=2), val_data=encoded, progress=False,
            callback=lambda h: states.append(adapted.adapter.weight.detach().clone()),
        )  # fmt: skip
    assert history.stopped_reason == "nan"
    assert "step 5" in history.message
    assert history.step == [1, 2, 3, 4]
    weight = adapted.adapter.weight
    assert torch.isfinite(weight).all()
    # restored to the parameters that gave the last finite loss: those before update 4
    torch.testing.assert_close(weight, states[2])
    assert history.val_step[-1] == 4  # validated again on the restored parameters
    assert all(math.isfinite(v) for v in history.loss + history.val_loss)


class InterruptAt(AdaptedModel):
    """Raises KeyboardInterrupt (as Ctrl-C does) on training forward call number `at`."""

    def __init__(self, model, adapter, at):
        super().__init__(model, adapter)
        self.at, self.calls = at, 0

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return super().forward(*args, **kwargs)


def test_interrupt_returns_partial_history(tiny_model, method, encoded):
    adapter = PrefixTuning(tiny_model, 3) if method == "prefix" else PromptTuning(tiny_model, 3)
    adapted = InterruptAt(tiny_model, adapter, at=4)
    history = train(adapted, encoded, QUICK, val_data=encoded, progress=False)
    assert history.stopped_reason == "interrupted"
    assert history.step == [1, 2, 3]
    assert "after step 3" in history.message
    assert history.to_frame()["step"].max() == 3


def test_interrupt_from_callback_and_stop_by_callback(tiny_model, encoded):
    def interrupt(history):
        if len(history) == 2:
            raise KeyboardInterrupt

    history = train(adapted_for(tiny_model, "prompt"), encoded, QUICK, callback=interrupt,
                    progress=False)  # fmt: skip
    assert (history.stopped_reason, len(history)) == ("interrupted", 2)
    history = train(adapted_for(tiny_model, "prompt"), encoded, QUICK,
                    callback=lambda h: len(h) == 3, progress=False)  # fmt: skip
    assert (history.stopped_reason, len(history)) == ("stopped", 3)


def test_train_refuses_bad_calls(tiny_model, encoded):
    with pytest.raises(ValueError, match="Nothing to train"):
        train(AdaptedModel(tiny_model), encoded, QUICK, progress=False)
    prefix = adapted_for(tiny_model, "prefix")
    with pytest.raises(ValueError, match="without \\['labels'\\]"):
        train(prefix, {k: encoded[k] for k in ("input_ids", "attention_mask")}, QUICK)
    with pytest.raises(ValueError, match="pass tokenizer="):
        train(prefix, PAIRS, QUICK)
    with pytest.raises(ValueError, match="TrainConfig or RunConfig"):
        train(prefix, encoded, {"steps": 3})
    with pytest.raises(ValueError, match="callback must be callable"):
        train(prefix, encoded, QUICK, callback=3)
    with pytest.raises(ValueError, match="progress must be True or False"):
        train(prefix, encoded, QUICK, progress="off")


# -- History and stability measures ----------------------------------------------------------


def test_history_frame_and_json_roundtrip(tiny_model, encoded):
    history = train(adapted_for(tiny_model, "prefix"), encoded, QUICK, val_data=encoded,
                    progress=False)  # fmt: skip
    frame = history.to_frame()
    assert list(frame.columns) == ["step", "loss", "grad_norm", "lr", "time", "val_loss"]
    assert frame["step"].tolist() == list(range(0, 9))
    assert frame["val_loss"].notna().sum() == 3
    again = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again == history


def test_progress_can_be_switched_off_by_environment(monkeypatch):
    assert progress_enabled(True)
    assert not progress_enabled(False)
    monkeypatch.setenv("PREFIXLAB_PROGRESS", "0")
    assert not progress_enabled(True)
