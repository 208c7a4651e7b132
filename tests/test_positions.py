"""position_split: validation loss per prefix length, split by whether a row stays inside the
positions the frozen model was pretrained on (prefixlab.studies.positions).

One tiny study over two prefix lengths (a few steps on the embedded tiny model) is run once for
the module.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from small_studies import run_once, small_study

from prefixlab.runs import _encoded, base_model
from prefixlab.studies import committed_run, read_results
from prefixlab.studies.positions import (
    PAIR_COLUMNS,
    SPLIT_COLUMNS,
    arms_position_split,
    position_split,
    pretrained_positions,
    split_text,
)

LENGTHS = (2, 6)
TINY = small_study("positions_check", axes={"prefix_length": LENGTHS}, max_extensions=0,
                   n_eval_tables=2, max_new_tokens=4)  # fmt: skip


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    return run_once(tmp_path_factory, TINY, "positions")[0]


@pytest.fixture
def results(study_root, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(study_root / "cache"))
    return read_results("positions_check", study_root / "results")


def _lengths(results):
    _, config = committed_run(results, "prefix", 0, {"prefix_length": 2}, evaluate=False)
    encoded = _encoded(config, base_model(config)[1], "validation", config.n_val_mrs, "n_val_mrs")
    return encoded["attention_mask"].sum(dim=1).numpy()


def test_pretrained_positions_reads_the_build_window(tmp_path):
    assert pretrained_positions("tiny") == 128  # the embedded models' pretraining windows
    assert pretrained_positions(str(tmp_path)) is None  # a folder that does not say
    with pytest.raises(ValueError, match="embedded model's name or a folder"):
        pretrained_positions("")


def test_split_puts_each_row_in_one_group_by_its_length_at_the_longest_prefix(results):
    lengths = _lengths(results)
    limit = int(np.median(lengths)) + max(LENGTHS)  # about half the rows end past it
    table = position_split(results, reference=2, limit=limit, n_resamples=200)
    assert list(table.columns) == list(SPLIT_COLUMNS)
    inside = int((lengths + max(LENGTHS) <= limit).sum())
    assert 0 < inside < len(lengths)
    for (arm, value), at in table.groupby(["arm", "axis_value"]):
        counts = dict(zip(at["rows"], at["n_rows"], strict=True))
        assert counts == {"inside": inside, "past": len(lengths) - inside}, (arm, value)
        assert (at["n_tables"] >= 1).all() and (at["n_tables"] <= at["n_rows"]).all()
    assert table.attrs == {"limit": limit, "longest": max(LENGTHS), "reference": 2,
                           "axis": "prefix_length"}  # fmt: skip


def test_differences_are_the_losses_minus_the_reference_on_the_same_rows(results):
    lengths = _lengths(results)
    table = position_split(results, reference=2, limit=int(np.median(lengths)) + 6,
                           n_resamples=200)  # fmt: skip
    for _, at in table.groupby(["arm", "rows"]):
        at = at.set_index("axis_value")
        assert at.loc[2, "minus_reference"] == 0.0 and at.loc[2, "verdict"] == ""
        assert at.loc[6, "minus_reference"] == pytest.approx(at.loc[6, "loss"] - at.loc[2, "loss"])
        assert at.loc[6, "low"] <= at.loc[6, "minus_reference"] <= at.loc[6, "high"]
        assert at.loc[6, "verdict"] in ("prefix_length=6 better", "prefix_length=2 better",
                                        "not resolved")  # fmt: skip
    texts = split_text(table)
    assert (texts[table.verdict == ""] == "").all()
    assert (
        texts[table.verdict != ""]
        .str.match(r"^[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]$")
        .all()
    )


def test_rows_add_up_to_the_committed_validation_loss(results):
    """With every row inside, each length's loss is the mean over seeds of the committed
    final validation losses: the rows rebuild them exactly."""
    table = position_split(results, reference=2, limit=10_000, n_resamples=200)
    assert set(table["rows"]) == {"inside"}  # no row reaches the limit: one group
    seeds = results.stage("seeds")
    for r in table.itertuples():
        runs = seeds[(seeds.arm == r.arm) & (seeds.prefix_length.astype(str) == str(r.axis_value))]
        assert r.loss == pytest.approx(runs.final_val_loss.mean(), rel=1e-4)


def test_a_changed_run_is_refused(results, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(results.paths["csv"].parent, folder)
    csv = folder / "positions_check.csv"
    table = pd.read_csv(csv)
    table.loc[table.stage == "seeds", "final_val_loss"] += 0.5
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="changed since the study ran"):
        position_split(read_results("positions_check", folder), reference=2, limit=100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"axis": "n_train_mrs"}, "has no axis 'n_train_mrs'"),
        ({"values": (6,)}, "include the reference"),
        ({"values": (2, 7)}, "must be lengths of the study"),
        ({"arms": ("lora",)}, "lora"),
        ({"limit": 0}, "limit"),
        ({"n_resamples": 10}, "n_resamples"),
    ],
)
def test_bad_options_say_how_to_fix_them(results, kwargs, message):
    options = {"reference": 2, "limit": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        position_split(results, **options)


def test_arms_split_matches_the_length_split_for_the_same_runs(results):
    """Two lengths of one study as two arms: the same groups and differences as position_split."""
    lengths = _lengths(results)
    limit = int(np.median(lengths)) + 6
    by_length = position_split(results, reference=2, limit=limit, arms=("prompt",), n_resamples=200)
    pair = arms_position_split((results, "prompt", {"prefix_length": 6}),
                               (results, "prompt", {"prefix_length": 2}), limit=limit,
                               n_resamples=200)  # fmt: skip
    assert list(pair.columns) == list(PAIR_COLUMNS)
    assert pair.attrs["longest"] == 6  # the longer arm's prefix, found from its config
    at_6 = by_length[by_length.axis_value == 6].set_index("rows")
    for r in pair.itertuples():
        assert r.n_rows == at_6.loc[r.rows, "n_rows"]
        assert r.difference == pytest.approx(at_6.loc[r.rows, "minus_reference"])
        assert (r.low, r.high) == pytest.approx((at_6.loc[r.rows, "low"], at_6.loc[r.rows, "high"]))
        assert r.loss_a - r.loss_b == pytest.approx(r.difference)
    assert split_text(pair).str.match(r"^[+-]\d\.\d{3} \[").all()


def test_arms_split_checks_its_sides(results):
    with pytest.raises(ValueError, match=r"must be \(results, arm\)"):
        arms_position_split("prompt", (results, "prompt", {"prefix_length": 2}), limit=100)
    with pytest.raises(ValueError, match="lora"):
        arms_position_split((results, "lora"), (results, "prompt"), limit=100)
    with pytest.raises(ValueError, match="longest"):
        arms_position_split((results, "prompt", {"prefix_length": 6}),
                            (results, "prompt", {"prefix_length": 2}), longest=-1, limit=100)  # fmt: skip
