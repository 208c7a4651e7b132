"""A study's finished runs kept as small files, so that a study outlives its process and its run
cache: `run_study(..., journal="results/journal/mlp_stability")`, or `--journal DIR`.

A long study (hours of CPU) can be stopped by the end of a working session, and the run cache
(`prefixlab.run_cache`) lives outside the repository, so it may be gone when the study is run
again. The journal holds, per finished run, exactly what the study's files need from it: its
CSV row, its curves and per-table statistics, and (stage 2) its kept trained parameters, a few
kB to a few tens of kB, small enough to commit with the work in progress. Running the study
again with the same journal reads those runs back instead of training them.

A journal entry is found by the run's configuration, model and data, not by the code that ran
it (the run cache's key includes the code, so that editing the training code retrains):
a journal is meant to carry one study across sessions of the same code. Each entry records the
commit and the code fingerprint it was made with, the study's JSON lists every commit its
journal runs came from, and `stale_entries` says which entries another code made.

Files per run, named by `entry_key`: `<key>.json` (the row, the commit, the code fingerprint),
`<key>.npz` (curves and per-table arrays), `<key>.safetensors` (stage 2 only, when its
parameters were kept).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from prefixlab.config import RunConfig
from prefixlab.run_cache import (
    _code_fingerprint,
    _data_fingerprint,
    _model_fingerprint,
    canonical,
    key_fields,
)
from prefixlab.studies.results import _git
from prefixlab.train import jsonable

JOURNAL_FORMAT = "prefixlab-study-journal/1"


def entry_key(stage: str, config: RunConfig) -> str:
    """The journal's name for one run: a hash of the stage, the canonical config, the model's
    and the data's fingerprints (not the code's)."""
    config = canonical(config)
    payload = {
        "format": JOURNAL_FORMAT,
        "stage": stage,
        "model": _model_fingerprint(config.model),
        "data": _data_fingerprint(config.data),
        "config": key_fields(config),
    }
    text = json.dumps(jsonable(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Journal:
    """One folder of finished runs (created when the first run is written).

    journal = Journal("results/journal/mlp_stability")
    hit = journal.read(key)            # None, or (row, arrays, parameters or None)
    journal.write(key, row, arrays, parameters)
    """

    def __init__(self, folder: str | os.PathLike):
        if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
            raise ValueError(f"journal must be a folder path, got {folder!r}.")
        self.folder = Path(folder).expanduser()
        if self.folder.is_file():
            raise ValueError(f"journal must be a folder, and {self.folder} is a file.")
        self.read_keys: list[str] = []
        self._commit: str | None = None

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.folder / key
        return base.with_suffix(".json"), base.with_suffix(".npz"), base.with_suffix(".safetensors")

    def _meta(self, key: str) -> dict:
        """The JSON file of one entry (its row, commit and code fingerprint)."""
        return json.loads(self._paths(key)[0].read_text(encoding="utf-8"))

    def keys(self) -> list[str]:
        """The runs in the journal (their entry keys), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json"))

    def read(self, key: str):
        """(row, arrays, parameters) of a journalled run, or None when it is not there.
        `parameters` is None for a run whose parameters were not kept."""
        meta_path, arrays_path, params_path = self._paths(key)
        if not meta_path.is_file() or not arrays_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != JOURNAL_FORMAT:
            return None
        with np.load(arrays_path) as data:
            arrays = {name: data[name] for name in data.files}
        parameters = load_file(str(params_path)) if meta.get("parameters") else None
        self.read_keys.append(key)
        return dict(meta["row"]), arrays, parameters

    def write(self, key: str, row: Mapping, arrays: Mapping[str, np.ndarray],
              parameters: Mapping[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        """Keep one finished run (files written whole, then renamed: an interrupted write
        leaves no entry)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path, arrays_path, params_path = self._paths(key)
        if parameters is not None:
            tmp = params_path.with_name(params_path.name + ".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in parameters.items()}, str(tmp))
            os.replace(tmp, params_path)
        tmp = arrays_path.with_name(arrays_path.name + ".tmp.npz")
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, arrays_path)
        meta = {
            "format": JOURNAL_FORMAT,
            "commit": self.commit(),
            "code": _code_fingerprint(),
            "parameters": parameters is not None,
            "row": jsonable(dict(row)),
        }
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, meta_path)  # last: the entry exists once all its files do

    def commit(self) -> str:
        """The commit this process writes entries at (looked up once)."""
        if self._commit is None:
            self._commit = _git("rev-parse", "HEAD") or "unknown"
        return self._commit

    def rows(self) -> list[dict]:
        """The CSV row of every run in the journal (its JSON only; nothing else is loaded)."""
        return [self._meta(key)["row"] for key in self.keys()]

    def commits(self, keys=None) -> list[str]:
        """The commits the given entries (default: those read so far) were made at."""
        keys = self.read_keys if keys is None else keys
        found = set()
        for key in keys:
            meta = self._meta(key)
            found.add(meta.get("commit") or "unknown")
        return sorted(found)

    def stale_entries(self) -> list[str]:
        """The entries made by code other than this process's (another code fingerprint)."""
        now = _code_fingerprint()
        return [key for key in self.keys()
                if self._meta(key).get("code") != now]  # fmt: skip


def journal_status(study, folder) -> pd.DataFrame:
    """How far a study's journal has come, per axis point and arm (`status` on the command
    line): stage-1 runs done against the grid's plan (n_rates x tuning seeds; an edge that
    grew the grid adds more), stage-2 runs done against the seeds, and whether both are done.

    Returns:
        DataFrame: the axis columns, arm, tune_done, tune_planned, seeds_done, seeds_planned,
        done (bool). Runs of the journal that match no point and arm of `study` are ignored.
    """
    from prefixlab.studies.registry import get_study

    study = get_study(study)
    rows = Journal(folder).rows()
    axes = list(study.axes)
    out = []
    for point in study.points():
        for arm in study.arms:
            here = [r for r in rows if r.get("arm") == arm.label
                    and all(str(r.get(a)) == str(v) for a, v in point.items())]  # fmt: skip
            tune = sum(r.get("stage") == "tune" for r in here)
            seeds = sum(r.get("stage") == "seeds" for r in here)
            tune_planned = study.n_rates * len(study.tuning_seeds) if arm.tuned else 0
            seeds_planned = len(study.seeds) if arm.tuned else 1
            out.append({**point, "arm": arm.label, "tune_done": tune,
                        "tune_planned": tune_planned, "seeds_done": seeds,
                        "seeds_planned": seeds_planned,
                        "done": tune >= tune_planned and seeds >= seeds_planned})  # fmt: skip
    return pd.DataFrame(out, columns=[*axes, "arm", "tune_done", "tune_planned", "seeds_done",
                                      "seeds_planned", "done"])  # fmt: skip
