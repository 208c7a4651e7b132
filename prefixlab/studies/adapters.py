"""The trained adapters of a study's stage-2 runs: rebuilt from the committed results, or
attached to results committed before studies kept them (and the same for every run's
curves: `attach_curves`).

    results = read_results("prefix_vs_prompt")
    trained = load_adapter(results, "prefix", seed=0)   # AdaptedModel, as the run ended
    start = start_adapter(results, "prefix", seed=0)    # the same run before step 1

`run_study` writes `results/<name>.adapters.safetensors` itself (`results.write_adapters`),
for every stage-2 run that keeps at most `MAX_ADAPTER_PARAMETERS` values; a prefix trained
through the MLP is kept as its materialized prefix (`results.kept_parameters`), so
`load_adapter` gives it back as a direct prefix with the same outputs. For results
written before it did, `attach_adapters` copies the parameters from the run cache
(`prefixlab.run_cache`), checking each cache entry against the committed row first.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np

from prefixlab._validate import require_bool
from prefixlab.adapted import AdaptedModel
from prefixlab.run_cache import cache_dir, entry_keys, load_state, read_entry, read_trained
from prefixlab.runs import build
from prefixlab.studies.live import committed_run
from prefixlab.studies.protocol import adapters_summary
from prefixlab.studies.results import (
    MAX_ADAPTER_PARAMETERS,
    StudyResults,
    kept_parameters,
    materialized_runs,
    read_results,
    run_curves,
    write_adapters,
)
from prefixlab.train import History, jsonable

# Relative difference between a cache entry's final validation loss and the CSV's that still
# counts as the same run (the CSV stores floats in full; this only absorbs the text round trip).
SAME_LOSS = 1e-9


def _results(results_or_name, folder) -> StudyResults:
    if isinstance(results_or_name, StudyResults):
        return results_or_name
    return read_results(results_or_name, folder)


def start_adapter(
    results_or_name, arm: str | None = None, seed: int | None = None,
    point: Mapping | None = None, *, folder=None,
) -> AdaptedModel:  # fmt: skip
    """The committed stage-2 run `arm`/`seed` (at `point`) as it started: its adapter built
    from the run's own config and seed by `runs.build`, the code `run_experiment` trains from.

    Args:
        results_or_name: StudyResults (`read_results`) or a study name.
        arm, seed: default the study's first arm and seed; point: the axis values.
        folder: where the committed files are (default `results.results_dir()`).
    Returns:
        An untrained AdaptedModel on the shared frozen base model (`runs.base_model`).
    """
    results = _results(results_or_name, folder)
    _, config = committed_run(results, arm, seed, point)
    adapted, _ = build(config)
    return adapted


def load_adapter(
    results_or_name, arm: str | None = None, seed: int | None = None,
    point: Mapping | None = None, *, folder=None,
) -> AdaptedModel:  # fmt: skip
    """The committed stage-2 run `arm`/`seed` (at `point`) as it ended: `start_adapter` with
    the kept trained parameters copied in (`results.adapters`). A prefix trained through the
    MLP was kept as its materialized prefix: it comes back as a direct prefix (reparam
    "none", `PrefixTuning.materialize()`), whose outputs are the trained MLP form's.

    Raises:
        ValueError: when the study kept no parameters for that run (it trained more than
            MAX_ADAPTER_PARAMETERS values, or its results predate adapters files), or when
            they do not fit the rebuilt adapter.
    """
    results = _results(results_or_name, folder)
    row, config = committed_run(results, arm, seed, point)
    state = results.adapters.get(row["run_id"])
    if state is None:
        skipped = (results.provenance.get("adapters") or {}).get("skipped", [])
        why = (
            f"it trains {int(row['trainable_params'])} values, more than the "
            f"{MAX_ADAPTER_PARAMETERS} a study keeps per run"
            if any(s["run_id"] == row["run_id"] for s in skipped)
            else "the results have no adapters file with it (results written before studies "
            "kept adapters: see attach_adapters)"
        )
        raise ValueError(
            f"No trained parameters for {row['arm']!r} seed {int(row['seed'])} of "
            f"{results.study.name!r} (run {row['run_id']}): {why}. Retrain it with "
            "prefixlab.runs.run_experiment(config) instead."
        )
    adapted, _ = build(config)
    if getattr(adapted.adapter, "reparam", None) == "mlp" and set(state) == {"adapter.weight"}:
        adapted = AdaptedModel(adapted.model, adapted.adapter.materialize())  # kept materialized
    if not load_state(adapted, state):
        raise ValueError(
            f"The kept parameters of run {row['run_id']} do not fit the adapter its config "
            "builds (names or shapes differ): the code that builds it changed since."
        )
    return adapted


def _point(results: StudyResults, row) -> dict:
    """The axis point of a CSV row, in the study's own values (the CSV reads them as text or
    numpy numbers)."""
    axes = results.study.axes
    return {name: next(v for v in axes[name] if str(v) == str(row[name])) for name in axes}


def _check_entry(key: str, row, config) -> dict:
    """The cache entry `key` of committed `row`, or a ValueError saying how they differ
    (`config` None: the row only)."""
    entry = read_entry(key)
    run_id = row["run_id"]
    if entry is None:
        raise ValueError(f"The run cache entry {key} of run {run_id} cannot be read.")
    recorded = entry["row"]
    if recorded.get("run_id") != run_id:
        raise ValueError(
            f"The cache entry {key} records run_id {recorded.get('run_id')!r}, not {run_id!r}."
        )
    cached, committed = recorded.get("final_val_loss"), float(row["final_val_loss"])
    if cached is None or not math.isclose(cached, committed, rel_tol=SAME_LOSS, abs_tol=0.0):
        raise ValueError(
            f"The cache entry of run {run_id} records final_val_loss {cached!r}, the CSV "
            f"{committed!r}: not the committed run, so its parameters are not attached."
        )
    if config is None:  # a stage-1 run: its row is all there is to compare
        return entry
    now = jsonable(config.to_dict())
    for name, value in entry["config"].items():  # fields added since an entry are skipped
        if name in now and jsonable(value) != now[name] and name != "train":
            raise ValueError(
                f"The cache entry of run {run_id} has {name}={value!r}, the committed study "
                f"{now[name]!r}: it was made by another definition."
            )
    for name, value in (entry["config"].get("train") or {}).items():
        if name in now["train"] and jsonable(value) != now["train"][name]:
            raise ValueError(
                f"The cache entry of run {run_id} has {name}={value!r}, the committed study "
                f"{now['train'][name]!r}: it was made by another definition."
            )
    return entry


def _set_json_entry(path, key: str, value) -> None:
    """Set one top-level entry of a study's JSON, the other keys as they are and "study" kept
    last (as `write_results` writes it); written to a temporary file, then moved."""
    info = json.loads(path.read_text(encoding="utf-8"))
    study = info.pop("study")
    info[key] = value
    info["study"] = study
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def attach_adapters(results_or_name, *, folder=None, write: bool = True) -> dict:
    """Copy the trained parameters of a study's committed stage-2 runs from the run cache
    (`run_cache.cache_dir()`, i.e. $PREFIXLAB_CACHE/runs) into its adapters file, and record
    how in the JSON's "adapters" entry (the other keys are left as they are).

    Each kept run's cache entry is found by its run_id (the first 12 characters of its key)
    and checked before its parameters are used: the entry's recorded row has the same run_id
    and the same final_val_loss as the CSV, its config agrees with the committed study's,
    and its parameters fit the adapter that config builds. Runs that train more than
    `MAX_ADAPTER_PARAMETERS` values are listed as skipped.

    Args:
        results_or_name: StudyResults or a study name; folder: where its files are.
        write: write the adapters file and the JSON entry (False: only check and return).
    Returns:
        The "adapters" entry written to the JSON.
    Raises:
        ValueError: when an entry is missing, ambiguous or differs from the committed row
            (nothing is written then).
    """
    require_bool("write", write)
    results = _results(results_or_name, folder)
    if not results.paths:
        raise ValueError("attach_adapters needs results read from files (read_results).")
    adapters, skipped = {}, []
    for _, row in results.stage("seeds").iterrows():
        n, run_id = int(row["trainable_params"]), row["run_id"]
        if n == 0:
            continue
        mlp = row["method"] == "prefix+mlp"  # kept as its materialized prefix
        if n > MAX_ADAPTER_PARAMETERS and not mlp:
            skipped.append({"run_id": run_id, "arm": row["arm"], "trainable_params": n})
            continue
        keys = entry_keys(run_id)
        if len(keys) != 1:
            raise ValueError(
                f"Run {run_id} ({row['arm']}, seed {int(row['seed'])}) has {len(keys)} entries "
                f"in the run cache {cache_dir()} (one is needed); set PREFIXLAB_CACHE to the "
                "cache the study ran with."
            )
        _, config = committed_run(results, row["arm"], int(row["seed"]), _point(results, row))
        _check_entry(keys[0], row, config)
        state = read_trained(keys[0])
        adapted, _ = build(config)
        if state is None or not load_state(adapted, state):
            raise ValueError(
                f"The run cache kept no parameters of run {run_id} that fit its adapter."
            )
        state = kept_parameters(adapted) if mlp else state
        if sum(t.numel() for t in state.values()) > MAX_ADAPTER_PARAMETERS:
            skipped.append({"run_id": run_id, "arm": row["arm"], "trainable_params": n})
            continue
        adapters[run_id] = state
    summary = adapters_summary(
        results.study.name, adapters, skipped,
        made="attach_adapters, from the run cache the study ran with: each entry's recorded "
        "row checked against the CSV (same run_id, same final_val_loss) and its config against "
        "the study's",
        materialized=materialized_runs(results.table, adapters),
    )  # fmt: skip
    if write:
        paths = results.paths
        if adapters:
            write_adapters(paths["csv"].with_name(f"{results.study.name}.adapters.safetensors"),
                           adapters)  # fmt: skip
        _set_json_entry(paths["json"], "adapters", summary)
    return summary


CURVE_KINDS = ("train_loss", "val_curve")


def attach_curves(results_or_name, *, folder=None, write: bool = True) -> dict:
    """Copy every run's curves (`results.run_curves`: each step's training loss and the
    validation curve) from the run cache into a study's tables file, for results written
    before studies kept them; record how in the JSON's "curves" entry.

    Every run of the CSV (stage 1 and stage 2) is found in the run cache by its run_id and
    checked as `attach_adapters` checks one: same run_id and same final_val_loss as the CSV,
    and for a stage-2 run a config that agrees with the committed study's (a stage-1 run has
    no committed config to compare; its row must match). Runs that already have curves keep
    them. With curves, `live_slice(steps=N)` can check a run's first N steps instead of
    retraining it whole.

    Args:
        results_or_name: StudyResults or a study name; folder: where its files are.
        write: rewrite the tables file and the JSON entry (False: only check and return).
    Returns:
        The "curves" entry written to the JSON: {"runs", "already", "made"}.
    Raises:
        ValueError: when a run's cache entry is missing, ambiguous or differs from its row
            (nothing is written then).
    """
    require_bool("write", write)
    results = _results(results_or_name, folder)
    if not results.paths:
        raise ValueError("attach_curves needs results read from files (read_results).")
    added, already = {}, 0
    for _, row in results.table.iterrows():
        run_id = row["run_id"]
        if all(kind in results.tables.get(run_id, {}) for kind in CURVE_KINDS):
            already += 1
            continue
        keys = entry_keys(run_id)
        if len(keys) != 1:
            raise ValueError(
                f"Run {run_id} ({row['stage']}, {row['arm']}, seed {int(row['seed'])}) has "
                f"{len(keys)} entries in the run cache {cache_dir()} (one is needed); set "
                "PREFIXLAB_CACHE to the cache the study ran with."
            )
        config = None
        if row["stage"] == "seeds":
            _, config = committed_run(results, row["arm"], int(row["seed"]), _point(results, row))
        entry = _check_entry(keys[0], row, config)
        added[run_id] = run_curves(History.from_dict(entry["history"]))
    summary = {
        "runs": len(added),
        "already": already,
        "made": "attach_curves, from the run cache the study ran with: each entry's recorded "
        "row checked against the CSV (same run_id, same final_val_loss), a stage-2 entry's "
        "config against the study's",
    }
    if write and added:
        arrays = {f"{run_id}.{kind}": array for run_id, kinds in results.tables.items()
                  for kind, array in kinds.items()}  # fmt: skip
        arrays.update({f"{run_id}.{kind}": array for run_id, curves in added.items()
                       for kind, array in curves.items()})  # fmt: skip
        paths = results.paths
        tmp = paths["tables"].with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, paths["tables"])
        _set_json_entry(paths["json"], "curves", summary)
    return summary
