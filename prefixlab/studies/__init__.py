"""Studies: named grids run under the lab's measurement protocol (issue #17), their committed
results, and the verdicts computed from them.

- `definition`: `Study` (arms, learning-rate grid per arm, seeds, evaluation tables, axes)
  and `Arm`; the grid rule "a best rate on the edge adds one rate beyond it".
- `registry`: the studies by name (`get_study`, `study_names`); `prefix_vs_prompt`,
  `reference_points`, `scale_axis`, `prefix_length`; notebook 07's `low_data`,
  `init_low_data`, `extrapolation`, `table5`; `hybrid` (prefix + LoRA, issue #22); with
  `CPU_ESTIMATES` and `not_run_line`.
- `protocol`: `run_study`: stage 1 tunes each arm's rate on validation loss, stage 2 runs the
  seeds at the best rate and generates for the evaluation tables; `merge_parts` joins parts
  run apart (`only=` into other folders, side by side or on other machines).
- `results`: the files (`results/<name>.csv`, `.json` with provenance, `.tables.npz` with
  per-table statistics, `.adapters.safetensors` with the stage-2 runs' trained adapters),
  `read_results`, `combine_results` (several studies read as one).
- `analysis`: `verdict_table` (estimates with intervals, paired differences with verdicts)
  `sweep_table` (the learning-rate sweep), `point_differences` (one axis value
  against another, per arm, paired on the same tables) and `seed_table` (one value per
  seed, for the seed-to-seed spread).
- `live`: `live_slice`, one committed run retrained and compared (or, at another preset,
  checked to train); `committed_run`, the row and RunConfig of one committed run.
- `adapters`: `load_adapter` / `start_adapter`, a committed stage-2 run's AdaptedModel as it
  ended / as it started; `attach_adapters` and `attach_curves`, the adapters file and every
  run's curves made from a run cache for results written before studies kept them.
- `stability`: the verdicts of `mlp_stability` (notebook 03): `run_outcomes` (failed /
  unstable per run, rate steps from each arm's best), `failure_table`, `stability_verdicts`
  (MLP vs direct at each relative rate, with intervals), `seed_spread`, `matched_rate_test`,
  `rate_curves`.
- `positions`: `position_split`, validation loss per prefix length on the rows that stay
  inside the positions the frozen model was pretrained on and on those pushed past them
  (`pretrained_positions`: the embedded models' 128-token windows); `arms_position_split`,
  the same for two arms.
- `claims`: `claims_table`, the paper's claims against notebook 07's studies (agree /
  disagree / mixed / not resolved), computed from the committed files; `scale_trend`, whether
  a gap between two methods closes as the model grows (notebook 02's scale axis).

Command line: `python -m prefixlab.studies list | run <name> | merge <name> <folders> | show <name>`.
"""

from prefixlab.studies.adapters import attach_adapters, attach_curves, load_adapter, start_adapter
from prefixlab.studies.analysis import (
    METRICS,
    interval_texts,
    point_differences,
    seed_table,
    sweep_table,
    verdict_table,
)
from prefixlab.studies.claims import CLAIMS, claims_table, scale_trend
from prefixlab.studies.definition import Arm, Study
from prefixlab.studies.live import committed_run, live_slice
from prefixlab.studies.positions import arms_position_split, position_split, pretrained_positions
from prefixlab.studies.protocol import merge_parts, run_study
from prefixlab.studies.registry import get_study, register, study_names
from prefixlab.studies.results import (
    CSV_COLUMNS,
    MAX_ADAPTER_PARAMETERS,
    PROVENANCE_KEYS,
    StudyResults,
    combine_results,
    cpu_time_text,
    read_results,
    result_paths,
    results_dir,
    table_statistics,
)
from prefixlab.studies.stability import (
    failure_table,
    matched_rate_test,
    rate_curves,
    run_outcomes,
    seed_spread,
    stability_verdicts,
)

__all__ = [
    "CLAIMS",
    "CSV_COLUMNS",
    "MAX_ADAPTER_PARAMETERS",
    "METRICS",
    "PROVENANCE_KEYS",
    "Arm",
    "Study",
    "StudyResults",
    "arms_position_split",
    "attach_adapters",
    "attach_curves",
    "failure_table",
    "matched_rate_test",
    "rate_curves",
    "run_outcomes",
    "seed_spread",
    "stability_verdicts",
    "claims_table",
    "scale_trend",
    "combine_results",
    "cpu_time_text",
    "committed_run",
    "get_study",
    "interval_texts",
    "live_slice",
    "load_adapter",
    "merge_parts",
    "point_differences",
    "position_split",
    "pretrained_positions",
    "read_results",
    "register",
    "result_paths",
    "results_dir",
    "run_study",
    "seed_table",
    "start_adapter",
    "study_names",
    "sweep_table",
    "table_statistics",
    "verdict_table",
]
