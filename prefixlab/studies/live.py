"""The live slice: rerun one committed run of a study and say whether it still comes out the
same, so a notebook that reads committed results also shows they can be reproduced.

    live_slice("prefix_vs_prompt", arm="prefix", seed=0)
    # 'live slice matches the committed rows (prefix at lr 0.03, seed 0: val loss 1.234 vs
    #  1.234, tolerance 0.01)'

The slice retrains the stage-2 run with the committed study definition, preset and rate, and
generates for at most `samples` tables (the validation loss is measured before generation, so
it does not change).
Without the cache it trains only (`runs.train_run`) and validates once, at the end (the
validations in between read the parameters without changing them or the random state, so
the final validation loss is the committed run's), then writes the `samples` texts asked for
(`runs.write_texts`); with the cache it reads or makes the whole run (`run_experiment`).

At another preset (`preset="fast"`: 30 steps instead of the committed 300) nothing committed
can be reproduced, so the slice checks less and says so: the committed configuration (arm,
rate, seed, axis point, the study's overrides) still builds, runs and lowers the validation
loss from where it started; the line names both presets.

    live_slice("low_data", arm="prefix", point={"n_train_mrs": 50}, preset="fast")
    # 'live slice at the fast preset trains the committed configuration (n_train_mrs=50
    #  prefix at lr 0.16, seed 0: val loss 3.412 -> 2.201 in 30 steps; the committed cpu
    #  run: 1.234 after 300 steps, reproducible only at the cpu preset)'

A run too long to retrain live (`mlp_stability`'s 500 steps) is checked on its first `steps`
steps instead: the committed configuration (the same 500-step schedule) trains `steps` steps and
stops, and each step's training loss is compared with the committed curve (the tables file's
`train_loss`); no validation is needed, so this costs `steps` training steps. At another preset
`steps` stops the "trains" check after that many steps as well.

    live_slice("mlp_stability", arm="prefix", point={"init": "random"}, steps=20)
    # 'live slice matches the committed rows (init=random prefix at lr 0.093, seed 0: training
    #  loss of the first 20 steps within 0.0003 of the committed curve, tolerance 0.01)'

`committed_run` gives the row and the RunConfig of one committed run (what
`prefixlab.studies.adapters` rebuilds models from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prefixlab._validate import require_bool, require_choice, require_int, require_number
from prefixlab.config import PRESETS
from prefixlab.runs import run_experiment, train_run, write_texts
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
    point: Mapping | None = None, *, evaluate: bool = True, preset: str | None = None,
) -> tuple:  # fmt: skip
    """The CSV row and the RunConfig of one committed stage-2 run.

    Args:
        results: the study's results (`read_results`).
        arm, seed: default: the study's first arm and first seed.
        point: the axis values ({} or None without axes).
        evaluate: the config generates for the evaluation tables, as the run did (False: it
            only trains and validates).
        preset: the preset of the config (default: the committed one, which reproduces the
            run; another one keeps the study's arm, rate, seed and overrides).
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
    preset = results.provenance["preset"] if preset is None else preset
    require_choice("preset", preset, tuple(PRESETS))
    row = _committed_row(results, arm, seed, point)
    lr = None if math.isnan(row["lr"]) else float(row["lr"])
    base = definition.base_config(preset)
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
    preset: str | None = None,
    history: bool = False,
    steps: int | None = None,
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
            record attention as the run trains); only without the cache.
        preset: default the committed preset (the run is reproduced); another one only
            checks that the committed configuration still trains (see the module docstring).
        history: return the live run's whole History instead of its generations (its
            training loss per step, its validations and, with `samples`, its texts), so a
            notebook can show the retrained run itself (notebook 01).
        steps: retrain only the first `steps` steps (of the committed schedule) and compare
            each step's training loss with the committed curve, within `tolerance`; at another
            preset, stop the "trains" check after `steps` steps. Not with cache or samples.
    Returns:
        One line: "live slice matches the committed rows (...)" or "live slice does NOT
        match the committed rows (...)", with both values and the tolerance; with `samples`,
        (line, generations) where generations are `History.generations` (mr, text, refs,
        slot errors per table); with `history`, (line, History).
    """
    results = study if isinstance(study, StudyResults) else read_results(study, folder)
    require_number("tolerance", tolerance, above=0, hint="Try 0.01.")
    require_bool("cache", cache)
    require_bool("progress", progress)
    require_int("samples", samples, low=0, hint="0 = no generation; e.g. 4 for four texts.")
    require_bool("history", history)
    other_preset = preset not in (None, results.provenance["preset"])
    if callback is not None and (cache or other_preset or not callable(callback)):
        raise ValueError(
            "callback must be callable as callback(history, adapted), and needs cache=False "
            "and the committed preset (a cached run or one at another preset does not train "
            "step by step here)."
        )
    require_int("steps", steps, low=1, allow_none=True, hint="e.g. 20; None = the whole run.")
    if steps is not None and (cache or samples or history or callback is not None):
        raise ValueError("steps= retrains the first steps live: use it without cache, samples, "
                         "history and callback.")  # fmt: skip
    committed_preset = results.provenance["preset"]
    preset = committed_preset if preset is None else preset
    row, config = committed_run(results, arm, seed, point, evaluate=False, preset=preset)
    arm, seed = row["arm"], int(row["seed"])
    lr = None if math.isnan(row["lr"]) else float(row["lr"])
    point = {} if point is None else dict(point)
    where = " ".join(f"{k}={v}" for k, v in point.items())
    who = f"{where + ' ' if where else ''}{arm}" + (f" at lr {lr:g}" if lr is not None else "")
    committed = float(row["final_val_loss"])
    if steps is not None and preset != committed_preset:  # validated at 0 and after `steps`
        stop = _stop_after(steps)
        _, _, run = train_run(config.with_(eval_every=steps), callback=stop)
        return _trains_line(run, who, seed, preset, committed_preset, committed, row)
    if steps is not None:
        return _curve_line(results, row, config, steps, who, seed, tolerance)
    if preset != committed_preset:  # validates along the way: the line compares the start
        config = config.with_(eval_mrs=samples) if samples else config
        _, run, _ = run_experiment(config, cache=cache, progress=progress, return_model=False)
        line = _trains_line(run, who, seed, preset, committed_preset, committed, row)
        return _returned(line, run, samples, history)
    config = config.with_(eval_mrs=samples) if samples else config
    if cache:
        live, run, _ = run_experiment(config, cache=cache, progress=progress, return_model=False)
        value, steps_done = float(live["final_val_loss"]), int(live["steps_done"])
    else:  # train only, one validation at the end; then the texts, if asked for
        adapted, tokenizer, run = train_run(config.with_(eval_every=None), progress=progress,
                                            callback=callback)  # fmt: skip
        value, steps_done = float(run.final_val_loss), run.steps_done
        if samples:
            write_texts(config, adapted, tokenizer, run)
    same = math.isfinite(value) and abs(value - committed) <= tolerance
    same = same and steps_done == int(row["steps_done"])
    what = f"{who}, seed {seed}: val loss {value:.3f} vs {committed:.3f}, tolerance {tolerance:g}"
    if steps_done != int(row["steps_done"]):
        what += f"; steps {steps_done} vs {int(row['steps_done'])}"
    verdict = "matches" if same else "does NOT match"
    line = SliceLine(f"live slice {verdict} the committed rows ({what})", same)
    return _returned(line, run, samples, history)


class SliceLine(str):
    """The line `live_slice` returns, with `ok`: True when the slice passed its check (the
    committed run reproduced, or at another preset the configuration trained). A notebook
    prints `ok` in an nbval-checked cell, which then reads the same at every preset, and the
    line itself in a cell that is not checked."""

    ok: bool

    def __new__(cls, text: str, ok: bool):
        line = super().__new__(cls, text)
        line.ok = bool(ok)
        return line


def _returned(line: str, run, samples: int, history: bool):
    """What live_slice returns: the line, with the History or the generations asked for."""
    if history:
        return line, run
    return (line, run.generations) if samples else line


def _trains_line(history, who, seed, preset, committed_preset, committed, row) -> SliceLine:
    """The line of a slice at another preset than the committed one: did the loss fall?"""
    start, end = float(history.val_loss[0]), float(history.val_loss[-1])
    trains = math.isfinite(end) and end < start
    steps = history.val_step[-1]
    said = "trains" if trains else "does NOT train"
    text = (
        f"live slice at the {preset} preset {said} the committed configuration ({who}, seed "
        f"{seed}: val loss {start:.3f} -> {end:.3f} in {steps} steps; the committed "
        f"{committed_preset} run: {committed:.3f} after {int(row['steps_done'])} steps, "
        f"reproducible only at the {committed_preset} preset)"
    )
    return SliceLine(text, trains)


def _stop_after(steps: int):
    """A train_run callback that stops the run after `steps` steps."""
    return lambda history, adapted: history.steps_done >= steps


def _curve_line(results, row, config, steps, who, seed, tolerance) -> SliceLine:
    """Retrain the first `steps` steps of the committed run and compare each step's training
    loss with its committed curve."""
    committed = results.tables.get(row["run_id"], {}).get("train_loss")
    if committed is None or len(committed) < steps:
        have = 0 if committed is None else len(committed)
        raise ValueError(
            f"The tables file keeps {have} training-loss steps of run {row['run_id']}, fewer "
            f"than steps={steps} (results written before studies kept curves have none; "
            "studies.attach_curves adds them from the run cache the study ran with): lower "
            "steps, or leave it out to retrain the whole run."
        )
    # Validation tables never enter training: one is enough for the validation train() makes
    # at the end (the compared numbers are the training losses).
    _, _, run = train_run(config.with_(eval_every=None, n_val_mrs=1),
                          callback=_stop_after(steps))  # fmt: skip
    live = [float(x) for x in run.loss[:steps]]
    gap = max((abs(a - float(b)) for a, b in zip(live, committed[:steps], strict=False)),
              default=math.inf)  # fmt: skip
    same = len(live) == steps and math.isfinite(gap) and gap <= tolerance
    verdict = "matches" if same else "does NOT match"
    what = (f"{who}, seed {seed}: training loss of the first {steps} steps, largest difference "
            f"from the committed curve {gap:.1e}, tolerance {tolerance:g}")  # fmt: skip
    if len(live) != steps:
        what += f"; {len(live)} steps ran"
    return SliceLine(f"live slice {verdict} the committed rows ({what})", same)
