"""Training: reproducible, loss goes down, NaN and Ctrl-C stop cleanly; configs; grids and cache."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pytest
import torch
from tiny_models import char_tokenizer

from prefixlab.adapted import AdaptedModel
from prefixlab.batching import encode_for_training
from prefixlab.config import (
    CPU,
    DEFAULT_LR,
    FAST,
    GPU,
    RunConfig,
    TrainConfig,
    active_preset,
    preset,
)
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning
from prefixlab.train import (
    History,
    canonical,
    count_spikes,
    final_loss,
    final_loss_spread,
    grid_configs,
    loss_matrix,
    run_experiment,
    run_grid,
    seed_spread,
    stability_summary,
    train,
)

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


def test_count_spikes_known_answers():
    flat = [1.0] * 30
    assert count_spikes(flat) == 0
    assert count_spikes(flat[:25] + [2.0] + flat[:10]) == 1
    assert count_spikes(flat[:25] + [2.0, 2.5, 2.0] + flat[:10]) == 1  # one episode
    assert count_spikes(flat[:25] + [2.0] + flat[:5] + [3.0] + flat[:5]) == 2
    assert count_spikes(flat[:25] + [1.4] + flat[:5]) == 0  # below 1.5x the median
    assert count_spikes([3.0] + flat[:5], window=5) == 0  # the first window never spikes
    assert count_spikes([5.0 - 0.1 * i for i in range(40)]) == 0
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        count_spikes(flat, factor=1.0)


def _history(losses, val=None):
    return History(step=list(range(1, len(losses) + 1)), loss=list(losses),
                   val_step=[len(losses)] if val is not None else [],
                   val_loss=[val] if val is not None else [])  # fmt: skip


def test_seed_spread_and_final_spread_known_answers():
    runs = [_history([1.0, 2.0, 3.0], val=1.0), _history([3.0, 2.0], val=2.0)]
    spread = seed_spread(runs)
    assert spread["std"].tolist()[:2] == pytest.approx([math.sqrt(2), 0.0])
    assert math.isnan(spread["std"].iloc[2]) and spread["n"].tolist() == [2, 2, 1]
    assert spread["mean"].tolist() == pytest.approx([2.0, 2.0, 3.0])
    steps, values = loss_matrix(runs)
    assert steps.tolist() == [1, 2, 3] and values.shape == (2, 3) and math.isnan(values[1, 2])
    final = final_loss_spread(runs)
    assert final["n"] == 2 and final["mean"] == pytest.approx(1.5)
    assert final["std"] == pytest.approx(math.sqrt(0.5)) and final["range"] == pytest.approx(1.0)
    assert final_loss(_history([4.0] * 10 + [2.0] * 10), which="train", window=10) == 2.0
    with pytest.raises(ValueError, match="which must be"):
        final_loss(runs[0], which="best")
    with pytest.raises(ValueError, match="History objects"):
        seed_spread([])


# -- configs ---------------------------------------------------------------------------------


def test_presets_and_overrides(monkeypatch):
    assert preset("FAST") is FAST and preset("cpu") is CPU and preset("gpu") is GPU
    assert FAST.train.steps < CPU.train.steps < GPU.train.steps
    monkeypatch.setenv("PREFIXLAB_PRESET", "cpu")
    assert active_preset() is CPU
    monkeypatch.setenv("PREFIXLAB_PRESET", "turbo")
    with pytest.raises(ValueError, match="PREFIXLAB_PRESET"):
        active_preset()
    config = FAST.with_(method="prefix+mlp", steps=5, prefix_length=4)
    assert (config.train.steps, config.prefix_length, config.reparam) == (5, 4, "mlp")
    assert config.lr == DEFAULT_LR["prefix+mlp"] and config.resolved().train.lr == config.lr
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_lr_schedule():
    config = TrainConfig(steps=11, lr=1.0, warmup_steps=2, schedule="linear")
    assert [config.lr_at(s) for s in (1, 2, 3, 11)] == pytest.approx([0.5, 1.0, 1.0, 0.0])
    assert config.lr_at(7) == pytest.approx(0.5)
    cosine = config.with_(schedule="cosine", min_lr_ratio=0.2)
    assert cosine.lr_at(7) == pytest.approx(0.6) and cosine.lr_at(11) == pytest.approx(0.2)
    assert config.with_(schedule="constant").lr_at(11) == 1.0
    assert TrainConfig(steps=100).n_warmup == 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"batch_size": 2.0}, "batch_size must be an int"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"schedule": "cosin"}, "Did you mean 'cosine'"),
        ({"steps": 10, "warmup_steps": 10}, "warmup_steps < steps"),
        ({"warmup_ratio": 1.0}, "warmup_ratio must be in"),
        ({"clip_grad_norm": 0}, "None to switch clipping off"),
        ({"eval_every": 0}, "eval_every must be an int >= 1 or None"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"min_lr_ratio": 2}, "min_lr_ratio must be in"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"max_length": 4}, "max_length must be an int >= 8"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "prefix-mlp"}, "method='prefix\\+mlp'"),
        ({"method": "prompt", "init": "zero"}, "init \\(for method='prompt'\\)"),
        ({"init": "text"}, "needs init_text"),
        ({"prefix_length": 0}, "prefix_length must be an int >= 1"),
        ({"lora_rank": 0}, "lora_rank must be"),
        ({"eval_split": "dev"}, "eval_split must be one of"),
        ({"num_beams": 0}, "num_beams must be"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"n_train_mrs": 0}, "n_train_mrs must be an int >= 1 or None"),
        ({"train": {"steps": 3}}, "train must be a TrainConfig"),
    ],
)
def test_run_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)


def test_unknown_override_names_the_close_field():
    with pytest.raises(ValueError, match="Did you mean 'prefix_length'"):
        FAST.with_(prefix_lenght=5)
    with pytest.raises(ValueError, match="Did you mean 'steps'"):
        FAST.train.with_(step=5)


def test_grid_removes_runs_that_cannot_differ():
    configs = grid_configs(FAST, method=["prefix", "lora", "none"], prefix_length=[2, 4],
                           seeds=[0, 1])  # fmt: skip
    methods = [c.method for c in configs]
    # prefix: 2 lengths x 2 seeds; LoRA ignores the length: 2 seeds; "none" ignores both: 1
    assert methods.count("prefix") == 4 and methods.count("lora") == 2
    assert methods.count("none") == 1
    assert canonical(FAST.with_(method="lora", prefix_length=3)) == canonical(
        FAST.with_(method="lora")
    )
    with pytest.raises(ValueError, match="has no field 'colour'"):
        grid_configs(FAST, colour=["red"])
    with pytest.raises(ValueError, match="given twice"):
        grid_configs(FAST, seed=[0], seeds=[1])


# -- experiments, grids and the cache (a tiny model saved to disk, a small CSV) ---------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A tiny GPT-2 plus character tokenizer saved as a model folder, and an E2E-format CSV."""
    from transformers import GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("lab")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=96, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(root / "model")
    char_tokenizer().save_pretrained(root / "model")
    with open(root / "data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mr", "ref"])
        for i, area in enumerate(["riverside", "city centre"] * 3):
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i} is by the {area}."])
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i}, {area}."])
    return root


def lab_config(lab) -> RunConfig:
    return FAST.with_(
        model=str(lab / "model"), data=str(lab / "data.csv"), n_train_mrs=4, n_val_mrs=2,
        eval_mrs=2, max_new_tokens=6, steps=3, batch_size=4, eval_every=None, max_length=48,
        prefix_length=3, lora_rank=2,
    )  # fmt: skip


def test_grid_over_every_method_and_cache(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    base = lab_config(lab)
    methods = ["none", "prompt", "prefix", "prefix+mlp", "lora", "full"]
    table, histories = run_grid(base, method=methods, progress=False)
    assert table["method"].tolist() == methods
    assert set(histories) == set(table["run_id"])
    assert not table["cached"].any()
    counts = dict(zip(table["method"], table["trainable_params"], strict=True))
    assert counts["none"] == 0 and counts["prompt"] == 3 * 32 and counts["prefix"] == 3 * 2 * 2 * 32
    assert counts["prefix+mlp"] == 3 * 32 + 33 * 512 + 513 * 2 * 2 * 32  # embedding + MLP
    assert counts["lora"] == 2 * 2 * (32 + 96) and counts["full"] > counts["lora"]
    trained = table[table["method"] != "none"]
    assert (trained["steps_done"] == 3).all() and table["bleu"].notna().all()
    assert table["final_val_loss"].notna().all() and table["slot_error_rate"].between(0, 1).all()
    assert table.loc[table["method"] == "lora", "prefix_length"].isna().all()
    assert len(list((tmp_path / "cache" / "runs").glob("*.json"))) == len(methods)

    again, histories_again = run_grid(base, method=methods, progress=False)
    assert again["cached"].all()
    assert again.drop(columns="cached").equals(table.drop(columns="cached"))
    for run_id, history in histories.items():
        assert comparable(histories_again[run_id]) == comparable(history)


def test_run_experiment_rebuilds_the_trained_model_from_cache(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    config = lab_config(lab).with_(method="prefix+mlp", seed=3)
    row, history, adapted = run_experiment(config, progress=False)
    row2, history2, adapted2 = run_experiment(config, progress=False)
    assert (row["cached"], row2["cached"]) == (False, True)
    assert row2["run_id"] == row["run_id"] and row2["bleu"] == row["bleu"]
    torch.testing.assert_close(adapted2.adapter.flat(), adapted.adapter.flat())
    assert len(history2.generations) == 2 and history2.generations == history.generations
    with pytest.raises(ValueError, match="must be a RunConfig"):
        run_experiment(config.train)


def test_stability_summary(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    base = lab_config(lab).with_(eval_mrs=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing diverges at these rates
        table, histories = run_grid(base, method=["prefix", "prefix+mlp"], lr=[1e-2, 1e-1],
                                    seed=[0, 1], progress=False)  # fmt: skip
    summary = stability_summary(table, histories)
    assert len(summary) == 4 and (summary["runs"] == 2).all()
    assert set(summary.columns) >= {
        "final_val_std", "spikes_mean", "mean_seed_std", "diverged", "blowups", "max_rise"
    }  # fmt: skip
    assert (summary["blowups"] <= summary["runs"]).all() and (summary["max_rise"] >= 1).all()
    assert (summary["diverged"] == 0).all() and summary["final_val_std"].notna().all()
    with pytest.raises(ValueError, match="not in the table"):
        stability_summary(table, histories, by="colour")


@pytest.mark.skipif(
    not __import__("pathlib").Path(__file__).parents[1].joinpath(
        "data", "tiny-gpt2", "model.safetensors"
    ).is_file(),
    reason="the embedded tiny model is not built yet (scripts/build_tiny_model.py)",
)  # fmt: skip
def test_fast_preset_on_the_tiny_model_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    config = FAST.with_(method="prefix", eval_mrs=2)
    row, history, adapted = run_experiment(config, progress=False)
    assert history.stopped_reason == "completed"
    assert history.val_loss[-1] < history.val_loss[0] - 0.1
    assert row["loss_right_mr"] == pytest.approx(history.final_val_loss, rel=1e-4)  # same batches
    # The run reuses its final validation loss as the right-MR loss: measured afresh on the
    # same pairs and batches it must be the same number.
    from prefixlab.e2e import load_e2e
    from prefixlab.evaluate import table_gain
    from prefixlab.train import base_model

    t = config.train
    pairs = load_e2e(config.data, "validation").subset(config.n_val_mrs, seed=config.data_seed)
    fresh = table_gain(
        adapted, base_model(config)[1], pairs.pairs, max_length=t.max_length,
        batch_size=t.eval_batch_size or t.batch_size, max_batches=t.eval_batches, overflow="skip",
    )  # fmt: skip
    assert fresh["loss_right_mr"] == pytest.approx(history.final_val_loss, rel=1e-5)
    assert fresh["loss_wrong_mr"] == pytest.approx(row["loss_wrong_mr"], rel=1e-5)
    assert row["table_gain"] == pytest.approx(row["loss_wrong_mr"] - row["loss_right_mr"])


def test_progress_can_be_switched_off_by_environment(monkeypatch):
    from prefixlab.train import progress_enabled

    assert progress_enabled(True)
    assert not progress_enabled(False)
    monkeypatch.setenv("PREFIXLAB_PROGRESS", "0")
    assert not progress_enabled(True)


def test_code_digest_ignores_prose_but_not_code():
    from prefixlab.train import code_digest

    source = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    reworded = '# a comment\n\ndef f(x):\n    """Other words."""\n    return (x + 1)\n'
    changed = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert code_digest(source) == code_digest(reworded)
    assert code_digest(source) != code_digest(changed)


def test_loss_rise_sees_an_early_blowup_that_spikes_cannot():
    from prefixlab.train import count_spikes, loss_rise

    early = [2.0, 2.5, 4.0, 6.0, 5.0] + [1.0] * 45  # blows up in the first steps, then recovers
    assert count_spikes(early) == 0  # inside the first window: spikes cannot see it
    assert loss_rise(early, window=1) == pytest.approx(3.0)
    assert loss_rise(early) > 1.5  # default window: a tenth of the curve (5 steps)
    assert loss_rise([3.0, 2.0, 1.0]) == 1.0
    assert loss_rise([3.0, float("nan")]) == float("inf")
    with pytest.raises(ValueError, match="window"):
        loss_rise(early, window=0)


def test_lab_sources_fall_back_offline_and_say_so(monkeypatch, tmp_path):
    from prefixlab.config import lab_sources

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lab_sources("tiny", "synthetic") == ("tiny", "synthetic")
        csv = tmp_path / "dev.csv"
        csv.write_text("mr,ref\n")
        assert lab_sources("tiny", str(csv)) == ("tiny", str(csv))
    with pytest.warns(UserWarning, match="embedded default"):
        assert lab_sources("no-such-owner/no-such-model", "e2e") == ("tiny", "synthetic")
    with pytest.warns(UserWarning, match="offline"):
        assert lab_sources("tiny", "e2e") == ("tiny", "synthetic")
    with pytest.raises(ValueError, match="non-empty"):
        lab_sources("", "synthetic")
