"""A study's committed results: where they live, what they hold, writing and reading them.

Three files per study in `results_dir()` (the repository's results/ folder):

- `<name>.csv`: one row per run (`CSV_COLUMNS`, plus one column per study axis);
- `<name>.json`: provenance (commit, date, versions, preset, machine, wall_seconds,
  load_average, ...), the study definition and each grid with its chosen rate.
  `wall_seconds` is the time of the invocations that wrote the files (a run read from the
  cache or the journal costs them nothing); `train_seconds` and `total_seconds` sum the
  runs' own times (`time_summary`): the CPU time the study took, however many sessions it
  spanned. Per run, the CSV's `seconds` is its training steps only and `total_seconds` the
  whole run (validations, table gain and generation too), when it was measured;
- `<name>.tables.npz`: per-table statistics of every stage-2 run, for intervals over tables:
  `<run_id>.slots` [tables, 2] (slot errors, slots), `<run_id>.bleu` [tables, 10]
  (`evaluate.bleu_statistics`), `<run_id>.losses` [validation tables, 4] (summed loss and
  tokens after the right MR, then after the wrong one), and for runs that hold slot values
  out `<run_id>.held_out` [tables, 2] (errors on held-out values, held-out slots). No MR
  text is stored: the CSV keeps a digest of each run's table list, so runs compared on "the
  same tables" can be checked. Every run (stage 1 too) also keeps its curves
  (`run_curves`): `<run_id>.train_loss` [steps] (each step's batch loss) and
  `<run_id>.val_curve` [validations, 2] (step, validation loss), so that stability is read
  from the whole run and not only from where it ended (results written before curves were
  kept have none);
- `<name>.adapters.safetensors` (when the study kept any): the trained parameters of its
  stage-2 runs that keep at most `MAX_ADAPTER_PARAMETERS` values, as tensors named
  `<run_id>/<parameter name>` (`prefixlab.studies.adapters` rebuilds the models from them).
  A prefix trained through the MLP is kept as its materialized prefix (`kept_parameters`):
  the MLP's weights are 58x more values on the tiny model than the prefix they produce, and
  only the prefix changes what the model computes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from prefixlab._version import __version__
from prefixlab.e2e.held_out import held_out_errors, parse_held_out
from prefixlab.studies.definition import Study
from prefixlab.train import History, jsonable

RESULTS_ENV = "PREFIXLAB_RESULTS"
REPOSITORY = Path(__file__).resolve().parents[2]
CSV_COLUMNS = (
    "stage", "arm", "method", "lr", "seed", "steps", "steps_done", "prefix_length",
    "n_train_mrs", "final_val_loss", "best_val_loss", "last_val_drop", "bleu",
    "slot_error_rate", "table_gain", "loss_right_mr", "loss_wrong_mr", "n_eval_tables",
    "n_val_tables", "eval_split", "chosen", "stopped_reason", "diverged", "trainable_params",
    "seconds", "total_seconds", "cached", "model", "run_id", "eval_tables_digest", "val_tables_digest",
    "held_out_slot_error_rate",
)  # fmt: skip
PROVENANCE_KEYS = ("commit", "date", "versions", "preset", "machine", "wall_seconds",
                   "load_average")  # fmt: skip
TABLE_KINDS = ("slots", "bleu", "losses", "held_out")
# A stage-2 run's trained parameters are kept with the results up to this many values per run
# (prefixes and prompts, an MLP prefix as its materialized prefix; not LoRA of large models or
# full fine-tuning), so that the adapters file stays small enough to commit.
MAX_ADAPTER_PARAMETERS = 200_000
ADAPTERS_FORMAT = "prefixlab-study-adapters/1"
_REQUIRED = ("csv", "json", "tables")


def results_dir() -> Path:
    """Where committed study results live: $PREFIXLAB_RESULTS, else the repository's results/."""
    return Path(os.environ.get(RESULTS_ENV) or REPOSITORY / "results").expanduser()


def result_paths(name: str, folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """{"csv", "json", "tables", "adapters"}: the files of study `name` in `folder` (the
    adapters file is optional)."""
    folder = results_dir() if folder is None else Path(folder)
    return {
        "csv": folder / f"{name}.csv",
        "json": folder / f"{name}.json",
        "tables": folder / f"{name}.tables.npz",
        "adapters": folder / f"{name}.adapters.safetensors",
    }


# -- per-table statistics of a run ---------------------------------------------------------------


def tables_digest(mrs: Sequence[str]) -> str:
    """A short hash of an ordered list of tables: equal digests, same tables in the same order."""
    return hashlib.sha256("\n".join(mrs).encode()).hexdigest()[:12] if mrs else ""


def run_curves(history: History) -> dict[str, np.ndarray]:
    """A run's curves for the tables file: {"train_loss": float32 [steps] (the batch loss of
    each step, before its update), "val_curve": float64 [validations, 2] (step, loss)}."""
    return {
        "train_loss": np.asarray(history.loss, dtype=np.float32),
        "val_curve": np.array(list(zip(history.val_step, history.val_loss, strict=True)),
                              dtype=np.float64).reshape(-1, 2),
    }  # fmt: skip


def table_statistics(history: History) -> dict[str, np.ndarray]:
    """The per-table arrays of a run, from its History ({} for what the run did not measure).

    Returns:
        {"slots": int [tables, 2] (errors = missing + contradicted, slots),
         "bleu": int [tables, 10] (`evaluate.BLEU_STATISTICS`),
         "losses": float [validation tables, 4] (right sum, right tokens, wrong sum, wrong
         tokens), "held_out": int [tables, 2] (errors on held-out values, held-out slots) for a
         run with `RunConfig.held_out`}.
    """
    out = {}
    generations = [g for g in history.generations if "bleu_stats" in g]
    if generations and len(generations) == len(history.generations):
        out["slots"] = np.array(
            [[len(g["missing"]) + len(g["contradicted"]), g["slots"]] for g in generations],
            dtype=np.int32,
        )
        out["bleu"] = np.array([g["bleu_stats"] for g in generations], dtype=np.int32)
        held = parse_held_out((history.config.get("run") or {}).get("held_out") or ())
        if held:
            out["held_out"] = np.array(
                [held_out_errors(g["mr"], g["missing"], g["contradicted"], held)
                 for g in generations], dtype=np.int32,
            )  # fmt: skip
    if history.table_losses:
        out["losses"] = np.array(
            [[*t["right"], *t["wrong"]] for t in history.table_losses], dtype=np.float64
        )
    return out


# -- provenance ----------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(*, preset: str, wall_seconds: float, load_start: Sequence[float]) -> dict:
    """Where and how a study ran: the keys `PROVENANCE_KEYS` plus commit_dirty; load_average
    is {"start", "end"}, each the 1, 5 and 15 minute load (`load_average()`)."""
    import sacrebleu
    import torch
    import transformers

    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no") if commit != "unknown" else None
    return {
        "commit": commit,
        "commit_dirty": bool(status),  # tracked files differed from the commit
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sacrebleu": sacrebleu.__version__,
            "numpy": np.__version__,
            "prefixlab": __version__,
        },
        "preset": preset,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "wall_seconds": round(float(wall_seconds), 1),
        "load_average": {"start": list(load_start), "end": list(load_average())},
    }


def load_average() -> tuple[float, ...]:
    """The machine's 1, 5 and 15 minute load averages (() where the platform has none)."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:  # not available on this platform
        return ()


# -- writing and reading -------------------------------------------------------------------------


@dataclass
class StudyResults:
    """A study's files, read back: the definition as committed, the run table, the provenance,
    the per-table arrays ({run_id: {"slots", "bleu", "losses"}}) and the kept trained
    parameters ({run_id: {parameter name: tensor}}; `prefixlab.studies.adapters`)."""

    study: Study
    table: pd.DataFrame
    provenance: dict
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    adapters: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def stage(self, stage: str) -> pd.DataFrame:
        """The rows of one stage: "tune" (stage 1) or "seeds" (stage 2)."""
        return self.table[self.table["stage"] == stage]


def kept_parameters(adapted) -> dict[str, torch.Tensor]:
    """What a study keeps of a trained AdaptedModel: its trainable parameters ({name: CPU
    copy}), except for a prefix trained through the MLP, which is kept as its materialized
    prefix, {"adapter.weight": [P, L * 2 * kv_dim]} (`PrefixTuning.materialize()`: the same
    keys and values, the MLP discarded, the model's outputs unchanged). The MLP's own weights
    are then not kept, so such a run cannot be trained further in its MLP form."""
    adapter = getattr(adapted, "adapter", None)
    if getattr(adapter, "reparam", None) == "mlp":
        direct = adapter.materialize()
        return {f"adapter.{name}": p.detach().contiguous().cpu().clone()
                for name, p in direct.named_parameters()}  # fmt: skip
    return {name: p.detach().contiguous().cpu().clone()
            for name, p in adapted.named_parameters() if p.requires_grad}  # fmt: skip


def materialized_runs(table: pd.DataFrame, adapters: Mapping) -> list[str]:
    """The run_ids among `adapters` whose runs trained a prefix through the MLP (kept as their
    materialized prefix, `kept_parameters`)."""
    rows = table[table["method"] == "prefix+mlp"] if "method" in table else table.iloc[:0]
    return sorted(r for r in rows["run_id"] if r in adapters)


def write_adapters(path: str | os.PathLike, adapters: Mapping[str, Mapping]) -> None:
    """Write {run_id: {parameter name: tensor}} into one safetensors file (`<run_id>/<name>`)."""
    tensors = {
        f"{run_id}/{name}": t.detach().contiguous().cpu()
        for run_id, state in adapters.items()
        for name, t in state.items()
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": ADAPTERS_FORMAT})


def read_adapters(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """{run_id: {parameter name: tensor}} from a file `write_adapters` wrote."""
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path)).items():
        run_id, _, name = key.rpartition("/")  # parameter names never hold a "/"
        adapters.setdefault(run_id, {})[name] = tensor
    return adapters


def time_summary(table: pd.DataFrame) -> dict:
    """The JSON's time keys, from the runs' own columns: `train_seconds`, their training steps
    summed (`seconds`: validation and evaluation excluded, known for every run);
    `total_seconds`, whole runs summed (training, validations, table gain, generation) over
    the `timed_runs` runs whose whole time was measured (`total_seconds` is NaN for a run read
    from the run cache, or written before the column existed)."""
    out = {}
    if "seconds" in table.columns:
        out["train_seconds"] = round(float(pd.to_numeric(table["seconds"]).sum()), 1)
    if "total_seconds" in table.columns:
        total = pd.to_numeric(table["total_seconds"])
        out["total_seconds"] = round(float(total.sum()), 1)  # NaN rows skipped
        out["timed_runs"] = int(total.notna().sum())
    return out


def cpu_time_text(results: StudyResults) -> str:
    """The CPU time of a study's runs in words, from its CSV (not its wall time: a study
    resumed from its cache or journal ran in several invocations): "1.2 CPU-hours of training
    steps (1.9 with validation and evaluation)"; when only some runs' whole time was measured,
    the sum over those and how many they are; "(validation and evaluation not timed)" when
    none was (`time_summary`)."""
    table = results.table
    train = pd.to_numeric(table["seconds"]).sum() / 3600
    total = pd.to_numeric(table["total_seconds"]) if "total_seconds" in table.columns else None
    timed = int(total.notna().sum()) if total is not None else 0
    if timed and timed == len(total):
        return f"{train:.1f} CPU-hours of training steps ({total.sum() / 3600:.1f} with validation and evaluation)"
    if timed:  # runs journalled before whole runs were timed: say how many the sum covers
        return (
            f"{train:.1f} CPU-hours of training steps ({total.sum() / 3600:.1f} with validation and "
            f"evaluation, summed over the {timed} of {len(total)} runs timed whole)"
        )
    return f"{train:.1f} CPU-hours of training steps (validation and evaluation not timed)"


def write_results(
    study: Study,
    table: pd.DataFrame,
    tables: Mapping[str, Mapping[str, np.ndarray]],
    info: Mapping,
    folder: str | os.PathLike | None = None,
    adapters: Mapping[str, Mapping] | None = None,
) -> dict[str, Path]:
    """Write the files of `study` into `folder` (created if needed); returns their paths.

    Args:
        table: one row per run (`CSV_COLUMNS` and the axis columns).
        tables: {run_id: {kind: array}} (`table_statistics`) for the runs to keep.
        info: the JSON's content (provenance and whatever else the study reports).
        adapters: {run_id: {parameter name: tensor}}, the trained parameters to keep; with
            none, no adapters file (an old one is removed, since its runs are gone).
    """
    paths = result_paths(study.name, folder)
    if adapters:
        write_adapters(paths["adapters"], adapters)
    else:
        paths["adapters"].unlink(missing_ok=True)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths["csv"], index=False)
    arrays = {
        f"{run_id}.{kind}": a for run_id, kinds in tables.items() for kind, a in kinds.items()
    }
    with open(paths["tables"], "wb") as f:
        np.savez_compressed(f, **arrays)
    info = {**info, **time_summary(table)}
    payload = {**jsonable(info), "study": study.to_dict()}
    paths["json"].write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return paths


def read_results(name, folder: str | os.PathLike | None = None) -> StudyResults:
    """The committed results of study `name` (a name or a Study) from `folder`.

    Raises:
        FileNotFoundError: when a file is missing, saying how to make it.
    """
    name = name.name if isinstance(name, Study) else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"Give a study name or a Study, got {name!r}.")
    paths = result_paths(name, folder)
    missing = [str(paths[kind]) for kind in _REQUIRED if not paths[kind].is_file()]
    if missing:
        raise FileNotFoundError(
            f"Study {name!r} has no results in {paths['csv'].parent} (missing "
            f"{', '.join(missing)}). Run `python -m prefixlab.studies run {name}` first."
        )
    info = json.loads(paths["json"].read_text(encoding="utf-8"))
    text_columns = ("run_id", "eval_tables_digest", "val_tables_digest", "arm", "method")
    table = pd.read_csv(paths["csv"], dtype={c: str for c in text_columns})
    tables: dict[str, dict[str, np.ndarray]] = {}
    with np.load(paths["tables"]) as archive:
        for key in archive.files:
            run_id, _, kind = key.rpartition(".")
            tables.setdefault(run_id, {})[kind] = archive[key]
    adapters = {}
    if paths["adapters"].is_file():
        adapters = read_adapters(paths["adapters"])
    else:
        del paths["adapters"]
    return StudyResults(Study.from_dict(info["study"]), table, info, tables, paths, adapters)


def combine_results(*parts, name: str, pairs: Sequence[tuple[str, str]] = ()) -> StudyResults:
    """Several studies' results read as one, so that arms of different studies can be compared
    (`analysis.verdict_table` pairs them on the same tables).

    The studies must share what makes their runs comparable: seeds, evaluation tables
    (`n_eval_tables`, `eval_split`), preset and axes; arm labels must differ. Each study's
    `overrides` move into its arms' configs, so the combined definition still says how every
    arm was run.

    Args:
        parts: StudyResults (`read_results`) or study names.
        name: the combined study's name (it is never written to disk by this function).
        pairs: (A, B) arm labels to compare; the parts' own pairs are kept as well.
    """
    if len(parts) < 2:
        raise ValueError("combine_results takes at least two studies' results.")
    results = [p if isinstance(p, StudyResults) else read_results(p) for p in parts]
    first = results[0].study
    shared = ("seeds", "n_eval_tables", "eval_split", "preset", "axes")
    for other in results[1:]:
        for key in shared:
            if getattr(other.study, key) != getattr(first, key):
                raise ValueError(
                    f"{other.study.name!r} and {first.name!r} differ in {key} "
                    f"({getattr(other.study, key)!r} vs {getattr(first, key)!r}); only studies "
                    "run on the same seeds, tables, preset and axes can be combined."
                )
    arms = []
    for part in results:
        for arm in part.study.arms:
            arms.append(type(arm)(arm.label, arm.method, {**part.study.overrides, **arm.config}))
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"The studies share arm labels ({labels}); give them distinct labels.")
    own = [tuple(p) for part in results for p in part.study.pairs]
    study = first.with_(
        name=name,
        description="Combined from " + ", ".join(r.study.name for r in results) + ".",
        arms=tuple(arms),
        overrides={},
        pairs=tuple(dict.fromkeys([*own, *(tuple(p) for p in pairs)])),
        tuning_seeds=tuple(dict.fromkeys(s for r in results for s in r.study.tuning_seeds)),
    )
    table = pd.concat([r.table for r in results], ignore_index=True)
    tables = {k: v for r in results for k, v in r.tables.items()}
    info = {"combined": {r.study.name: {k: v for k, v in r.provenance.items() if k != "study"}
                         for r in results}}  # fmt: skip
    adapters = {k: v for r in results for k, v in r.adapters.items()}
    return StudyResults(study, table, info, tables, {}, adapters)
