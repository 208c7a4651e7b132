"""The study journal: a study run again with its journal and no run cache trains nothing and
writes the same results (rows, curves, per-table arrays, kept parameters)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from small_studies import small_study

from prefixlab.studies import protocol, run_study
from prefixlab.studies.cli import main as cli_main
from prefixlab.studies.journal import Journal, entry_key

SMALL = small_study("journal_small", seeds=(0,), n_rates=2, max_extensions=0)


def _no_training(*args, **kwargs):
    raise AssertionError("a journalled run was trained again")


@pytest.fixture(scope="module")
def journalled(tmp_path_factory):
    """SMALL run once with a journal and a run cache of its own: (root, results)."""
    root = tmp_path_factory.mktemp("journal")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFIXLAB_CACHE", str(root / "cache"))
        results = run_study(SMALL, out=root / "first", progress=False, journal=root / "journal")
    return root, results


def test_a_journal_holds_every_run_of_the_study(journalled):
    root, first = journalled
    journal = Journal(root / "journal")
    assert len(journal.keys()) == len(first.table)  # one entry per run
    assert first.provenance["journal"]["runs_read"] == 0  # all trained on the first pass
    assert journal.stale_entries() == []  # made by this code


def test_rerun_from_the_journal_trains_nothing_and_writes_the_same_results(
    journalled, tmp_path, monkeypatch
):
    root, first = journalled
    monkeypatch.setattr(protocol, "run_experiment", _no_training)
    again = run_study(SMALL, out=tmp_path, progress=False, cache=False, journal=root / "journal")
    columns = [c for c in first.table.columns if c != "cached"]
    pd.testing.assert_frame_equal(again.table[columns], first.table[columns])
    assert again.table["cached"].all()  # their time is not in this invocation's wall time
    assert again.provenance["journal"]["runs_read"] == len(first.table)
    assert set(again.tables) == set(first.tables)
    for run_id, arrays in first.tables.items():
        assert set(again.tables[run_id]) == set(arrays)
        for name, values in arrays.items():
            np.testing.assert_array_equal(again.tables[run_id][name], values)
    assert set(again.adapters) == set(first.adapters) != set()
    for run_id, state in first.adapters.items():
        for name, tensor in state.items():
            assert torch.equal(again.adapters[run_id][name], tensor)


def test_a_changed_run_is_not_read_from_the_journal(journalled, tmp_path, monkeypatch):
    root, first = journalled
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    more = run_study(SMALL.with_(seeds=(0, 1)), out=tmp_path / "out", progress=False,
                     journal=root / "journal")  # fmt: skip
    # the tuning runs and seed 0 come from the journal; seed 1 is new and trains, per arm
    assert more.provenance["journal"]["runs_read"] == len(first.table)
    assert (~more.table["cached"].astype(bool)).sum() == len(SMALL.arms)

    def config(seed):
        return SMALL.run_config(SMALL.base_config(), "prefix", {}, lr=1e-3, seed=seed,
                                evaluate=False)  # fmt: skip

    assert entry_key("tune", config(0)) == entry_key("tune", config(0))
    assert entry_key("tune", config(0)) not in (entry_key("seeds", config(0)),
                                                entry_key("tune", config(1)))  # fmt: skip


def test_journal_entries_record_their_commit_and_code(journalled):
    root, _ = journalled
    journal = Journal(root / "journal")
    meta = json.loads((journal.folder / f"{journal.keys()[0]}.json").read_text())
    assert {"commit", "code", "row", "parameters"} <= set(meta)
    assert journal.commits(journal.keys()) == [meta["commit"]]


def test_journal_must_be_a_folder(tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        Journal(file)
    with pytest.raises(ValueError, match="folder path"):
        Journal("  ")
    with pytest.raises(SystemExit):
        cli_main(["run", "prefix_vs_prompt", "--journal", str(file)])
    assert "--journal must be a folder" in capsys.readouterr().err


def test_two_arm_shares_then_one_run_that_reads_them_all(journalled, tmp_path, monkeypatch):
    root, first = journalled
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path / "cache"))
    journal = tmp_path / "journal"
    for arm in ("prefix", "prompt"):  # two processes could run these side by side
        assert run_study(SMALL, out=tmp_path / "out", progress=False, journal=journal,
                         arms=[arm]) is None  # fmt: skip
    assert not (tmp_path / "out").exists()  # a share writes the journal only
    monkeypatch.setattr(protocol, "run_experiment", _no_training)
    whole = run_study(SMALL, out=tmp_path / "out", progress=False, journal=journal)
    columns = [c for c in first.table.columns if c not in ("cached", "seconds", "total_seconds")]
    pd.testing.assert_frame_equal(whole.table[columns], first.table[columns])


def test_arm_shares_are_validated(tmp_path, capsys):
    with pytest.raises(ValueError, match="journal="):
        run_study(SMALL, out=tmp_path, progress=False, arms=["prefix"])
    with pytest.raises(ValueError, match="no arm 'lora'.*prompt, prefix"):
        run_study(SMALL, out=tmp_path, progress=False, journal=tmp_path / "j", arms=["lora"])
    with pytest.raises(ValueError, match="non-empty"):
        run_study(SMALL, out=tmp_path, progress=False, journal=tmp_path / "j", arms=[])
    with pytest.raises(SystemExit):
        cli_main(["run", "prefix_vs_prompt", "--arm", "prefix"])
    assert "journal=" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["run", "prefix_vs_prompt", "--arm", "lorra", "--journal", str(tmp_path / "j")])
    assert "no arm 'lorra'" in capsys.readouterr().err


def test_journal_status_counts_runs_per_arm(journalled, tmp_path, monkeypatch, capsys):
    from prefixlab.studies.journal import journal_status

    root, first = journalled
    status = journal_status(SMALL, root / "journal")
    assert status["arm"].tolist() == ["prompt", "prefix"]
    assert (status["tune_done"] == SMALL.n_rates * len(SMALL.tuning_seeds)).all()
    # (another test may have journalled seed 1 too: at least the study's seeds are there)
    assert (status["seeds_done"] >= len(SMALL.seeds)).all() and status["done"].all()
    assert journal_status(SMALL, tmp_path / "empty")["done"].sum() == 0
    # the command line reads a registered study: an empty journal folder shows nothing done
    (tmp_path / "j").mkdir()
    assert cli_main(["status", "mlp_stability", "--journal", str(tmp_path / "j")]) == 0
    assert "0 runs in the journal of about 156 planned" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["status", "mlp_stability", "--journal", str(tmp_path / "missing")])
    assert "not a folder" in capsys.readouterr().err
