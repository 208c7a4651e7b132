"""Notebook 07's studies (their definitions meet the protocol and fit the data) and the claims
table computed from committed results (here: made-up results whose answers are known)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prefixlab.studies import get_study
from prefixlab.studies.claims import (
    CLAIMS,
    VERDICTS,
    claims_table,
    combine_verdicts,
    scale_trend,
    seed_spread_ratio,
)
from prefixlab.studies.protocol import check_eval_tables
from prefixlab.studies.registry import CPU_ESTIMATES, HELD_OUT_VALUES, LOW_DATA_SIZES
from prefixlab.studies.results import write_results

NOTEBOOK_07 = ("low_data", "init_low_data", "extrapolation", "table5")


@pytest.mark.parametrize("name", NOTEBOOK_07)
def test_notebook_07_studies_meet_the_protocol_and_fit_the_data(name):
    study = get_study(name)
    assert study.protocol_problems() == []
    check_eval_tables(study, study.base_config())  # >= n_eval_tables after any held-out filter
    assert set(CPU_ESTIMATES[name]) == {"runs", "seconds_per_run", "hours"}
    assert CPU_ESTIMATES[name]["runs"] >= len(study.arms) * (study.n_rates + len(study.seeds))


def test_notebook_07_study_definitions():
    low = get_study("low_data")
    assert [a.method for a in low.arms] == ["prefix", "prompt", "lora", "full"]
    assert low.axes["n_train_mrs"] == LOW_DATA_SIZES and len(LOW_DATA_SIZES) >= 4
    assert low.overrides["subsample_per_seed"] is True  # a fresh subset per seed
    assert max(LOW_DATA_SIZES) == 1000  # the whole synthetic training split
    init = get_study("init_low_data")
    assert sorted(a.config["init"] for a in init.arms) == ["random", "vocab", "zero"]
    assert init.axes["n_train_mrs"] == (50, 500)
    extra = get_study("extrapolation")
    assert len(extra.overrides["held_out"]) >= 2 == len(HELD_OUT_VALUES) - 1
    assert {a.method for a in extra.arms} == {"prefix", "prompt", "full"}
    table5 = get_study("table5")
    assert {a.label: (a.method, a.config["prefix_length"]) for a in table5.arms} == {
        "EMB-1": ("prompt", 1), "EMB-10": ("prompt", 10), "EMB-20": ("prompt", 20),
        "infix": ("infix", 10), "prefix": ("prefix", 10),
    }  # fmt: skip


# -- the claims table on made-up results ---------------------------------------------------------

N_TABLES = 40


def _bleu_tables(quality: float, rng) -> np.ndarray:
    """[tables, 10] BLEU statistics whose BLEU rises with `quality` (0..1)."""
    totals = np.array([20, 19, 18, 17])
    rows = []
    for _ in range(N_TABLES):
        q = np.clip(quality + rng.normal(0, 0.03), 0.05, 1)
        rows.append([20, 20, *np.maximum(1, np.round(q ** np.arange(1, 5) * totals)), *totals])
    return np.array(rows, dtype=np.int32)


def _slot_tables(error: float, rng) -> np.ndarray:
    slots = np.full(N_TABLES, 2)
    return np.stack([rng.binomial(2, error, N_TABLES), slots], axis=1).astype(np.int32)


def _write(folder, name, quality, *, spread=lambda arm: 0.01, held_error=None):
    """Made-up stage-2 results of study `name`: quality(arm, point) -> BLEU quality."""
    study = get_study(name)
    rng = np.random.default_rng(0)
    rows, tables = [], {}
    for point in study.points():
        for arm in study.arms:
            for seed in study.seeds:
                run_id = f"{arm.label}-{'-'.join(map(str, point.values()))}-{seed}"
                q = quality(arm.label, point) + rng.normal(0, spread(arm.label))
                tables[run_id] = {"bleu": _bleu_tables(q, rng)}
                if held_error is not None:
                    tables[run_id]["held_out"] = _slot_tables(held_error[arm.label], rng)
                rows.append({"stage": "seeds", "arm": arm.label, "method": arm.method,
                             "lr": 0.01, "seed": seed, "run_id": run_id,
                             "eval_tables_digest": "same", "val_tables_digest": "same",
                             **point})  # fmt: skip
    write_results(study, pd.DataFrame(rows), tables, {"preset": "cpu"}, folder)


@pytest.fixture(scope="module")
def agreeing(tmp_path_factory):
    """Results that say what the paper says, for every claim."""
    folder = tmp_path_factory.mktemp("agree")
    _write(folder, "low_data", lambda arm, p: 0.8 if arm == "prefix" else 0.5)
    _write(folder, "init_low_data", lambda arm, p: 0.7 if "vocab" in arm else 0.5,
           spread=lambda arm: 0.15 if "random" in arm else 0.01)  # fmt: skip
    _write(
        folder,
        "extrapolation",
        lambda arm, p: 0.6,
        held_error={"prefix": 0.1, "prompt": 0.5, "full": 0.6},
    )
    order = {"prefix": 0.9, "infix": 0.7, "EMB-20": 0.45, "EMB-10": 0.45, "EMB-1": 0.2}
    _write(folder, "table5", lambda arm, p: order[arm])
    _write(
        folder,
        "prefix_length",
        lambda arm, p: {1: 0.3, 4: 0.5, 10: 0.8, 40: 0.79}[p["prefix_length"]],
    )
    return folder


def test_claims_agree_when_the_results_say_what_the_paper_says(agreeing):
    table = claims_table(agreeing, n_resamples=300)
    assert list(table.index) == [c.key for c in CLAIMS]
    assert set(table["verdict"]) <= set(VERDICTS)
    assert dict(table["verdict"]) == {key: "agree" for key in table.index}
    assert "50: +" in table.loc["low_data", "ours"]  # prefix - full, positive, at 50 tables
    assert table.loc["extrapolation", "metric"] == "held_out_slot_error_rate"
    assert "70.3" in table.loc["placement", "paper"]


def test_claims_disagree_when_the_results_say_the_opposite(tmp_path, agreeing):
    for name in ("init_low_data", "extrapolation", "prefix_length"):
        for suffix in (".csv", ".json", ".tables.npz"):
            (tmp_path / f"{name}{suffix}").write_bytes((agreeing / f"{name}{suffix}").read_bytes())
    _write(tmp_path, "low_data", lambda arm, p: 0.8 if arm == "full" else 0.5)
    order = {"prefix": 0.5, "infix": 0.7, "EMB-20": 0.9, "EMB-10": 0.9, "EMB-1": 0.2}
    _write(tmp_path, "table5", lambda arm, p: order[arm])
    table = claims_table(tmp_path, n_resamples=300)
    assert table.loc["low_data", "verdict"] == "disagree"
    assert table.loc["placement", "verdict"] == "disagree"
    (tmp_path / "extrapolation.csv").unlink()
    table = claims_table(tmp_path, n_resamples=300)
    assert table.loc["extrapolation", "verdict"] == "no results"
    assert "studies run extrapolation" in table.loc["extrapolation", "ours"]
    hours = CPU_ESTIMATES["extrapolation"]["hours"]
    assert f"about {hours:g} CPU-hour" in table.loc["extrapolation", "ours"]


def test_not_run_line_names_the_command_and_the_estimate():
    from prefixlab.studies.registry import cpu_estimate, not_run_line

    for name in (*NOTEBOOK_07, "prefix_length"):
        line = not_run_line(name)
        assert line.startswith(f"not run yet: `python -m prefixlab.studies run {name}` (about ")
        assert f"about {cpu_estimate(name)['hours']:g} CPU-hour" in line
    assert "about " in not_run_line("scale_axis")  # any study: estimated when not listed
    with pytest.raises(ValueError, match="Unknown study"):
        not_run_line("low_dta")


def test_cpu_estimate_scales_with_the_model():
    from prefixlab.studies import get_study
    from prefixlab.studies.registry import MODEL_TIME_SCALE, cpu_estimate

    scale = get_study("scale_axis")  # the same arms at nano, tiny and mini
    by_model = [
        cpu_estimate(scale.with_(axes={"model": (m,)}))["hours"] for m in ("nano", "tiny", "mini")
    ]
    assert by_model[0] < by_model[1] < by_model[2]
    assert by_model[2] / by_model[1] == pytest.approx(MODEL_TIME_SCALE["mini"], rel=0.1)


def test_verdicts_combine_and_spread_ratio():
    pro, con = {"A better"}, {"B better"}
    assert combine_verdicts(["A better", "not resolved"], pro, con) == "agree"
    assert combine_verdicts(["B better", "not resolved"], pro, con) == "disagree"
    assert combine_verdicts(["A better", "B better"], pro, con) == "mixed"
    assert combine_verdicts(["not resolved"], pro, con) == "not resolved"
    assert combine_verdicts([], pro, con) == "no results"
    rng = np.random.default_rng(1)
    wide, narrow = rng.normal(0, 5, 8), rng.normal(0, 1, 8)
    spread = seed_spread_ratio(wide, narrow, n_resamples=500)
    assert spread.low > 1 and spread.estimate == pytest.approx(
        wide.std(ddof=1) / narrow.std(ddof=1)
    )
    with pytest.raises(ValueError, match="at least 3"):
        seed_spread_ratio([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="metric"):
        claims_table(metric="blue")


def _gaps(*rows):
    return pd.DataFrame(rows, columns=["model", "parameters", "metric", "estimate", "low", "high"])


def test_scale_trend_calls_a_gap_only_when_its_change_is_resolved():
    shrinks = _gaps(("nano", 2e5, "loss", -0.12, -0.14, -0.10), ("tiny", 1e6, "loss", -0.08, -0.09, -0.06),
                    ("mini", 4e6, "loss", -0.02, -0.04, 0.00))  # fmt: skip
    row = scale_trend(shrinks).iloc[0]
    assert (row.smallest, row.largest, row.trend, row.lester) == (
        "nano",
        "mini",
        "shrinks",
        "agree",
    )
    assert row.change == pytest.approx(0.10) and row.low > 0
    # independent normal intervals: se = half-width / 1.96 at each end
    se = np.hypot(0.02 / 1.959964, 0.02 / 1.959964)
    assert row.high - row.change == pytest.approx(1.959964 * se)
    grows = _gaps(("nano", 2e5, "gain", 0.02, 0.01, 0.03), ("mini", 4e6, "gain", 0.19, 0.16, 0.23))
    assert tuple(scale_trend(grows).iloc[0][["trend", "lester"]]) == ("grows", "disagree")
    wide = _gaps(
        ("nano", 2e5, "slot", -0.01, -0.03, 0.01), ("mini", 4e6, "slot", -0.03, -0.06, 0.0)
    )
    assert scale_trend(wide).iloc[0].trend == "not resolved"
    flips = _gaps(
        ("nano", 2e5, "loss", 0.10, 0.08, 0.12), ("mini", 4e6, "loss", -0.05, -0.07, -0.03)
    )
    assert tuple(scale_trend(flips).iloc[0][["trend", "lester"]]) == ("reverses", "agree")
    one = scale_trend(_gaps(("nano", 2e5, "loss", -0.1, -0.2, 0.0)))
    assert one.iloc[0].trend == "one size"
    with pytest.raises(ValueError, match="parameters"):
        scale_trend(shrinks.drop(columns="parameters"))
    with pytest.raises(ValueError, match="0.95"):
        scale_trend(shrinks, confidence=0.9)
