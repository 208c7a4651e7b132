"""Intervals over seeds and tables (prefixlab.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from prefixlab.stats import (
    Interval,
    _t_quantile,
    bootstrap,
    paired_difference,
    ratio,
    t_interval,
    verdict,
)


@pytest.mark.parametrize(
    "p, dof, expected",  # Student-t quantiles from printed tables
    [(0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.975, 30, 2.0423), (0.95, 10, 1.8125)],
)
def test_t_quantile_matches_tables(p, dof, expected):
    assert _t_quantile(p, dof) == pytest.approx(expected, abs=1e-4)


def test_t_interval_of_known_values():
    iv = t_interval([1, 2, 3, 4, 5])  # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764
    half = 2.7764 * np.sqrt(2.5) / np.sqrt(5)
    assert iv.estimate == 3
    assert iv.low == pytest.approx(3 - half, abs=1e-3)
    assert iv.high == pytest.approx(3 + half, abs=1e-3)
    assert "5 seeds" in iv.method


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = [t_interval(rng.normal(0.3, 1.0, 5)) for _ in range(2000)]
    coverage = np.mean([iv.low <= 0.3 <= iv.high for iv in hits])
    assert 0.93 < coverage < 0.97


def _errors(rng, seeds, tables, p):
    slots = rng.integers(3, 9, size=(tables,))
    errors = rng.binomial(slots[None, :].repeat(seeds, 0), p)
    return np.stack([errors, slots[None, :].repeat(seeds, 0)], axis=-1)


def test_bootstrap_estimate_is_the_corpus_ratio_and_the_interval_holds_it():
    rng = np.random.default_rng(0)
    stats = _errors(rng, 1, 300, 0.2)
    iv = bootstrap(stats)
    assert iv.estimate == pytest.approx(stats[0, :, 0].sum() / stats[0, :, 1].sum())
    assert iv.low < iv.estimate < iv.high
    assert iv.low > 0.15 and iv.high < 0.25


def test_bootstrap_interval_narrows_with_more_tables():
    rng = np.random.default_rng(0)
    small = bootstrap(_errors(rng, 3, 40, 0.3))
    large = bootstrap(_errors(rng, 3, 400, 0.3))
    assert large.half_width < small.half_width / 2


def test_bootstrap_accepts_a_metric_that_is_not_vectorized():
    rng = np.random.default_rng(0)
    stats = _errors(rng, 2, 50, 0.3)
    fast = bootstrap(stats, ratio, n_resamples=300)
    slow = bootstrap(stats, lambda s: float(s[0] / s[1]), n_resamples=300)
    assert (fast.estimate, fast.low, fast.high) == pytest.approx(
        (slow.estimate, slow.low, slow.high)
    )


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    stats = _errors(np.random.default_rng(0), 1, 100, 0.3)
    iv = paired_difference(stats, stats)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)
    assert verdict(iv, lower_is_better=True) == "not resolved"


def test_pairing_removes_the_table_to_table_spread():
    # Tables differ a lot in difficulty; B makes one extra error on a quarter of them.
    rng = np.random.default_rng(0)
    slots = np.full(200, 8)
    hard = rng.integers(0, 8, 200)
    extra = (rng.random(200) < 0.25).astype(int)
    a = np.stack([hard, slots], -1)[None]
    b = np.stack([np.minimum(hard + extra, 8), slots], -1)[None]
    paired = paired_difference(a, b)
    assert paired.high < 0  # A has fewer errors: resolved
    assert verdict(paired, lower_is_better=True) == "A better"
    assert verdict(paired, lower_is_better=False) == "B better"
    unpaired_half = bootstrap(a).half_width + bootstrap(b).half_width
    assert paired.half_width < unpaired_half / 3


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(0)
    base = _errors(rng, 1, 200, 0.3)
    calm = np.repeat(base, 5, axis=0)
    noisy = calm.copy()
    noisy[:, :, 0] = np.minimum(noisy[:, :, 0] + rng.integers(0, 3, (5, 1)), noisy[:, :, 1])
    assert bootstrap(noisy).half_width > bootstrap(calm).half_width


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: t_interval([1.0]), "at least 2"),
        (lambda: t_interval([1.0, float("nan")]), "NaN"),
        (lambda: t_interval([1.0, 2.0], confidence=95), r"\(0, 1\)"),
        (lambda: bootstrap(np.zeros((3,))), r"\[seeds, tables, statistics\]"),
        (lambda: bootstrap(np.ones((1, 4, 2)), n_resamples=10), "n_resamples"),
        (lambda: bootstrap(np.ones((1, 4, 2)), seed=-1), "seed"),
        (lambda: paired_difference(np.ones((1, 4, 2)), np.ones((1, 5, 2))), "same tables"),
        (lambda: verdict(0.3, lower_is_better=True), "Interval"),
    ],
)
def test_bad_calls_say_how_to_fix_them(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_interval_formats_and_knows_zero():
    iv = Interval(0.1, -0.02, 0.22)
    assert iv.covers_zero
    assert iv.format(2) == "0.10 [-0.02, 0.22]"


def test_format_interval_plain_signed_and_missing():
    from prefixlab.stats import Interval, format_interval

    assert format_interval(0.1234, 0.1, 0.15) == "0.123 [0.100, 0.150]"
    assert format_interval(0.022, -0.004, 0.048, signed=True) == "+0.022 [-0.004, +0.048]"
    assert format_interval(12.34, 11.0, 13.6, digits=1) == "12.3 [11.0, 13.6]"
    assert format_interval(float("nan"), 0, 1) == format_interval(None, 0, 1) == "no data"
    assert Interval(-0.5, -0.75, -0.25).format(2, signed=True) == "-0.50 [-0.75, -0.25]"
    with pytest.raises(ValueError, match="digits"):
        format_interval(0.1, 0, 1, digits=-1)


def test_interval_texts_digits_per_metric_and_sign_per_kind():
    import pandas as pd

    from prefixlab.studies import interval_texts

    table = pd.DataFrame({
        "kind": ["estimate", "difference", "difference"],
        "metric": ["final_val_loss", "final_val_loss", "bleu"],
        "estimate": [1.2345, -0.0251, 2.56], "low": [1.2, -0.032, 1.1], "high": [1.3, -0.019, 3.8],
    }, index=[5, 6, 7])  # fmt: skip
    texts = interval_texts(table)
    assert texts.tolist() == [
        "1.234 [1.200, 1.300]",
        "-0.025 [-0.032, -0.019]",
        "+2.6 [+1.1, +3.8]",
    ]
    assert texts.index.tolist() == [5, 6, 7]
    assert interval_texts(table, signed=False).iloc[2] == "2.6 [1.1, 3.8]"
    with pytest.raises(ValueError, match="missing"):
        interval_texts(table.drop(columns="low"))
