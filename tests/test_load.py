"""prefixlab.e2e.load: E2EDataset, subsets, CSV / folder / hub loading and its errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from shared_data import require_devset

from prefixlab.e2e import E2EDataset, load_e2e, synthetic_e2e


def test_subsets_by_number_of_mrs():
    data = synthetic_e2e("train", n_mrs=600, refs_per_mr=2)
    for n in (50, 100, 500):
        sub = data.subset(n, seed=1)
        assert len(sub.mrs) == n and len(sub) == 2 * n
    assert set(data.subset(50, seed=1).mrs) <= set(data.subset(100, seed=1).mrs)  # nested
    assert data.subset(50, seed=1).pairs != data.subset(50, seed=2).pairs
    assert data.subset(None).pairs == data.pairs
    with pytest.raises(ValueError, match="only 600"):
        data.subset(601)
    with pytest.raises(ValueError, match="n_mrs"):
        data.subset(0)


def test_grouped_keeps_first_seen_order():
    data = E2EDataset([("b", "1"), ("a", "2"), ("b", "3")], "toy")
    assert data.grouped() == {"b": ["1", "3"], "a": ["2"]}
    assert data.mrs == ["b", "a"] and len(data) == 3


def test_to_csv_round_trips(tmp_path):

    data = synthetic_e2e("validation", n_mrs=5)
    assert load_e2e(data.to_csv(tmp_path / "x" / "dev.csv")).pairs == data.pairs


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_load_devset_csv():
    devset = require_devset()
    data = load_e2e(devset)
    assert len(data) == 4672 and len(data.mrs) == 547 and data.skipped == 0
    assert all(len(refs) >= 2 for refs in data.grouped().values())
    folder = load_e2e(devset.parent, split="validation")  # release folder, file chosen by split
    assert folder.pairs == data.pairs


def test_csv_without_columns_says_what_it_found(tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["meaning", "text"], [["name[Oriel]", "Oriel."]])
    with pytest.raises(ValueError, match=r"'mr' and 'ref'.*\['meaning', 'text'\]"):
        load_e2e(path)


def test_csv_bad_rows_are_skipped_counted_and_warned(tmp_path):
    rows = [
        ["name[Oriel], area[riverside]", "Oriel is by the river."],
        ["name[Oriel, area[riverside]", "Broken brackets."],
        ["name[Oriel], area[riverside]", "   "],
        ["name[Sable], colour[red]", "Unknown slot."],
        ["name[Sable], food[Chinese]", "Sable serves Chinese food."],
    ]
    path = write_csv(tmp_path / "some.csv", ["mr", "ref"], rows)
    with pytest.warns(UserWarning, match=r"skipped 3 row\(s\) \(2 malformed MR, 1 empty ref\)"):
        data = load_e2e(path)
    assert data.skipped == 3 and len(data) == 2
    assert data.skipped_reasons == {"malformed MR": 2, "empty ref": 1}


def test_hub_source_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="CSV.*synthetic"):
        load_e2e("someone/e2e_nlg")
    with pytest.raises(ConnectionError, match="tuetschek/e2e_nlg"):
        load_e2e("e2e")  # the alias of the real data on the hub
    with pytest.raises(FileNotFoundError):
        load_e2e("no_such_file.csv")
    with pytest.raises(ValueError, match="split"):
        load_e2e("synthetic", split="dev")


# --- a CSV whose MR field is not quoted ---------------------------------------------------------


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unquoted_mr_is_an_error_that_names_the_line_and_the_fix(tmp_path):
    path = write_lines(
        tmp_path / "dev.csv",
        "mr,ref",
        '"name[B], food[Chinese]",B serves Chinese food.',
        "name[A], eatType[pub],A is a pub.",
    )
    with pytest.raises(ValueError) as info:
        load_e2e(path)
    message = str(info.value)
    assert "dev.csv, line 3" in message
    assert 'Quote the MR field, like "name[A], eatType[pub]",A is a pub.' in message


def test_unquoted_mr_with_three_slots_and_a_comma_in_the_reference(tmp_path):
    path = write_lines(
        tmp_path / "dev.csv",
        "mr,ref",
        "name[A], eatType[pub], area[riverside],A is a pub, by the river.",
    )
    with pytest.raises(ValueError, match="line 2") as info:
        load_e2e(path)
    assert '"name[A], eatType[pub], area[riverside]","A is a pub, by the river."' in str(info.value)


def test_mr_cut_inside_a_value_is_an_error(tmp_path):
    # "near[Café, Lumière]" is cut at its comma: the MR field ends inside a value.
    path = write_lines(tmp_path / "dev.csv", "mr,ref", "name[A, B], food[Chinese],A B is Chinese.")
    with pytest.raises(ValueError, match="line 2.*Quote the MR field"):
        load_e2e(path)


def test_quoted_rows_with_commas_load_as_before(tmp_path):
    rows = [
        ["name[A], eatType[pub]", "A is a pub, by the river."],
        ["name[B], food[Chinese]", "eatType is a word here, not a slot."],
    ]
    path = write_csv(tmp_path / "ok.csv", ["mr", "ref"], rows)
    data = load_e2e(path)
    assert data.pairs == [(mr, ref) for mr, ref in rows] and data.skipped == 0


def test_offline_reads_the_hugging_face_variables(monkeypatch):
    from prefixlab.e2e.load import offline

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert not offline()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    assert not offline()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "True")
    assert offline()


def test_devset_skip_message_names_no_machine_path(monkeypatch, tmp_path):
    import shared_data

    monkeypatch.setattr(shared_data, "DEVSET", tmp_path / "missing.csv")
    with pytest.raises(pytest.skip.Exception) as info:
        shared_data.require_devset()
    message = str(info.value)
    assert "not beside the repository (../shared/data/e2e/devset.csv)" in message
    assert str(tmp_path) not in message and str(shared_data.REPO) not in message
