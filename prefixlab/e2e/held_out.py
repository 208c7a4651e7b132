"""Held-out slot values, for extrapolation: train on tables that never use them, evaluate on
tables that do, and score only what the text says about them.

    held = parse_held_out(("food=Japanese", "area=riverside"))   # (("food", "Japanese"), ...)
    without = filter_by_held_out(train, held, keep="without")      # tables never using them
    with_ = filter_by_held_out(test, held, keep="with")            # tables using at least one
    held_out_errors("name[X], food[Japanese]", missing=["food"], contradicted=[], held=held)
    # (1, 1): one held-out slot in the table, and the text got it wrong

A run sets `RunConfig.held_out`; `prefixlab.runs.run_data` applies the filters (training and
validation tables without the values, evaluation tables with them).
"""

from __future__ import annotations

from collections.abc import Sequence

from prefixlab._validate import did_you_mean
from prefixlab.e2e.dataset import E2EDataset
from prefixlab.e2e.mr import SLOTS, parse_mr
from prefixlab.e2e.synthetic import VALUES

# Synthetic validation and test MRs drawn before filtering when values are held out: enough
# that >= 200 tables remain on either side for two or three held-out values (the default 250
# would leave about 140).
HELD_OUT_POOL_MRS = 1000
KEEPS = ("without", "with")


def parse_held_out(values) -> tuple[tuple[str, str], ...]:
    """Validate held-out values written "slot=value" and return (slot, value) pairs.

    Slots with a fixed inventory (eatType, food, priceRange, customer rating, area,
    familyFriendly) must name one of its values (`synthetic.VALUES`); name and near take any
    non-empty value.

    Raises:
        ValueError: saying how to write the values, naming the closest slot or value.
    """
    if isinstance(values, str):
        raise ValueError(
            f"held_out is a list of 'slot=value' strings; wrap the one value: ({values!r},)."
        )
    if not isinstance(values, (list, tuple)):
        raise ValueError(
            f"held_out must be a list of 'slot=value' strings, e.g. ('food=Japanese', "
            f"'area=riverside'), got {values!r}."
        )
    pairs = []
    for item in values:
        if not isinstance(item, str) or item.count("=") != 1:
            raise ValueError(
                f"Each held-out value is written 'slot=value' (e.g. 'food=Japanese'), got {item!r}."
            )
        slot, value = (part.strip() for part in item.split("="))
        if slot not in SLOTS:
            raise ValueError(
                f"Unknown slot {slot!r} in held_out {item!r}.{did_you_mean(slot, SLOTS)} E2E "
                f"slots: {', '.join(SLOTS)}."
            )
        if not value:
            raise ValueError(f"Empty value in held_out {item!r}; write e.g. 'food=Japanese'.")
        if slot in VALUES and value not in VALUES[slot]:
            raise ValueError(
                f"{value!r} is not a value of {slot}.{did_you_mean(value, VALUES[slot])} Its "
                f"values: {', '.join(VALUES[slot])}."
            )
        pairs.append((slot, value))
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"held_out names a value twice: {list(values)}.")
    return tuple(pairs)


def format_held_out(held: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """(slot, value) pairs -> the "slot=value" strings `RunConfig.held_out` stores."""
    return tuple(f"{slot}={value}" for slot, value in held)


def uses_held_out(mr: str | dict, held: Sequence[tuple[str, str]]) -> bool:
    """Whether the MR uses at least one held-out (slot, value)."""
    parsed = parse_mr(mr) if isinstance(mr, str) else mr
    return any(parsed.get(slot) == value for slot, value in held)


def filter_by_held_out(
    dataset: E2EDataset, held: Sequence[tuple[str, str]], *, keep: str
) -> E2EDataset:
    """The tables of `dataset` that never use a held-out value (keep="without") or that use
    at least one (keep="with"), with all their references, rows in order."""
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {KEEPS}, got {keep!r}.")
    if not held:
        return dataset
    want = keep == "with"
    flags = {mr: uses_held_out(mr, held) == want for mr in dataset.mrs}
    pairs = [(mr, ref) for mr, ref in dataset.pairs if flags[mr]]
    name = f"{dataset.name}[{keep} {', '.join(format_held_out(held))}]"
    return E2EDataset(pairs, name)


def held_out_errors(mr: str | dict, missing, contradicted, held) -> tuple[int, int]:
    """(errors, slots) on the held-out values of one table: how many of its slots hold a
    held-out value, and how many of those the text missed or contradicted (the slot names of
    `slot_errors`)."""
    parsed = parse_mr(mr) if isinstance(mr, str) else mr
    slots = [slot for slot, value in held if parsed.get(slot) == value]
    wrong = set(missing) | set(contradicted)
    return sum(slot in wrong for slot in slots), len(slots)
