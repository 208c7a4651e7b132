"""Studies keep their trained adapters: the adapters file `run_study` writes, rebuilding a run as
it ended (`load_adapter`) and as it started (`start_adapter`), merging `only` parts, attaching
adapters from a run cache to older results, and the live slice's step callback.

One tiny study (a few steps on the embedded tiny model) is run once for the module.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from small_studies import run_once, small_study

from prefixlab.batching import encode_for_training
from prefixlab.evaluate import validation_loss
from prefixlab.run_cache import entry_keys, load_state, trainable_state
from prefixlab.runs import base_model, run_data
from prefixlab.studies import (
    MAX_ADAPTER_PARAMETERS,
    attach_adapters,
    attach_curves,
    committed_run,
    live_slice,
    load_adapter,
    protocol,
    read_results,
    run_study,
    start_adapter,
)
from prefixlab.train import train

TINY = small_study("adapters_check", max_new_tokens=8, max_extensions=0, n_eval_tables=2)


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    """TINY run once (with a run cache) into <root>/results; returns root."""
    return run_once(tmp_path_factory, TINY, "adapters")[0]


@pytest.fixture
def results(study_root, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(study_root / "cache"))
    return read_results("adapters_check", study_root / "results")


def _val_loss(adapted, config) -> float:
    tokenizer = base_model(config)[1]
    pairs = run_data(config, "validation").pairs
    encoded = encode_for_training(tokenizer, pairs, config.train.max_length, overflow="skip")
    return validation_loss(adapted, encoded, config.train.batch_size, None)


def test_run_study_keeps_every_stage_two_adapter(results):
    seeds = results.stage("seeds")
    assert set(results.adapters) == set(seeds["run_id"]) and len(seeds) == 4
    assert results.paths["adapters"].name == "adapters_check.adapters.safetensors"
    entry = results.provenance["adapters"]
    assert entry["runs"] == 4 and entry["skipped"] == []
    assert entry["max_parameters_per_run"] == MAX_ADAPTER_PARAMETERS
    assert not set(results.adapters) & set(results.stage("tune")["run_id"])  # stage 2 only


@pytest.mark.parametrize("arm", ["prompt", "prefix"])
def test_a_loaded_adapter_has_the_committed_validation_loss(results, arm):
    for seed in TINY.seeds:
        row, config = committed_run(results, arm, seed)
        trained = load_adapter(results, arm, seed)
        assert _val_loss(trained, config) == pytest.approx(row["final_val_loss"], abs=1e-6)
        start = start_adapter(results, arm, seed)
        assert abs(_val_loss(start, config) - row["final_val_loss"]) > 1e-4  # it did train


@pytest.mark.parametrize("arm", ["prompt", "prefix"])
def test_the_start_is_rebuilt_identically_and_is_what_training_starts_from(results, arm):
    one, two = start_adapter(results, arm, 1), start_adapter(results, arm, 1)
    state_one, state_two = trainable_state(one), trainable_state(two)
    assert state_one.keys() == state_two.keys()
    assert all(torch.equal(state_one[k], state_two[k]) for k in state_one)
    other = trainable_state(start_adapter(results, arm, 0))
    assert not all(torch.equal(state_one[k], other[k]) for k in state_one)  # seeds differ
    # training the rebuilt start by hand ends where the committed run ended
    _, config = committed_run(results, arm, 1)
    tokenizer = base_model(config)[1]
    pairs = run_data(config, "train").pairs
    data = encode_for_training(tokenizer, pairs, config.train.max_length, overflow="skip")
    train(one, data, config.train, progress=False)
    ended = trainable_state(load_adapter(results, arm, 1))
    trained = trainable_state(one)
    assert all(torch.allclose(trained[k], ended[k], atol=1e-6) for k in ended)


def test_large_adapters_are_skipped_and_said_so(study_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))  # no cache: retrained
    monkeypatch.setattr(protocol, "MAX_ADAPTER_PARAMETERS", 2000)  # prompt 1280, prefix 10240
    small = run_study(TINY, out=tmp_path, progress=False, cache=False)
    skipped = small.provenance["adapters"]["skipped"]
    assert sorted(s["arm"] for s in skipped) == ["prefix", "prefix"]
    assert all(s["trainable_params"] > 2000 for s in skipped)
    assert set(small.adapters) == set(small.stage("seeds").query("arm == 'prompt'")["run_id"])
    with pytest.raises(ValueError, match="more than the .* a study keeps per run"):
        load_adapter(small, "prefix", 0)
    # without the cache the trained model itself is kept: the same tensors as from the cache
    cached = read_results("adapters_check", study_root / "results")
    for run_id, state in small.adapters.items():
        assert all(torch.equal(state[k], cached.adapters[run_id][k]) for k in state)


def test_only_parts_merge_their_adapters(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    study = TINY.with_(
        name="adapters_axis", arms=("prompt",), pairs=(), axes={"prefix_length": (2, 4)}
    )
    run_study(study, out=tmp_path / "r", progress=False, only={"prefix_length": 2})
    merged = run_study(study, out=tmp_path / "r", progress=False, only={"prefix_length": 4})
    seeds = merged.stage("seeds")
    assert len(seeds) == 4 and set(merged.adapters) == set(seeds["run_id"])
    assert merged.provenance["adapters"]["runs"] == 4
    for length in (2, 4):
        adapted = load_adapter(merged, "prompt", 1, point={"prefix_length": length})
        assert adapted.adapter.prefix_length == length


def _copy_without_adapters(results, folder):
    """The results' files in `folder`, as committed before studies kept adapters."""
    folder.mkdir()
    for kind in ("csv", "json", "tables"):
        shutil.copy(results.paths[kind], folder / results.paths[kind].name)
    info = json.loads((folder / "adapters_check.json").read_text())
    del info["adapters"]
    (folder / "adapters_check.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def test_attach_adapters_from_the_run_cache(results, tmp_path):
    before = _copy_without_adapters(results, tmp_path / "old")
    old = read_results("adapters_check", tmp_path / "old")
    assert old.adapters == {} and "adapters" not in old.paths
    with pytest.raises(ValueError, match="no adapters file with it"):
        load_adapter(old, "prefix", 0)
    entry = attach_adapters(old)
    assert entry["runs"] == 4 and entry["made"].startswith("attach_adapters")
    attached = read_results("adapters_check", tmp_path / "old")
    after = dict(attached.provenance)
    assert after.pop("adapters") == entry and after == before  # only the key was added
    assert list(attached.provenance)[-1] == "study"
    for run_id, state in results.adapters.items():
        assert all(torch.equal(state[k], attached.adapters[run_id][k]) for k in state)


def test_attach_adapters_refuses_a_mismatch(results, tmp_path, monkeypatch):
    _copy_without_adapters(results, tmp_path / "old")
    csv = tmp_path / "old" / "adapters_check.csv"
    table = pd.read_csv(csv, dtype={"run_id": str})
    doctored = (table["stage"] == "seeds") & (table["arm"] == "prefix") & (table["seed"] == 1)
    table.loc[doctored, "final_val_loss"] += 1e-4
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="not the committed run"):
        attach_adapters("adapters_check", folder=tmp_path / "old")
    assert not (tmp_path / "old" / "adapters_check.adapters.safetensors").exists()
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="has 0 entries in the run cache"):
        attach_adapters(results, write=False)
    with pytest.raises(ValueError, match="write must be True or False"):
        attach_adapters(results, write="yes")


def test_run_cache_helpers(results):
    run_id = results.stage("seeds")["run_id"].iloc[0]
    assert len(entry_keys(run_id)) == 1 and entry_keys(run_id)[0].startswith(run_id)
    with pytest.raises(ValueError, match="letters and digits"):
        entry_keys("../x")
    adapted = start_adapter(results, "prefix", 0)
    state = trainable_state(adapted)
    bad = {k: torch.zeros(3) for k in state}
    assert not load_state(adapted, bad)  # wrong shapes: left as it was
    assert all(torch.equal(v, trainable_state(adapted)[k]) for k, v in state.items())


def test_live_slice_callback_sees_every_step(results):
    seen = []
    line = live_slice(results, arm="prefix", seed=0,
                      callback=lambda history, adapted: seen.append((history.steps_done,
                                                                     adapted.adapter.flat().sum())))  # fmt: skip
    assert line.startswith("live slice matches the committed rows")
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    assert seen[0][1] != seen[-1][1]  # the callback sees the model as it trains
    with pytest.raises(ValueError, match="needs cache=False"):
        live_slice(results, callback=print, cache=True)


@pytest.mark.parametrize("cache", [True, False])
def test_mlp_runs_are_kept_materialized_and_load_as_a_direct_prefix(tmp_path, monkeypatch, cache):
    """An MLP prefix trains more values than the cap (592,640 on the tiny model) but is kept as
    its materialized [P, width] prefix; load_adapter gives a direct prefix with its outputs."""
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    study = TINY.with_(name="adapters_mlp", arms=("prefix+mlp",), pairs=(), seeds=(0,))
    results = run_study(study, out=tmp_path / "r", progress=False, cache=cache)
    row, config = committed_run(results, "prefix+mlp", 0)
    assert int(row["trainable_params"]) > MAX_ADAPTER_PARAMETERS
    state = results.adapters[row["run_id"]]
    assert set(state) == {"adapter.weight"} and state["adapter.weight"].shape[0] == P_TINY
    entry = results.provenance["adapters"]
    assert entry["skipped"] == [] and entry["materialized"] == [row["run_id"]]
    assert "load_adapter rebuilds a direct prefix" in entry["materialized_note"]
    loaded = load_adapter(results, "prefix+mlp", 0)
    assert loaded.adapter.reparam == "none"
    assert _val_loss(loaded, config) == pytest.approx(row["final_val_loss"], abs=1e-6)
    assert start_adapter(results, "prefix+mlp", 0).adapter.reparam == "mlp"  # as it started
    if cache:  # attach_adapters, from the same cache, keeps the same materialized prefix
        summary = attach_adapters(results, write=False)
        assert summary["materialized"] == [row["run_id"]] and summary["skipped"] == []


P_TINY = TINY.base_config().prefix_length


def test_attach_curves_from_the_run_cache(results, tmp_path):
    folder = tmp_path / "old"
    _copy_without_adapters(results, folder)
    kept = {k: v for k, v in np.load(results.paths["tables"]).items()
            if not k.endswith((".train_loss", ".val_curve"))}  # fmt: skip
    with open(folder / "adapters_check.tables.npz", "wb") as f:
        np.savez_compressed(f, **kept)  # as written before studies kept curves
    old = read_results("adapters_check", folder)
    assert not any("train_loss" in kinds for kinds in old.tables.values())
    with pytest.raises(ValueError, match="fewer than steps=2"):
        live_slice(old, arm="prefix", seed=0, steps=2)
    entry = attach_curves(old)
    assert entry["runs"] == len(results.table) and entry["already"] == 0
    attached = read_results("adapters_check", folder)
    assert attached.provenance["curves"] == entry and list(attached.provenance)[-1] == "study"
    for run_id, kinds in results.tables.items():
        for kind, array in kinds.items():  # the curves as run_study kept them, the rest kept
            assert np.array_equal(array, attached.tables[run_id][kind]), (run_id, kind)
    assert attach_curves(attached, write=False)["already"] == len(results.table)
    assert live_slice(attached, arm="prefix", seed=0, steps=2).ok


def test_attach_curves_refuses_a_mismatch(results, tmp_path, monkeypatch):
    folder = tmp_path / "old"
    _copy_without_adapters(results, folder)
    kept = {k: v for k, v in np.load(results.paths["tables"]).items() if ".train_loss" not in k}
    with open(folder / "adapters_check.tables.npz", "wb") as f:
        np.savez_compressed(f, **kept)
    table = pd.read_csv(folder / "adapters_check.csv", dtype={"run_id": str})
    table.loc[table["stage"] == "tune", "final_val_loss"] += 1e-4  # a stage-1 row doctored
    table.to_csv(folder / "adapters_check.csv", index=False)
    before = (folder / "adapters_check.tables.npz").read_bytes()
    with pytest.raises(ValueError, match="not the committed run"):
        attach_curves("adapters_check", folder=folder)
    assert (folder / "adapters_check.tables.npz").read_bytes() == before  # nothing written
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="has 0 entries in the run cache"):
        attach_curves("adapters_check", folder=folder, write=False)
    with pytest.raises(ValueError, match="write must be True or False"):
        attach_curves(results, write=1)
