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

import numpy as np
import pandas as pd

from prefixlab._validate import require_int
from prefixlab.evaluate import row_losses
from prefixlab.paths import EMBEDDED_MODELS, embedded_model_dir
from prefixlab.stats import CONFIDENCE, RESAMPLES, bootstrap, format_interval, ratio, verdict

# Relative difference allowed between the committed final validation loss and the one the rows
# add up to (batches of another size round differently in float32).
SAME_VAL_LOSS = 1e-4
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


def _run_rows(results, arm: str, seed: int, point: dict):
    """(row sums, row tokens, row lengths, row tables, model) of one committed stage-2 run's
    validation rows, scored with its trained adapter (row tables: the MR each row describes)."""
    from prefixlab.runs import _encoded, base_model, run_data
    from prefixlab.studies.adapters import load_adapter
    from prefixlab.studies.live import committed_run

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
    return sums, tokens, lengths, tables, config.model


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
    longest = max(int(v) for v in values)
    scored: dict = {}
    model = None
    for arm in arms:
        for value in values:
            runs = [_run_rows(results, arm, s, {axis: value}) for s in study.seeds]
            scored[arm, value] = runs
            model = runs[0][4]
    if limit is None:
        limit = pretrained_positions(model)
        if limit is None:
            raise ValueError(
                f"The model {model!r} does not record how many positions it was pretrained "
                "on; pass limit= (from its model card)."
            )
    require_int("limit", limit, low=1)
    _, _, lengths, row_tables, _ = scored[arms[0], reference][0]
    inside = lengths + longest <= limit  # the row's last token at a position < limit
    names, table_of = np.unique(row_tables.astype(str), return_inverse=True)
    rows = []
    for arm in arms:
        stats = {}
        for value in values:
            for _, _, other_lengths, *_ in scored[arm, value]:
                if not np.array_equal(other_lengths, lengths):
                    raise ValueError("The runs compared were validated on different rows.")
            for group, keep in zip(GROUPS, (inside, ~inside), strict=True):
                per_seed = []
                for s, t, *_ in scored[arm, value]:  # [tables, 2]: summed loss, tokens
                    per_table = np.zeros((len(names), 2))
                    np.add.at(per_table, table_of[keep], np.stack([s[keep], t[keep]], axis=1))
                    per_seed.append(per_table)
                per_seed = np.stack(per_seed)  # [seeds, tables, 2]
                # only the tables with rows in the group: every resample then has some tokens
                stats[value, group] = per_seed[:, per_seed[0, :, 1] > 0]
        for value in values:
            for group, keep in zip(GROUPS, (inside, ~inside), strict=True):
                if not keep.any():
                    continue
                a, b = stats[value, group], stats[reference, group]
                loss = float(ratio(a.sum(axis=1)).mean())
                if value == reference:
                    rows.append(
                        (arm, value, group, int(keep.sum()), a.shape[1], loss, 0.0, 0.0, 0.0, "")
                    )
                    continue
                diff = bootstrap(a, ratio, minus=b, n_resamples=n_resamples,
                                 confidence=confidence, seed=seed)  # fmt: skip
                said = verdict(diff, lower_is_better=True)
                said = {"A better": f"{axis}={value} better",
                        "B better": f"{axis}={reference} better"}.get(said, said)  # fmt: skip
                rows.append((arm, value, group, int(keep.sum()), a.shape[1], loss, diff.estimate,
                             diff.low, diff.high, said))  # fmt: skip
    table = pd.DataFrame(rows, columns=SPLIT_COLUMNS)
    table.attrs.update(limit=limit, longest=longest, reference=reference, axis=axis)
    return table


def split_text(table: pd.DataFrame) -> pd.Series:
    """'+0.012 [+0.004, +0.020]' per row of `position_split` (empty for the reference)."""
    return pd.Series(
        ["" if r.verdict == "" else format_interval(r.minus_reference, r.low, r.high, signed=True)
         for r in table.itertuples()],
        index=table.index,
    )  # fmt: skip
