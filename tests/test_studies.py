"""Studies: the grid rule, the files a study writes, intervals from per-table statistics, the
sign of paired differences, the live slice and the command line.

One small real study (FAST-sized, the embedded tiny model) is run once for the module; the
protocol's logic is also checked on a stand-in for `run_experiment` whose losses are known.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from small_studies import run_once, small_study

from prefixlab.config import RunConfig
from prefixlab.e2e import load_e2e
from prefixlab.evaluate import bleu_from_statistics
from prefixlab.studies import (
    CSV_COLUMNS,
    PROVENANCE_KEYS,
    Arm,
    Study,
    cli,
    combine_results,
    get_study,
    live_slice,
    merge_parts,
    point_differences,
    protocol,
    read_results,
    registry,
    run_study,
    seed_table,
    sweep_table,
    verdict_table,
)
from prefixlab.studies.protocol import check_eval_tables
from prefixlab.train import History

SMALL = small_study("small_check")


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    """SMALL run once into a temporary results folder, with its own run cache."""
    return run_once(tmp_path_factory, SMALL, "study")[1]


# -- the definition and the grid rule -----------------------------------------------------------


def test_describe_reads_the_design_from_the_definition():
    text = SMALL.with_(axes={"n_train_mrs": (8, 16)}).describe()
    assert "arms: prompt; prefix" in text and "axis n_train_mrs: 8, 16" in text
    assert "rates: 3 per arm, log-spaced from 1/3x to 3x" in text and "up to 1 times" in text
    assert "seeds 0, 1, each generating for 4 test tables; validation loss on 4 tables" in text
    assert "preset 'fast', 4 steps of batch 8" in text and "prefix - prompt" in text
    init = get_study("init_low_data").describe()
    assert (
        "prefix (random) (prefix, init=random)" in init and "seeds 0, 1, 2, 3, 4, 5, 6, 7" in init
    )


def test_registered_study_meets_the_protocol():
    study = get_study("prefix_vs_prompt")
    assert [a.method for a in study.arms] == ["prompt", "prefix", "prefix+mlp"]
    assert study.protocol_problems() == [] and study.preset == "cpu"
    for arm in study.arms:
        grid = study.lr_grid(arm.label)
        assert len(grid) >= 5 and list(grid) == sorted(grid)
        assert grid[0] == pytest.approx(arm.default_lr / 30, rel=0.05)
        assert grid[-1] == pytest.approx(arm.default_lr * 30, rel=0.05)
        assert arm.default_lr in grid
    assert len(study.seeds) >= 5 and study.n_eval_tables >= 200
    assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study


@pytest.mark.parametrize("name", registry.study_names())
def test_every_registered_run_builds_its_config(name):
    # a config error (e.g. init="text" without init_text) would otherwise surface only when
    # the study reaches that arm, hours into its run
    study = get_study(name)
    for preset in (study.preset, "fast"):
        base = study.base_config(preset)
        for point in study.points():
            for arm in study.arms:
                config = study.run_config(base, arm.label, point, lr=None, seed=0, evaluate=True)
                assert config.method == arm.method and config.eval_mrs == study.n_eval_tables
    if name == "prompt_init":
        text = study.run_config(study.base_config(), "text", {}, lr=None, seed=0, evaluate=False)
        assert text.init == "text" and text.init_text == registry.INIT_TEXT


def test_encdec_parts_places_its_prefixes_and_matches_the_tiny_arm_in_size():
    """encdec_parts (notebook 08): one study over two models; each arm's prefix sits in the
    attentions its label names, and the dual prefix stores as many numbers as the tiny arm's."""
    from prefixlab.runs import build

    study = get_study("encdec_parts")
    assert study.protocol_problems() == [] and len(study.seeds) >= 5
    base = study.base_config()
    configs = {a.label: study.run_config(base, a.label, {}, lr=None, seed=0, evaluate=True)
               for a in study.arms}  # fmt: skip
    assert {c.model for c in configs.values()} == {"tiny-bart", "tiny"}
    assert configs[registry.ENCDEC_TINY].model == "tiny"
    assert configs["decoder+cross"].parts == ("decoder", "cross")
    assert all(c.init == "random" for c in configs.values() if c.method == "prefix+mlp")
    stored, trained = {}, {}
    for label in ("encoder", "decoder+cross", registry.ENCDEC_DUAL, registry.ENCDEC_TINY):
        adapter = build(configs[label])[0].adapter
        if label != registry.ENCDEC_TINY:
            assert set(adapter.parts) == set(configs[label].parts)
        stored[label] = sum(p.numel() for p in adapter.materialize().parameters())
        trained[label] = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    # the counts the study's description gives
    assert (trained[registry.ENCDEC_DUAL], trained[registry.ENCDEC_TINY]) == (989_952, 593_280)
    assert stored[registry.ENCDEC_DUAL] == stored[registry.ENCDEC_TINY] == 15_360
    assert stored["encoder"] * 3 == stored["decoder+cross"] * 3 // 2 == stored[registry.ENCDEC_DUAL]
    assert (registry.ENCDEC_DUAL, registry.ENCDEC_TINY) in study.pairs
    assert registry.CPU_ESTIMATES["encdec_parts"]["runs"] == 6 * (5 + 5) + 1


@pytest.mark.skipif(
    len(load_e2e("synthetic", "test").mrs) < 250,
    reason="the synthetic test split holds 250 MRs only after the split-size change",
)
def test_registered_study_fits_its_data():
    study = get_study("prefix_vs_prompt")
    check_eval_tables(study, study.base_config())  # raises when the split is too small


def test_a_study_asking_for_more_tables_than_the_split_holds_stops_before_training(tmp_path):
    held = len(load_e2e("synthetic", "validation").mrs)
    study = SMALL.with_(n_eval_tables=held + 1, eval_split="validation")
    with pytest.raises(ValueError, match=f"holds {held} MRs; lower n_eval_tables"):
        run_study(study, out=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_cli_says_when_the_split_is_too_small(capsys, tmp_path, monkeypatch):
    held = len(load_e2e("synthetic", "test").mrs)
    monkeypatch.setitem(registry.STUDIES, "too_big", SMALL.with_(name="too_big",
                                                                 n_eval_tables=held + 1))  # fmt: skip
    with pytest.raises(SystemExit):
        cli.main(["run", "too_big", "--out", str(tmp_path)])
    assert f"asks for {held + 1} eval tables" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_edge_rule_adds_one_rate_beyond_the_edge():
    study = SMALL.with_(max_extensions=2)
    grid = study.lr_grid("prefix")  # default 0.03, 1/3x .. 3x
    assert grid == (0.01, 0.03, 0.09) and study.rate_step == pytest.approx(3.0)
    assert study.extension(grid, 0.09, 0) == 0.27
    assert study.extension(grid, 0.01, 0) == 0.0033
    assert study.extension(grid, 0.03, 0) is None  # inside: nothing to add
    assert study.extension(grid, 0.09, 2) is None  # bounded


def test_an_edge_margin_grows_the_grid_until_the_best_has_room_on_both_sides():
    study = SMALL.with_(max_extensions=4, edge_margin=2)  # grid 0.01, 0.03, 0.09
    grid = list(study.lr_grid("prefix"))
    assert study.extension(grid, 0.03, 0) == 0.0033  # one below: the low side first
    grid.append(0.0033)
    assert study.extension(grid, 0.03, 1) == 0.27  # then one above
    grid.append(0.27)
    assert study.extension(grid, 0.03, 2) is None  # two on each side: done
    assert "until the best rate has 2 rates on each side" in study.describe()
    assert study.to_dict()["edge_margin"] == 2 and "edge_margin" not in SMALL.to_dict()
    assert Study.from_dict(study.to_dict()) == study
    with pytest.raises(ValueError, match="edge_margin must be an int >= 0"):
        SMALL.with_(edge_margin=-1)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"name": "Prefix vs prompt"}, "lowercase letters"),
        ({"overrides": {"lr": 0.1}}, "sets 'lr', which the study sets per run"),
        ({"overrides": {"stpes": 3}}, "Did you mean 'steps'"),
        ({"pairs": (("prefix", "lora"),)}, "each arm of pairs must be one of"),
        ({"arms": ("prefix", Arm("prefix", "prompt"))}, "labels must differ"),
        ({"seeds": ()}, "seeds must be distinct"),
        ({"seeds": 5}, "seeds must be distinct"),
        ({"pairs": ("prefix", "prompt")}, "wrap the one pair"),
        ({"n_eval_tables": 0}, "n_eval_tables must be an int >= 1"),
        ({"eval_split": "train"}, "eval_split must be one of"),
        ({"axes": {"model": ()}}, "needs distinct values"),
        ({"colour": 1}, "Study has no field 'colour'"),
    ],
)
def test_study_definition_is_validated(changes, match):
    with pytest.raises(ValueError, match=match):
        SMALL.with_(**changes)


def _stand_in(best: dict, errors: dict, gain: dict):
    """A `run_experiment` whose validation loss is smallest at best[method] (log distance) and
    whose tables have known slot errors, BLEU counts and losses per method."""

    def run_experiment(config: RunConfig, *, cache, progress, return_model):
        lr, seed, n = config.lr, config.train.seed, config.eval_mrs
        loss = 3.0 if config.method == "none" else 1 + math.log(lr / best[config.method]) ** 2
        loss += 0.01 * seed
        matched = (8, 6, 4, 2) if errors[config.method] == 0 else (5, 3, 2, 1)
        generations = [
            {"mr": f"name[T{i}]", "text": "t", "added": [], "contradicted": [],
             "missing": ["x"] * (errors[config.method] + (i + seed) % 2), "slots": 4,
             "bleu_stats": [10, 10, *(m - (i % 2) for m in matched), 10, 9, 8, 7]}
            for i in range(n)
        ]  # fmt: skip
        table_losses = [
            {"mr": f"name[V{i}]", "right": [loss * (10 + i), 10 + i],
             "wrong": [(loss + gain[config.method]) * (10 + i), 10 + i]}
            for i in range(5)
        ]  # fmt: skip
        history = History(val_step=[0, 4], val_loss=[loss + 1, loss], generations=generations,
                          table_losses=table_losses)  # fmt: skip
        row = dict(lr=lr, steps_done=4, prefix_length=config.prefix_length,
                   final_val_loss=loss, best_val_loss=loss, stopped_reason="completed",
                   diverged=False, trainable_params=10, seconds=0.0, cached=False,
                   run_id=f"{config.method}-{lr}-{seed}-{n}", table_gain=gain[config.method])  # fmt: skip
        trained = torch.nn.Linear(2, 5) if return_model else None  # 10 trainable values
        return row, history, trained

    return run_experiment


@pytest.fixture
def stand_in_results(monkeypatch, tmp_path):
    """A study run on the stand-in: prefix best at 0.2 (beyond the top edge 0.09, so the grid
    grows), prompt at 0.035 (inside); prefix makes fewer slot errors and matches more n-grams
    on every table; both read the table equally (same gain)."""
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.2, "prompt": 0.035}, {"prefix": 0, "prompt": 1},
                  {"prefix": 0.5, "prompt": 0.5}),
    )  # fmt: skip
    study = SMALL.with_(max_extensions=2, seeds=(0, 1, 2), n_eval_tables=8)
    return run_study(study, out=tmp_path, progress=False)


def test_stage_one_extends_an_edge_grid_and_stage_two_uses_the_best_rate(stand_in_results):
    tune, seeds = stand_in_results.stage("tune"), stand_in_results.stage("seeds")
    prefix = tune[tune["arm"] == "prefix"]
    # 0.09 was best on the edge -> 0.27 added; 0.27 best on the new edge -> 0.81 added
    assert sorted(prefix["lr"]) == [0.01, 0.03, 0.09, 0.27, 0.81]
    assert prefix.loc[prefix["chosen"], "lr"].tolist() == [0.27]
    prompt = tune[tune["arm"] == "prompt"]
    assert sorted(prompt["lr"]) == [0.01, 0.03, 0.09]  # best 0.03 inside: no extension
    assert seeds.groupby("arm")["lr"].unique().map(list).to_dict() == {
        "prefix": [0.27], "prompt": [0.03]
    }  # fmt: skip
    assert sorted(seeds["seed"]) == [0, 0, 1, 1, 2, 2] and (seeds["n_eval_tables"] == 8).all()
    grids = {g["arm"]: g for g in stand_in_results.provenance["grids"]}
    assert grids["prefix"]["extensions"] == 2 and grids["prompt"]["extensions"] == 0
    sweep = sweep_table(stand_in_results)
    assert sweep["arm"].tolist() == ["prompt"] * 3 + ["prefix"] * 5  # the study's arm order
    assert sweep.loc[sweep["chosen"], "lr"].tolist() == [0.03, 0.27]


def test_an_arm_that_trains_nothing_runs_once(monkeypatch, tmp_path):
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.03}, {"prefix": 0, "none": 1}, {"prefix": 0.5, "none": 0.0}),
    )  # fmt: skip
    study = SMALL.with_(arms=("none", "prefix"), pairs=(("prefix", "none"),))
    results = run_study(study, out=tmp_path, progress=False)
    none = results.table[results.table["arm"] == "none"]
    assert none["stage"].tolist() == ["seeds"] and none["lr"].isna().all()
    table = verdict_table(results, metrics=["slot_error_rate"], n_resamples=200)
    assert table.loc[table["arm"] == "none", "seeds"].tolist() == ["1"]
    assert table.loc[table["kind"] == "difference", "verdict"].item() == "prefix better"


def test_a_part_of_an_axis_merges_into_the_committed_results(monkeypatch, tmp_path):
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.03, "prompt": 0.03}, {"prefix": 0, "prompt": 1},
                  {"prefix": 0.5, "prompt": 0.5}),
    )  # fmt: skip
    study = SMALL.with_(axes={"prefix_length": (2, 4, 6)})
    first = run_study(study.with_(axes={"prefix_length": (2, 4)}), out=tmp_path,
                      progress=False)  # a study that grew an axis value since  # fmt: skip
    assert sorted(first.table["prefix_length"].unique()) == [2, 4]
    # a part for 6, then 4 again: rows of 2 stay, 4 is replaced, 6 joins; one part per run
    run_study(study, out=tmp_path, progress=False, only={"prefix_length": 6})
    merged = run_study(study, out=tmp_path, progress=False, only={"prefix_length": 4})
    table = merged.table
    assert table["prefix_length"].drop_duplicates().tolist() == [2, 4, 6]  # axis order
    assert len(table) == 3 * len(first.table) / 2
    assert set(merged.tables) == set(table["run_id"])  # every run keeps its curves
    parts = merged.provenance["parts"]
    assert [[p["prefix_length"] for p in part["points"]] for part in parts] == [[2], [6], [4]]
    assert merged.provenance["runs"] == len(table)
    assert merged.provenance["train_seconds"] == pytest.approx(table["seconds"].sum(), abs=0.1)
    assert sorted(g["prefix_length"] for g in merged.provenance["grids"]) == [2, 2, 4, 4, 6, 6]
    verdict = verdict_table(merged, metrics=["slot_error_rate"], n_resamples=100)
    assert (verdict.loc[verdict["kind"] == "difference", "verdict"] == "prefix better").all()
    with pytest.raises(ValueError, match="another definition"):
        run_study(study.with_(seeds=(0, 1, 2)), out=tmp_path, progress=False,
                  only={"prefix_length": 6})  # fmt: skip


def test_parts_run_apart_merge_like_parts_run_in_place(monkeypatch, tmp_path):
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.03, "prompt": 0.03}, {"prefix": 0, "prompt": 1},
                  {"prefix": 0.5, "prompt": 0.5}),
    )  # fmt: skip
    study = SMALL.with_(axes={"prefix_length": (2, 4, 6)})
    for name, values in {"a": [2], "b": [4, 6]}.items():
        run_study(study, out=tmp_path / name, progress=False, only={"prefix_length": values})
    in_place = tmp_path / "in_place"
    for values in ([2], [4, 6]):
        run_study(study, out=in_place, progress=False, only={"prefix_length": values})
    merged = merge_parts(study, [tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    expected = read_results(study.name, in_place)
    columns = [c for c in merged.table.columns if c not in ("seconds",)]
    pd.testing.assert_frame_equal(merged.table[columns], expected.table[columns])
    assert set(merged.tables) == set(expected.tables)
    assert merged.adapters and set(merged.adapters) == set(expected.adapters)
    assert merged.provenance["adapters"]["runs"] == len(merged.adapters)
    parts = merged.provenance["parts"]
    assert [[p["prefix_length"] for p in part["points"]] for part in parts] == [[2], [4, 6]]
    assert merged.provenance["wall_seconds"] == pytest.approx(
        sum(read_results(study.name, tmp_path / n).provenance["wall_seconds"] for n in "ab")
    )
    assert sorted(g["prefix_length"] for g in merged.provenance["grids"]) == [2, 2, 4, 4, 6, 6]
    # a merged folder is itself a part: its parts carry over, a re-run point replaces the old
    run_study(study, out=tmp_path / "c", progress=False, only={"prefix_length": 4})
    again = merge_parts(study, [tmp_path / "merged", tmp_path / "c"], tmp_path / "again")
    parts = again.provenance["parts"]
    assert [[p["prefix_length"] for p in part["points"]] for part in parts] == [[2], [6], [4]]
    assert len(again.table) == len(merged.table)


def test_merge_parts_is_validated(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.03, "prompt": 0.03}, {"prefix": 0, "prompt": 1},
                  {"prefix": 0.5, "prompt": 0.5}),
    )  # fmt: skip
    study = SMALL.with_(axes={"prefix_length": (2, 4)})
    run_study(study, out=tmp_path / "a", progress=False, only={"prefix_length": 2})
    with pytest.raises(ValueError, match="non-empty list of folders"):
        merge_parts(study, [], tmp_path / "out")
    with pytest.raises(ValueError, match="is the output folder itself"):
        merge_parts(study, [tmp_path / "a"], tmp_path / "a")
    with pytest.raises(ValueError, match="another definition"):
        merge_parts(study.with_(seeds=(0, 1, 2)), [tmp_path / "a"], tmp_path / "out")
    with pytest.raises(ValueError, match="has no axes"):
        merge_parts(SMALL, [tmp_path / "a"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="has no results"):
        merge_parts(study, [tmp_path / "nothing"], tmp_path / "out")
    with pytest.raises(SystemExit):
        cli.main(["merge", "scale_axis", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert "has no results" in capsys.readouterr().err


def test_point_differences_pair_axis_values_on_the_same_tables(monkeypatch, tmp_path):
    def run_experiment(config, **kwargs):  # slot errors fall with P: 3 at P=2, 1 at P=6
        row, history, trained = _stand_in({"prefix": 0.03, "prompt": 0.03}, {"prefix": 0, "prompt": 0},
                                    {"prefix": 0.5, "prompt": 0.5})(config, **kwargs)  # fmt: skip
        for g in history.generations:
            g["missing"] = ["x"] * ((8 - config.prefix_length) // 2)
        row["run_id"] += f"-P{config.prefix_length}"  # one run id per length
        return row, history, trained

    monkeypatch.setattr(protocol, "run_experiment", run_experiment)
    study = SMALL.with_(axes={"prefix_length": (2, 4, 6)})
    results = run_study(study, out=tmp_path, progress=False)
    table = point_differences(results, "prefix_length", 4, metrics=["slot_error_rate"],
                              n_resamples=100)  # fmt: skip
    assert table["prefix_length"].tolist() == [2, 6, 2, 6] and (table["versus"] == 4).all()
    by = table.set_index(["arm", "prefix_length"])
    assert by.loc[("prefix", 2), "estimate"] == pytest.approx(0.25)  # 3/4 - 2/4
    assert by.loc[("prefix", 6), "verdict"] == "prefix_length=6 better"
    assert by.loc[("prompt", 2), "verdict"] == "prefix_length=4 better"
    with pytest.raises(ValueError, match="has no axis 'model'"):
        point_differences(results, "model", "tiny")
    with pytest.raises(ValueError, match="versus=5 is not on the axis"):
        point_differences(results, "prefix_length", 5)


@pytest.mark.parametrize(
    "only, message",
    [
        ({"model": "tiny"}, "has no axis 'model'; its axes: prefix_length"),
        ({"prefix_length": 5}, "is not on the axis"),
        ({"prefix_length": []}, "is not on the axis"),
        ({}, "non-empty dict"),
        ("prefix_length=2", "non-empty dict"),
    ],
)
def test_only_is_validated(only, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_study(SMALL.with_(axes={"prefix_length": (2, 4)}), out=tmp_path, progress=False,
                  only=only)  # fmt: skip


def test_only_needs_an_axis(tmp_path):
    with pytest.raises(ValueError, match="has no axes"):
        run_study(SMALL, out=tmp_path, progress=False, only={"model": "tiny"})


def test_combined_studies_pair_arms_across_studies(monkeypatch, tmp_path):
    monkeypatch.setattr(
        protocol, "run_experiment",
        _stand_in({"prefix": 0.03, "prompt": 0.03, "lora": 0.03}, {"prefix": 0, "prompt": 1,
                  "lora": 2}, {"prefix": 0.5, "prompt": 0.5, "lora": 0.5}),
    )  # fmt: skip
    one = run_study(SMALL, out=tmp_path / "a", progress=False)
    other = SMALL.with_(
        name="other", arms=("lora",), pairs=(), overrides={**SMALL.overrides, "init": "vocab"}
    )
    two = run_study(other, out=tmp_path / "b", progress=False)
    both = combine_results(one, two, name="both", pairs=[("prefix", "lora")])
    assert [a.label for a in both.study.arms] == ["prompt", "prefix", "lora"]
    assert both.study.arms[2].config["init"] == "vocab" and both.study.overrides == {}
    assert both.study.pairs == (("prefix", "prompt"), ("prefix", "lora"))
    assert set(both.provenance["combined"]) == {"small_check", "other"}
    table = verdict_table(both, metrics=["slot_error_rate"], n_resamples=100)
    diff = table[table["kind"] == "difference"].set_index("versus")["verdict"]
    assert diff.to_dict() == {"prompt": "prefix better", "lora": "prefix better"}
    with pytest.raises(ValueError, match="differ in seeds"):
        three = run_study(other.with_(name="third", seeds=(0, 1, 2)), out=tmp_path / "c",
                          progress=False)  # fmt: skip
        combine_results(one, three, name="x")
    with pytest.raises(ValueError, match="share arm labels"):
        combine_results(one, one, name="x")
    with pytest.raises(ValueError, match="at least two"):
        combine_results(one, name="x")


def test_paired_differences_have_the_right_sign(stand_in_results):
    table = verdict_table(stand_in_results, n_resamples=300)
    diffs = table[table["kind"] == "difference"].set_index("metric")
    assert (diffs["arm"] == "prefix").all() and (diffs["versus"] == "prompt").all()
    # prefix: one slot error fewer per table (of 4 slots), more matched n-grams
    assert diffs.loc["slot_error_rate", "estimate"] == pytest.approx(-0.25)
    assert diffs.loc["slot_error_rate", "high"] < 0
    assert diffs.loc["slot_error_rate", "verdict"] == "prefix better"
    assert diffs.loc["bleu", "low"] > 0 and diffs.loc["bleu", "verdict"] == "prefix better"
    assert diffs.loc["table_gain", "verdict"] == "not resolved"  # equal gains: covers 0
    # the other way round, the estimate flips and the better arm stays the same
    flipped = verdict_table(stand_in_results, pairs=[("prompt", "prefix")], n_resamples=300)
    flipped = flipped[flipped["kind"] == "difference"].set_index("metric")
    assert flipped.loc["slot_error_rate", "estimate"] == pytest.approx(0.25)
    assert flipped.loc["slot_error_rate", "verdict"] == "prefix better"
    with pytest.raises(ValueError, match="each arm of pairs must be one of"):
        verdict_table(stand_in_results, pairs=[("prefix", "lora")])
    with pytest.raises(ValueError, match="each of metrics must be one of"):
        verdict_table(stand_in_results, metrics=["rouge"])


def test_tables_of_different_runs_cannot_be_paired(stand_in_results, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in stand_in_results.paths.values():
        shutil.copy(path, copy / path.name)
    csv = copy / "small_check.csv"
    table = pd.read_csv(csv, dtype={"eval_tables_digest": str})
    table.loc[table["arm"] == "prompt", "eval_tables_digest"] = "000000000000"
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="different tables"):
        verdict_table("small_check", copy, metrics=["bleu"], n_resamples=100)


# -- a real small study: files, per-table statistics, intervals, the live slice ---------------


def test_files_hold_the_columns_and_the_provenance(small_results):
    paths = small_results.paths
    table = pd.read_csv(paths["csv"])
    assert set(CSV_COLUMNS) <= set(table.columns)
    required = ("method", "lr", "seed", "steps", "prefix_length", "n_train_mrs",
                "final_val_loss", "bleu", "slot_error_rate", "table_gain", "n_eval_tables",
                "stage")  # fmt: skip
    assert set(required) <= set(table.columns)
    assert set(table["stage"]) == {"tune", "seeds"}
    seeds = table[table["stage"] == "seeds"]
    assert len(seeds) == 4 and (seeds["n_eval_tables"] == 4).all()
    assert seeds["bleu"].notna().all() and table["final_val_loss"].notna().all()
    assert (table["n_train_mrs"] == 8).all() and (table["steps"] == 4).all()
    info = json.loads(paths["json"].read_text())
    assert set(PROVENANCE_KEYS) <= set(info) and info["preset"] == "fast"
    assert set(info["versions"]) >= {"python", "torch", "transformers", "prefixlab"}
    assert info["commit"] == "unknown" or len(info["commit"]) == 40
    assert info["wall_seconds"] > 0 and set(info["load_average"]) == {"start", "end"}
    table = small_results.table
    assert info["train_seconds"] == pytest.approx(table["seconds"].sum(), abs=0.1)
    assert info["timed_runs"] == len(table) and (table["total_seconds"] > table["seconds"]).all()
    assert info["total_seconds"] == pytest.approx(table["total_seconds"].sum(), abs=0.1)
    assert info["study"] == SMALL.to_dict() and len(info["protocol_problems"]) == 5
    assert paths["tables"].stat().st_size < 100_000
    # every run keeps its curves; stage-2 runs also their per-table statistics
    assert set(small_results.tables) == set(small_results.table["run_id"])
    for run_id, kinds in small_results.tables.items():
        row = small_results.table.set_index("run_id").loc[run_id]
        history_steps = int(row["steps_done"])
        assert kinds["train_loss"].shape == (history_steps,)
        assert kinds["val_curve"][0, 0] == 0 and kinds["val_curve"][-1, 1] == pytest.approx(
            row["final_val_loss"], rel=1e-9
        )
        assert ("slots" in kinds) == (row["stage"] == "seeds")
    # no table text is committed, only digests of the table lists
    for path in (paths["csv"], paths["json"]):
        assert "name[" not in path.read_text()


def test_per_table_statistics_reproduce_each_run(small_results):
    for _, row in small_results.stage("seeds").iterrows():
        arrays = small_results.tables[row["run_id"]]
        assert arrays["slots"].shape == (4, 2) and arrays["bleu"].shape == (4, 10)
        assert float(bleu_from_statistics(arrays["bleu"].sum(0))) == pytest.approx(row["bleu"])
        errors, slots = arrays["slots"].sum(0)
        assert errors / slots == pytest.approx(row["slot_error_rate"])
        right, right_n, wrong, wrong_n = arrays["losses"].sum(0)
        assert right / right_n == pytest.approx(row["final_val_loss"], abs=1e-5)
        assert wrong / wrong_n - right / right_n == pytest.approx(row["table_gain"], abs=1e-9)


def test_verdict_table_intervals_come_from_the_tables(small_results):
    table = verdict_table(small_results, n_resamples=200)
    estimates = table[table["kind"] == "estimate"]
    assert len(estimates) == 2 * 4 and len(table) == 3 * 4  # 2 arms and 1 pair, 4 metrics
    seeds = small_results.stage("seeds")
    for _, row in estimates.iterrows():
        mean = seeds.loc[seeds["arm"] == row["arm"], row["metric"]].mean()
        tolerance = 1e-5 if row["metric"] == "final_val_loss" else 1e-9
        assert row["estimate"] == pytest.approx(mean, abs=tolerance)
        assert row["low"] <= row["estimate"] <= row["high"]
        assert row["interval"].startswith("bootstrap 2 seed(s)")
    diffs = table[table["kind"] == "difference"]
    assert set(diffs["verdict"]) <= {"prefix better", "prompt better", "not resolved"}
    for _, row in diffs.iterrows():  # the verdict follows the interval
        assert (row["verdict"] == "not resolved") == (row["low"] <= 0 <= row["high"])


def test_live_slice_matches_and_catches_a_doctored_row(small_results, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    line = live_slice(small_results, arm="prefix", seed=1)
    assert line.startswith("live slice matches the committed rows (prefix at lr ")
    assert line.ok is True
    assert "tolerance 0.01" in line
    same, texts = live_slice(small_results, arm="prefix", seed=1, samples=2, cache=True)
    assert same == line and len(texts) == 2 and {"mr", "text"} <= set(texts[0])
    same, run = live_slice(small_results, arm="prefix", seed=1, samples=2, cache=True,
                           history=True)  # fmt: skip
    assert same == line and [g["text"] for g in run.generations] == [g["text"] for g in texts]
    assert len(run.loss) == SMALL.overrides["steps"] and run.val_step[-1] == len(run.loss)
    same, run = live_slice(small_results, arm="prefix", seed=1, history=True)  # trains only
    assert same == line and len(run.loss) == SMALL.overrides["steps"] and not run.generations
    same, again = live_slice(small_results, arm="prefix", seed=1, samples=2)  # trains, then writes
    assert same == line and [g["text"] for g in again] == [g["text"] for g in texts]
    assert again[0]["missing"] == texts[0]["missing"]
    with pytest.raises(ValueError, match="history must be"):
        live_slice(small_results, history="yes")
    with pytest.raises(ValueError, match="samples must be an int >= 0"):
        live_slice(small_results, samples=-1)
    for path in small_results.paths.values():
        shutil.copy(path, tmp_path / path.name)
    csv = tmp_path / "small_check.csv"
    table = pd.read_csv(csv, dtype={"run_id": str})
    doctored = (table["stage"] == "seeds") & (table["arm"] == "prefix") & (table["seed"] == 1)
    table.loc[doctored, "final_val_loss"] += 0.05
    table.to_csv(csv, index=False)
    line = live_slice("small_check", arm="prefix", seed=1, folder=tmp_path, cache=True)
    assert line.startswith("live slice does NOT match the committed rows")
    assert line.ok is False
    with pytest.raises(ValueError, match="No single committed stage-2 run"):
        live_slice(small_results, arm="prefix", seed=7)
    with pytest.raises(ValueError, match="arm must be one of"):
        live_slice(small_results, arm="lora")
    with pytest.raises(ValueError, match="tolerance must be a positive number"):
        live_slice(small_results, tolerance=0)


def test_live_slice_at_another_preset_checks_that_the_configuration_trains(
    small_results, tmp_path, monkeypatch
):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    # SMALL was run at "fast"; at "cpu" (with SMALL's 4 steps) no committed row can be matched
    line = live_slice(small_results, arm="prefix", seed=1, preset="cpu")
    assert line.startswith("live slice at the cpu preset trains the committed configuration")
    assert line.ok is True and isinstance(line, str)
    assert "in 4 steps" in line and "reproducible only at the fast preset" in line
    start, end = (float(x) for x in line.split("val loss ")[1].split(" in ")[0].split(" -> "))
    assert end < start
    again, run = live_slice(small_results, arm="prefix", seed=1, preset="cpu", history=True)
    assert again == line and run.val_loss[-1] == pytest.approx(end, abs=1e-3)
    same = live_slice(small_results, arm="prefix", seed=1, preset="fast")
    assert same.startswith("live slice matches the committed rows")  # its own preset: compared
    with pytest.raises(ValueError, match="preset must be one of"):
        live_slice(small_results, preset="turbo")

    def flat(config, **_):  # a run whose validation loss does not fall
        history = History(val_step=[0, 4], val_loss=[2.0, 2.5])
        return {"final_val_loss": 2.5, "steps_done": 4}, history, None

    monkeypatch.setattr("prefixlab.studies.live.run_experiment", flat)
    line = live_slice(small_results, arm="prefix", seed=1, preset="cpu")
    assert line.startswith("live slice at the cpu preset does NOT train")


def test_seed_table_one_value_per_run_equal_to_the_pooled_metric(small_results):
    table = seed_table(small_results, "bleu")
    seeds = small_results.stage("seeds")
    assert list(table.columns) == ["arm", "seed", "value"] and len(table) == len(seeds)
    for row in table.itertuples():
        (run_id,) = seeds[(seeds.arm == row.arm) & (seeds.seed == row.seed)]["run_id"]
        stats = small_results.tables[run_id]["bleu"].sum(axis=0)
        assert row.value == pytest.approx(float(bleu_from_statistics(stats)))
    loss = seed_table(small_results, "final_val_loss")
    merged = loss.merge(seeds, on=["arm", "seed"])
    assert merged.value.to_numpy() == pytest.approx(merged.final_val_loss.to_numpy(), abs=1e-6)
    with pytest.raises(ValueError, match="metric must be one of"):
        seed_table(small_results, "blue")


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope"], "Unknown study 'nope'. Known studies: prefix_vs_prompt"),
        (["run", "prefix_vs_promt"], "Did you mean 'prefix_vs_prompt'?"),
        (["show", "nope"], "Known studies: prefix_vs_prompt"),
        (["run", "prefix_vs_prompt", "--preset", "huge"], "--preset must be one of fast, cpu, gpu"),
        (["run", "prefix_vs_prompt", "--threads", "0"], "--threads must be an int >= 1"),
        (["run", "prefix_vs_prompt", "--threads", "two"], "--threads must be an int >= 1"),
        (["run", "scale_axis", "--only", "model"], "--only takes AXIS=VALUE[,VALUE]"),
        (["run", "scale_axis", "--only", "model=huge"], "is not on the axis of 'scale_axis'"),
        (["run", "prefix_vs_prompt", "--only", "model=tiny"], "has no axes"),
    ],
)
def test_cli_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_out_must_be_a_folder_and_show_needs_results(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(SystemExit):
        cli.main(["run", "prefix_vs_prompt", "--out", str(a_file)])
    assert "--out must be a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["show", "prefix_vs_prompt", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert "has no results" in err and "python -m prefixlab.studies run prefix_vs_prompt" in err


def test_cli_list_and_show(small_results, monkeypatch, capsys):
    monkeypatch.setitem(registry.STUDIES, SMALL.name, SMALL)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "prefix_vs_prompt (30 runs, about " in out and "small_check (" in out
    assert "below the protocol" in out and "CPU-hours): " in out
    folder = small_results.paths["csv"].parent
    assert cli.main(["show", "small_check", "--results", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "difference" in out and "slot_error_rate" in out and "prefix" in out


def test_module_entry_point_lists_the_studies():
    done = subprocess.run([sys.executable, "-m", "prefixlab.studies", "list"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("prefix_vs_prompt (30 runs")


def test_read_results_of_a_missing_study_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run `python -m prefixlab.studies run nope`"):
        read_results("nope", tmp_path)


def test_cpu_time_text_counts_training_and_whole_runs(small_results):
    from prefixlab.studies import cpu_time_text

    table = small_results.table
    text = cpu_time_text(small_results)
    assert text.startswith(f"{table['seconds'].sum() / 3600:.1f} CPU-hours of training steps (")
    assert "with validation and evaluation" in text  # every run of a fresh study is timed
    untimed = dataclasses.replace(small_results, table=table.assign(total_seconds=math.nan))
    assert cpu_time_text(untimed).endswith("(validation and evaluation not timed)")
    partly = table.assign(total_seconds=[math.nan] + list(table.total_seconds[1:]))
    text = cpu_time_text(dataclasses.replace(small_results, table=partly))
    assert f"summed over the {len(table) - 1} of {len(table)} runs timed whole" in text
    assert f"({partly.total_seconds.sum() / 3600:.1f} with validation" in text
