"""The real-data helpers: finding the dev split, cutting a dataset by MR, writing release files."""

from __future__ import annotations

import pytest
from shared_data import require_devset

from prefixlab.e2e import (
    E2EDataset,
    find_devset,
    load_csv,
    load_e2e,
    split_by_mr,
    synthetic_e2e,
    write_release,
)


def _data():
    return synthetic_e2e("train", n_mrs=200, refs_per_mr=3, seed=4)


def test_parts_never_share_an_mr_and_keep_every_pair():
    data = _data()
    parts = split_by_mr(data)
    assert set(parts) == {"train", "validation", "test"}
    mrs = [set(p.mrs) for p in parts.values()]
    assert sum(len(m) for m in mrs) == len(data.mrs)
    assert not (mrs[0] & mrs[1]) and not (mrs[0] & mrs[2]) and not (mrs[1] & mrs[2])
    assert sorted(pair for p in parts.values() for pair in p.pairs) == sorted(data.pairs)
    # shares 0.7 / 0.1 / 0.2 of 200 MRs, within what chance allows
    assert 115 <= len(mrs[0]) <= 165 and 5 <= len(mrs[1]) <= 35 and 20 <= len(mrs[2]) <= 60


def test_assignment_depends_on_the_mr_not_the_row_order():
    data = _data()
    shuffled = E2EDataset(list(reversed(data.pairs)), "reversed")
    a, b = split_by_mr(data), split_by_mr(shuffled)
    assert all(set(a[k].mrs) == set(b[k].mrs) for k in a)
    other = split_by_mr(data, salt="another")
    assert set(other["test"].mrs) != set(a["test"].mrs)


@pytest.mark.parametrize(
    "shares, match",
    [
        ({"train": 0.5, "test": 0.6}, "sum to 1"),
        ({"train": 1.2, "test": -0.2}, "positive"),
        ({}, "positive"),
        ({"train": "half", "test": 0.5}, "positive"),
    ],
)
def test_bad_shares_say_how_to_fix_them(shares, match):
    with pytest.raises(ValueError, match=match):
        split_by_mr(_data(), shares)


def test_write_release_round_trips_through_load_e2e(tmp_path):
    parts = split_by_mr(_data())
    folder = write_release(parts, tmp_path / "release")
    for split, part in parts.items():
        assert load_e2e(str(folder), split).pairs == part.pairs
    with pytest.raises(ValueError, match="release file"):
        write_release({"holdout": parts["test"]}, tmp_path / "bad")


def test_find_devset_follows_the_environment(tmp_path, monkeypatch):
    csv = tmp_path / "dev.csv"
    csv.write_text("mr,ref\n")
    monkeypatch.setenv("PREFIXLAB_E2E_DEVSET", str(csv))
    assert find_devset() == csv
    monkeypatch.setenv("PREFIXLAB_E2E_DEVSET", str(tmp_path / "missing.csv"))
    assert find_devset() is None


def test_real_dev_split_cuts_into_disjoint_parts():
    dev = load_csv(require_devset())
    parts = split_by_mr(dev)
    assert sum(len(p) for p in parts.values()) == len(dev)
    assert len(parts["test"].mrs) >= 100  # enough held-out tables to score transfer on
    assert not set(parts["train"].mrs) & set(parts["test"].mrs)


def test_transfer_script_rejects_methods_without_prefix():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "measure_transfer.py"
    for bad in ("prompt", "prefix,lora"):
        run = subprocess.run(
            [sys.executable, str(script), "--methods", bad, "--no-write"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2 and "--methods" in run.stderr, run.stderr[-500:]
