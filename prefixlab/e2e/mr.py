"""The E2E meaning representation (MR): a flat table written on one line.

    name[The Brass Lantern], eatType[pub], food[Italian], priceRange[£20-25], area[riverside]

An MR has up to eight slots; E2E writes them in the order of `SLOTS`. `parse_mr` reads the
syntax strictly (a malformed MR raises a ValueError that names the offending part),
`format_mr` writes it back in canonical order, and `canonical_mr` does both.
"""

from __future__ import annotations

SLOTS = (
    "name",
    "eatType",
    "food",
    "priceRange",
    "customer rating",
    "area",
    "familyFriendly",
    "near",
)


def parse_mr(text: str) -> dict[str, str]:
    """Parse `slot[value], slot[value], ...` into {slot: value}, in the order written.

    Whitespace around slots and values is stripped; the order of slots is kept as written
    (use `format_mr` for the canonical E2E order).

    Raises:
        ValueError: naming the offending part, for unbalanced brackets, an unknown or repeated
            slot, an empty value, or text that is not inside a `slot[value]` pair.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"An MR must be a string like 'name[The Eagle], area[riverside]', got {text!r}."
        )
    mr: dict[str, str] = {}
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            break
        open_at = text.find("[", pos)
        close_at = text.find("]", pos)
        if open_at == -1:
            if close_at != -1:
                raise ValueError(
                    f"Unbalanced brackets in MR {text!r}: ']' without '[' in {text[pos:]!r}."
                )
            raise ValueError(
                f"Text {text[pos:]!r} in MR {text!r} is not a slot[value] pair; "
                "write each slot as slot[value], separated by commas."
            )
        if close_at != -1 and close_at < open_at:
            raise ValueError(
                f"Unbalanced brackets in MR {text!r}: ']' without '[' in {text[pos : close_at + 1]!r}."
            )
        slot = text[pos:open_at].strip()
        if close_at == -1:
            raise ValueError(
                f"Unbalanced brackets in MR {text!r}: {text[pos:]!r} has no closing ']'."
            )
        value = text[open_at + 1 : close_at]
        if "[" in value:
            raise ValueError(
                f"Unbalanced brackets in MR {text!r}: {text[pos : close_at + 1]!r} opens '[' twice."
            )
        if not slot:
            raise ValueError(
                f"Missing slot name before {text[open_at : close_at + 1]!r} in MR {text!r}."
            )
        if slot not in SLOTS:
            raise ValueError(
                f"Unknown slot {slot!r} in MR {text!r}; E2E slots are {', '.join(SLOTS)}."
            )
        if slot in mr:
            raise ValueError(f"Slot {slot!r} appears twice in MR {text!r}; give each slot once.")
        value = value.strip()
        if not value:
            raise ValueError(f"Empty value for slot {slot!r} in MR {text!r}; write {slot}[value].")
        mr[slot] = value
        pos = close_at + 1
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos < n:
            if text[pos] == "]":
                raise ValueError(
                    f"Unbalanced brackets in MR {text!r}: extra ']' after {slot}[{value}]."
                )
            if text[pos] != ",":
                raise ValueError(
                    f"Expected ',' after {slot}[{value}] in MR {text!r}, found {text[pos:]!r}."
                )
            pos += 1
            if not text[pos:].strip():
                raise ValueError(f"MR {text!r} ends with a comma; remove it.")
    if not mr:
        raise ValueError(f"Empty MR {text!r}; an MR needs at least one slot[value] pair.")
    return mr


def format_mr(mr: dict[str, str]) -> str:
    """Write {slot: value} the way E2E does: `slot[value]` in `SLOTS` order, joined by ", ".

    Raises:
        ValueError: for an unknown slot, an empty value, or brackets inside a value.
    """
    if not mr:
        raise ValueError("Cannot format an empty MR; give at least one slot, e.g. {'name': 'X'}.")
    for slot, value in mr.items():
        if slot not in SLOTS:
            raise ValueError(f"Unknown slot {slot!r}; E2E slots are {', '.join(SLOTS)}.")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"Empty value for slot {slot!r}; give a non-empty string.")
        if "[" in value or "]" in value or "," in value:
            raise ValueError(f"Value {value!r} of slot {slot!r} may not contain '[', ']' or ','.")
    return ", ".join(f"{slot}[{mr[slot].strip()}]" for slot in SLOTS if slot in mr)


def canonical_mr(text: str) -> str:
    """`format_mr(parse_mr(text))`: the same MR in E2E slot order and spacing."""
    return format_mr(parse_mr(text))
