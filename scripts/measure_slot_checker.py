"""Measure the slot checker on the human references of the real E2E dev split.

    python scripts/measure_slot_checker.py [path/to/devset.csv]

Prints the slot error rate of the references against their own MRs (people write what they
like, so some of it is real omissions), the per-slot breakdown, and the precision of the
hand audit in tests/fixtures/slot_audit.json: of the flagged references drawn with its seed,
the share whose flags are real omissions or contradictions. The audit records only row
numbers, flagged slots and verdicts, never the dataset's text.

Without an argument the dev split is looked for in `$PREFIXLAB_E2E_DEVSET`, then beside the
repository (../shared/data/e2e/devset.csv), then beside its parent folder (a git worktree).
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "tests" / "fixtures" / "slot_audit.json"
DEV_ENV = "PREFIXLAB_E2E_DEVSET"
DEV_RELATIVE = Path("shared") / "data" / "e2e" / "devset.csv"

sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from prefixlab.e2e.mr import parse_mr  # noqa: E402
from prefixlab.e2e.slots import slot_error_rate, slot_errors  # noqa: E402


def find_dev_split() -> Path | None:
    """The real E2E dev split: `$PREFIXLAB_E2E_DEVSET`, else ../shared beside the repository or
    beside its parent folder. None when it is nowhere."""
    if os.environ.get(DEV_ENV):
        path = Path(os.environ[DEV_ENV]).expanduser()
        return path if path.is_file() else None
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / DEV_RELATIVE).is_file():
            return base / DEV_RELATIVE
    return None


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(mr, ref) rows of an E2E CSV with `mr` and `ref` columns, in file order."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"mr", "ref"} <= set(rows[0]):
        raise ValueError(f"{path} needs the columns mr and ref; pass the E2E devset.csv.")
    return [(row["mr"], row["ref"]) for row in rows]


def flagged_rows(pairs: list[tuple[str, str]]) -> dict[int, list[str]]:
    """{row: ["missing:food", "contradicted:area", ...]} for rows with at least one error.

    Rows are numbered from 0, the first data row after the header.
    """
    out = {}
    for i, (mr, ref) in enumerate(pairs):
        errors = slot_errors(mr, ref)
        flags = [f"{kind}:{slot}" for kind in ("missing", "contradicted") for slot in errors[kind]]
        if flags:
            out[i] = flags
    return out


def audit_draw(flagged: dict[int, list[str]], n_rows: int, seed: int, size: int) -> list[int]:
    """The first `size` flagged rows in a seeded shuffle of all rows.

    Shuffling all rows (not just the flagged ones) keeps the draw stable: a rule change that
    clears or adds one flag changes only that row's place in the audit, not the others.
    """
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return [i for i in order if i in flagged][:size]


def per_slot(pairs: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{slot: {"slots", "missing", "contradicted"}} over the corpus, slots in E2E order."""
    counts: dict[str, Counter] = {}
    for mr, ref in pairs:
        parsed = parse_mr(mr)
        errors = slot_errors(parsed, ref)
        for slot in parsed:
            c = counts.setdefault(slot, Counter())
            c["slots"] += 1
            c["missing"] += slot in errors["missing"]
            c["contradicted"] += slot in errors["contradicted"]
    order = ["name", "eatType", "food", "priceRange", "customer rating", "area",
             "familyFriendly", "near"]  # fmt: skip
    return {s: dict(counts[s]) for s in sorted(counts, key=order.index)}


def load_audit(path: Path = AUDIT) -> dict:
    """The committed audit: {"seed", "size", "cases": [{"row", "flagged", "verdict", ...}]}."""
    return json.loads(path.read_text(encoding="utf-8"))


def audit_precision(audit: dict) -> float:
    """Share of audited cases whose flags are all real errors."""
    cases = audit["cases"]
    return sum(case["verdict"] == "real" for case in cases) / len(cases)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else find_dev_split()
    if path is None or not path.is_file():
        print(
            "The real E2E dev split is not beside the repository (../shared/data/e2e/devset.csv);"
            f" pass its path or set ${DEV_ENV}."
        )
        return 1
    pairs = read_pairs(path)
    mrs, refs = zip(*pairs, strict=True)
    total = slot_error_rate(mrs, refs)
    print(f"{len(pairs)} human references, {len(set(mrs))} MRs, {total['slots']} slots")
    print(
        f"slot error rate {total['slot_error_rate']:.3f} (missing {total['missing']}, "
        f"contradicted {total['contradicted']}; added, not in the rate, {total['added']}); "
        f"references with an error {total['texts_with_errors']}"
    )
    print(f"\n{'slot':16} {'slots':>6} {'missing':>8} {'contra':>7} {'rate':>6}")
    for slot, c in per_slot(pairs).items():
        rate = (c["missing"] + c["contradicted"]) / c["slots"]
        print(f"{slot:16} {c['slots']:6d} {c['missing']:8d} {c['contradicted']:7d} {rate:6.3f}")
    audit = load_audit()
    flagged = flagged_rows(pairs)
    drawn = audit_draw(flagged, len(pairs), audit["seed"], audit["size"])
    recorded = [case["row"] for case in audit["cases"]]
    same = drawn == recorded and all(flagged[c["row"]] == c["flagged"] for c in audit["cases"])
    print(
        f"\naudit (seed {audit['seed']}): precision {audit_precision(audit):.2f} over "
        f"{len(recorded)} flagged references"
        + ("" if same else "; OUT OF DATE: the rules now flag other rows, audit them again")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
