"""prefixlab.e2e.mr: the MR syntax, read strictly and written in canonical order."""

from __future__ import annotations

import pytest
from shared_data import FULL_MR

from prefixlab.e2e.mr import SLOTS, canonical_mr, format_mr, parse_mr


def test_slots_in_e2e_order():
    assert SLOTS == (
        "name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near"
    )  # fmt: skip


def test_parse_format_round_trip():
    mr = parse_mr(FULL_MR)
    assert list(mr) == list(SLOTS)
    assert mr["priceRange"] == "£20-25" and mr["customer rating"] == "3 out of 5"
    assert format_mr(mr) == FULL_MR
    assert parse_mr(format_mr(mr)) == mr


def test_parse_keeps_written_order_and_format_makes_it_canonical():
    mr = parse_mr(" area[city centre] ,name[Oriel],  familyFriendly[yes] ")
    assert list(mr) == ["area", "name", "familyFriendly"]
    assert format_mr(mr) == "name[Oriel], area[city centre], familyFriendly[yes]"


@pytest.mark.parametrize(
    "text, named",
    [
        ("name[Oriel", "no closing ']'"),
        ("name[Oriel]], area[riverside]", "Unbalanced"),
        ("name[Ori[el], area[riverside]", "Unbalanced"),
        ("name]Oriel[", "Unbalanced"),
        ("name[Oriel], colour[red]", "'colour'"),
        ("name[Oriel], food[ ]", "slot 'food'"),
        ("name[], area[riverside]", "slot 'name'"),
        ("name[Oriel] area[riverside]", "Expected ','"),
        ("name[Oriel], name[Sable]", "twice"),
        ("", "Empty MR"),
        ("just text", "'just text'"),
    ],
)
def test_malformed_mr_names_the_bad_part(text, named):
    with pytest.raises(ValueError) as info:
        parse_mr(text)
    assert named in str(info.value)


def test_format_mr_rejects_bad_input():
    with pytest.raises(ValueError, match="'colour'"):
        format_mr({"name": "Oriel", "colour": "red"})
    with pytest.raises(ValueError, match="'area'"):
        format_mr({"name": "Oriel", "area": "  "})
    with pytest.raises(ValueError, match="may not contain"):
        format_mr({"name": "Ori]el"})


def test_canonical_mr_reorders_and_respaces():
    assert canonical_mr("area[riverside],name[ Oriel ]") == "name[Oriel], area[riverside]"
    assert canonical_mr(FULL_MR) == FULL_MR
    with pytest.raises(ValueError, match="twice"):
        canonical_mr("name[Oriel], name[Sable]")
