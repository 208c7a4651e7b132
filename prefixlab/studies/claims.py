"""The paper's claims against our committed studies (notebook 07): one row per claim with the
paper's numbers, ours with intervals, and a verdict computed from the files.

    claims_table()     # claim, study, paper, ours, verdict (agree / disagree / mixed /
                       # not resolved / no results)

Each claim reads paired differences (`analysis.verdict_table`, `analysis.point_differences`):
a claim *agrees* when at least one of its differences is resolved in the paper's direction and
none against it, *disagrees* in the opposite case, is *mixed* when both happen and *not
resolved* when every interval covers 0. The seed-spread claim compares the standard deviation
over seeds of two arms (`seed_spread_ratio`, a bootstrap over seeds).

The paper's numbers are Li & Liang (2021), as /work/shared/REFERENCE.md gives them; where the
paper only shows a plot the claim says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prefixlab._validate import require_choice
from prefixlab.stats import CONFIDENCE, RESAMPLES, Interval
from prefixlab.studies.analysis import METRICS, point_differences, verdict_table
from prefixlab.studies.registry import not_run_line
from prefixlab.studies.results import read_results

VERDICTS = ("agree", "disagree", "mixed", "not resolved", "no results")
COLUMNS = ("claim", "study", "metric", "paper", "ours", "verdict")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and where our answer comes from."""

    key: str  # short name, the row's index in notebook 07
    text: str  # the claim in one sentence
    study: str  # the registered study that tests it
    paper: str  # the paper's numbers or figure


CLAIMS = (
    Claim("low_data", "With few training examples, prefix tuning beats full fine-tuning.",
          "low_data", "Fig. 3 (E2E subsampled to 50-500 examples): prefix above fine-tuning "
          "at every size (a plot; full data, GPT-2 Medium: prefix 70.3 vs fine-tune 68.8 BLEU)"),
    Claim("init_low_data", "Initializing from real words beats random initialization, most "
          "of all with little data.", "init_low_data",
          "Fig. 5 (a plot): real-word init above random init in low-data settings"),
    Claim("init_spread", "Random initialization varies more from seed to seed with little "
          "data.", "init_low_data", "Fig. 5 (a plot): random init has high variance"),
    Claim("extrapolation", "Prefix tuning extrapolates better than fine-tuning to unseen "
          "categories.", "extrapolation",
          "WebNLG unseen categories and XSUM news-to-sports: prefix above fine-tuning"),
    Claim("placement", "Key/values before everything (prefix) beat key/values between table "
          "and text (infix), which beat input embeddings only (EMB).", "table5",
          "Table 5 (E2E BLEU): prefix 70.3; infix below prefix; EMB-1 48.1, EMB-10 62.2, "
          "EMB-20 61.9"),
    Claim("prefix_length", "Performance rises with the prefix length up to about 10 for "
          "table-to-text, then dips slightly.", "prefix_length",
          "Section 7 (a plot): gains up to about 10 for table-to-text, then a slight drop"),
)  # fmt: skip


def combine_verdicts(verdicts, agree: set[str], disagree: set[str]) -> str:
    """One claim's verdict from its differences' verdicts (see the module docstring).

    Args:
        verdicts: the differences' verdict strings ("prefix better", "not resolved", ...).
        agree, disagree: the verdict strings that go with and against the paper.
    """
    verdicts = list(verdicts)
    if not verdicts or all(v == "no data" for v in verdicts):
        return "no results"
    pro = sum(v in agree for v in verdicts)
    con = sum(v in disagree for v in verdicts)
    if pro and con:
        return "mixed"
    if pro:
        return "agree"
    if con:
        return "disagree"
    return "not resolved"


def seed_spread_ratio(
    values_a, values_b, *, n_resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:  # fmt: skip
    """Standard deviation over seeds of A divided by B's, with a bootstrap interval (seeds of
    each arm resampled on their own).

    Args:
        values_a, values_b: one metric value per seed (at least 3 each).
    """
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 3 or len(b) < 3:
        raise ValueError("seed_spread_ratio needs at least 3 values per arm (one per seed).")
    rng = np.random.default_rng(seed)
    draw_a = a[rng.integers(0, len(a), (n_resamples, len(a)))].std(axis=1, ddof=1)
    draw_b = b[rng.integers(0, len(b), (n_resamples, len(b)))].std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = draw_a / draw_b
    samples = samples[np.isfinite(samples)]
    estimate = a.std(ddof=1) / b.std(ddof=1) if b.std(ddof=1) > 0 else np.inf
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail]) if len(samples) else (np.nan,) * 2
    return Interval(float(estimate), float(low), float(high), confidence,
                    f"bootstrap over {len(a)} and {len(b)} seeds")  # fmt: skip


def per_seed_values(results, arm: str, metric: str, point: dict) -> np.ndarray:
    """One value of `metric` per stage-2 seed of `arm` at axis `point` (from the tables file)."""
    m = METRICS[metric]
    rows = results.stage("seeds")
    rows = rows[rows["arm"] == arm]
    for name, value in point.items():
        rows = rows[rows[name].astype(str) == str(value)]
    out = []
    for run_id in rows["run_id"]:
        array = results.tables.get(run_id, {}).get(m.kind)
        if array is not None and len(array):
            out.append(float(m.fn(np.asarray(array, dtype=float).sum(axis=0))))
    return np.array(out)


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"


def _pairs_text(table: pd.DataFrame, label) -> str:
    return "; ".join(f"{label(r)}: {_fmt(r.estimate, r.low, r.high)}" for r in
                     table.itertuples() if np.isfinite(r.estimate))  # fmt: skip


def _differences(results, pairs, metric, options) -> pd.DataFrame:
    table = verdict_table(results, pairs=pairs, metrics=[metric], **options)
    return table[table["kind"] == "difference"]


def _low_data(results, metric, options, sizes=(13, 50, 100, 200, 500)):
    diffs = _differences(results, [("prefix", "full")], metric, options)
    diffs = diffs[diffs["n_train_mrs"].isin(sizes)]
    ours = "prefix - full " + metric + " by size: " + _pairs_text(diffs, lambda r: r.n_train_mrs)
    return ours, combine_verdicts(diffs["verdict"], {"prefix better"}, {"full better"})


def _init(results, metric, options):
    pair = ("prefix (vocab)", "prefix (random)")
    diffs = _differences(results, [pair], metric, options)
    small = diffs[diffs["n_train_mrs"] == min(diffs["n_train_mrs"])]
    ours = "vocab - random " + metric + " by size: " + _pairs_text(diffs, lambda r: r.n_train_mrs)
    return ours, combine_verdicts(small["verdict"], {f"{pair[0]} better"}, {f"{pair[1]} better"})


def _spread(results, metric, options):
    size = min(results.study.axes["n_train_mrs"])
    point = {"n_train_mrs": size}
    random = per_seed_values(results, "prefix (random)", metric, point)
    vocab = per_seed_values(results, "prefix (vocab)", metric, point)
    if len(random) < 3 or len(vocab) < 3:
        return "fewer than 3 seeds per arm", "no results"
    spread = seed_spread_ratio(random, vocab, **options)
    ours = (f"seed SD of {metric} at {size} tables, random / vocab: {spread.estimate:.2f} "
            f"[{spread.low:.2f}, {spread.high:.2f}]")  # fmt: skip
    if spread.low > 1:
        return ours, "agree"
    return ours, "disagree" if spread.high < 1 else "not resolved"


def _extrapolation(results, metric, options):
    metric = "held_out_slot_error_rate"
    diffs = _differences(results, [("prefix", "full"), ("prefix", "prompt")], metric, options)
    ours = "held-out slot error rate, " + _pairs_text(diffs, lambda r: f"{r.arm} - {r.versus}")
    main = diffs[diffs["versus"] == "full"]
    return ours, combine_verdicts(main["verdict"], {"prefix better"}, {"full better"})


def _placement(results, metric, options):
    pairs = [("prefix", "infix"), ("infix", "EMB-10"), ("prefix", "EMB-10")]
    diffs = _differences(results, pairs, metric, options)
    ours = metric + ": " + _pairs_text(diffs, lambda r: f"{r.arm} - {r.versus}")
    sides = [  # each pair on its own: its first arm better is the paper's direction
        {f"{r.arm} better": "pro", f"{r.versus} better": "con"}.get(r.verdict, r.verdict)
        for r in diffs.itertuples()
    ]
    return ours, combine_verdicts(sides, {"pro"}, {"con"})


def _length(results, metric, options):
    diffs = point_differences(results, "prefix_length", 10, metrics=[metric], **options)
    diffs = diffs[diffs["arm"] == "prefix"]
    ours = f"prefix, {metric} against P=10: " + _pairs_text(diffs, lambda r: f"P={r.prefix_length}")
    short = diffs[diffs["prefix_length"] < 10]["verdict"]
    long = diffs[diffs["prefix_length"] > 10]["verdict"]
    agree = {"prefix_length=10 better"}  # shorter ones below 10, longer ones (slightly) below
    disagree = {f"prefix_length={p} better" for p in diffs["prefix_length"]}
    rise = combine_verdicts(short, agree, disagree)
    dip = combine_verdicts(long, agree, disagree)
    if "no results" in (rise, dip):
        return ours, "no results"
    if rise == "agree" and dip != "disagree":
        return ours, "agree"  # a dip that is not resolved is still "no gain past 10"
    return ours, {"disagree": "disagree", "agree": "mixed"}.get(dip, rise)


_HOW = {"low_data": _low_data, "init_low_data": _init, "init_spread": _spread,
        "extrapolation": _extrapolation, "placement": _placement, "prefix_length": _length}  # fmt: skip


def claims_table(
    folder=None,
    *,
    metric: str = "bleu",
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim of `CLAIMS`: the paper's numbers, ours with intervals, the verdict.

    Args:
        folder: where the studies' committed files are (default `results.results_dir()`).
        metric: the metric of the claims the paper makes in BLEU ("bleu"; or another name in
            `METRICS`, e.g. "slot_error_rate"); the extrapolation claim always reads the slot
            error rate on the held-out values.
        n_resamples, confidence, seed: for the bootstrap intervals.
    Returns:
        DataFrame with `COLUMNS`, indexed by the claims' keys; verdict "no results" (and how
        to make them in `ours`) for a study not run yet.
    """
    require_choice("metric", metric, tuple(METRICS))
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows = []
    for claim in CLAIMS:
        used = "held_out_slot_error_rate" if claim.key == "extrapolation" else metric
        try:
            results = read_results(claim.study, folder)
        except FileNotFoundError:
            ours = not_run_line(claim.study)
            rows.append((claim.text, claim.study, used, claim.paper, ours, "no results"))
            continue
        ours, said = _HOW[claim.key](results, used, options)
        rows.append((claim.text, claim.study, used, claim.paper, ours, said))
    return pd.DataFrame(rows, columns=COLUMNS, index=[c.key for c in CLAIMS])


TREND_COLUMNS = ("metric", "smallest", "gap_smallest", "largest", "gap_largest", "change",
                 "low", "high", "trend", "lester")  # fmt: skip
_Z = {0.95: 1.959964}


def scale_trend(gaps: pd.DataFrame, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Does a gap between two methods close as the model grows (Lester et al.'s Fig. 1
    direction)? One row per metric, from the smallest to the largest model measured.

    `change` is how far the gap moved towards zero, signed so that a positive value is a gap
    that shrank: `sign(g_small) * (g_small - g_large)`. Its interval treats the two sizes'
    intervals as independent normal ones (standard error = half-width / z): the sizes are
    separate models trained on their own seeds. `trend` is "shrinks" or "grows" when that
    interval excludes 0 (a gap that crosses zero and is resolved on the other side at the
    largest size is "reverses"), else "not resolved"; `lester` is "agree" for "shrinks" and
    "reverses" (the weaker method caught up, then passed), "disagree" for "grows".

    Args:
        gaps: one row per (model, metric) with columns `model`, `parameters`, `metric`,
            `estimate`, `low`, `high` (the difference rows of `analysis.verdict_table`, with
            each model's parameter count added).
        confidence: the level of the intervals in `gaps` (0.95).
    """
    missing = {"model", "parameters", "metric", "estimate", "low", "high"} - set(gaps.columns)
    if missing:
        raise ValueError(
            f"scale_trend needs columns {sorted(missing)} in gaps: pass the "
            "difference rows of verdict_table with a 'parameters' column added."
        )
    if confidence not in _Z:
        raise ValueError(f"scale_trend reads intervals at confidence 0.95 only, got {confidence}.")
    z = _Z[confidence]
    rows = []
    for metric, group in gaps.groupby("metric", sort=False):
        group = group.sort_values("parameters")
        if group["model"].nunique() < 2:
            rows.append((metric, group["model"].iloc[0], group["estimate"].iloc[0], None,
                         np.nan, np.nan, np.nan, np.nan, "one size", "not resolved"))  # fmt: skip
            continue
        small, large = group.iloc[0], group.iloc[-1]
        sign = 1.0 if small.estimate >= 0 else -1.0
        change = sign * (small.estimate - large.estimate)
        se = np.hypot((small.high - small.low) / (2 * z), (large.high - large.low) / (2 * z))
        low, high = change - z * se, change + z * se
        crossed = large.high < 0 if sign > 0 else large.low > 0
        if low > 0:
            trend = "reverses" if crossed else "shrinks"
        elif high < 0:
            trend = "grows"
        else:
            trend = "not resolved"
        lester = {"shrinks": "agree", "reverses": "agree", "grows": "disagree"}.get(
            trend, "not resolved"
        )
        rows.append((metric, small.model, small.estimate, large.model, large.estimate,
                     change, low, high, trend, lester))  # fmt: skip
    return pd.DataFrame(rows, columns=TREND_COLUMNS)
