"""A study's verdicts, computed from its committed files: estimates with intervals per arm,
paired differences with their verdict, and the learning-rate sweep.

    verdict_table("prefix_vs_prompt")   # one row per (metric, arm) and per (metric, pair)

Intervals are `prefixlab.stats.bootstrap` over seeds and tables together, from the per-table
statistics of stage 2 (`results.table_statistics`): validation loss and table gain on the
validation tables, BLEU and slot error rate on the generated tables. A difference A - B is
paired on the same tables (checked by their digests); its verdict is "A better", "B better"
(with the arm's name) or "not resolved" when the interval covers 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prefixlab._validate import require_choice
from prefixlab.evaluate import bleu_from_statistics
from prefixlab.stats import (
    CONFIDENCE,
    RESAMPLES,
    Interval,
    bootstrap,
    format_interval,
    ratio,
    verdict,
)
from prefixlab.studies.results import StudyResults, read_results


def _loss_right(sums: np.ndarray) -> np.ndarray:
    """Summed (right sum, right tokens, wrong sum, wrong tokens) -> validation loss."""
    return sums[..., 0] / sums[..., 1]


def _gain(sums: np.ndarray) -> np.ndarray:
    """Summed (right sum, right tokens, wrong sum, wrong tokens) -> table gain."""
    return sums[..., 2] / sums[..., 3] - sums[..., 0] / sums[..., 1]


def _slot_rate(sums: np.ndarray) -> np.ndarray:
    return ratio(sums)


@dataclass(frozen=True)
class Metric:
    """A metric the verdict table reports: which per-table array it reads and how."""

    name: str  # the CSV column it estimates
    kind: str  # the per-table array: "losses", "slots" or "bleu"
    digest: str  # the CSV column naming that array's tables
    fn: Callable[[np.ndarray], np.ndarray]  # summed statistics [..., k] -> metric [...]
    lower_is_better: bool


METRICS = {
    m.name: m
    for m in (
        Metric("final_val_loss", "losses", "val_tables_digest", _loss_right, True),
        Metric("bleu", "bleu", "eval_tables_digest", bleu_from_statistics, False),
        Metric("slot_error_rate", "slots", "eval_tables_digest", _slot_rate, True),
        Metric("table_gain", "losses", "val_tables_digest", _gain, False),
        # slot errors on held-out values only (extrapolation; runs with RunConfig.held_out)
        Metric("held_out_slot_error_rate", "held_out", "eval_tables_digest", _slot_rate, True),
    )
}
HELD_OUT_METRICS = ("held_out_slot_error_rate",)


def default_metrics(study) -> tuple[str, ...]:
    """The metrics a study's tables report: all of `METRICS`, the held-out ones only when
    some run of the study holds slot values out."""
    configs = [study.overrides, *(a.config for a in study.arms)]
    holds = any(c.get("held_out") for c in configs) or any(study.axes.get("held_out", ()))
    return tuple(m for m in METRICS if holds or m not in HELD_OUT_METRICS)


COLUMNS = ("metric", "kind", "arm", "versus", "lr", "estimate", "low", "high", "seeds",
           "tables", "verdict", "interval")  # fmt: skip


def _stats(results: StudyResults, rows: pd.DataFrame, metric: Metric):
    """[seeds, tables, k] for `rows` (runs without the array are left out), and the digest."""
    arrays, digests = [], set()
    for _, row in rows.iterrows():
        array = results.tables.get(row["run_id"], {}).get(metric.kind)
        if array is None or not len(array) or not np.isfinite(array).all():
            continue
        arrays.append(array)
        digests.add(row[metric.digest])
    if not arrays:
        return None, None
    if len(digests) > 1 or len({a.shape for a in arrays}) > 1:
        raise ValueError(
            f"The runs of one arm scored different tables for {metric.name} (digests "
            f"{sorted(map(str, digests))}); their statistics cannot be pooled."
        )
    return np.stack(arrays).astype(float), digests.pop()


def _row(metric, kind, arm, versus, lr, interval: Interval | None, seeds, tables, text):
    est, low, high, how = (np.nan, np.nan, np.nan, "")
    if interval is not None:
        est, low, high, how = interval.estimate, interval.low, interval.high, interval.method
    return dict(metric=metric, kind=kind, arm=arm, versus=versus, lr=lr, estimate=est, low=low,
                high=high, seeds=seeds, tables=tables, verdict=text, interval=how)  # fmt: skip


def _verdict_text(difference: Interval, a: str, b: str, lower_is_better: bool) -> str:
    said = verdict(difference, lower_is_better=lower_is_better)
    return {"A better": f"{a} better", "B better": f"{b} better"}.get(said, said)


# Decimals a metric's intervals are written with (BLEU is on a 0-100 scale); the rest: 3.
METRIC_DIGITS = {"bleu": 1}


def interval_texts(df: pd.DataFrame, *, signed: bool | None = None) -> pd.Series:
    """One "estimate [low, high]" per row of a verdict table (`verdict_table`,
    `point_differences`: columns metric, estimate, low, high), with BLEU to 1 decimal and the
    rest to 3 (`METRIC_DIGITS`). signed=None signs the rows of kind "difference" (and every
    row of a table without a kind column, e.g. `point_differences`); True or False forces it."""
    missing = {"metric", "estimate", "low", "high"} - set(df.columns)
    if missing:
        raise ValueError(f"interval_texts needs the columns metric, estimate, low and high "
                         f"(a verdict table); missing: {sorted(missing)}.")  # fmt: skip
    texts = []
    for row in df.itertuples():
        sign = signed if signed is not None else getattr(row, "kind", "difference") == "difference"
        texts.append(format_interval(row.estimate, row.low, row.high,
                                     digits=METRIC_DIGITS.get(row.metric, 3), signed=sign))  # fmt: skip
    return pd.Series(texts, index=df.index, dtype=object)


def verdict_table(
    study,
    folder=None,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    metrics: Sequence[str] | None = None,
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """The study's verdicts as a tidy table, from its committed files.

    Args:
        study: a study name or Study, or StudyResults already read (`read_results`).
        folder: where its files are (default `results.results_dir()`).
        pairs: (A, B) arm labels to compare (default: the study's `pairs`).
        metrics: names in `METRICS` (default: `default_metrics`, the four, plus the held-out
            slot error rate when the study holds values out).
        n_resamples, confidence, seed: for `prefixlab.stats.bootstrap`.
    Returns:
        DataFrame: the axis columns of the study, then `COLUMNS`. kind "estimate": one arm's
        metric at its best rate (mean over seeds, interval over seeds x tables); kind
        "difference": arm - versus, paired on the same tables, with `verdict` ("prefix
        better", "prompt better" or "not resolved"). An arm without data has NaN and
        verdict "no data".
    """
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    definition = results.study
    pairs = definition.pairs if pairs is None else tuple(tuple(p) for p in pairs)
    labels = [a.label for a in definition.arms]
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"Each pair is (arm A, arm B), got {pair!r}.")
        for label in pair:
            require_choice("each arm of pairs", label, labels)
    metrics = default_metrics(definition) if metrics is None else tuple(metrics)
    for name in metrics:
        require_choice("each of metrics", name, tuple(METRICS))
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    seeds_rows = results.stage("seeds")
    out = []
    for point in definition.points():
        rows = seeds_rows
        for name, value in point.items():
            rows = rows[rows[name].astype(str) == str(value)]
        for name in metrics:
            metric = METRICS[name]
            found = {}
            for label in labels:
                arm_rows = rows[rows["arm"] == label]
                lr = arm_rows["lr"].iloc[0] if len(arm_rows) else np.nan
                stats, digest = _stats(results, arm_rows, metric)
                found[label] = (stats, digest)
                if stats is None:
                    out.append({**point, **_row(name, "estimate", label, "", lr, None, "0", 0,
                                                "no data")})  # fmt: skip
                    continue
                interval = bootstrap(stats, metric.fn, **options)
                out.append({**point, **_row(name, "estimate", label, "", lr, interval,
                                            str(stats.shape[0]), stats.shape[1], "")})  # fmt: skip
            for a, b in pairs:
                (sa, da), (sb, db) = found[a], found[b]
                if sa is None or sb is None:
                    out.append({**point, **_row(name, "difference", a, b, np.nan, None, "0", 0,
                                                "no data")})  # fmt: skip
                    continue
                if da != db:
                    raise ValueError(
                        f"{a} and {b} were scored on different tables for {name}; a paired "
                        "difference needs the same tables (same data, split and data_seed)."
                    )
                diff = bootstrap(sa, metric.fn, minus=sb, **options)
                text = _verdict_text(diff, a, b, metric.lower_is_better)
                out.append({**point, **_row(name, "difference", a, b, np.nan, diff,
                                            f"{sa.shape[0]} vs {sb.shape[0]}", sa.shape[1],
                                            text)})  # fmt: skip
    return pd.DataFrame(out, columns=[*definition.axes, *COLUMNS])


def sweep_table(study, folder=None) -> pd.DataFrame:
    """Stage 1 summarised: per axis point, arm and rate, the mean final validation loss over
    the tuning seeds, the number of runs and diverged runs, and whether it is the chosen rate.
    """
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    tune = results.stage("tune")
    keys = [*results.study.axes, "arm", "lr"]
    if not len(tune):
        return pd.DataFrame(columns=[*keys, "final_val_loss", "runs", "diverged", "chosen"])
    table = (
        tune.groupby(keys, sort=False)
        .agg(
            final_val_loss=("final_val_loss", "mean"),
            runs=("run_id", "count"),
            diverged=("diverged", "sum"),
            chosen=("chosen", "any"),
        )
        .reset_index()
    )
    order = {a.label: i for i, a in enumerate(results.study.arms)}  # the study's arm order
    table["_arm"] = table["arm"].map(order)
    table = table.sort_values([*results.study.axes, "_arm", "lr"], kind="stable")
    return table.drop(columns="_arm").reset_index(drop=True)


def point_differences(
    study,
    axis: str,
    versus,
    folder=None,
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Along one axis, each value minus the value `versus`, per arm, paired on the same tables.

    For example `point_differences("prefix_length", "prefix_length", 10)`: how much each
    length changes each arm's metrics against P=10, with intervals and verdicts ("<value>
    better", "<versus> better", "not resolved"). The runs at both values must have scored the
    same tables (same split and data seed), which is checked.

    Returns:
        DataFrame: axis value, `versus`, metric, arm, estimate, low, high, seeds, tables, verdict.
    """
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    definition = results.study
    if axis not in definition.axes:
        raise ValueError(
            f"Study {definition.name!r} has no axis {axis!r}; its axes: "
            f"{', '.join(definition.axes) or 'none'}."
        )
    values = {str(v): v for v in definition.axes[axis]}
    if str(versus) not in values:
        raise ValueError(
            f"versus={versus!r} is not on the axis {axis!r}; its values: {', '.join(values)}."
        )
    metrics = default_metrics(definition) if metrics is None else tuple(metrics)
    for name in metrics:
        require_choice("each of metrics", name, tuple(METRICS))
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows = results.stage("seeds")
    at = {key: rows[rows[axis].astype(str) == key] for key in values}
    out = []
    for name in metrics:
        metric = METRICS[name]
        for arm in (a.label for a in definition.arms):
            base, base_digest = _stats(
                results, at[str(versus)][at[str(versus)]["arm"] == arm], metric
            )
            for key, value in values.items():
                if key == str(versus):
                    continue
                other, digest = _stats(results, at[key][at[key]["arm"] == arm], metric)
                row = {axis: value, "versus": values[str(versus)], "metric": name, "arm": arm}
                if other is None or base is None:
                    out.append({**row, "estimate": np.nan, "low": np.nan, "high": np.nan,
                                "seeds": "0", "tables": 0, "verdict": "no data"})  # fmt: skip
                    continue
                if digest != base_digest:
                    raise ValueError(
                        f"{axis}={key} and {axis}={versus} were scored on different tables for "
                        f"{name}; a paired difference needs the same tables."
                    )
                diff = bootstrap(other, metric.fn, minus=base, **options)
                text = _verdict_text(diff, f"{axis}={key}", f"{axis}={versus}",
                                     metric.lower_is_better)  # fmt: skip
                out.append({**row, "estimate": diff.estimate, "low": diff.low, "high": diff.high,
                            "seeds": f"{other.shape[0]} vs {base.shape[0]}",
                            "tables": other.shape[1], "verdict": text})  # fmt: skip
    return pd.DataFrame(out, columns=[axis, "versus", "metric", "arm", "estimate", "low", "high",
                                      "seeds", "tables", "verdict"])  # fmt: skip


def seed_table(study, metric: str, folder=None) -> pd.DataFrame:
    """One value of `metric` per stage-2 run: per axis point, arm and seed (the seed-to-seed
    spread that the intervals of `verdict_table` pool with the tables).

    Args:
        study: a study name or Study, or StudyResults already read.
        metric: a name in `METRICS` (computed from the run's per-table statistics).
    Returns:
        DataFrame: the study's axis columns, then arm, seed, value; runs without the metric's
        tables are left out.
    """
    require_choice("metric", metric, tuple(METRICS))
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    m = METRICS[metric]
    axes = list(results.study.axes)
    out = []
    for _, row in results.stage("seeds").iterrows():
        array = results.tables.get(row["run_id"], {}).get(m.kind)
        if array is None or not len(array) or not np.isfinite(array).all():
            continue
        value = float(m.fn(np.asarray(array, dtype=float).sum(axis=0)))
        out.append({**{a: row[a] for a in axes}, "arm": row["arm"], "seed": int(row["seed"]),
                    "value": value})  # fmt: skip
    return pd.DataFrame(out, columns=[*axes, "arm", "seed", "value"])
