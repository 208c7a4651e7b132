"""Loss-stability measures: how a loss curve, and a set of curves across seeds, behave.

Each measure takes Histories (from `prefixlab.train.train`, or a run grid) and returns
numbers or a small table; nothing here trains. Defined where they are computed:

- `count_spikes`: loss spikes in one curve (a step above 1.5x the recent median);
- `loss_rise`: how far the running mean climbed above its start (an early blow-up);
- `final_loss`, `final_loss_spread`: where runs end, and how far apart across seeds;
- `loss_matrix`, `seed_spread`: several curves step by step, for bands and overlays;
- `stability_summary`: all of them per setting of a run table (the MLP study of notebook 03).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from prefixlab._validate import require_choice, require_int, require_number
from prefixlab.train import History


def count_spikes(losses: Sequence[float], *, factor: float = 1.5, window: int = 20) -> int:
    """Number of loss spikes in a loss curve.

    A step is spiking when its loss exceeds `factor` times the median of the `window` losses
    just before it (so the first `window` steps are never spikes). Consecutive spiking steps
    count as one spike.
    """
    require_number("factor", factor, above=1, hint="Try 1.5.")
    require_int("window", window, low=1, hint="Try 20.")
    values = [float(v) for v in losses]
    spikes, inside = 0, False
    for i in range(window, len(values)):
        previous = sorted(values[i - window : i])
        mid = len(previous) // 2
        median = previous[mid] if len(previous) % 2 else 0.5 * (previous[mid - 1] + previous[mid])
        spiking = values[i] > factor * median
        if spiking and not inside:
            spikes += 1
        inside = spiking
    return spikes


def loss_rise(losses: Sequence[float], *, window: int | None = None) -> float:
    """How far a loss curve climbed above where it started: the highest running mean of the
    training loss over its first value (1.0 when it never rose; inf for a NaN/inf loss).

    Complements `count_spikes`, which cannot see a blow-up in its first `window` steps.
    The running mean covers `window` steps (default: a tenth of the curve, at least 1) and,
    like pandas' rolling(window, min_periods=1), averages fewer steps at the start.
    """
    values = [float(v) for v in losses]
    if not values:
        return math.nan
    if not all(math.isfinite(v) for v in values):
        return math.inf
    require_int("window", window, low=1, allow_none=True, hint="None = a tenth of the curve.")
    window = max(1, len(values) // 10) if window is None else window
    running, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        running.append(total / min(i + 1, window))
    return max(running) / running[0] if running[0] > 0 else math.nan


def final_loss(history: History, *, which: str = "val", window: int | None = None) -> float:
    """A run's final loss.

    which="val": the last validation loss. which="train": the mean training loss over the
    last `window` steps (default: the last 10% of steps, at least 1), which smooths batch noise.
    """
    require_choice("which", which, ("val", "train"))
    require_int("window", window, low=1, allow_none=True, hint="None = the last 10% of steps.")
    if which == "val":
        return history.final_val_loss
    if not history.loss:
        return math.nan
    window = max(1, len(history.loss) // 10) if window is None else window
    tail = history.loss[-window:]
    return sum(tail) / len(tail)


def _histories(histories) -> list[History]:
    items = list(histories.values()) if isinstance(histories, Mapping) else list(histories)
    if not items or not all(isinstance(h, History) for h in items):
        raise ValueError("Pass a non-empty list (or dict) of History objects.")
    return items


def loss_matrix(histories, *, which: str = "loss"):
    """Loss curves of several runs as one array, for bands and overlays.

    Args:
        histories: Histories (list or dict).
        which: "loss" (training loss per step) or "val_loss" (per validation step).
    Returns:
        (steps, values): steps [S] (the union of all runs' steps, sorted) and values
        [runs, S] float, NaN where a run has no value (it stopped earlier).
    """
    items = _histories(histories)
    require_choice("which", which, ("loss", "val_loss"))
    x = "step" if which == "loss" else "val_step"
    steps = sorted({s for h in items for s in getattr(h, x)})
    column = {s: i for i, s in enumerate(steps)}
    values = np.full((len(items), len(steps)), np.nan)  # [runs, S]
    for row, h in enumerate(items):
        for s, v in zip(getattr(h, x), getattr(h, which), strict=True):
            values[row, column[s]] = v
    return np.asarray(steps), values


def seed_spread(histories, *, which: str = "loss"):
    """Spread of loss curves across runs (usually seeds of one setting), step by step.

    Args:
        histories: Histories (list or dict) of runs that differ only in seed.
        which: "loss" (training loss per step) or "val_loss" (per validation step).
    Returns:
        DataFrame indexed by step with columns mean, std (sample std over runs, NaN when
        fewer than two runs reached the step), min, max, n (runs that reached the step).
    """
    items = _histories(histories)
    require_choice("which", which, ("loss", "val_loss"))
    x = "step" if which == "loss" else "val_step"
    columns = {
        i: pd.Series(getattr(h, which), index=getattr(h, x), dtype=float)
        for i, h in enumerate(items)
    }
    matrix = pd.DataFrame(columns)  # [steps, runs]
    matrix.index.name = "step"
    out = pd.DataFrame(
        {
            "mean": matrix.mean(axis=1),
            "std": matrix.std(axis=1, ddof=1),
            "min": matrix.min(axis=1),
            "max": matrix.max(axis=1),
            "n": matrix.count(axis=1),
        }
    )
    return out


def final_loss_spread(histories, *, which: str = "val", window: int | None = None) -> dict:
    """Spread of final losses across runs: {"n", "mean", "std", "min", "max", "range"}.

    Runs without a finite final loss (no validation, or stopped at step 0) are left out and
    not counted in n. std is the sample std (NaN for a single run).
    """
    values = [final_loss(h, which=which, window=window) for h in _histories(histories)]
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan,
                "range": math.nan}  # fmt: skip
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "range": max(values) - min(values),
    }


def stability_summary(
    table: pd.DataFrame,
    histories: Mapping[str, History],
    by=("method", "lr"),
    *,
    blowup_factor: float = 1.5,
) -> pd.DataFrame:
    """Loss-stability measures per setting, across the seeds of each setting.

    Args:
        table, histories: from `prefixlab.runs.run_grid` (a row per run, with run_id).
        by: the columns that define a setting (runs differing in anything else, usually the
            seed, are pooled).
    Returns:
        DataFrame, one row per setting: runs, diverged (stopped on NaN, or ended above its starting loss: `History`), final_val mean/std/
        range (`final_loss_spread`), final_train mean/std, spikes mean and max
        (`count_spikes`), blowups (runs whose `loss_rise` exceeds `blowup_factor`: the running
        mean of the training loss climbed above 1.5x its start, which spikes cannot see early
        on), max_rise, mean_seed_std (the per-step std of the training loss across seeds,
        `seed_spread`, averaged over steps), max_grad_norm.
    """
    require_number("blowup_factor", blowup_factor, above=1, hint="Try 1.5.")
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise ValueError(
            f"Columns {missing} are not in the table; choose from {list(table.columns)}."
        )
    out = []
    for key, group in table.groupby(by, dropna=False, sort=True):
        runs = [histories[r] for r in group["run_id"]]
        val = final_loss_spread(runs, which="val")
        tr = final_loss_spread(runs, which="train")
        spikes = [count_spikes(h.loss) for h in runs]
        rises = [loss_rise(h.loss) for h in runs]
        spread = seed_spread(runs)["std"] if len(runs) > 1 else None
        key = key if isinstance(key, tuple) else (key,)
        out.append(
            {
                **dict(zip(by, key, strict=True)),
                "runs": len(runs),
                "diverged": sum(h.stopped_reason in ("nan", "diverged") for h in runs),
                "final_val_mean": val["mean"],
                "final_val_std": val["std"],
                "final_val_range": val["range"],
                "final_train_mean": tr["mean"],
                "final_train_std": tr["std"],
                "spikes_mean": sum(spikes) / len(spikes),
                "spikes_max": max(spikes),
                "blowups": sum(r > blowup_factor for r in rises),
                "max_rise": max(rises),
                "mean_seed_std": float(spread.mean()) if spread is not None else math.nan,
                "max_grad_norm": max(
                    (max(h.grad_norm) for h in runs if h.grad_norm), default=math.nan
                ),
            }
        )
    return pd.DataFrame(out)
