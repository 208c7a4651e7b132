"""Runs: grids without duplicates, every method end to end, the disk cache, stability tables."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from tiny_models import save_lab_gpt2, write_lab_csv

from prefixlab.config import FAST, RunConfig
from prefixlab.e2e import load_e2e
from prefixlab.evaluate import table_gain
from prefixlab.run_cache import canonical, result_modules
from prefixlab.runs import base_model, grid_configs, lr_sweep, run_experiment, run_grid
from prefixlab.stability import stability_summary
from prefixlab.train import History


def comparable(history: History) -> dict:
    """Everything in a History except wall time."""
    data = history.to_dict()
    data.pop("time")
    return data


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

    root = tmp_path_factory.mktemp("lab")
    save_lab_gpt2(root / "model")
    write_lab_csv(root / "data.csv")
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
    t = config.train
    pairs = load_e2e(config.data, "validation").subset(config.n_val_mrs, seed=config.data_seed)
    fresh = table_gain(
        adapted, base_model(config)[1], pairs.pairs, max_length=t.max_length,
        batch_size=t.eval_batch_size or t.batch_size, max_batches=t.eval_batches, overflow="skip",
    )  # fmt: skip
    assert fresh["loss_right_mr"] == pytest.approx(history.final_val_loss, rel=1e-5)
    assert fresh["loss_wrong_mr"] == pytest.approx(row["loss_wrong_mr"], rel=1e-5)
    assert row["table_gain"] == pytest.approx(row["loss_wrong_mr"] - row["loss_right_mr"])


def test_every_module_a_run_executes_is_fingerprinted(lab, tmp_path, monkeypatch):
    """A module whose code runs while a run is built, trained and scored can change its
    numbers: it must be in the run cache's code fingerprint (`result_modules`)."""
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    package = Path(__import__("prefixlab").__file__).resolve().parent
    executed: set[Path] = set()

    def record(frame, event, arg):
        if event == "call":
            path = Path(frame.f_code.co_filename)
            if path.parent == package or package in path.parents:
                executed.add(path.resolve())

    for method in ("prefix+mlp", "prompt", "lora"):
        config = lab_config(lab).with_(
            method=method, steps=2, init="vocab" if method != "lora" else "random"
        )
        sys.setprofile(record)
        try:
            run_experiment(config, cache=False, progress=False, return_model=False)
        finally:
            sys.setprofile(None)
    fingerprinted = {path.resolve() for path in result_modules().values()}
    assert {package / "train.py", package / "prefix.py", package / "lora.py"} <= executed
    missing = sorted(str(p.relative_to(package)) for p in executed - fingerprinted)
    assert not missing, f"run code missing from run_cache.result_modules(): {missing}"


def test_run_options_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="cache must be True or False"):
        run_experiment(FAST, cache="no")
    with pytest.raises(ValueError, match="progress must be True or False"):
        run_grid(FAST, progress=1, method=["prefix"])
    with pytest.raises(ValueError, match="each of lrs must be a positive number"):
        lr_sweep(FAST, lrs=[1e-2, 0])
    with pytest.raises(ValueError, match="non-empty list"):
        lr_sweep(FAST, lrs=3e-2)
