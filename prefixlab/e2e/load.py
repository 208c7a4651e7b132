"""E2E data on disk or on the hub: the `E2EDataset` of (mr, ref) pairs and its loaders.

`load_e2e` reads this project's synthetic data (`prefixlab.e2e.synthetic`), a CSV in the E2E
release format (header `mr,ref`, one reference per row), a folder of release files, or, online
only, a URL or a dataset hub id. MRs are checked with `parse_mr` and stored canonically.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from prefixlab.e2e.dataset import E2EDataset, check_split
from prefixlab.e2e.mr import SLOTS, canonical_mr, parse_mr
from prefixlab.e2e.synthetic import synthetic_e2e

E2E_HUB = "tuetschek/e2e_nlg"  # the real E2E data on the Hugging Face hub; source="e2e"
MR_COLUMNS = ("mr", "meaning_representation")
REF_COLUMNS = ("ref", "human_reference", "target")
RELEASE_FILES = {  # split -> file names in the E2E release, tried in order
    "train": ("trainset.csv", "train.csv"),
    "validation": ("devset.csv", "validation.csv", "dev.csv"),
    "test": ("testset_w_refs.csv", "testset.csv", "test.csv"),
}


def _pick(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    return None


def dataset_from_rows(rows, columns: Sequence[str], name: str) -> E2EDataset:
    """Build an E2EDataset from dict rows with an MR and a reference column.

    MRs are checked with `parse_mr` and written canonically. Rows with a malformed MR or an
    empty reference are skipped, counted in `.skipped` and reported by one warning.

    Raises:
        ValueError: when the columns do not include `mr` and `ref` (or the hub's aliases).
    """
    mr_col, ref_col = _pick(columns, MR_COLUMNS), _pick(columns, REF_COLUMNS)
    if mr_col is None or ref_col is None:
        raise ValueError(
            f"{name} needs columns 'mr' and 'ref' (the E2E release format); found columns "
            f"{list(columns)}. Rename the columns, or pass a CSV whose header is 'mr,ref'."
        )
    pairs, reasons, first_bad = [], {}, None
    for i, row in enumerate(rows):
        mr, ref = row.get(mr_col), row.get(ref_col)
        reason = None
        if isinstance(ref, list):  # hub datasets may hold all references of an MR in one row
            refs = [r for r in ref if isinstance(r, str) and r.strip()]
        else:
            refs = [ref] if isinstance(ref, str) and ref.strip() else []
        try:
            mr = canonical_mr(mr or "")
        except ValueError as err:
            reason, detail = "malformed MR", str(err)
        if reason is None and not refs:
            reason, detail = "empty ref", f"row {i}: empty reference for MR {mr!r}"
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
            first_bad = first_bad or f"row {i}: {detail}"
            continue
        pairs += [(mr, r.strip()) for r in refs]
    skipped = sum(reasons.values())
    if skipped:
        summary = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        warnings.warn(
            f"{name}: skipped {skipped} row(s) ({summary}); first: {first_bad}", stacklevel=3
        )
    return E2EDataset(pairs, name, skipped, reasons)


def load_csv(path: str | os.PathLike) -> E2EDataset:
    """Read a CSV in the E2E release format (header `mr,ref`, one reference per row).

    Raises:
        ValueError: when the columns are missing, or when a line's MR was split at its commas
            because the MR field is not quoted (the error names the line and shows it quoted).
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        mr_col, ref_col = _pick(columns, MR_COLUMNS), _pick(columns, REF_COLUMNS)
        if mr_col is None or ref_col is None:
            dataset_from_rows([], columns, path.name)  # raises with the columns found
        rows = []
        for row in reader:
            _check_quoting(row, columns, mr_col, ref_col, f"{path.name}, line {reader.line_num}")
            rows.append(row)
    return dataset_from_rows(rows, columns, path.name)


# A field that starts like an MR slot, "eatType[" or " near [": in the reference column it means
# the comma after the previous slot ended the MR field.
_SLOT_START = re.compile(r"\s*(?:" + "|".join(re.escape(slot) for slot in SLOTS) + r")\s*\[")


def _check_quoting(row: dict, columns: Sequence[str], mr_col: str, ref_col: str, where: str):
    """Raise when a CSV row's MR was cut at its commas, i.e. its MR field is not quoted.

    Two signs: the reference starts with a slot (`eatType[pub]`), or the MR field ends inside
    a value (`name[A` of `name[A, B]`) and the line has more fields than the header. Either
    way csv read a comma inside the MR as the end of the field and paired the wrong texts.
    """
    mr, ref = row.get(mr_col) or "", row.get(ref_col) or ""
    extra = row.get(None) or []  # fields beyond the header (csv.DictReader's restkey)
    ref_is_slots = bool(_SLOT_START.match(ref))
    mr_cut = bool(extra) and mr.rfind("[") > mr.rfind("]")
    if not (ref_is_slots or mr_cut):
        return
    # Put the line back together: the longest run of fields from the MR column on that
    # parses as an MR is the MR; what follows is the reference.
    fields = [row.get(c) or "" for c in columns[columns.index(mr_col) :]] + list(extra)
    example = '"name[A], eatType[pub]",A is a pub.'
    for k in range(len(fields), 1, -1):
        try:
            parse_mr(",".join(fields[:k]))
        except ValueError:
            continue
        if list(columns) == [mr_col, ref_col]:  # the release format: write the whole line
            line = io.StringIO()
            csv.writer(line, lineterminator="").writerow(
                [",".join(fields[:k]), ",".join(fields[k:]).strip()]
            )
            example = line.getvalue()
        else:
            example = '"' + ",".join(fields[:k]) + '"'
        break
    raise ValueError(
        f"{where}: a comma inside the MR ended the MR field (read MR {mr!r}, reference "
        f"{ref!r}), so MRs and references would be mis-paired. Quote the MR field, like "
        f"{example}"
    )


def offline() -> bool:
    """True when the environment asks Hugging Face libraries to stay offline
    (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE or TRANSFORMERS_OFFLINE set to 1/true/yes/on)."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _load_online(source: str, split: str) -> E2EDataset:
    """A CSV at an http(s) URL, or a hub dataset id, through `datasets.load_dataset`."""
    hint = (
        f"Could not load {source!r} (it needs a network connection). Offline, pass the path "
        "of a CSV with 'mr' and 'ref' columns (e.g. the E2E release's devset.csv), or use "
        "load_e2e('synthetic')."
    )
    if offline():
        raise ConnectionError(hint + " (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set.)")
    try:
        import datasets

        if source.startswith(("http://", "https://")):
            table = datasets.load_dataset("csv", data_files={split: source}, split=split)
        else:
            # Script-based hub datasets (E2E's among them) load from their parquet export.
            revision = "refs/convert/parquet" if source == E2E_HUB else None
            table = datasets.load_dataset(source, split=split, revision=revision)
    except Exception as err:  # datasets raises many types for "no network" and "no such id"
        raise ConnectionError(f"{hint} ({type(err).__name__}: {err})") from err
    return dataset_from_rows(table, table.column_names, f"{source}:{split}")


def load_e2e(source: str | os.PathLike = "synthetic", split: str = "train", **kw) -> E2EDataset:
    """Load E2E-format data.

    Args:
        source: "synthetic" (this project's generator; `**kw` go to `synthetic_e2e`); "e2e"
            (the real data on the hub, `E2E_HUB`, needs a network); a CSV
            path with `mr`,`ref` columns; a folder holding the release files (trainset.csv,
            devset.csv, testset_w_refs.csv, chosen by `split`); an http(s) URL of such a CSV;
            or a dataset hub id for `datasets.load_dataset` (the last two need a network).
        split: "train", "validation" or "test" (for a single CSV file it only names nothing).

    Raises:
        ValueError: CSV without the columns; unknown split.
        FileNotFoundError: a folder without the release file for `split`.
        ConnectionError: a URL or hub id while offline, saying what to pass instead.
    """
    check_split(split)
    if isinstance(source, str) and source == "synthetic":
        # Imported here: the generator builds its datasets with this module's E2EDataset.
        return synthetic_e2e(split, **kw)
    if isinstance(source, str) and source == "e2e":
        source = E2E_HUB
    if kw:
        raise ValueError(f"Options {sorted(kw)} only apply to source='synthetic'.")
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        for filename in RELEASE_FILES[split]:
            if (path / filename).is_file():
                return load_csv(path / filename)
        raise FileNotFoundError(
            f"No {split} file in {path}; expected one of {RELEASE_FILES[split]}. Pass the CSV path."
        )
    if path.is_file():
        return load_csv(path)
    if text.startswith(("http://", "https://")) or (
        not text.lower().endswith(".csv") and "/" in text and not text.startswith((".", "/", "~"))
    ):
        return _load_online(text, split)
    raise FileNotFoundError(
        f"{text!r} is not 'synthetic', an existing CSV or folder, a URL, or a hub id "
        "('owner/name'). Check the path."
    )


# ---------------------------------------------------------------------------------------------
