"""A small study for the study tests, and running one once into a temporary folder.

Kept out of conftest.py so that test modules import it by a unique module name (as
tiny_models.py is).
"""

from __future__ import annotations

import pytest

from prefixlab.studies import Study, run_study


def small_study(name: str, *, max_new_tokens: int = 12, **changes) -> Study:
    """Prompt against prefix tuning on the embedded tiny model, seconds long: the "fast"
    preset cut to 4 steps on 8 MRs (validation on 4), 3 rates per arm over a span of 3,
    seeds 0 and 1, one extension, 4 test tables. `changes` replace other fields (`Study.with_`).
    """
    study = Study(
        name=name,
        arms=("prompt", "prefix"),
        preset="fast",
        overrides={
            "steps": 4,
            "n_train_mrs": 8,
            "n_val_mrs": 4,
            "max_new_tokens": max_new_tokens,
            "eval_every": 2,
        },  # fmt: skip
        n_rates=3,
        lr_span=3.0,
        max_extensions=1,
        seeds=(0, 1),
        n_eval_tables=4,
        pairs=(("prefix", "prompt"),),
    )
    return study.with_(**changes)


def run_once(tmp_path_factory, study: Study, folder: str):
    """`study` run into <root>/results of a new temporary folder <root> (named after
    `folder`), with a run cache of its own in <root>/cache. Returns (root, results)."""
    root = tmp_path_factory.mktemp(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFIXLAB_CACHE", str(root / "cache"))
        results = run_study(study, out=root / "results", progress=False)
    return root, results
