"""Held-out slot values (extrapolation) and per-seed low-data subsets, on the synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from prefixlab.config import CPU, FAST, RunConfig
from prefixlab.e2e import load_e2e, parse_mr
from prefixlab.e2e.held_out import (
    filter_by_held_out,
    held_out_errors,
    parse_held_out,
    uses_held_out,
)
from prefixlab.run_cache import canonical, run_key
from prefixlab.runs import data_pool, run_data, subset_seed
from prefixlab.studies.results import table_statistics
from prefixlab.train import History

HELD = ("food=Japanese", "area=riverside")


def test_held_out_values_are_validated():
    assert parse_held_out(["food=Japanese", " area = riverside"]) == (
        ("food", "Japanese"),
        ("area", "riverside"),
    )
    assert RunConfig(held_out=["food=Japanese"]).held_out == ("food=Japanese",)
    for bad, message in [
        ("food=Japanese", "wrap the one value"),
        (["food:Japanese"], "slot=value"),
        (["fod=Japanese"], "Did you mean 'food'"),
        (["food=Japanes"], "Did you mean 'Japanese'"),
        (["area="], "Empty value"),
        (["food=Japanese", "food=Japanese"], "twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            RunConfig(held_out=bad)
    with pytest.raises(ValueError, match="subsample_per_seed"):
        RunConfig(subsample_per_seed=1)
    assert RunConfig(held_out=["name=Aromi"]).held_out == ("name=Aromi",)  # open slots: any value


def test_filters_split_the_tables_by_held_out_values():
    held = parse_held_out(HELD)
    data = load_e2e("synthetic", "train")
    without = filter_by_held_out(data, held, keep="without")
    with_ = filter_by_held_out(data, held, keep="with")
    assert len(without.mrs) + len(with_.mrs) == len(data.mrs) and len(with_.mrs) > 100
    assert not any(uses_held_out(mr, held) for mr in without.mrs)
    assert all(uses_held_out(mr, held) for mr in with_.mrs)
    assert len(without) == sum(len(refs) for refs in without.grouped().values())


def test_a_held_out_run_trains_without_and_evaluates_with_the_values():
    config = CPU.with_(held_out=HELD, n_val_mrs=200, eval_mrs=250, eval_split="test")
    held = parse_held_out(HELD)
    train, val, evaluation = (run_data(config, role) for role in ("train", "validation", "eval"))
    for mr in train.mrs + val.mrs:
        parsed = parse_mr(mr)
        assert parsed.get("food") != "Japanese" and parsed.get("area") != "riverside"
    assert len(evaluation.mrs) == 250 and all(uses_held_out(mr, held) for mr in evaluation.mrs)
    assert len(val.mrs) == 200  # the synthetic pools are drawn larger to leave enough
    assert len(data_pool(config, "test").mrs) > 300  # of 1000 MRs, about 41% use one
    plain = run_data(CPU.with_(eval_mrs=250, eval_split="test"), "eval")
    assert not all(uses_held_out(mr, held) for mr in plain.mrs)  # no filter without held_out
    with pytest.raises(ValueError, match="held_out"):
        run_data(config.with_(eval_mrs=900), "eval")


def test_held_out_slot_errors_count_only_held_out_slots():
    held = parse_held_out(HELD)
    mr = "name[Aromi], food[Japanese], area[riverside], priceRange[cheap]"
    assert held_out_errors(mr, ["food", "priceRange"], [], held) == (1, 2)
    assert held_out_errors(mr, ["priceRange"], ["area"], held) == (1, 2)
    assert held_out_errors("name[Aromi], food[Italian]", ["food"], [], held) == (0, 0)
    history = History(config={"run": {"held_out": list(HELD)}})
    history.generations = [
        {"mr": mr, "text": "", "missing": ["food"], "contradicted": [], "slots": 4,
         "bleu_stats": [0] * 10},
        {"mr": "name[X], area[riverside]", "text": "", "missing": [], "contradicted": [],
         "slots": 2, "bleu_stats": [0] * 10},
    ]  # fmt: skip
    stats = table_statistics(history)
    assert np.array_equal(stats["held_out"], [[1, 2], [0, 1]])
    history.config = {"run": {"held_out": []}}
    assert "held_out" not in table_statistics(history)


def test_data_seed_alone_gives_every_run_seed_the_same_subset():
    low = FAST.with_(n_train_mrs=50)
    same = {tuple(run_data(low.with_(seed=s), "train").mrs) for s in (0, 1, 2)}
    assert len(same) == 1  # the default: the subset is fixed by data_seed


def test_subsample_per_seed_draws_a_subset_per_run_seed_and_keeps_eval_tables():
    low = FAST.with_(n_train_mrs=50, subsample_per_seed=True, eval_mrs=20)
    subsets = [set(run_data(low.with_(seed=s), "train").mrs) for s in (0, 1, 2)]
    assert all(len(s) == 50 for s in subsets)
    assert subsets[0] != subsets[1] and subsets[1] != subsets[2]
    assert subsets[0] == set(run_data(low.with_(seed=0), "train").mrs)  # reproducible
    big = set(run_data(low.with_(seed=1, n_train_mrs=200), "train").mrs)
    assert subsets[1] <= big  # nested per seed: 50 inside 200
    for role in ("validation", "eval"):  # what runs are scored on never moves with the seed
        assert run_data(low.with_(seed=0), role).mrs == run_data(low.with_(seed=2), role).mrs
    assert subset_seed(low.with_(seed=1)) != subset_seed(low.with_(seed=1, data_seed=1))


def test_subsample_per_seed_is_ignored_on_the_full_set_and_keys_the_cache():
    full = FAST.with_(n_train_mrs=None)
    assert canonical(full.with_(subsample_per_seed=True)) == canonical(full)
    low = FAST.with_(n_train_mrs=50)
    assert run_key(low) != run_key(low.with_(subsample_per_seed=True))
    assert run_key(low) != run_key(low.with_(held_out=HELD))
    assert RunConfig.from_dict(low.with_(held_out=HELD).to_dict()) == low.with_(held_out=HELD)
