"""The prefix + LoRA hybrid as a method of runs: RunConfig fields, cache keys, run_experiment
with both schedules, the tables that list methods, and the `hybrid` study."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
import torch
from tiny_models import MAKERS, char_tokenizer

from prefixlab import accounting, lab_settings
from prefixlab.config import FAST, RunConfig
from prefixlab.hybrid import is_hybrid, train_hybrid
from prefixlab.lora import trainable_lora_parameters
from prefixlab.methods import METHOD_TABLE, method, method_of_adapter
from prefixlab.plotting import METHOD_COLORS
from prefixlab.run_cache import canonical, key_fields, run_key
from prefixlab.runs import build, run_experiment
from prefixlab.studies import get_study
from prefixlab.studies.registry import CPU_ESTIMATES, SECONDS_PER_RUN, cpu_estimate

# sha256 (16 hex digits) of the cache key's config part of FAST.with_(method=m, seed=3, lr=0.01,
# lora_rank=4, prefix_length=5), computed with the code before "prefix+lora" existed: adding
# the hybrid must leave every other method's key where it was.
KEYS_BEFORE_THE_HYBRID = {
    "prefix": "4e592fa6ff41ee3c",
    "prefix+mlp": "71ae15342fa6d5f0",
    "prompt": "9226c9a302367e4c",
    "infix": "424bea9619b2fe80",
    "lora": "0b7edee6812c0328",
    "full": "5b61fe06d4182c6b",
    "none": "f6d9de1319406de0",
}


@pytest.mark.parametrize("name", sorted(KEYS_BEFORE_THE_HYBRID))
def test_existing_methods_keep_their_cache_keys(name):
    config = FAST.with_(method=name, seed=3, lr=0.01, lora_rank=4, prefix_length=5)
    # hybrid fields set on another method are ignored, as lora_rank is for a prefix
    hybrid_set = config.with_(hybrid_schedule="prefix-then-lora", lora_lr_ratio=0.5)
    for c in (config, hybrid_set):
        text = json.dumps(key_fields(c), sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == KEYS_BEFORE_THE_HYBRID[name]
    assert run_key(config) == run_key(hybrid_set)
    assert "hybrid_schedule" not in key_fields(config)


def test_hybrid_fields_key_the_hybrid_only():
    hybrid = FAST.with_(method="prefix+lora", steps=10)
    assert "hybrid_schedule" in key_fields(hybrid)
    staged = hybrid.with_(hybrid_schedule="prefix-then-lora")
    keys = {run_key(c) for c in (hybrid, staged, hybrid.with_(lora_lr_ratio=0.3),
                                  hybrid.with_(lora_rank=2), staged.with_(prefix_share=0.3))}  # fmt: skip
    assert len(keys) == 5
    # the joint schedule has no share to split: prefix_share does not key it
    assert run_key(hybrid.with_(prefix_share=0.3)) == run_key(hybrid)
    assert canonical(hybrid).train.lr == method("prefix").default_lr  # lr is the prefix's rate
    assert hybrid.lora_lr == pytest.approx(0.1 * hybrid.lr) and FAST.lora_lr is None


@pytest.mark.parametrize(
    ("changes", "problem", "fix"),
    [
        ({"hybrid_schedule": "lora-then-prefix"}, "hybrid_schedule must be one of",
         "'prefix-then-lora' trains them in turn"),
        ({"schedule": "prefix-then-lora"}, "schedule is the learning-rate schedule",
         "hybrid_schedule='prefix-then-lora'"),
        ({"lora_lr_ratio": 0}, "lora_lr_ratio", "try 0.1"),
        ({"lora_lr_ratio": "fast"}, "lora_lr_ratio", "try 0.1"),
        ({"prefix_share": 1.0}, "prefix_share", "Try 0.5"),
        ({"hybrid_schedule": "prefix-then-lora", "prefix_share": 0.01},
         "each stage needs at least one", "Raise steps or move prefix_share toward 0.5"),
        ({"init": "mean"}, "init", "'random'"),
    ],
)  # fmt: skip
def test_bad_hybrid_options_say_how_to_fix_them(changes, problem, fix):
    with pytest.raises(ValueError, match=problem) as err:
        FAST.with_(method="prefix+lora", **changes)
    assert fix in str(err.value)
    FAST.with_(method="prefix+lora", hybrid_schedule="prefix-then-lora", prefix_share=0.2)


# -- run_experiment on a tiny random model saved to disk --------------------------------------


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lab(request, tmp_path_factory):
    """A tiny random model (each architecture) with a character tokenizer, and a small CSV."""
    root = tmp_path_factory.mktemp(f"lab-{request.param}")
    MAKERS[request.param]().save_pretrained(root / "model")
    char_tokenizer().save_pretrained(root / "model")
    with open(root / "data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mr", "ref"])
        for i, area in enumerate(["east", "west"] * 3):  # short: the models have 64 positions
            writer.writerow([f"name[N{i}], area[{area}]", f"N{i} is {area}."])
    return root


def hybrid_config(lab, **changes) -> RunConfig:
    small = dict(
        method="prefix+lora", model=str(lab / "model"), data=str(lab / "data.csv"),
        n_train_mrs=4, n_val_mrs=2, eval_mrs=0, steps=4, batch_size=4, eval_every=None,
        max_length=56, prefix_length=3, lora_rank=2,
    )  # fmt: skip
    return FAST.with_(**{**small, **changes})


def _parts(adapted) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = torch.cat([p.detach().flatten() for p in adapted.adapter.parameters()])
    lora = torch.cat([p.detach().flatten() for p in trainable_lora_parameters(adapted.model)])
    return prefix.clone(), lora.clone()


def test_joint_run_trains_prefix_and_lora_at_their_rates(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    config = hybrid_config(lab, lr=0.02, lora_lr_ratio=0.25)
    untrained, _ = build(config)
    assert is_hybrid(untrained)
    prefix0, lora0 = _parts(untrained)
    row, history, adapted = run_experiment(config, progress=False)
    prefix1, lora1 = _parts(adapted)
    assert not torch.equal(prefix0, prefix1) and not torch.equal(lora0, lora1)
    assert history.steps_done == 4 and history.stopped_reason == "completed"
    assert row["trainable_params"] == prefix0.numel() + lora0.numel()
    assert row["hybrid_schedule"] == "joint" and row["prefix_share"] is None
    assert row["lora_rank"] == 2 and "r=2" in row["label"] and "joint" in row["label"]
    assert max(history.lr) == pytest.approx(0.02)  # the prefix's peak; LoRA's is 0.005
    # the cache gives back the same trained hybrid
    again, _, cached = run_experiment(config, progress=False)
    assert again["cached"] and is_hybrid(cached)
    assert all(torch.equal(a, b) for a, b in zip(_parts(cached), (prefix1, lora1), strict=True))


def test_staged_run_trains_the_prefix_then_lora(lab, monkeypatch):
    config = hybrid_config(lab, hybrid_schedule="prefix-then-lora", prefix_share=0.5, steps=6)
    snapshots = []  # (prefix, LoRA) before training, then after every step

    def watched(adapted, *args, **kwargs):  # train_hybrid, recording both parts each step
        snapshots.append(_parts(adapted))
        return train_hybrid(
            adapted, *args, callback=lambda h: snapshots.append(_parts(adapted)), **kwargs
        )

    monkeypatch.setattr("prefixlab.runs.train_hybrid", watched)
    row, history, _ = run_experiment(config, cache=False, progress=False)
    assert len(snapshots) == 7 and history.steps_done == 6
    moved = [
        tuple(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        for before, after in zip(snapshots[:-1], snapshots[1:], strict=True)
    ]  # (prefix moved, LoRA moved) per step
    # steps 1-3 train the prefix alone, steps 4-6 LoRA alone (each stage's last step has
    # rate 0: the linear decay ends there)
    assert moved[0] == (True, False) and not any(lora for _, lora in moved[:3])
    assert moved[3] == (False, True) and not any(prefix for prefix, _ in moved[3:])
    assert row["prefix_share"] == 0.5 and len(history.config["stages"]) == 2
    assert max(history.lr[:3]) == pytest.approx(config.lr)  # each stage peaks at its rate
    assert max(history.lr[3:]) == pytest.approx(config.lr * config.lora_lr_ratio)


# -- where the method appears ------------------------------------------------------------------


def test_hybrid_is_counted_coloured_and_kept_out_of_the_lab():
    from transformers import GPT2Config

    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4)
    rows = {r["method"]: r for r in accounting.parameter_counts(cfg, 5, lora_rank=4)}
    both = rows["prefix"]["trainable"] + rows["lora"]["trainable"]
    assert rows["prefix+lora"]["trainable"] == rows["prefix+lora"]["stored"] == both
    assert list(rows)[-1] == "prefix+lora"  # appended: existing tables keep their rows
    assert METHOD_TABLE[-1].name == "prefix+lora" and METHOD_COLORS["prefix+lora"] == "#332288"
    assert "prefix+lora" not in lab_settings.LAB_METHODS
    assert method_of_adapter("prefix").name == "prefix"


# -- the study ------------------------------------------------------------------------------------


def test_hybrid_study_meets_the_protocol():
    study = get_study("hybrid")
    assert study.protocol_problems() == []
    assert [a.method for a in study.arms] == ["prefix", "lora", "prefix+lora", "prefix+lora"]
    schedules = [a.config.get("hybrid_schedule") for a in study.arms[2:]]
    assert schedules == ["joint", "prefix-then-lora"]
    assert len(study.seeds) == 5 and study.base_config().n_val_mrs == 200
    base = study.base_config()
    steps = {
        a.label: study.run_config(base, a.label, {}, lr=None, seed=0, evaluate=False).train.steps
        for a in study.arms
    }
    assert len(set(steps.values())) == 1  # one step budget for every arm
    assert "prefix+lora" in SECONDS_PER_RUN
    estimate = CPU_ESTIMATES["hybrid"]
    assert estimate == cpu_estimate("hybrid")
    assert estimate["runs"] == 4 * (study.n_rates * len(study.tuning_seeds) + len(study.seeds))


def test_accelerated_trainer_refuses_the_hybrid(tmp_path):
    pytest.importorskip("accelerate")
    from prefixlab.distributed import train_accelerated

    with pytest.raises(ValueError, match="run_experiment"):
        train_accelerated(FAST.with_(method="prefix+lora"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
