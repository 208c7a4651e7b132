"""Does the MLP stabilize prefix training? The verdicts of `mlp_stability` (issue #18), computed
from a study's committed files (the CSV and the curves in the tables file), nothing trained.

    results = read_results("mlp_stability")
    runs = run_outcomes(results)             # one row per run: outcome, rises, rate step
    failure_table(runs)                      # failed / unstable runs per init, form and rate
    stability_verdicts(runs)                 # MLP vs direct at each rate relative to its best
    seed_spread(results)                     # the 5 seeds at each form's best rate
    matched_rate_test(results, ratio=10.4)   # direct at the MLP's effective step vs the MLP

Rates are compared *relative to each form's own best rate*: each form has its own grid
(1/30x .. 30x its default, log-spaced by `Study.rate_step`), and `rate_step` k says how many
grid steps a rate lies above (k > 0) or below (k < 0) the form's chosen rate, so k = 0 is
each form at its best and k = 1 each form one step (x3.1 for a 7-rate grid over 30x each way)
above it.

Definitions used throughout:

- **failed**: the run ended no better than where it started: its final validation loss is at
  or above its own validation loss before step 1 (the first point of its `val_curve`: the
  frozen model with the adapter as initialized), or is not finite (`mechanism.outcome`). That
  reference is taken from the committed curve, not measured again: it is the same validation
  tables, config and seed as the run, so it is exactly "training made this run worse", and it
  costs nothing; note that a random-init prefix can start above the bare frozen model, so a run
  can beat its start and still be worse than no prefix at all.
- **unstable**: the training loss rose above 1.5x its running minimum at least once, counted
  from step 1 (`mechanism.rises_over_minimum`) on a trailing running mean of `window` steps
  (each step's loss is one batch's; the mean keeps batch noise from counting as a rise).
- **verdict** at a rate step: MLP minus direct final validation loss over the tuning seeds
  (3 per rate), Welch's t interval (`stats.welch_interval`): "helps" when the interval lies
  below 0, "hurts" above, "not resolved" when it covers 0. When a run's loss is not finite the
  means cannot be compared; the verdict is then read from the failures: "helps" when every
  direct run failed and no MLP run did, "hurts" the other way round, else "not resolved".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from prefixlab._validate import require_choice, require_int, require_number
from prefixlab.mechanism import outcome, rises_over_minimum
from prefixlab.stats import CONFIDENCE, sd_ratio_interval, t_interval, welch_interval
from prefixlab.studies.results import StudyResults, read_results

VERDICTS = ("helps", "hurts", "not resolved", "no data")


def _results(study, folder) -> StudyResults:
    return study if isinstance(study, StudyResults) else read_results(study, folder)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` steps (fewer at the start), NaN/inf kept where they occur."""
    series = pd.Series(np.asarray(values, dtype=float))
    mean = series.rolling(window, min_periods=1).mean().to_numpy().copy()
    bad = ~np.isfinite(series.to_numpy())
    mean[bad] = series.to_numpy()[bad]
    return mean


def start_val_loss(results: StudyResults, run_id: str) -> float:
    """A run's validation loss before step 1 (its val_curve at step 0), NaN when the tables
    file has no curve for it (results written before studies kept curves)."""
    curve = results.tables.get(run_id, {}).get("val_curve")
    if curve is None or not len(curve) or curve[0][0] != 0:
        return math.nan
    return float(curve[0][1])


def rate_step_of(lr: float, best: float, step: float) -> int:
    """How many grid steps `lr` lies above (> 0) or below (< 0) `best`."""
    return int(round(math.log(lr / best) / math.log(step)))


def relative_rate_label(k: int, step: float) -> str:
    """A rate step as a factor of the best rate: 0 -> "best", 1 -> "3.1x", -2 -> "1/9.7x"."""
    if k == 0:
        return "best"
    value = step ** abs(k)
    factor = f"{value:.2g}" if value < 100 else f"{value:.0f}"  # 290, not 2.9e+02
    return f"{factor}x" if k > 0 else f"1/{factor}x"


def run_outcomes(study, folder=None, *, factor: float = 1.5, window: int = 10) -> pd.DataFrame:
    """One row per run of a study (both stages), with what stability needs.

    Args:
        study: a study name or Study, or StudyResults already read (`read_results`).
        factor: a rise is the (smoothed) training loss above `factor` x its running minimum.
        window: steps of the trailing running mean the rises are counted on (1 = raw losses).
    Returns:
        DataFrame: the study's axis columns, then stage, arm, lr, seed, best_lr (the arm's
        chosen rate at that axis point), rate_step (grid steps from best_lr), relative_rate
        ("best", "3.1x", "1/30x"), final_val_loss, start_val_loss (`start_val_loss`), outcome
        ("trained", "failed", or "no curve" when the start is unknown and the loss finite),
        rises, worst_rise (largest loss / running minimum), first_rise (step or NaN), run_id.
    """
    require_number("factor", factor, above=1, hint="Try 1.5.")
    require_int("window", window, low=1, hint="1 counts raw batch losses; try 10.")
    results = _results(study, folder)
    definition = results.study
    axes = list(definition.axes)
    table = results.table
    chosen = table[table["chosen"].astype(bool) & table["lr"].notna()]
    best = {
        (tuple(str(r[a]) for a in axes), r["arm"]): float(r["lr"]) for _, r in chosen.iterrows()
    }
    out = []
    for _, row in table.iterrows():
        if pd.isna(row["lr"]):  # "none" trains nothing: no rate, no curve to judge
            continue
        key = (tuple(str(row[a]) for a in axes), row["arm"])
        lr, best_lr = float(row["lr"]), best.get(key, math.nan)
        k = rate_step_of(lr, best_lr, definition.rate_step) if math.isfinite(best_lr) else None
        final = float(row["final_val_loss"]) if pd.notna(row["final_val_loss"]) else math.nan
        start = start_val_loss(results, row["run_id"])
        if math.isfinite(start) and start > 0:
            said = outcome(final, start)
        else:
            said = "failed" if not math.isfinite(final) else "no curve"
        losses = results.tables.get(row["run_id"], {}).get("train_loss")
        if losses is not None and len(losses):
            rises = rises_over_minimum(_running_mean(losses, window), factor=factor)
        else:
            rises = {"rises": math.nan, "worst": math.nan, "first": None}
        out.append({
            **{a: row[a] for a in axes},
            "stage": row["stage"], "arm": row["arm"], "lr": lr, "seed": int(row["seed"]),
            "best_lr": best_lr, "rate_step": k,
            "relative_rate": None if k is None else relative_rate_label(k, definition.rate_step),
            "final_val_loss": final, "start_val_loss": start, "outcome": said,
            "rises": rises["rises"], "worst_rise": rises["worst"],
            "first_rise": math.nan if rises["first"] is None else rises["first"],
            "run_id": row["run_id"],
        })  # fmt: skip
    columns = [*axes, "stage", "arm", "lr", "seed", "best_lr", "rate_step", "relative_rate",
               "final_val_loss", "start_val_loss", "outcome", "rises", "worst_rise",
               "first_rise", "run_id"]  # fmt: skip
    frame = pd.DataFrame(out, columns=columns)
    frame["rate_step"] = frame["rate_step"].astype("Int64")
    return frame


def _outcomes(runs, folder) -> pd.DataFrame:
    if isinstance(runs, pd.DataFrame):
        missing = {"stage", "arm", "rate_step", "outcome", "rises"} - set(runs.columns)
        if missing:
            raise ValueError(f"Pass run_outcomes(...) (its columns {sorted(missing)} are missing).")
        return runs
    return run_outcomes(runs, folder)


def _axes(runs: pd.DataFrame) -> list[str]:
    return list(runs.columns[: list(runs.columns).index("stage")])


def failure_table(runs, folder=None, *, stage: str = "tune") -> pd.DataFrame:
    """Failed and unstable runs per axis point, arm and rate (stage 1's grid by default).

    Args:
        runs: `run_outcomes(...)`, or a study name / StudyResults.
        stage: "tune" (every rate, the tuning seeds) or "seeds" (the best rate, every seed).
    Returns:
        DataFrame: axis columns, arm, rate_step, relative_rate, lr, runs, failed, unstable
        (runs with at least one rise), failed_runs ("k/n").
    """
    require_choice("stage", stage, ("tune", "seeds"))
    runs = _outcomes(runs, folder)
    axes = _axes(runs)
    rows = runs[runs["stage"] == stage]
    keys = [*axes, "arm", "rate_step", "relative_rate", "lr"]
    if not len(rows):
        return pd.DataFrame(columns=[*keys, "runs", "failed", "unstable", "failed_runs"])
    table = (
        rows.groupby(keys, sort=False, dropna=False)
        .agg(
            runs=("run_id", "count"),
            failed=("outcome", lambda o: int((o == "failed").sum())),
            unstable=("rises", lambda r: int((r > 0).sum())),
        )
        .reset_index()
    )
    table["failed_runs"] = [f"{f}/{n}" for f, n in zip(table["failed"], table["runs"],
                                                       strict=True)]  # fmt: skip
    return table.sort_values([*axes, "arm", "rate_step"], kind="stable").reset_index(drop=True)


def _verdict(a: pd.DataFrame, b: pd.DataFrame, confidence: float) -> dict:
    """The comparison of runs `a` against runs `b` (see the module docstring)."""
    la, lb = a["final_val_loss"].to_numpy(float), b["final_val_loss"].to_numpy(float)
    fa, fb = int((a["outcome"] == "failed").sum()), int((b["outcome"] == "failed").sum())
    out = {"estimate": math.nan, "low": math.nan, "high": math.nan, "based_on": ""}
    if len(la) < 2 or len(lb) < 2:
        return {**out, "verdict": "no data"}
    if np.isfinite(la).all() and np.isfinite(lb).all():
        diff = welch_interval(la, lb, confidence)
        said = "helps" if diff.high < 0 else "hurts" if diff.low > 0 else "not resolved"
        return {"estimate": diff.estimate, "low": diff.low, "high": diff.high,
                "based_on": "final validation loss", "verdict": said}  # fmt: skip
    said = ("helps" if fa == 0 and fb == len(lb) else
            "hurts" if fb == 0 and fa == len(la) else "not resolved")  # fmt: skip
    return {**out, "based_on": "failures (a loss is not finite)", "verdict": said}


def stability_verdicts(
    runs, folder=None, *, a: str = "prefix+mlp", b: str = "prefix",
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:  # fmt: skip
    """Arm `a` (the MLP) against arm `b` (direct) at each rate relative to each one's best.

    Stage 1's runs (the tuning seeds at every rate of each grid) are compared at equal
    `rate_step`; a rate step that only one arm's grid has (its best rate sat near an end)
    gets "no data".

    Returns:
        DataFrame: axis columns, rate_step, relative_rate, lr_a, lr_b, loss_a, loss_b (means
        over the finite runs), estimate / low / high (loss_a - loss_b, Welch interval), failed_a,
        failed_b, unstable_a, unstable_b ("k/n"), based_on, verdict (`VERDICTS`).
    """
    runs = _outcomes(runs, folder)
    axes = _axes(runs)
    for label in (a, b):
        require_choice("arm", label, tuple(pd.unique(runs["arm"])))
    tune = runs[(runs["stage"] == "tune") & runs["rate_step"].notna()]
    points = tune[axes].drop_duplicates() if axes else pd.DataFrame([{}])
    out = []
    for _, point in points.iterrows():
        here = tune
        for name in axes:
            here = here[here[name].astype(str) == str(point[name])]
        steps = sorted(set(here["rate_step"].dropna().astype(int)))
        for k in steps:
            ra = here[(here["arm"] == a) & (here["rate_step"] == k)]
            rb = here[(here["arm"] == b) & (here["rate_step"] == k)]
            said = _verdict(ra, rb, confidence)
            relative = (ra if len(ra) else rb)["relative_rate"].iloc[0]

            def mean(rows):
                values = rows["final_val_loss"].to_numpy(float)
                values = values[np.isfinite(values)]
                return float(values.mean()) if len(values) else math.nan

            def count(rows, column, test):
                return f"{int(test(rows[column]).sum())}/{len(rows)}" if len(rows) else ""

            out.append({
                **{name: point[name] for name in axes}, "rate_step": k,
                "relative_rate": relative,
                "lr_a": ra["lr"].iloc[0] if len(ra) else math.nan,
                "lr_b": rb["lr"].iloc[0] if len(rb) else math.nan,
                "loss_a": mean(ra), "loss_b": mean(rb),
                "estimate": said["estimate"], "low": said["low"], "high": said["high"],
                "failed_a": count(ra, "outcome", lambda o: o == "failed"),
                "failed_b": count(rb, "outcome", lambda o: o == "failed"),
                "unstable_a": count(ra, "rises", lambda r: r > 0),
                "unstable_b": count(rb, "rises", lambda r: r > 0),
                "based_on": said["based_on"], "verdict": said["verdict"],
            })  # fmt: skip
    columns = [*axes, "rate_step", "relative_rate", "lr_a", "lr_b", "loss_a", "loss_b",
               "estimate", "low", "high", "failed_a", "failed_b", "unstable_a", "unstable_b",
               "based_on", "verdict"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def seed_spread(
    study, folder=None, *, a: str = "prefix+mlp", b: str = "prefix",
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:  # fmt: skip
    """The seeds at each arm's best rate (stage 2): where they end and how far apart.

    Returns:
        DataFrame, one row per axis point: lr_a, lr_b, n_a, n_b, mean_a / mean_b with a t
        interval over seeds (low_a, high_a, ...), sd_a, sd_b, sd_ratio (sd_a / sd_b) with
        its F interval (ratio_low, ratio_high), spread_verdict ("a spreads less", "a spreads
        more", "not resolved"; a and b are the arm labels), mean_difference with its Welch
        interval (diff_low, diff_high) and mean_verdict ("helps", "hurts", "not resolved").
        Runs whose final loss is not finite are left out of the numbers and counted in
        not_finite.
    """
    results = _results(study, folder)
    axes = list(results.study.axes)
    seeds = results.stage("seeds")
    points = results.study.points()
    out = []
    for point in points:
        here = seeds
        for name, value in point.items():
            here = here[here[name].astype(str) == str(value)]
        row = dict(point)
        values = {}
        for tag, label in (("a", a), ("b", b)):
            rows = here[here["arm"] == label]
            losses = rows["final_val_loss"].to_numpy(float)
            finite = losses[np.isfinite(losses)]
            values[tag] = finite
            row[f"lr_{tag}"] = rows["lr"].iloc[0] if len(rows) else math.nan
            row[f"n_{tag}"] = len(finite)
            row[f"not_finite_{tag}"] = len(losses) - len(finite)
            if len(finite) >= 2:
                mean = t_interval(finite, confidence)
                row.update(
                    {
                        f"mean_{tag}": mean.estimate,
                        f"low_{tag}": mean.low,
                        f"high_{tag}": mean.high,
                        f"sd_{tag}": float(finite.std(ddof=1)),
                    }
                )
            else:
                row.update({f"mean_{tag}": math.nan, f"low_{tag}": math.nan,
                            f"high_{tag}": math.nan, f"sd_{tag}": math.nan})  # fmt: skip
        row.update(sd_ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan,
                   spread_verdict="no data", mean_difference=math.nan, diff_low=math.nan,
                   diff_high=math.nan, mean_verdict="no data")  # fmt: skip
        if len(values["a"]) >= 2 and len(values["b"]) >= 2:
            diff = welch_interval(values["a"], values["b"], confidence)
            row.update(mean_difference=diff.estimate, diff_low=diff.low, diff_high=diff.high,
                       mean_verdict="helps" if diff.high < 0 else "hurts" if diff.low > 0
                       else "not resolved")  # fmt: skip
            if values["b"].std() > 0:
                ratio = sd_ratio_interval(values["a"], values["b"], confidence)
                row.update(sd_ratio=ratio.estimate, ratio_low=ratio.low, ratio_high=ratio.high,
                           spread_verdict=f"{a} spreads less" if ratio.high < 1 else
                           f"{a} spreads more" if ratio.low > 1 else "not resolved")  # fmt: skip
        out.append(row)
    columns = [*axes]
    for tag in ("a", "b"):
        columns += [f"lr_{tag}", f"n_{tag}", f"not_finite_{tag}", f"mean_{tag}", f"low_{tag}",
                    f"high_{tag}", f"sd_{tag}"]  # fmt: skip
    columns += ["sd_ratio", "ratio_low", "ratio_high", "spread_verdict", "mean_difference",
                "diff_low", "diff_high", "mean_verdict"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def matched_rate_test(
    study, ratio: float, folder=None, *, a: str = "prefix+mlp", b: str = "prefix",
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:  # fmt: skip
    """Does `b` (direct) at the rate that gives it `a`'s (the MLP's) step size behave like `a`?

    The measured effective-step ratio (`mechanism.effective_step_ratio`, a over b, both at
    their default rates) says that b at default_b x ratio moves its prefix as far per step as
    a does at default_a. This reads stage 1's runs, nothing is trained: b at the grid rate
    nearest (on a log scale) to that matched rate, and b at its default, each against a at
    its default, over the tuning seeds.

    Returns:
        DataFrame, two rows per axis point ("default" and "matched"): lr_b, matched_lr (the
        exact matched rate; NaN for "default"), off_by (grid rate / matched rate), loss_b,
        loss_a (means over the tuning seeds), estimate / low / high (loss_b - loss_a, Welch)
        and verdict: "not resolved" when the interval covers 0 (b at that rate cannot be told
        from a), else "<b> lower" or "<a> lower" with the arms' labels.
    """
    require_number("ratio", ratio, above=0, hint="The MLP / direct effective step ratio.")
    results = _results(study, folder)
    definition = results.study
    tune = results.stage("tune")
    defaults = {label: definition.arm(label).default_lr for label in (a, b)}
    out = []
    for point in definition.points():
        here = tune
        for name, value in point.items():
            here = here[here[name].astype(str) == str(value)]
        rows_a = here[here["arm"] == a]
        rows_b = here[here["arm"] == b]
        if not len(rows_a) or not len(rows_b):
            continue
        rates_a, rates_b = sorted(set(rows_a["lr"])), sorted(set(rows_b["lr"]))
        lr_a = min(rates_a, key=lambda r: abs(math.log(r / defaults[a])))
        losses_a = rows_a[rows_a["lr"] == lr_a]["final_val_loss"].to_numpy(float)
        target = defaults[b] * ratio
        for kind, want in (("default", defaults[b]), ("matched", target)):
            lr_b = min(rates_b, key=lambda r: abs(math.log(r / want)))
            losses_b = rows_b[rows_b["lr"] == lr_b]["final_val_loss"].to_numpy(float)
            row = {**point, "rate": kind, "lr_b": lr_b,
                   "matched_lr": target if kind == "matched" else math.nan,
                   "off_by": lr_b / target if kind == "matched" else math.nan, "lr_a": lr_a,
                   "loss_b": float(np.nanmean(losses_b)) if len(losses_b) else math.nan,
                   "loss_a": float(np.nanmean(losses_a)) if len(losses_a) else math.nan,
                   "estimate": math.nan, "low": math.nan, "high": math.nan,
                   "verdict": "no data"}  # fmt: skip
            finite = np.isfinite(losses_a).all() and np.isfinite(losses_b).all()
            if finite and len(losses_a) >= 2 and len(losses_b) >= 2:
                diff = welch_interval(losses_b, losses_a, confidence)
                row.update(estimate=diff.estimate, low=diff.low, high=diff.high,
                           verdict="not resolved" if diff.low <= 0 <= diff.high else
                           f"{b} lower" if diff.high < 0 else f"{a} lower")  # fmt: skip
            out.append(row)
    return pd.DataFrame(out)


def rate_curves(
    study, arm: str, point: Mapping | None = None, folder=None, *, which: str = "val_curve",
    stage: str = "tune",
) -> dict[float, pd.Series]:  # fmt: skip
    """One arm's curves at each rate, averaged over the seeds that ran it: {lr: Series}.

    Args:
        which: "val_curve" (validation loss, indexed by step) or "train_loss" (each step's
            batch loss, indexed by step from 1).
        stage: "tune" (every rate of the grid) or "seeds" (the best rate).
    Returns:
        {lr: pandas Series indexed by step}, in increasing lr; a seed that stopped early
        leaves the mean over the others after its last step. Empty when no curve is kept.
    """
    require_choice("which", which, ("val_curve", "train_loss"))
    require_choice("stage", stage, ("tune", "seeds"))
    results = _results(study, folder)
    rows = results.stage(stage)
    rows = rows[rows["arm"] == arm]
    for name, value in dict(point or {}).items():
        rows = rows[rows[name].astype(str) == str(value)]
    out = {}
    for lr, group in rows.groupby("lr", sort=True):
        series = []
        for run_id in group["run_id"]:
            curve = results.tables.get(run_id, {}).get(which)
            if curve is None or not len(curve):
                continue
            if which == "val_curve":
                series.append(pd.Series(curve[:, 1], index=curve[:, 0].astype(int)))
            else:
                series.append(pd.Series(curve, index=np.arange(1, len(curve) + 1)))
        if series:
            out[float(lr)] = pd.concat(series, axis=1).mean(axis=1)
    return out
