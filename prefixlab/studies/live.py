"""The live slice: rerun one committed run of a study and say whether it still comes out the
same, so a notebook that reads committed results also shows they can be reproduced.

    live_slice("prefix_vs_prompt", arm="prefix", seed=0)
    # 'live slice matches the committed rows (prefix at lr 0.03, seed 0: val loss 1.234 vs
    #  1.234, tolerance 0.01)'

The slice retrains the stage-2 run with the committed study definition, preset and rate, but
without generation (the validation loss is measured before generation, so it does not change).
Without the cache and samples it trains only (`runs.train_run`) and validates once, at the
end: the validations in between read the parameters without changing them or the random
state, so the final validation loss is the committed run's.

`committed_run` gives the row and the RunConfig of one committed run (what
`prefixlab.studies.adapters` rebuilds models from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prefixlab._validate import require_bool, require_int, require_number
from prefixlab.runs import run_experiment, train_run
from prefixlab.studies.results import StudyResults, read_results

TOLERANCE = 0.01  # nats per token: float and BLAS differences between machines stay far below


def _committed_row(results: StudyResults, arm: str, seed: int, point: Mapping):
    rows = results.stage("seeds")
    rows = rows[(rows["arm"] == arm) & (rows["seed"] == seed)]
    for name, value in point.items():
        rows = rows[rows[name].astype(str) == str(value)]
    if len(rows) != 1:
        have = results.stage("seeds")[["arm", "seed", *results.study.axes]]
        listing = "; ".join(
            " ".join(f"{k}={v}" for k, v in r.items()) for r in have.to_dict("records")
        )
        raise ValueError(
            f"No single committed stage-2 run for arm={arm!r}, seed={seed}"
            f"{', ' + str(dict(point)) if point else ''} (found {len(rows)}). Committed: "
            f"{listing or 'none'}."
        )
    return rows.iloc[0]


def committed_run(
    results: StudyResults, arm: str | None = None, seed: int | None = None,
    point: Mapping | None = None, *, evaluate: bool = True,
) -> tuple:  # fmt: skip
    """The CSV row and the RunConfig of one committed stage-2 run.

    Args:
        results: the study's results (`read_results`).
        arm, seed: default: the study's first arm and first seed.
        point: the axis values ({} or None without axes).
        evaluate: the config generates for the evaluation tables, as the run did (False: it
            only trains and validates).
    Returns:
        (row, config): a pandas Series and a RunConfig.
    Raises:
        ValueError: for an unknown arm, a point that does not name every axis, or no single
            committed run.
    """
    definition = results.study
    arm = definition.arms[0].label if arm is None else arm
    definition.arm(arm)  # a known label, or a ValueError naming them
    seed = definition.seeds[0] if seed is None else seed
    require_int("seed", seed, low=0)
    point = {} if point is None else dict(point)
    if set(point) != set(definition.axes):
        raise ValueError(
            f"point must give a value for each axis of the study {tuple(definition.axes)}, "
            f"got {point}."
        )
    require_bool("evaluate", evaluate)
    row = _committed_row(results, arm, seed, point)
    lr = None if math.isnan(row["lr"]) else float(row["lr"])
    base = definition.base_config(results.provenance["preset"])
    config = definition.run_config(base, arm, point, lr=lr, seed=seed, evaluate=evaluate)
    return row, config


def live_slice(
    study,
    *,
    arm: str | None = None,
    seed: int | None = None,
    point: Mapping | None = None,
    folder=None,
    tolerance: float = TOLERANCE,
    cache: bool = False,
    progress: bool = False,
    samples: int = 0,
    callback=None,
):
    """Rerun one committed stage-2 run and compare its final validation loss to the CSV row.

    Args:
        study: a study name or Study, or StudyResults already read.
        arm: the arm's label (default: the study's first arm).
        seed: the seed (default: the study's first seed).
        point: the axis values ({} or None without axes; e.g. {"model": "tiny"}).
        folder: where the committed files are (default `results.results_dir()`).
        tolerance: largest |live - committed| validation loss that still matches (nats/token).
        cache: allow the run cache (False retrains, which is what "live" means).
        samples: also generate for the first `samples` evaluation tables (after the final
            validation, so the compared loss is the same) and return them.
        callback: called as callback(history, adapted) after every training step (e.g. to
            record attention as the run trains); only without cache and samples.
    Returns:
        One line: "live slice matches the committed rows (...)" or "live slice does NOT
        match the committed rows (...)", with both values and the tolerance; with `samples`,
        (line, generations) where generations are `History.generations` (mr, text, refs,
        slot errors per table).
    """
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    require_number("tolerance", tolerance, above=0, hint="Try 0.01.")
    require_bool("cache", cache)
    require_bool("progress", progress)
    require_int("samples", samples, low=0, hint="0 = no generation; e.g. 4 for four texts.")
    if callback is not None and (cache or samples or not callable(callback)):
        raise ValueError(
            "callback must be callable as callback(history, adapted), and needs cache=False "
            "and samples=0 (a cached run or one that generates does not train step by step)."
        )
    row, config = committed_run(results, arm, seed, point, evaluate=False)
    arm, seed = row["arm"], int(row["seed"])
    lr = None if math.isnan(row["lr"]) else float(row["lr"])
    point = {} if point is None else dict(point)
    if samples or cache:
        config = config.with_(eval_mrs=samples) if samples else config
        live, history, _ = run_experiment(config, cache=cache, progress=progress,
                                          return_model=False)  # fmt: skip
        value, steps_done = float(live["final_val_loss"]), int(live["steps_done"])
    else:  # train only, one validation at the end
        _, _, history = train_run(config.with_(eval_every=None), progress=progress,
                                  callback=callback)  # fmt: skip
        value, steps_done = float(history.final_val_loss), history.steps_done
    committed = float(row["final_val_loss"])
    same = math.isfinite(value) and abs(value - committed) <= tolerance
    same = same and steps_done == int(row["steps_done"])
    where = " ".join(f"{k}={v}" for k, v in point.items())
    what = (
        f"{where + ' ' if where else ''}{arm}"
        + (f" at lr {lr:g}" if lr is not None else "")
        + f", seed {seed}: val loss {value:.3f} vs {committed:.3f}, tolerance {tolerance:g}"
    )
    if steps_done != int(row["steps_done"]):
        what += f"; steps {steps_done} vs {int(row['steps_done'])}"
    verdict = "matches" if same else "does NOT match"
    line = f"live slice {verdict} the committed rows ({what})"
    return (line, history.generations) if samples else line
