"""Configs: presets, overrides, the learning-rate schedule, and a message for every bad field."""

from __future__ import annotations

import json
import warnings

import pytest

from prefixlab.config import (
    CPU,
    DEFAULT_LR,
    FAST,
    GPU,
    RunConfig,
    TrainConfig,
    active_preset,
    lab_sources,
    preset,
)


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
        ({"warmup_ratio": 1.0}, "warmup_ratio must be a number in \\[0, 1\\)"),
        ({"clip_grad_norm": 0}, "None to switch clipping off"),
        ({"eval_every": 0}, "eval_every must be an int >= 1 or None"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"min_lr_ratio": 2}, "min_lr_ratio must be a number in \\[0, 1\\]"),
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


def test_lab_sources_fall_back_offline_and_say_so(monkeypatch, tmp_path):
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


def test_lab_preset_trains_embedded_models_on_the_cpu_preset(monkeypatch):
    from prefixlab.config import lab_preset

    monkeypatch.delenv("PREFIXLAB_PRESET", raising=False)
    for name in ("nano", "tiny", "mini"):
        cfg = lab_preset(name)
        assert cfg.model == name and cfg.train.steps == preset("cpu").train.steps
    assert lab_preset("gpt2").train.steps == preset("gpu").train.steps
    monkeypatch.setenv("PREFIXLAB_PRESET", "fast")
    assert lab_preset("mini").train.steps == preset("fast").train.steps
    with pytest.raises(ValueError, match="non-empty"):
        lab_preset("")
