"""The MLP-stability verdicts (prefixlab.studies.stability) on a stand-in study whose runs are
made up (no training), so every number below is known; and live_slice(steps=) on a real tiny
study (a few steps of the embedded tiny model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefixlab.stats import _f_quantile, sd_ratio_interval, welch_interval
from prefixlab.studies import (
    Study,
    failure_table,
    live_slice,
    matched_rate_test,
    protocol,
    rate_curves,
    read_results,
    run_outcomes,
    run_study,
    seed_spread,
    stability_verdicts,
)
from prefixlab.train import History

STUDY = Study(
    name="stability_check",
    arms=("prefix", "prefix+mlp"),
    preset="fast",
    overrides={"steps": 40, "eval_every": 20},
    axes={"init": ("random", "zero")},
    n_rates=5,
    max_extensions=0,
    tuning_seeds=(100, 101, 102),
    seeds=(0, 1, 2, 3, 4),
    n_eval_tables=2,
    pairs=(("prefix+mlp", "prefix"),),
)
START = 3.0  # every stand-in run's validation loss before step 1


def _stand_in(config, *, cache, progress, return_model):
    """prefix: best at its default rate, fails (ends above START) at the top of its grid and
    goes NaN there from init "zero"; its losses spike at the rate above its best. prefix+mlp:
    best at its default, 0.1 lower than the direct form everywhere, never spikes."""
    m, lr, seed = config.method, config.lr, config.train.seed
    k = round(math.log(lr / (0.03 if m == "prefix" else 0.003)) / math.log(30**0.5))
    final = 1.0 + 0.1 * k * k - (0.1 if m == "prefix+mlp" else 0.0)
    if seed >= 100:  # tuning seeds
        final += 0.001 * (seed % 3)
    else:  # stage 2: the direct form spreads 10x more
        final += (0.01 if m == "prefix" else 0.001) * seed
    losses = list(np.linspace(START, max(final, 0.5), config.train.steps))
    if m == "prefix" and k == 1:
        losses[20:25] = [10.0] * 5  # one rise, well above 1.5x the running minimum
    if m == "prefix" and k == 2:
        final = START + 1.0  # failed: ends above its start
        if config.init == "zero":
            final = math.nan
    val_step = [0, 20, config.train.steps]
    history = History(loss=losses, step=list(range(1, len(losses) + 1)), val_step=val_step,
                      val_loss=[START, (START + final) / 2, final])  # fmt: skip
    row = dict(lr=lr, steps_done=config.train.steps, prefix_length=config.prefix_length,
               final_val_loss=final, best_val_loss=final, stopped_reason="completed",
               diverged=False, trainable_params=0, seconds=0.0, cached=False,
               run_id=f"{m}-{config.init}-{lr}-{seed}")  # fmt: skip
    return row, history, None


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stability")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "run_experiment", _stand_in)
        run_study(STUDY, out=folder, progress=False)
    return read_results("stability_check", folder)


def test_run_outcomes_rate_steps_failures_and_rises(results):
    runs = run_outcomes(results)
    assert len(runs) == len(results.table)
    tune = runs[runs["stage"] == "tune"]
    assert sorted(set(tune["rate_step"])) == [-2, -1, 0, 1, 2]
    assert set(runs[runs["rate_step"] == 0]["relative_rate"]) == {"best"}
    assert set(runs[runs["rate_step"] == 2]["relative_rate"]) == {"30x"}
    assert set(runs[runs["rate_step"] == -1]["relative_rate"]) == {"1/5.5x"}
    assert (runs["start_val_loss"] == START).all()
    top = tune[(tune["arm"] == "prefix") & (tune["rate_step"] == 2)]
    assert (top["outcome"] == "failed").all() and len(top) == 6
    assert (tune[tune["arm"] == "prefix+mlp"]["outcome"] == "trained").all()
    spiky = tune[(tune["arm"] == "prefix") & (tune["rate_step"] == 1)]
    assert (spiky["rises"] == 1).all() and (spiky["first_rise"] > 20).all()
    assert (tune[tune["arm"] == "prefix+mlp"]["rises"] == 0).all()
    with pytest.raises(ValueError, match="factor"):
        run_outcomes(results, factor=1.0)


def test_failure_table_counts_each_rate(results):
    table = failure_table(results).set_index(["init", "arm", "rate_step"])
    assert table.loc[("random", "prefix", 2), "failed_runs"] == "3/3"
    assert table.loc[("random", "prefix", 1), "unstable"] == 3
    assert table.loc[("zero", "prefix+mlp", 2), "failed"] == 0
    seeds = failure_table(results, stage="seeds")
    assert set(seeds["rate_step"]) == {0} and (seeds["runs"] == 5).all()


def test_stability_verdicts_say_helps_hurts_and_why(results):
    table = stability_verdicts(run_outcomes(results)).set_index(["init", "rate_step"])
    assert len(table) == 10  # 2 inits x 5 rate steps
    best = table.loc[("random", 0)]
    assert best["estimate"] == pytest.approx(-0.1) and best["verdict"] == "helps"
    assert best["based_on"] == "final validation loss" and best["high"] < 0
    assert table.loc[("random", 2), "verdict"] == "helps"  # direct failed, finite losses
    nan = table.loc[("zero", 2)]  # direct's losses are NaN: read from the failures
    assert nan["verdict"] == "helps" and nan["based_on"].startswith("failures")
    assert nan["failed_b"] == "3/3" and nan["failed_a"] == "0/3"
    assert table.loc[("random", 1), "unstable_b"] == "3/3"


def test_seed_spread_compares_means_and_spreads(results):
    table = seed_spread(results).set_index("init")
    row = table.loc["random"]
    assert row["n_a"] == row["n_b"] == 5
    assert row["sd_ratio"] == pytest.approx(0.1, rel=1e-6)
    assert row["spread_verdict"] == "prefix+mlp spreads less" and row["ratio_high"] < 1
    assert row["mean_verdict"] == "helps"
    assert row["low_a"] < row["mean_a"] < row["high_a"]


def test_matched_rate_test_reads_the_grid(results):
    table = matched_rate_test(results, ratio=5.0).set_index(["init", "rate"])
    matched = table.loc[("random", "matched")]
    assert matched["lr_b"] == pytest.approx(0.16)  # the grid rate nearest 0.03 x 5 = 0.15
    assert matched["off_by"] == pytest.approx(0.16 / 0.15)
    assert table.loc[("random", "default"), "lr_b"] == pytest.approx(0.03)
    assert table.loc[("random", "default"), "verdict"] == "prefix+mlp lower"
    with pytest.raises(ValueError, match="ratio"):
        matched_rate_test(results, ratio=0)


def test_rate_curves_average_the_seeds(results):
    curves = rate_curves(results, "prefix+mlp", {"init": "random"})
    assert len(curves) == 5 and list(curves) == sorted(curves)
    best = curves[0.003]
    assert list(best.index) == [0, 20, 40] and best.iloc[0] == START
    train = rate_curves(results, "prefix+mlp", {"init": "random"}, which="train_loss")
    assert len(train[0.003]) == 40 and train[0.003].index[0] == 1


def test_welch_and_sd_ratio_intervals():
    assert _f_quantile(0.975, 4, 4) == pytest.approx(9.6045, abs=1e-3)  # printed tables
    diff = welch_interval([1, 2, 3], [2, 3, 5, 6])
    assert diff.estimate == pytest.approx(-2.0) and diff.low < -2 < diff.high < 1
    rng = np.random.default_rng(0)
    hits = [welch_interval(rng.normal(0, 1, 4), rng.normal(0, 3, 5)) for _ in range(1500)]
    assert 0.92 < np.mean([i.low <= 0 <= i.high for i in hits]) < 0.98
    ratios = [sd_ratio_interval(rng.normal(0, 2, 5), rng.normal(0, 1, 5)) for _ in range(1500)]
    assert 0.92 < np.mean([r.low <= 2 <= r.high for r in ratios]) < 0.98
    with pytest.raises(ValueError, match="at least 2"):
        welch_interval([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no spread"):
        sd_ratio_interval([1.0, 2.0], [3.0, 3.0])


TINY = Study(
    name="slice_steps_check",
    arms=("prefix",),
    preset="fast",
    overrides={"steps": 12, "n_train_mrs": 16, "n_val_mrs": 4, "eval_every": 6},
    n_rates=2,
    lr_span=2.0,
    max_extensions=0,
    seeds=(0,),
    n_eval_tables=1,
)


def test_live_slice_steps_reproduces_the_first_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    results = run_study(TINY, out=tmp_path / "results", progress=False)
    line = live_slice(results, steps=5)
    assert line.startswith("live slice matches") and "first 5 steps" in line
    run_id = results.stage("seeds")["run_id"].iloc[0]
    results.tables[run_id]["train_loss"] = results.tables[run_id]["train_loss"] + 0.5
    assert live_slice(results, steps=5).startswith("live slice does NOT match")
    with pytest.raises(ValueError, match="fewer than steps=50"):
        live_slice(results, steps=50)
    with pytest.raises(ValueError, match="without cache"):
        live_slice(results, steps=5, cache=True)


def test_relative_rate_labels_read_as_factors():
    from prefixlab.studies.stability import relative_rate_label

    step = 30 ** (1 / 3)
    labels = [relative_rate_label(k, step) for k in (-5, -2, 0, 1, 4)]
    assert labels == ["1/290x", "1/9.7x", "best", "3.1x", "93x"]
