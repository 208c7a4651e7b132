"""Is a long prefix worse because it is long, or because it pushes the text to positions the
frozen model never saw in pretraining?

A prefix or soft prompt of length P takes positions 0..P-1, so the table and text start at
position P. The embedded models have a position table of 256 rows but were pretrained on
windows of 128 tokens (`pretrained_positions`): rows 128..255 were never trained. At P=40 a
long validation row ends past position 128, and its last tokens are read at positions the
model knows nothing about.

    split = position_split(read_results("prefix_length"), values=(10, 40))
    # per arm and length: validation loss minus P=10's on the same rows, separately for the
    # rows that stay inside the pretrained positions at the longest P and for those that do not
    pair = arms_position_split((read_results("reference_points"), "prompt P=80"),
                               (read_results("prefix_vs_prompt"), "prompt"))
    # the same for two arms, A - B, the rows split at the longer arm's P

The rows are split once, at the longest prefix compared, so both groups hold the same rows
at every length. Each committed run is rebuilt with its trained adapter (`load_adapter`) and
its validation rows scored one by one (`evaluate.row_losses`); the sum over all rows must
give back the run's committed validation loss, or the function raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from prefixlab._validate import require_int
from prefixlab.evaluate import row_losses
from prefixlab.paths import EMBEDDED_MODELS, embedded_model_dir
from prefixlab.runs import _encoded, base_model, run_data
from prefixlab.stats import CONFIDENCE, RESAMPLES, bootstrap, format_interval, ratio, verdict
from prefixlab.studies.adapters import load_adapter
from prefixlab.studies.live import committed_run

# Relative difference allowed between the committed final validation loss and the one the rows
# add up to (batches of another size round differently in float32).
SAME_VAL_LOSS = 1e-4
PAIR_COLUMNS = ("rows", "n_rows", "n_tables", "loss_a", "loss_b", "difference", "low", "high",
                "verdict")  # fmt: skip
SPLIT_COLUMNS = ("arm", "axis_value", "rows", "n_rows", "n_tables", "loss", "minus_reference", "low", "high",
                 "verdict")  # fmt: skip
GROUPS = ("inside", "past")


def pretrained_positions(model: str) -> int | None:
    """How many positions `model` was pretrained on: the window (block size) its build
    recorded, for the embedded models and any folder with their `build_info.json`; None when
    the model does not say (a hub model: read its model card and pass `limit` yourself).

    Args:
        model: an embedded model's name ("nano", "tiny", "mini") or a model folder.
    """
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be an embedded model's name or a folder, got {model!r}.")
    folder = embedded_model_dir(model) if model in EMBEDDED_MODELS else Path(model)
    info = folder / "build_info.json"
    if not info.is_file():
        return None
    block = json.loads(info.read_text(encoding="utf-8")).get("config", {}).get("block_size")
    return int(block) if block else None


class ScoredRun(NamedTuple):
    """One committed stage-2 run's validation rows, scored with its trained adapter."""

    sums: np.ndarray  # [rows] summed cross-entropy (nats)
    tokens: np.ndarray  # [rows] scored tokens
    lengths: np.ndarray  # [rows] tokens in the row (table and text)
    tables: np.ndarray  # [rows] the MR each row describes
    model: str  # RunConfig.model
    prefix_length: int  # positions its prefix or soft prompt takes (0 without one)


def _run_rows(results, arm: str, seed: int, point: dict) -> ScoredRun:
    """`ScoredRun` of one committed stage-2 run (its committed validation loss checked)."""
    row, config = committed_run(results, arm, seed, point, evaluate=False)
    adapted = load_adapter(results, arm, seed, point)
    adapted.eval()
    _, tokenizer = base_model(config)
    encoded = _encoded(config, tokenizer, "validation", config.n_val_mrs, "n_val_mrs")
    train = config.train
    sums, tokens = row_losses(adapted, encoded, train.eval_batch_size or train.batch_size,
                              train.eval_batches)  # fmt: skip
    lengths = encoded["attention_mask"].sum(dim=1).numpy()[: len(sums)]
    pairs = run_data(config, "validation").pairs
    tables = np.array([pairs[i][0] for i in encoded.kept[: len(sums)]], dtype=object)
    committed = float(row["final_val_loss"])
    again = float(sums.sum() / tokens.sum())
    if not math.isclose(again, committed, rel_tol=SAME_VAL_LOSS):
        raise ValueError(
            f"Run {row['run_id']} ({arm}, seed {seed}, {point}) scores {again:.6f} on its "
            f"validation rows with its committed adapter, but committed {committed:.6f}: the "
            "adapter or the validation data changed since the study ran; run the study again."
        )
    return ScoredRun(sums, tokens, lengths, tables, config.model, _prefix_length(config))


def _prefix_length(config) -> int:
    """The positions a run's prefix or soft prompt takes (0 for LoRA, full fine-tuning...)."""
    return config.prefix_length if config.uses_prefix_length else 0


def _limit(limit, model) -> int:
    if limit is None:
        limit = pretrained_positions(model)
        if limit is None:
            raise ValueError(
                f"The model {model!r} does not record how many positions it was pretrained "
                "on; pass limit= (from its model card)."
            )
    require_int("limit", limit, low=1)
    return limit


def _rows_of(run: ScoredRun) -> tuple[np.ndarray, np.ndarray]:
    """(row lengths, each row's table index) of one scored run."""
    return run.lengths, np.unique(run.tables.astype(str), return_inverse=True)[1]


def _group_stats(runs, lengths, table_of, inside) -> dict:
    """{group: ([seeds, tables, 2] summed loss and tokens per validation table, rows)} over
    the tables with rows in the group (every resample then has some tokens); empty groups
    are left out."""
    out = {}
    for run in runs:
        if not np.array_equal(run.lengths, lengths):
            raise ValueError("The runs compared were validated on different rows.")
    for group, keep in zip(GROUPS, (inside, ~inside), strict=True):
        if not keep.any():
            continue
        per_seed = []
        for run in runs:
            per_table = np.zeros((table_of.max() + 1, 2))
            per_row = np.stack([run.sums[keep], run.tokens[keep]], axis=1)
            np.add.at(per_table, table_of[keep], per_row)
            per_seed.append(per_table)
        per_seed = np.stack(per_seed)
        out[group] = (per_seed[:, per_seed[0, :, 1] > 0], int(keep.sum()))
    return out


def _difference(a, b, better_a: str, better_b: str, options: dict):
    """A - B in loss ([seeds, tables, 2] each, paired on tables), its interval and verdict
    ("<better_a>", "<better_b>" or "not resolved")."""
    diff = bootstrap(a, ratio, minus=b, **options)
    said = verdict(diff, lower_is_better=True)
    return diff, {"A better": better_a, "B better": better_b}.get(said, said)


def position_split(
    results,
    *,
    axis: str = "prefix_length",
    reference=10,
    values: Sequence | None = None,
    arms: Sequence[str] | None = None,
    limit: int | None = None,
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Validation loss at each prefix length minus the reference length's, on the rows that
    stay inside the pretrained positions at the longest length compared and on the rows that
    do not.

    Args:
        results: a study whose axis is the prefix length (`read_results("prefix_length")`),
            with its adapters file.
        axis: that axis's name; reference: the length the others are compared with (10).
        values: the lengths compared (default: all of the axis); must include `reference`.
        arms: the arms (default: all).
        limit: the pretrained positions (default: `pretrained_positions` of the runs' model;
            required for a model that does not record it).
        n_resamples, confidence, seed: for the paired bootstrap over seeds and rows.
    Returns:
        DataFrame with `SPLIT_COLUMNS`: per arm, length and group ("inside": the row's last
        token is at a position < limit at the longest length; "past": it is not), the
        number of rows and of the validation tables they describe, the mean loss (nats per token, mean over seeds), and that loss minus
        the reference length's with its interval (a paired bootstrap over seeds and
        validation tables, each table's rows of the group summed) and verdict ("shorter better" / "longer
        better" / "not resolved", from the reference length's side: "A better" is the
        length of the row). A group with no rows is left out.
    """
    study = results.study
    if axis not in study.axes:
        raise ValueError(f"{study.name!r} has no axis {axis!r}; its axes are {tuple(study.axes)}.")
    known = list(study.axes[axis])
    values = known if values is None else list(values)
    unknown = [v for v in values if v not in known]
    if unknown or reference not in values:
        raise ValueError(
            f"values must be lengths of the study ({known}) and include the reference "
            f"{reference!r}; got values={values}."
        )
    arms = [a.label for a in study.arms] if arms is None else list(arms)
    for arm in arms:
        study.arm(arm)  # a known label, or a ValueError naming them
    require_int("n_resamples", n_resamples, low=100)
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    longest = max(int(v) for v in values)
    scored: dict = {}
    model = None
    for arm in arms:
        for value in values:
            runs = [_run_rows(results, arm, s, {axis: value}) for s in study.seeds]
            scored[arm, value] = runs
            model = runs[0].model
    limit = _limit(limit, model)
    lengths, table_of = _rows_of(scored[arms[0], reference][0])
    inside = lengths + longest <= limit  # the row's last token at a position < limit
    rows = []
    for arm in arms:
        stats = {value: _group_stats(scored[arm, value], lengths, table_of, inside)
                 for value in values}  # fmt: skip
        for value in values:
            for group, (a, n_rows) in stats[value].items():
                loss = float(ratio(a.sum(axis=1)).mean())
                if value == reference:
                    rows.append((arm, value, group, n_rows, a.shape[1], loss, 0.0, 0.0, 0.0, ""))
                    continue
                diff, said = _difference(a, stats[reference][group][0], f"{axis}={value} better",
                                         f"{axis}={reference} better", options)  # fmt: skip
                rows.append((arm, value, group, n_rows, a.shape[1], loss, diff.estimate,
                             diff.low, diff.high, said))  # fmt: skip
    table = pd.DataFrame(rows, columns=SPLIT_COLUMNS)
    table.attrs.update(limit=limit, longest=longest, reference=reference, axis=axis)
    return table


def _side(spec, name: str):
    """(results, arm, point) from (results, arm) or (results, arm, point)."""
    if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
        raise ValueError(
            f"{name} must be (results, arm) or (results, arm, point), e.g. "
            f"(read_results('reference_points'), 'prompt P=80'); got {spec!r}."
        )
    results, arm, *point = spec
    if not hasattr(results, "study"):
        raise ValueError(f"{name}[0] must be a study's results (read_results), got {results!r}.")
    results.study.arm(arm)  # a known label, or a ValueError naming them
    return results, arm, (point[0] if point else {})


def arms_position_split(
    a,
    b,
    *,
    longest: int | None = None,
    limit: int | None = None,
    n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Validation loss of arm A minus arm B (every committed seed of each), on the rows that
    stay inside the pretrained positions at prefix length `longest` and on those that do not:
    how much of a gap between a long soft prompt and a short one (or a prefix and LoRA) is the
    rows the longer one pushes past the positions the model was pretrained on.

    Args:
        a, b: (results, arm) or (results, arm, point), e.g.
            `(read_results("reference_points"), "prompt P=80")`; both arms must have been
            validated on the same rows (the same validation tables and model).
        longest: the prefix length that splits the rows (default: the longer of the two arms'
            prefix lengths, 0 for an arm without one).
        limit, n_resamples, confidence, seed: as `position_split`.
    Returns:
        DataFrame with `PAIR_COLUMNS`, one row per group ("inside", "past"; an empty group is
        left out): rows and tables, each arm's loss (mean over seeds), A - B with its
        interval and the verdict ("<arm A> better", "<arm B> better" or "not resolved").
    """
    (results_a, arm_a, point_a), (results_b, arm_b, point_b) = _side(a, "a"), _side(b, "b")
    require_int("n_resamples", n_resamples, low=100)
    runs_a = [_run_rows(results_a, arm_a, s, point_a) for s in results_a.study.seeds]
    runs_b = [_run_rows(results_b, arm_b, s, point_b) for s in results_b.study.seeds]
    if runs_a[0].model != runs_b[0].model:
        raise ValueError(
            f"The arms ran on different models: {runs_a[0].model!r} and {runs_b[0].model!r}."
        )
    if longest is None:
        longest = max(runs_a[0].prefix_length, runs_b[0].prefix_length)
    require_int("longest", longest, low=0)
    limit = _limit(limit, runs_a[0].model)
    lengths, table_of = _rows_of(runs_a[0])
    inside = lengths + longest <= limit
    stats_a = _group_stats(runs_a, lengths, table_of, inside)
    stats_b = _group_stats(runs_b, lengths, table_of, inside)
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows = []
    for group, (sa, n_rows) in stats_a.items():
        sb = stats_b[group][0]
        diff, said = _difference(sa, sb, f"{arm_a} better", f"{arm_b} better", options)
        rows.append((group, n_rows, sa.shape[1], float(ratio(sa.sum(axis=1)).mean()),
                     float(ratio(sb.sum(axis=1)).mean()), diff.estimate, diff.low, diff.high,
                     said))  # fmt: skip
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    table.attrs.update(limit=limit, longest=longest, a=arm_a, b=arm_b)
    return table


def split_text(table: pd.DataFrame) -> pd.Series:
    """'+0.012 [+0.004, +0.020]' per row of `position_split` (empty for the reference) or of
    `arms_position_split`."""
    column = "minus_reference" if "minus_reference" in table.columns else "difference"
    return pd.Series(
        ["" if r.verdict == "" else format_interval(getattr(r, column), r.low, r.high, signed=True)
         for r in table.itertuples()],
        index=table.index,
    )  # fmt: skip
