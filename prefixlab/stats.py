"""Intervals for the lab's comparisons: over seeds, over evaluation tables, and paired.

Every stated difference in the series carries an interval, and a difference whose interval
covers 0 is "not resolved". Two sources of noise matter here:

- **seeds**: another seed gives another initialization and another order of batches;
- **tables**: another draw of held-out tables gives another BLEU or slot error rate.

Metrics are written as *sufficient statistics per table* so that a corpus metric can be
recomputed on any resample of tables: slot error rate is `errors / slots` summed over tables,
BLEU is computed from summed n-gram counts (`prefixlab.evaluate.bleu_statistics`), a mean
is `value / 1`. An array `stats[seed, table, k]` holds them for one method.

`bootstrap` resamples seeds and tables together (a two-level bootstrap: the estimate is the
mean over seeds of the metric over tables); `paired_difference` compares two methods on the
*same* tables (one table resample shared by both, seeds drawn for each method on its own,
since seed 3 of one method has nothing to do with seed 3 of another). `t_interval` is the
classic interval for a mean over a handful of seeds; `welch_interval` compares two such means
(unpaired), `sd_ratio_interval` two seed-to-seed spreads.

    >>> errs = np.array([[[1, 4], [0, 3]]])           # 1 seed, 2 tables, (errors, slots)
    >>> bootstrap(errs, ratio).estimate               # (1 + 0) / (4 + 3)
    0.142857...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided interval: `estimate` in [`low`, `high`]."""

    estimate: float
    low: float
    high: float
    confidence: float = CONFIDENCE
    method: str = ""  # how it was computed: "t over 5 seeds", "bootstrap 5 seeds x 200 tables"

    @property
    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3, signed: bool = False) -> str:
        """ "0.123 [0.101, 0.145]" (`format_interval`; signed for a difference)."""
        return format_interval(self.estimate, self.low, self.high, digits=digits, signed=signed)

    def __str__(self) -> str:
        return self.format()


def format_interval(estimate, low, high, *, digits: int = 3, signed: bool = False) -> str:
    """An estimate and its interval as text: "0.123 [0.101, 0.145]"; with `signed` (for a
    difference) every number carries its sign: "+0.022 [-0.004, +0.048]". "no data" when the
    estimate is missing (None or NaN)."""
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be an int >= 0, got {digits!r}.")
    if estimate is None or not math.isfinite(float(estimate)):
        return "no data"
    sign = "+" if signed else ""
    return f"{estimate:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _check_confidence(confidence) -> float:
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        raise TypeError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}.")
    return float(confidence)


def _t_quantile(p: float, dof: int) -> float:
    """Student-t quantile by bisection on the regularized incomplete beta (no scipy needed)."""
    if dof < 1:
        raise ValueError("dof must be >= 1")

    def cdf(t: float) -> float:
        x = dof / (dof + t * t)
        tail = 0.5 * _betainc(dof / 2, 0.5, x)
        return 1.0 - tail if t > 0 else tail

    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below the mean; use symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of a few values (one per seed) with Student's t interval.

    Args:
        values: at least 2 finite numbers.
    """
    confidence = _check_confidence(confidence)
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"t_interval needs at least 2 values (one per seed); got {len(x)}.")
    if not np.isfinite(x).all():
        raise ValueError("t_interval got a NaN or infinite value; drop failed runs first.")
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(len(x))
    q = _t_quantile(0.5 + confidence / 2, len(x) - 1)
    return Interval(mean, mean - q * sem, mean + q * sem, confidence, f"t over {len(x)} seeds")


def welch_interval(a: Sequence[float], b: Sequence[float],
                   confidence: float = CONFIDENCE) -> Interval:  # fmt: skip
    """mean(a) - mean(b) with Welch's t interval: two independent groups of a few values (one
    per seed) whose spreads may differ. Seeds of two methods are not paired (seed 3 of one has
    nothing to do with seed 3 of the other), so this, not a paired t, compares their means.

    Args:
        a, b: at least 2 finite numbers each.
    """
    confidence = _check_confidence(confidence)
    x, y = (np.asarray(list(v), dtype=float) for v in (a, b))
    if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"welch_interval needs at least 2 values in each group; got {len(x)} and {len(y)}."
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("welch_interval got a NaN or infinite value; drop failed runs first.")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = float(x.mean() - y.mean())
    if va + vb == 0:  # both groups constant: the difference is exact
        return Interval(diff, diff, diff, confidence, f"Welch t, {len(x)} vs {len(y)} seeds")
    dof = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = _t_quantile(0.5 + confidence / 2, max(dof, 1.0)) * math.sqrt(va + vb)
    return Interval(diff, diff - half, diff + half, confidence,
                    f"Welch t, {len(x)} vs {len(y)} seeds")  # fmt: skip


def _f_quantile(p: float, d1: float, d2: float) -> float:
    """Quantile of the F distribution with (d1, d2) degrees of freedom, by bisection on its
    cdf I_{d1 x / (d1 x + d2)}(d1 / 2, d2 / 2)."""
    lo, hi = 0.0, 1.0
    while _betainc(d1 / 2, d2 / 2, d1 * hi / (d1 * hi + d2)) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _betainc(d1 / 2, d2 / 2, d1 * mid / (d1 * mid + d2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sd_ratio_interval(a: Sequence[float], b: Sequence[float],
                      confidence: float = CONFIDENCE) -> Interval:  # fmt: skip
    """sd(a) / sd(b), the ratio of two seed-to-seed spreads, with the F interval (which assumes
    roughly normal values; with 5 seeds per group a ratio must be far from 1 to resolve).

    Args:
        a, b: at least 2 finite numbers each, not all equal within b.
    """
    confidence = _check_confidence(confidence)
    x, y = (np.asarray(list(v), dtype=float) for v in (a, b))
    if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"sd_ratio_interval needs at least 2 values in each group; got {len(x)} and {len(y)}."
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("sd_ratio_interval got a NaN or infinite value; drop failed runs first.")
    sb = float(y.std(ddof=1))
    if sb == 0:
        raise ValueError("The second group has no spread (all values equal): no ratio.")
    ratio_sq = float(x.var(ddof=1)) / sb**2
    d1, d2 = len(x) - 1, len(y) - 1
    tail = (1 - confidence) / 2
    low = ratio_sq / _f_quantile(1 - tail, d1, d2)
    high = ratio_sq / _f_quantile(tail, d1, d2)
    return Interval(math.sqrt(ratio_sq), math.sqrt(low), math.sqrt(high), confidence,
                    f"F interval, {len(x)} vs {len(y)} seeds")  # fmt: skip


# -- metrics from summed statistics ------------------------------------------------------------


def ratio(sums: np.ndarray) -> np.ndarray:
    """stats (numerator, denominator) -> numerator / denominator, e.g. errors / slots."""
    return sums[..., 0] / sums[..., 1]


def mean_of(sums: np.ndarray) -> np.ndarray:
    """stats (value, 1) per table -> the mean value over tables (same as `ratio`)."""
    return ratio(sums)


def _as_stats(stats, what: str) -> np.ndarray:
    s = np.asarray(stats, dtype=float)
    if s.ndim == 2:  # one seed
        s = s[None]
    if s.ndim != 3 or 0 in s.shape:
        raise ValueError(
            f"{what} must be an array [seeds, tables, statistics] (or [tables, statistics] for "
            f"one seed) with no empty axis; got shape {np.shape(stats)}."
        )
    if not np.isfinite(s).all():
        raise ValueError(f"{what} has NaN or infinite entries; drop failed runs first.")
    return s


def _apply(metric: Callable, sums: np.ndarray) -> np.ndarray:
    """metric over the last axis, for every leading index: one call when the metric is
    vectorized (returns one value per leading index), else one call per row."""
    try:
        out = np.asarray(metric(sums), dtype=float)
    except (TypeError, ValueError, IndexError):  # a metric that takes one row at a time
        out = None
    if out is not None and out.shape == sums.shape[:-1]:
        return out
    flat = sums.reshape(-1, sums.shape[-1])
    return np.array([float(metric(row)) for row in flat]).reshape(sums.shape[:-1])


def _estimate(stats: np.ndarray, metric: Callable) -> float:
    return float(_apply(metric, stats.sum(axis=1)).mean())


def _resampled(stats, metric, table_weights, seed_draws) -> np.ndarray:
    """[R] estimates: for each resample, tables weighted by counts and seeds drawn."""
    sums = np.einsum("rt,stk->rsk", table_weights, stats)  # [R, S, K]
    per_seed = _apply(metric, sums)  # [R, S]
    return np.take_along_axis(per_seed, seed_draws, axis=1).mean(axis=1)


def _draws(rng, n_resamples: int, n: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_resamples, n))


def _table_weights(rng, n_resamples: int, n_tables: int) -> np.ndarray:
    draws = _draws(rng, n_resamples, n_tables)
    return np.stack([np.bincount(d, minlength=n_tables) for d in draws]).astype(float)


def _check_common(n_resamples, seed, confidence) -> float:
    for name, value, low in (("n_resamples", n_resamples, 100), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
    return _check_confidence(confidence)


def _percentile_interval(estimate, samples, confidence, method) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), confidence, method)


def bootstrap(
    stats,
    metric: Callable[[np.ndarray], np.ndarray] = ratio,
    *,
    minus=None,
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """A metric's estimate (mean over seeds of the metric over tables) with a two-level
    bootstrap interval (seeds and tables resampled).

    Args:
        stats: [seeds, tables, k] sufficient statistics (or [tables, k] for one seed).
        metric: summed statistics [..., k] -> metric [...]; `ratio` for errors/slots.
        minus: another method's stats on the same tables: the interval is then of the
            difference, paired (`paired_difference`).
    """
    confidence = _check_common(n_resamples, seed, confidence)
    a = _as_stats(stats, "stats")
    b = None if minus is None else _as_stats(minus, "minus")
    if b is not None and a.shape[1:] != b.shape[1:]:
        raise ValueError(
            "Both methods must score the same tables with the same statistics: shapes "
            f"{a.shape} and {b.shape} differ after the seed axis."
        )
    rng = np.random.default_rng(seed)
    weights = _table_weights(rng, n_resamples, a.shape[1])  # one table draw for both methods
    samples = _resampled(a, metric, weights, _draws(rng, n_resamples, a.shape[0]))
    estimate = _estimate(a, metric)
    what = f"bootstrap {a.shape[0]} seed(s) x {a.shape[1]} tables"
    if b is not None:
        samples = samples - _resampled(b, metric, weights, _draws(rng, n_resamples, b.shape[0]))
        estimate -= _estimate(b, metric)
        what = f"paired bootstrap {a.shape[0]} vs {b.shape[0]} seeds x {a.shape[1]} tables"
    return _percentile_interval(estimate, samples, confidence, what)


def paired_difference(stats_a, stats_b, metric=ratio, **options) -> Interval:
    """Metric of A minus metric of B on the same tables, with a paired two-level bootstrap:
    one table resample shared by both, seeds drawn for each method on its own.

    Args:
        stats_a, stats_b: [seeds, tables, k]; the table axis must index the same tables in
            the same order (the seed counts may differ).
        options: n_resamples, confidence, seed (as `bootstrap`).
    """
    return bootstrap(stats_a, metric, minus=stats_b, **options)


VERDICTS = ("A better", "B better", "not resolved")


def verdict(difference: Interval, *, lower_is_better: bool) -> str:
    """ "A better", "B better" or "not resolved" for an interval of A - B."""
    if not isinstance(difference, Interval):
        raise TypeError(f"verdict takes an Interval (from paired_difference); got {difference!r}.")
    if difference.covers_zero:
        return "not resolved"
    a_lower = difference.high < 0
    return "A better" if a_lower == lower_is_better else "B better"
