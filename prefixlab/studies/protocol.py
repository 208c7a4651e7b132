"""Running a study: stage 1 tunes each arm's learning rate, stage 2 runs seeds at the best rate.

    run_study("prefix_vs_prompt")             # or python -m prefixlab.studies run ...

For every axis point and arm:

1. **tune**: train at every rate of the arm's grid (`Study.lr_grid`), one run per tuning seed,
   without generation; the best rate has the lowest mean final validation loss (a run that
   stopped on NaN counts as infinitely bad). A best rate on an edge of the grid adds one rate
   beyond that edge and the choice is made again (`Study.extension`, at most
   `max_extensions` times).
2. **seeds**: train every seed at the best rate and generate for `n_eval_tables` held-out
   tables of `eval_split`; their per-table statistics (`results.table_statistics`) go to the
   tables file, and their trained parameters (when at most `MAX_ADAPTER_PARAMETERS`; a
   prefix trained through the MLP as its materialized prefix, `results.kept_parameters`) to
   the adapters file (`prefixlab.studies.adapters` rebuilds the trained models from it).

Runs go through `runs.run_experiment`, so they are cached: an interrupted study resumes where
it stopped. The files are written only when every run finished (`results.write_results`).
With `journal=` every finished run is also kept as small files that can be committed
(`prefixlab.studies.journal`), so a study of many CPU-hours resumes in a later session whose
run cache is gone; `arms=` runs a share of the study (some arms) into the journal only, so
two processes can split one axis point.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping

import pandas as pd

from prefixlab._validate import require_bool, require_choice
from prefixlab.config import PRESETS, RunConfig
from prefixlab.run_cache import load_state, read_trained, run_key, trainable_state
from prefixlab.runs import build, data_pool, run_data, run_experiment
from prefixlab.studies.definition import Arm, Study
from prefixlab.studies.journal import Journal, entry_key
from prefixlab.studies.registry import get_study
from prefixlab.studies.results import (
    CSV_COLUMNS,
    MAX_ADAPTER_PARAMETERS,
    StudyResults,
    kept_parameters,
    load_average,
    materialized_runs,
    provenance,
    read_results,
    result_paths,
    run_curves,
    table_statistics,
    tables_digest,
    write_results,
)


def _n_train_mrs(config: RunConfig) -> int:
    """The training MRs a run used (n_train_mrs, or every MR of the train split that the
    held-out filter keeps)."""
    return len(run_data(config, "train").mrs)


def check_eval_tables(study: Study, base: RunConfig) -> None:
    """Fail before any training when an eval split holds fewer MRs than `n_eval_tables` (after
    the held-out filter, for runs that hold values out)."""
    seen = set()
    for point in study.points():
        for arm in study.arms:
            config = study.run_config(base, arm.label, point, lr=None, seed=0, evaluate=True)
            if (config.data, config.held_out) in seen:
                continue
            seen.add((config.data, config.held_out))
            held = len(data_pool(config, study.eval_split, "eval_mrs").mrs)
            if held < study.n_eval_tables:
                where = f" using {', '.join(config.held_out)}" if config.held_out else ""
                raise ValueError(
                    f"Study {study.name!r} asks for {study.n_eval_tables} eval tables, but the "
                    f"{study.eval_split} split of {config.data!r} holds {held} MRs{where}; lower "
                    "n_eval_tables or use a larger split."
                )


def _last_val_drop(history) -> float:
    """How much the validation loss fell between the last two validations (> 0: still falling;
    near 0: the budget reached a plateau)."""
    v = history.val_loss
    return v[-2] - v[-1] if len(v) >= 2 else math.nan


def _record(stage: str, arm: Arm, point: Mapping, config: RunConfig, row: dict,
            history, *, chosen: bool) -> dict:  # fmt: skip
    """One CSV row (`results.CSV_COLUMNS` plus the axis columns)."""
    record = {
        "stage": stage,
        "arm": arm.label,
        "method": config.method,
        "lr": None if config.method == "none" else row.get("lr"),  # nothing trains
        "seed": config.train.seed,
        "steps": config.train.steps,
        "steps_done": row["steps_done"],
        "prefix_length": row.get("prefix_length"),
        "n_train_mrs": _n_train_mrs(config),
        "final_val_loss": row["final_val_loss"],
        "best_val_loss": row["best_val_loss"],
        "last_val_drop": _last_val_drop(history),
        "bleu": row.get("bleu", math.nan),
        "slot_error_rate": row.get("slot_error_rate", math.nan),
        "held_out_slot_error_rate": row.get("held_out_slot_error_rate", math.nan),
        "table_gain": row.get("table_gain", math.nan),
        "loss_right_mr": row.get("loss_right_mr", math.nan),
        "loss_wrong_mr": row.get("loss_wrong_mr", math.nan),
        "n_eval_tables": len(history.generations),
        "n_val_tables": len(history.table_losses),
        "eval_split": config.eval_split if history.generations else "",
        "chosen": chosen,
        "stopped_reason": row["stopped_reason"],
        "diverged": row["diverged"],
        "trainable_params": row["trainable_params"],
        "seconds": round(float(row["seconds"]), 2),
        "cached": row["cached"],
        "model": config.model,
        "run_id": row["run_id"],
        "eval_tables_digest": tables_digest([g["mr"] for g in history.generations]),
        "val_tables_digest": tables_digest([t["mr"] for t in history.table_losses]),
    }
    for name, value in point.items():
        record[name] = value
    return record


# The columns `_record` fills with NaN when a run did not measure them.
_MAYBE_NAN = (
    "final_val_loss", "best_val_loss", "last_val_drop", "bleu", "slot_error_rate",
    "held_out_slot_error_rate", "table_gain", "loss_right_mr", "loss_wrong_mr",
)  # fmt: skip


class _Runner:
    """Runs one study's configs, keeping the rows, the per-table arrays and a log."""

    def __init__(self, study: Study, base: RunConfig, *, cache: bool, progress: bool,
                 journal: Journal | None = None):  # fmt: skip
        self.study, self.base, self.cache, self.progress = study, base, cache, progress
        self.journal = journal
        self.records: list[dict] = []
        self.tables: dict = {}
        self.grids: list[dict] = []
        self.adapters: dict = {}  # run_id -> {parameter name: tensor}, stage 2 only
        self.skipped: list[dict] = []  # stage-2 runs whose parameters were too many to keep

    def log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def run(self, stage, arm, point, *, lr, seed, chosen=False, keep_tables=False):
        config = self.study.run_config(self.base, arm.label, point, lr=lr, seed=seed,
                                       evaluate=stage == "seeds")  # fmt: skip
        keep = stage == "seeds"  # without the cache the trained model is only here
        key = entry_key(stage, config) if self.journal is not None else None
        if key is not None:
            hit = self.journal.read(key)
            if hit is not None:
                return self._journalled(hit, stage, arm, point, chosen=chosen)
        started = time.monotonic()
        row, history, adapted = run_experiment(config, cache=self.cache, progress=False,
                                               return_model=keep and not self.cache)  # fmt: skip
        took = time.monotonic() - started
        if history.stopped_reason == "interrupted":
            raise KeyboardInterrupt(
                f"Study {self.study.name!r} interrupted; finished runs are cached, so running "
                "it again resumes."
            )
        record = _record(stage, arm, point, config, row, history, chosen=chosen)
        # the whole run, evaluation included; a run read from the cache was not timed here
        record["total_seconds"] = math.nan if row["cached"] else round(took, 2)
        self.records.append(record)
        self.tables[row["run_id"]] = run_curves(history)  # every run: its curves
        if keep_tables:
            self.tables[row["run_id"]].update(table_statistics(history))
        if keep:
            self.keep_adapter(config, record, adapted)
        if key is not None:
            skipped = [s for s in self.skipped if s["run_id"] == record["run_id"]]
            self.journal.write(key, {**record, "skipped": skipped[0] if skipped else None},
                               self.tables[row["run_id"]], self.adapters.get(row["run_id"]))  # fmt: skip
        where = " ".join(f"{k}={v}" for k, v in point.items())
        self.log(
            f"[{stage}] {where + ' ' if where else ''}{arm.label} lr={lr} seed={seed}: "
            f"val {row['final_val_loss']:.4f}"
            + (f", BLEU {row['bleu']:.1f}, slot errors {row['slot_error_rate']:.3f}"
               if stage == "seeds" and not math.isnan(row.get("bleu", math.nan)) else "")
            + (" (cached)" if row["cached"] else f" ({took:.0f} s)")
        )  # fmt: skip
        return record

    def _journalled(self, hit, stage, arm, point, *, chosen: bool) -> dict:
        """A run read back from the journal: its row (counted as cached: its time is not in
        this invocation's wall time), curves, per-table arrays and kept parameters."""
        row, arrays, parameters = hit
        skipped = row.pop("skipped", None)
        for name in _MAYBE_NAN:  # the JSON wrote NaN (not measured) as null
            if row.get(name, 0) is None:
                row[name] = math.nan
        record = {**row, "chosen": chosen, "cached": True}
        self.records.append(record)
        self.tables[record["run_id"]] = arrays
        if parameters is not None:
            self.adapters[record["run_id"]] = parameters
        if skipped:
            self.skipped.append(skipped)
        where = " ".join(f"{k}={v}" for k, v in point.items())
        self.log(f"[{stage}] {where + ' ' if where else ''}{arm.label} lr={record['lr']} "
                 f"seed={record['seed']}: val {record['final_val_loss']:.4f} (journal)")  # fmt: skip
        return record

    def keep_adapter(self, config: RunConfig, record: dict, adapted) -> None:
        """Keep a stage-2 run's trained parameters, or note that there were too many."""
        n = int(record["trainable_params"])
        if n == 0:  # "none" trains nothing
            return
        skip = {"run_id": record["run_id"], "arm": record["arm"], "trainable_params": n}
        if config.reparam == "mlp":  # kept as its materialized prefix, far smaller
            if adapted is None:
                state = read_trained(run_key(config))
                if state is not None:
                    adapted, _ = build(config)
                    adapted = adapted if load_state(adapted, state) else None
            if adapted is None:  # the cache kept no weights: rebuilt, or trained again
                _, _, adapted = run_experiment(config, cache=self.cache, progress=False,
                                               return_model=True)  # fmt: skip
            state = kept_parameters(adapted)
            if sum(t.numel() for t in state.values()) > MAX_ADAPTER_PARAMETERS:
                self.skipped.append(skip)
                return
            self.adapters[record["run_id"]] = state
            return
        if n > MAX_ADAPTER_PARAMETERS:
            self.skipped.append(skip)
            return
        state = trainable_state(adapted) if adapted is not None else read_trained(run_key(config))
        if state is None:  # the cache kept no weights: rebuilt, or trained again
            _, _, adapted = run_experiment(config, cache=self.cache, progress=False,
                                           return_model=True)  # fmt: skip
            state = trainable_state(adapted)
        self.adapters[record["run_id"]] = state

    def tune(self, arm: Arm, point: Mapping) -> float | None:
        """Stage 1 for one arm at one point: the best rate (None when every rate failed)."""
        study = self.study
        grid = list(study.lr_grid(arm.label))
        done: dict[float, list[dict]] = {}
        extensions = 0
        while True:
            for lr in grid:
                if lr not in done:
                    done[lr] = [self.run("tune", arm, point, lr=lr, seed=s)
                                for s in study.tuning_seeds]  # fmt: skip
            scores = {lr: _mean_loss(records) for lr, records in done.items()}
            best = min(scores, key=lambda lr: (scores[lr], lr))
            if math.isinf(scores[best]):
                best = None
                break
            extra = study.extension(grid, best, extensions)
            if extra is None or extra in done:
                break
            grid.append(extra)
            extensions += 1
        for records in done.values():
            for record in records:
                record["chosen"] = record["lr"] == best
        self.grids.append({**point, "arm": arm.label, "grid": sorted(grid), "best_lr": best,
                           "extensions": extensions, "best_on_edge": best in (min(grid),
                                                                              max(grid))})  # fmt: skip
        return best

    def seeds(self, arm: Arm, point: Mapping, best: float | None) -> None:
        """Stage 2 for one arm at one point."""
        seeds = self.study.seeds if arm.tuned else self.study.seeds[:1]  # "none": one run
        for seed in seeds:
            self.run("seeds", arm, point, lr=best, seed=seed, chosen=True, keep_tables=True)


def _mean_loss(records: list[dict]) -> float:
    losses = [r["final_val_loss"] for r in records]
    if any(x is None or not math.isfinite(x) for x in losses):
        return math.inf
    return sum(losses) / len(losses)


def run_study(
    study,
    *,
    preset: str | None = None,
    out=None,
    cache: bool = True,
    progress: bool = True,
    only: Mapping | None = None,
    journal=None,
    arms=None,
) -> StudyResults | None:
    """Run both stages of a study and write its results files.

    Args:
        study: a registered name or a Study.
        preset: "cpu", "fast" or "gpu" (default: the study's own); the JSON records it.
        out: the folder for the files (default `results.results_dir()`).
        cache: read and write the run cache (`prefixlab.run_cache`); the JSON counts the runs
            read from it, since their time is not in wall_seconds.
        progress: one line per run on stderr.
        only: {axis: value or list of values}: run only the matching axis points and merge
            them into the study's results already in `out` (their rows for other points are
            kept; the JSON lists each part with its own commit and wall time). For a long axis
            point run on its own, e.g. {"model": "mini"}.
        journal: a folder that keeps every finished run as small files
            (`prefixlab.studies.journal`) and is read first: a study stopped part-way resumes
            from it even when the run cache is gone (commit it with the work in progress).
            The JSON's "journal" entry counts the runs read from it and their commits.
        arms: run only these arms (labels) and write only the journal, no results files: two
            processes can share one axis point (e.g. arms=["prefix"] and arms=["prefix+mlp"]);
            the study run again without `arms` then reads every run from the journal and
            writes the files. Needs `journal`.
    Returns:
        The results as `read_results` reads them back from `out` (None with `arms`: nothing
        was written but the journal).
    """
    study = get_study(study)
    preset = study.preset if preset is None else preset
    require_choice("preset", preset, tuple(PRESETS))
    require_bool("cache", cache)
    require_bool("progress", progress)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"out must be a folder path, got {out!r}.")
    points = select_points(study, only)
    chosen_arms = select_arms(study, arms, journal)
    previous = _previous_parts(study, out) if only is not None and arms is None else None
    journal = Journal(journal) if journal is not None else None
    problems = study.protocol_problems()
    start = time.monotonic()
    load_start = load_average()
    base = study.base_config(preset)
    check_eval_tables(study, base)
    runner = _Runner(study, base, cache=cache, progress=progress, journal=journal)
    if problems:
        runner.log(f"Study {study.name!r} is below the protocol: {'; '.join(problems)}.")
    for point in points:
        for arm in chosen_arms:
            best = runner.tune(arm, point) if arm.tuned else None
            if arm.tuned and best is None:
                runner.log(f"{arm.label} {point}: every rate failed; no stage 2.")
                continue
            runner.seeds(arm, point, best)
    if arms is not None:  # a share of the study: its runs are in the journal, nothing else
        runner.log(f"{len(runner.records)} runs of {', '.join(a.label for a in chosen_arms)} "
                   f"are in the journal {journal.folder}; run the study again without `arms` "
                   "to write its files.")  # fmt: skip
        return None
    axis_columns = [name for name in study.axes if name not in CSV_COLUMNS]
    table = pd.DataFrame(runner.records, columns=[*CSV_COLUMNS, *axis_columns])
    info = provenance(preset=preset, wall_seconds=time.monotonic() - start, load_start=load_start)
    info.update(
        runs=len(table),
        cached_runs=int(table["cached"].sum()),
        protocol_problems=problems,
        grids=runner.grids,
    )
    if journal is not None:
        info["journal"] = {
            "folder": str(journal.folder),
            "runs_read": len(journal.read_keys),
            "commits_read": journal.commits(),
        }
    adapters, skipped = runner.adapters, runner.skipped
    if previous is not None:
        table, tables, info = _merge(study, previous, points, table, runner.tables, info)
        adapters, skipped = _merge_adapters(previous, set(table["run_id"]), adapters, skipped)
    else:
        tables = runner.tables
    info["adapters"] = adapters_summary(
        study.name, adapters, skipped,
        made="run_study: each stage-2 run's trained parameters, kept as the run ended",
        materialized=materialized_runs(table, adapters),
    )  # fmt: skip
    write_results(study, table, tables, info, out, adapters)
    return read_results(study.name, out)


def _merge_adapters(previous: StudyResults, kept: set, adapters: Mapping, skipped: list[dict]):
    """(adapters, skipped) of `previous` for the runs still `kept`, joined by a part's own."""
    merged = {**{k: v for k, v in previous.adapters.items() if k in kept}, **adapters}
    old = (previous.provenance.get("adapters") or {}).get("skipped", [])
    done = {s["run_id"] for s in skipped}
    return merged, [s for s in old if s["run_id"] in kept and s["run_id"] not in done] + skipped


MATERIALIZED_NOTE = (
    "prefix+mlp runs are kept as their materialized prefix (PrefixTuning.materialize(): the "
    "same keys and values, the MLP discarded, the model's outputs unchanged), not as the MLP's "
    "weights; load_adapter rebuilds a direct prefix (reparam 'none') from it, so the trained "
    "MLP itself cannot be recovered; start_adapter still builds the MLP form as it started"
)


def adapters_summary(name: str, adapters: Mapping, skipped: list[dict], *, made: str,
                     materialized=()) -> dict:  # fmt: skip
    """The JSON's "adapters" entry: the file, the size limit, how many runs it holds, which
    stage-2 runs were left out for keeping more values than that, how it was made, and which
    runs are kept as a materialized MLP prefix (with what that means for `load_adapter`)."""
    out = {
        "file": f"{name}.adapters.safetensors" if adapters else None,
        "max_parameters_per_run": MAX_ADAPTER_PARAMETERS,
        "runs": len(adapters),
        "skipped": list(skipped),
        "made": made,
    }
    if materialized:
        out["materialized"] = list(materialized)
        out["materialized_note"] = MATERIALIZED_NOTE
    return out


def select_arms(study: Study, arms, journal) -> tuple[Arm, ...]:
    """The study's arms named in `arms` (None = all), in the study's order.

    Raises:
        ValueError: for an empty or unknown label, or `arms` without a journal.
    """
    if arms is None:
        return study.arms
    if journal is None:
        raise ValueError("arms= runs a share of the study into its journal only: pass "
                         "journal= as well (e.g. journal='results/journal/<study>').")  # fmt: skip
    if isinstance(arms, str):
        arms = [arms]
    labels = [a.label for a in study.arms]
    if not isinstance(arms, (list, tuple, set)) or not arms:
        raise ValueError(f"arms must be a non-empty list of arm labels; {study.name!r} has "
                         f"{', '.join(labels)}.")  # fmt: skip
    unknown = [a for a in arms if a not in labels]
    if unknown:
        raise ValueError(f"{study.name!r} has no arm {unknown[0]!r}; its arms: "
                         f"{', '.join(labels)}.")  # fmt: skip
    return tuple(a for a in study.arms if a.label in set(arms))


def select_points(study: Study, only: Mapping | None) -> list[dict]:
    """The study's axis points that match `only` ({axis: value or values}; None = all).

    Raises:
        ValueError: for an axis the study does not have or a value not on its axis.
    """
    points = study.points()
    if only is None:
        return points
    if not isinstance(only, Mapping) or not only:
        raise ValueError(f"only must be a non-empty dict {{axis: values}}, got {only!r}.")
    if not study.axes:
        raise ValueError(f"Study {study.name!r} has no axes, so `only` has nothing to select; "
                         "leave it out.")  # fmt: skip
    wanted = {}
    for axis, values in only.items():
        if axis not in study.axes:
            raise ValueError(
                f"Study {study.name!r} has no axis {axis!r}; its axes: {', '.join(study.axes)}."
            )
        values = list(values) if isinstance(values, (list, tuple, set)) else [values]
        known = {str(v): v for v in study.axes[axis]}
        bad = [v for v in values if str(v) not in known]
        if bad or not values:
            raise ValueError(
                f"{axis}={bad or values!r} is not on the axis of {study.name!r}; its values: "
                f"{', '.join(map(str, study.axes[axis]))}."
            )
        wanted[axis] = {str(v) for v in values}
    return [p for p in points if all(str(p[a]) in v for a, v in wanted.items())]


def _previous_parts(study: Study, out):
    """The results already in `out` for a partial run (None when there are none); an error
    when they were made by another definition of the study (fewer axis values are fine)."""
    try:
        previous = read_results(study.name, out)
    except FileNotFoundError:
        return None
    _check_definition(study, previous, "run the whole study (leave out `only`) or write to "
                      "another folder")  # fmt: skip
    return previous


def _check_definition(study: Study, previous: StudyResults, fix: str) -> None:
    """An error (ending with `fix`) when `previous` was made by another definition of `study`
    (fewer axis values are fine: parts still to run)."""
    before, now = previous.study.to_dict(), study.to_dict()
    axes_before, axes_now = before.pop("axes"), now.pop("axes")
    same_axes = list(axes_before) == list(axes_now) and all(
        {str(v) for v in axes_before[a]} <= {str(v) for v in axes_now[a]} for a in axes_now
    )  # the committed points may be fewer than the study's (parts still to run)
    if before != now or not same_axes:
        raise ValueError(
            f"The results of {study.name!r} in {previous.paths['csv'].parent} were made by "
            f"another definition of the study, so a part cannot join them; {fix}."
        )


def _merge(study: Study, previous: StudyResults, points, table, tables, info):
    """`previous` with its rows at `points` replaced by this run's (table, tables, info)."""
    axes = list(study.axes)
    ran = {tuple(str(p[a]) for a in axes) for p in points}
    old = previous.table
    keys = old[axes].astype(str).apply(tuple, axis=1) if len(old) else pd.Series([], dtype=object)
    kept = old[~keys.isin(ran)] if len(old) else old
    merged_table = pd.concat([kept, table], ignore_index=True)
    order = {tuple(str(p[a]) for a in axes): i for i, p in enumerate(study.points())}
    merged_table = merged_table.iloc[
        sorted(range(len(merged_table)),
               key=lambda i: (order[tuple(str(merged_table.iloc[i][a]) for a in axes)], i))
    ].reset_index(drop=True)  # fmt: skip
    merged_tables = {k: v for k, v in previous.tables.items() if k in set(kept["run_id"])}
    merged_tables.update(tables)
    old_info = {k: v for k, v in previous.provenance.items() if k not in ("study", "adapters")}
    parts = old_info.pop("parts", None) or [old_info]
    for part in parts:  # a part re-run replaces the old one's points
        part["points"] = [p for p in part.get("points", _points_of(old, axes)) if
                          tuple(str(p[a]) for a in axes) not in ran]  # fmt: skip
    parts = [p for p in parts if p["points"]]
    parts.append({**info, "points": points})
    merged = {
        **info,
        "runs": len(merged_table),
        "cached_runs": int(merged_table["cached"].astype(bool).sum()),
        **_parts_summary(parts, axes),
    }
    return merged_table, merged_tables, merged


def _parts_summary(parts: list[dict], axes) -> dict:
    """The JSON keys that sum up a list of parts: their wall time, the rate grids of the points
    each part still holds, and the parts themselves."""
    grids = [g for part in parts for g in part.get("grids", [])
             if tuple(str(g[a]) for a in axes) in {tuple(str(p[a]) for a in axes)
                                                   for p in part["points"]}]  # fmt: skip
    return {"wall_seconds": sum(p["wall_seconds"] for p in parts), "grids": grids, "parts": parts}


def _points_of(table: pd.DataFrame, axes) -> list[dict]:
    """The distinct axis points of a results table, in order of appearance."""
    seen = []
    for _, row in table[axes].drop_duplicates().iterrows():
        seen.append({a: row[a] for a in axes})
    return seen


def merge_parts(study, sources, out=None) -> StudyResults:
    """Merge parts of a study run apart (side by side, or on other machines) into `out`.

    Each source folder holds the study's three files as `run_study(..., only=..., out=source)`
    wrote them; they join the results already in `out` (if any) one after the other, like a
    part run with `only` straight into `out`: a point present in several places keeps the
    last source's rows, and the JSON lists every part with its own commit and wall time.

        run_study("prefix_length", only={"prefix_length": [1, 4]}, out="parts/a")   # process 1
        run_study("prefix_length", only={"prefix_length": [10, 40]}, out="parts/b") # process 2
        merge_parts("prefix_length", ["parts/a", "parts/b"])                        # results/

    Raises:
        ValueError: for an empty `sources`, a source that is `out` itself, or a part made by
            another definition of the study.
        FileNotFoundError: for a source without the study's files.
    """
    study = get_study(study)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)) or not sources:
        raise ValueError(f"sources must be a non-empty list of folders, got {sources!r}.")
    if not study.axes:
        raise ValueError(f"Study {study.name!r} has no axes, so it has no parts to merge; run "
                         "it whole.")  # fmt: skip
    target = result_paths(study.name, out)["csv"].parent.resolve()
    parts = [read_results(study.name, source) for source in sources]
    for source, part in zip(sources, parts, strict=True):
        if part.paths["csv"].parent.resolve() == target:
            raise ValueError(f"{source} is the output folder itself; merge parts from other "
                             "folders into it.")  # fmt: skip
        _check_definition(study, part, "merge only parts of this definition (or run them again)")
    axes = list(study.axes)
    for part in parts:
        previous = _previous_parts(study, out)
        info = {k: v for k, v in part.provenance.items() if k != "study"}
        if previous is None:
            write_results(study, part.table, part.tables, info, out, part.adapters)
            continue
        kept_info = info.pop("adapters", None) or {}  # parts written before adapters: none
        inner = info.pop("parts", None)  # a source that is itself merged keeps its parts
        points = _points_of(part.table, axes)
        table, tables, merged = _merge(study, previous, points, part.table, part.tables, info)
        if inner:
            merged.update(_parts_summary([*merged["parts"][:-1], *inner], axes))
        adapters, skipped = _merge_adapters(previous, set(table["run_id"]), part.adapters,
                                            kept_info.get("skipped", []))  # fmt: skip
        if adapters or "adapters" in previous.provenance or kept_info:
            made = kept_info.get("made") or (previous.provenance.get("adapters") or {}).get("made")
            merged["adapters"] = adapters_summary(
                study.name,
                adapters,
                skipped,
                made=made,
                materialized=materialized_runs(table, adapters),
            )
        write_results(study, table, tables, merged, out, adapters)
    return read_results(study.name, out)
