"""Table-to-text data in the E2E format: meaning representations, a generator, loaders, batches.

An E2E meaning representation (MR) is a flat table written on one line:

    name[The Brass Lantern], eatType[pub], food[Italian], priceRange[£20-25], area[riverside]

with up to eight slots, always in the order of `SLOTS`. The task is to write a sentence or
two that says all of it. This module gives you:

- `parse_mr` / `format_mr`: the MR syntax, strictly (a malformed MR raises a ValueError that
  names the offending part);
- `synthetic_e2e`: a generator written for this project — restaurant names, sentence plans
  and wording are ours, only the slot value inventories follow E2E. Deterministic by seed,
  splits disjoint by MR, several references per MR. `synthetic_sentences` gives realizations
  only (no MRs), drawn from training-split MRs, to pretrain the embedded tiny model;
- `load_e2e`: the synthetic data, or real E2E from a CSV in the release format (`mr`, `ref`),
  a URL or a dataset hub id (online only);
- `encode_for_training` / `encode_for_generation` / `iterate_batches`: token batches where the
  source is the MR plus `SEPARATOR` and the target is the text plus EOS, with the loss on the
  target only.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

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
SPLITS = ("train", "validation", "test")

# ---------------------------------------------------------------------------------------------
# The MR syntax
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@dataclass
class E2EDataset:
    """(mr, ref) pairs. An MR usually has several references, on consecutive or scattered rows."""

    pairs: list[tuple[str, str]]  # (mr, ref), mr in canonical E2E form
    name: str = "e2e"  # where it came from, e.g. "synthetic-train(seed=0)" or a file name
    skipped: int = 0  # rows dropped while loading (malformed MR, empty ref); also warned about
    skipped_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count

    def __post_init__(self):
        self.pairs = [(str(mr), str(ref)) for mr, ref in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> tuple[str, str]:
        return self.pairs[index]

    def grouped(self) -> dict[str, list[str]]:
        """{mr: [ref, ...]} in first-seen order, for multi-reference evaluation."""
        groups: dict[str, list[str]] = {}
        for mr, ref in self.pairs:
            groups.setdefault(mr, []).append(ref)
        return groups

    @property
    def mrs(self) -> list[str]:
        """The distinct MRs, in first-seen order."""
        return list(self.grouped())

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the pairs as a CSV in the E2E release format (header `mr,ref`, one
        reference per row), which `load_csv` / `load_e2e` read back unchanged."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["mr", "ref"])
            writer.writerows(self.pairs)
        return path

    def subset(self, n_mrs: int | None, seed: int = 0) -> E2EDataset:
        """A low-data subset: `n_mrs` MRs chosen at random (by `seed`) with all their references.

        Subsets with one seed are nested: subset(50) is inside subset(100). Row order is kept.
        `n_mrs=None` returns all of it.
        """
        mrs = self.mrs
        if n_mrs is None:
            return E2EDataset(list(self.pairs), self.name, self.skipped, dict(self.skipped_reasons))
        if isinstance(n_mrs, bool) or not isinstance(n_mrs, int) or n_mrs < 1:
            raise ValueError(f"n_mrs must be an int >= 1 or None (all), got {n_mrs!r}.")
        if n_mrs > len(mrs):
            raise ValueError(
                f"n_mrs={n_mrs} but {self.name} has only {len(mrs)} distinct MRs; "
                f"pass n_mrs <= {len(mrs)} or None for all."
            )
        order = list(mrs)
        random.Random(f"subset:{seed}").shuffle(order)
        keep = set(order[:n_mrs])
        pairs = [(mr, ref) for mr, ref in self.pairs if mr in keep]
        return E2EDataset(pairs, f"{self.name}[{n_mrs} MRs, seed={seed}]")


# ---------------------------------------------------------------------------------------------
# The synthetic generator: MRs, then realizations from sentence plans
# ---------------------------------------------------------------------------------------------

# Invented for this project. None is an E2E name; "near" values are landmarks and other venues.
NAMES = (
    "The Brass Lantern", "Juniper Hall", "The Gilded Spoon", "Marlowe's", "The Salt Cellar",
    "Hazelbrook", "The Red Heron", "Saffron Table", "The Wandering Oak", "Pemberton's",
    "The Lamplighter", "Bluebell Kitchen", "The Silver Pike", "Oriel", "The Quiet Otter",
    "Marigold", "The Tin Drum", "Cobblestone", "The Velvet Fig", "Harbour Lights",
    "The Nightjar", "Thistle and Rye", "The Old Granary", "Ember", "The Painted Pig",
    "Willowmere", "The Crooked Key", "Lotus Garden", "Kestrel House", "The Blue Door",
    "Amberley's", "The Fox and Fiddle", "Mulberry Row", "Sable", "The Brambles",
    "Petit Jardin", "Rosewater", "Tamarind Tree", "Millpond", "The Copper Pot",
)  # fmt: skip
LANDMARKS = (
    "The Old Library", "Pelham Bridge", "Kingsgate Cinema", "St Aldric's Church",
    "The Clock Museum", "Orchard Park", "Harrow Lane Station", "The Grand Theatre",
    "Northgate Hall", "The Town Hall", "Noodle Corner", "The Pie Stop", "Café Lumière",
    "Sunny Side Diner", "Pizza Pronto", "The Crown Hotel", "Golden Dragon Takeaway",
    "The Bagel Barn", "Larkspur Gallery", "The Market Cross",
)  # fmt: skip
# Value inventories of the E2E format.
VALUES = {
    "eatType": ("coffee shop", "pub", "restaurant"),
    "food": ("Chinese", "English", "French", "Fast food", "Indian", "Italian", "Japanese"),
    "priceRange": ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}
# How often each optional slot appears in a sampled MR (E2E MRs have 3 to 8 slots).
SLOT_RATES = {
    "eatType": 0.75,
    "food": 0.7,
    "priceRange": 0.65,
    "customer rating": 0.65,
    "area": 0.7,
    "familyFriendly": 0.65,
    "near": 0.45,
}
# Which MRs belong to which split: a hash of the canonical MR, out of 100 buckets.
SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}
DEFAULT_N_MRS = {"train": 1000, "validation": 100, "test": 100}


def split_of_mr(mr: str | dict[str, str]) -> str:
    """The split an MR belongs to ("train", "validation" or "test"), fixed by a hash of it.

    Every synthetic MR, whatever the seed, lands in exactly one split, so splits never share
    an MR, and the pretraining corpus (train MRs only) never realizes a validation/test MR.
    """
    text = format_mr(mr) if isinstance(mr, dict) else canonical_mr(mr)
    bucket = int(hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest(), 16) % 100
    for split, buckets in SPLIT_BUCKETS.items():
        if bucket in buckets:
            return split
    raise AssertionError("unreachable: buckets cover 0..99")


def sample_mr(rng: random.Random) -> dict[str, str]:
    """One random MR (canonical slot order) with a name and 2 to 7 other slots."""
    while True:
        mr = {"name": rng.choice(NAMES)}
        for slot in SLOTS[1:]:
            if rng.random() < SLOT_RATES[slot]:
                mr[slot] = rng.choice(LANDMARKS) if slot == "near" else rng.choice(VALUES[slot])
        if len(mr) >= 3:
            return mr


def _price_words(value: str) -> dict[str, list[str]]:
    """Phrases for a numeric price: 'amount' (after 'cost'), 'prices' (after 'prices'),
    'range' (after 'a price range of'), 'priced' (after 'priced')."""
    if value == "less than £20":
        return {
            "amount": ["less than £20", "under £20", "below £20", "less than 20 pounds"],
            "prices": ["under £20", "below £20", "of less than £20", "less than £20"],
            "range": ["less than £20", "under £20"],
            "priced": ["under £20", "below £20", "at less than £20"],
        }
    if value == "more than £30":
        return {
            "amount": ["more than £30", "over £30", "above £30", "more than 30 pounds"],
            "prices": ["over £30", "above £30", "of more than £30", "more than £30"],
            "range": ["more than £30", "over £30"],
            "priced": ["over £30", "above £30", "at more than £30"],
        }
    if value == "£20-25":
        return {
            "amount": ["£20-25", "£20 to £25", "between £20 and £25", "20 to 25 pounds"],
            "prices": [
                "of £20-25",
                "between £20 and £25",
                "in the £20-25 range",
                "from £20 to £25",
            ],
            "range": ["£20-25", "£20 to £25"],
            "priced": ["at £20-25", "between £20 and £25", "at £20 to £25"],
        }
    return {"amount": [value], "prices": ["of " + value], "range": [value], "priced": [value]}


def _forms(slot: str, value: str, rng: random.Random) -> dict[str, list[str]]:
    """Ways to say one fact about the venue, by grammatical role.

    mod: before the noun ("an Italian pub"); cop: after "is"; vp: a verb phrase after the
    subject; pp: after the noun ("a pub near X"); front: at the start of a sentence, before a
    comma; sent: a whole sentence of its own. Roles a fact cannot fill are left out.
    """
    if slot == "food":
        if value == "Fast food":
            adj, dishes = "fast food", ["fast food", "fast food", "fast food meals"]
        else:
            adj = rng.choice(["English", "English", "British"]) if value == "English" else value
            dishes = [
                f"{adj} food",
                f"{adj} food",
                f"{adj} cuisine",
                f"{adj} dishes",
                f"{adj} meals",
            ]
        dish = rng.choice(dishes)
        return {
            "mod": [adj],
            "cop": [f"known for its {dish}", f"popular for its {dish}"],
            "vp": [f"serves {dish}", f"serves {dish}", f"offers {dish}", f"specialises in {dish}",
                   f"provides {dish}", f"has {dish} on the menu", f"sells {dish}"],
            "pp": [f"serving {dish}", f"offering {dish}", f"with {dish} on the menu",
                   f"selling {dish}"],
            "sent": [f"They serve {dish}.", f"The food is {adj}.", f"You can eat {dish} there.",
                     f"The menu is {adj}.", f"It serves {dish}."],
        }  # fmt: skip
    if slot == "priceRange":
        words = {
            "cheap": (["cheap", "low-priced", "inexpensive", "budget"],
                      ["cheap", "inexpensive", "low-priced", "in the cheap price range"],
                      ["low prices", "cheap prices", "a cheap price range"]),
            "moderate": (["moderately priced", "mid-priced", "reasonably priced"],
                         ["moderately priced", "reasonably priced", "in the moderate price range"],
                         ["moderate prices", "a moderate price range", "average prices"]),
            "high": (["expensive", "high-priced", "pricey", "upmarket"],
                     ["expensive", "pricey", "high-priced", "in the high price range"],
                     ["high prices", "a high price range", "expensive prices"]),
        }  # fmt: skip
        if value in words:
            mods, cops, nps = words[value]
            np_ = rng.choice(nps)
            return {
                "mod": mods,
                "cop": cops,
                "vp": [f"has {np_}", f"charges {np_}" if "range" not in np_ else f"has {np_}"],
                "pp": [f"with {np_}"],
                "sent": [f"Prices are {'moderate' if value == 'moderate' else 'low' if value == 'cheap' else 'high'}.",
                         f"It has {np_}.", f"The price range is {value}."],
            }  # fmt: skip
        w = _price_words(value)
        amount, prices, range_ = (rng.choice(w[k]) for k in ("amount", "prices", "range"))
        return {
            "cop": [f"priced {rng.choice(w['priced'])}", f"in the {range_} price range"],
            "vp": [f"has prices {prices}", f"has a price range of {range_}", f"charges {amount}",
                   f"serves meals for {range_}"],
            "pp": [f"with prices {prices}", f"with a price range of {range_}",
                   f"with meals costing {amount}"],
            "sent": [f"Meals cost {amount}.", f"Prices are {prices.removeprefix('of ')}.",
                     f"The price range is {range_}.", f"A meal there costs {amount}."],
        }  # fmt: skip
    if slot == "customer rating":
        words = {
            "low": (["low-rated", "poorly rated", "badly rated"],
                    ["poorly rated", "low-rated", "rated low by customers"],
                    ["a low customer rating", "a low rating", "poor reviews", "low ratings"],
                    ["Customers rate it low.", "Its customer rating is low.", "Reviews are poor."]),
            "average": (["averagely rated", "average-rated"],
                        ["averagely rated", "rated average by customers"],
                        ["an average customer rating", "average reviews", "an average rating"],
                        ["Its customer rating is average.", "Customers rate it as average.",
                         "Reviews are average."]),
            "high": (["highly rated", "highly-rated", "top-rated", "well-reviewed"],
                     ["highly rated", "rated highly by customers", "very well reviewed"],
                     ["a high customer rating", "high ratings", "excellent reviews",
                      "a high rating"],
                     ["Customers rate it highly.", "Its customer rating is high.",
                      "Reviews are excellent."]),
        }  # fmt: skip
        if value in words:
            mods, cops, nps, sents = words[value]
            np_ = rng.choice(nps)
            return {
                "mod": mods,
                "cop": cops,
                "vp": [f"has {np_}", f"gets {np_}", f"has received {np_}"],
                "pp": [f"with {np_}"],
                "sent": sents,
            }
        stars = value.split()[0]
        star_word = "star" if stars == "1" else "stars"
        score = rng.choice([value, value, f"{stars} out of 5 stars", f"{stars} {star_word}"])
        return {
            "mod": [f"{stars}-star", f"{stars} star rated"],
            "cop": [f"rated {score}", f"rated {score} by customers"],
            "vp": [f"has a customer rating of {score}", f"has a rating of {score}",
                   f"has a {value} rating", f"has a {stars}-star rating", f"scores {score}"],
            "pp": [f"with a customer rating of {score}", f"with a {value} rating",
                   f"rated {score}"],
            "sent": [f"Customers rate it {score}.", f"Its customer rating is {score}.",
                     f"It is rated {score}."],
        }  # fmt: skip
    if slot == "area":
        if value == "city centre":
            return {
                "mod": ["city centre", "city-centre", "central"],
                "cop": ["in the city centre", "located in the city centre",
                        "in the centre of the city", "in the centre of town", "central"],
                "vp": ["sits in the city centre", "can be found in the city centre",
                       "is situated in the city centre"],
                "pp": ["in the city centre", "in the centre of town", "located in the city centre",
                       "in the heart of the city"],
                "front": ["In the city centre", "In the centre of town", "Located in the city centre",
                          "Right in the city centre"],
                "sent": ["You can find it in the city centre.", "It is located in the city centre."],
            }  # fmt: skip
        return {
            "mod": ["riverside"],
            "cop": ["in the riverside area", "by the riverside", "on the riverside",
                    "located by the river"],
            "vp": ["sits on the riverside", "can be found by the riverside",
                   "is situated in the riverside area"],
            "pp": ["by the riverside", "in the riverside area", "on the riverside",
                   "located by the river"],
            "front": ["By the riverside", "In the riverside area", "Down by the river",
                      "On the riverside"],
            "sent": ["You can find it by the riverside.", "It is located in the riverside area."],
        }  # fmt: skip
    if slot == "familyFriendly":
        if value == "yes":
            return {
                "mod": ["family-friendly", "kid-friendly", "child-friendly", "family friendly"],
                "cop": ["family-friendly", "kid friendly", "child friendly", "suitable for families",
                        "great for families", "welcoming to children"],
                "vp": ["welcomes families", "welcomes children", "caters for families",
                       "allows children"],
                "pp": ["suitable for families", "welcoming children", "for the whole family"],
                "sent": ["Children are welcome.", "Families are welcome.", "Kids are welcome.",
                         "It is a good place to bring the kids."],
            }  # fmt: skip
        return {
            "mod": ["adults-only", "non-family-friendly", "adult-only"],
            "cop": ["not family-friendly", "not kid friendly", "not child friendly",
                    "not suitable for children", "adults only", "not a place for children"],
            "vp": ["does not welcome children", "does not cater for families",
                   "does not allow children"],
            "pp": ["unsuitable for children", "for adults only", "not suitable for children"],
            "sent": ["Children are not welcome.", "It is not family-friendly.",
                     "It is not a good choice for families.", "It is for adults only."],
        }  # fmt: skip
    if slot == "near":
        return {
            "cop": [f"near {value}", f"located near {value}", f"close to {value}",
                    f"not far from {value}", f"next to {value}", f"a short walk from {value}"],
            "vp": [f"sits near {value}", f"can be found near {value}", f"lies close to {value}"],
            "pp": [f"near {value}", f"close to {value}", f"not far from {value}",
                   f"located near {value}", f"next to {value}"],
            "front": [f"Near {value}", f"Close to {value}", f"Not far from {value}",
                      f"Located near {value}", f"Just by {value}"],
            "sent": [f"It is near {value}.", f"You will find it close to {value}."],
        }  # fmt: skip
    raise ValueError(f"No wording for slot {slot!r}; slots other than name are {SLOTS[1:]}.")


_ADJECTIVE_ORDER = ("customer rating", "priceRange", "familyFriendly", "area", "food")
_NOUNS = {
    "coffee shop": ["coffee shop", "coffee shop", "coffee shop", "café", "coffee house"],
    "pub": ["pub", "pub", "pub", "bar"],
    "restaurant": ["restaurant", "restaurant", "restaurant", "eatery"],
    None: ["place", "venue", "spot", "establishment"],
}


def _article(phrase: str) -> str:
    word = phrase.split()[0].lower()
    vowel = word[0] in "aeiou" and not word.startswith(("one", "uni", "eu"))
    return ("an " if vowel or word.startswith("8") else "a ") + phrase


def _join(items: list[str], rng: random.Random, negative_last: bool = False) -> str:
    """'a', 'a and b', 'a, b and c' (sometimes with an Oxford comma, or 'but' before a negative)."""
    if len(items) == 1:
        return items[0]
    last = "but" if negative_last and rng.random() < 0.6 else "and"
    if len(items) == 2:
        return f"{items[0]} {last} {items[1]}"
    comma = "," if rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} {last} {items[-1]}"


def _predicate(facts: list[tuple[str, str]], rng: random.Random) -> str:
    """One verb phrase saying every fact: copulas share one 'is' ("is cheap and central").

    A negative fact (not family-friendly) said last after positive ones may get 'but'.
    """
    cops: list[tuple[str, bool]] = []  # (text after "is", negative)
    vps: list[tuple[str, bool]] = []
    for slot, value in facts:
        forms = _forms(slot, value, rng)
        negative = slot == "familyFriendly" and value == "no"
        if rng.random() < 0.5 and forms.get("vp"):
            vps.append((rng.choice(forms["vp"]), negative))
        else:
            cops.append((rng.choice(forms["cop"]), negative))
    parts = []
    if cops:
        but = cops[-1][1] and len(cops) > 1
        # a 'but' inside the copulas already contrasts; do not add a second one outside
        parts.append(
            ("is " + _join([c for c, _ in cops], rng, negative_last=but), cops[-1][1] and not but)
        )
    parts += vps
    if rng.random() < 0.5:
        parts.reverse()
    return _join([p for p, _ in parts], rng, negative_last=parts[-1][1] and len(parts) > 1)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def realize(mr: dict[str, str] | str, rng: random.Random | int | None = None) -> str:
    """One human-like description of an MR: a random sentence plan, then random wording.

    The plan picks how many facts go into the opening sentence (as adjectives before the noun,
    phrases after it or a relative clause), which opening pattern to use, the order of the
    facts, and how the rest is grouped into one or two more sentences with a pronoun, the noun
    or the name as subject. Every slot of the MR is said exactly once; the name always appears.
    `rng` is a random.Random or a seed (same seed, same text).

    Raises:
        ValueError: for an MR without a name, or a value outside the E2E inventory (`VALUES`;
            any food and any name or landmark are accepted).
    """
    if isinstance(mr, str):
        mr = parse_mr(mr)
    if "name" not in mr:
        raise ValueError(f"An MR needs a name slot to be realized, got slots {list(mr)}.")
    for slot in ("eatType", "priceRange", "customer rating", "area", "familyFriendly"):
        if slot in mr and mr[slot] not in VALUES[slot]:
            raise ValueError(
                f"The generator has no wording for {slot}[{mr[slot]}]; use one of {VALUES[slot]}."
            )
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    name = mr["name"]
    noun = rng.choice(_NOUNS[mr.get("eatType")])
    facts = [(slot, mr[slot]) for slot in SLOTS[2:] if slot in mr]
    if rng.random() < 0.55:
        rng.shuffle(facts)

    # Opening sentence: the name, the noun phrase, and the facts attached to it.
    n_intro = min(len(facts), rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4]))
    intro, rest = facts[:n_intro], facts[n_intro:]
    mods, pps, rels, fronts = [], [], [], []
    for slot, value in intro:
        forms = _forms(slot, value, rng)
        role = rng.choice(["mod", "mod", "pp", "pp", "rel", "front"])
        if role == "front" and (fronts or "front" not in forms):
            role = "pp"
        if role == "mod" and (len(mods) >= 2 or "mod" not in forms):
            role = "pp"
        if role == "pp" and len(pps) >= 2:
            role = "rel"
        if role == "mod":
            mods.append((slot, rng.choice(forms["mod"])))
        elif role == "pp":
            pps.append(rng.choice(forms["pp"]))
        elif role == "front":
            fronts.append(rng.choice(forms["front"]))
        else:
            rels.append((slot, value))
    mods.sort(key=lambda m: _ADJECTIVE_ORDER.index(m[0]))
    np_ = _article(" ".join([m for _, m in mods] + [noun]))
    after = (" " + _join(pps, rng)) if pps else ""
    rel = (" " + rng.choice(["that", "which"]) + " " + _predicate(rels, rng)) if rels else ""
    called = rng.choice(["called", "named", "called", "by the name of"])
    openings = [  # (sentence, can take a fronted phrase)
        (f"{name} is {np_}{after}{rel}.", True),
        (f"{name} is {np_}{after}{rel}.", True),
        (f"There is {np_} {called} {name}{after}{rel}.", True),
        (f"{name} is the name of {np_}{after}{rel}.", True),
    ]
    if len(pps) <= 1:
        openings.append((f"There is {np_}{after} {called} {name}{rel}.", True))
    if not rels:
        openings += [
            (f"If you are looking for {np_}{after}, try {name}.", False),
            (f"{_cap(np_)}{after}, {name} is worth a visit.", False),
            (f"Visit {name}, {np_}{after}.", False),
        ]
    else:
        openings += [
            (f"{name} is {np_}{after} and {_predicate(rels, rng)}.", True),
            (f"{_cap(np_)} {called} {name}{after} {_predicate(rels, rng)}.", True),
            (f"{name}, {np_}{after}, {_predicate(rels, rng)}.", True),
        ]
    if fronts:
        openings = [(text, ok) for text, ok in openings if ok]
    sentence = rng.choice(openings)[0]
    if fronts:
        first = sentence if sentence.startswith(name) else sentence[0].lower() + sentence[1:]
        sentence = f"{fronts[0]}, {first}"
    sentences = [sentence]

    # The remaining facts: one or two more sentences.
    chunks: list[list[tuple[str, str]]] = []
    if rest:
        cut = rng.randint(1, len(rest)) if len(rest) > 1 and rng.random() < 0.45 else len(rest)
        chunks = [rest[:cut], rest[cut:]] if cut < len(rest) else [rest]
    for i, chunk in enumerate(chunks):
        if len(chunk) == 1 and rng.random() < 0.35:
            sentences.append(rng.choice(_forms(*chunk[0], rng)["sent"]))
            continue
        the_noun = noun if mr.get("eatType") or noun != "establishment" else "place"
        subject = rng.choice(["It", "It", "It", f"The {the_noun}", f"This {the_noun}", name])
        front = ""
        placeable = [f for f in chunk if f[0] in ("area", "near")]
        if len(chunk) > 1 and placeable and rng.random() < 0.25:
            chunk = [f for f in chunk if f is not placeable[0]]
            front = rng.choice(_forms(*placeable[0], rng)["front"]) + ", "
            subject = subject if subject == name else subject[0].lower() + subject[1:]
        predicate = _predicate(chunk, rng)
        if i == len(chunks) - 1 and len(sentences) > 1 and rng.random() < 0.4:
            predicate = (
                "is also " + predicate[3:] if predicate.startswith("is ") else "also " + predicate
            )
        sentences.append(f"{front}{subject} {predicate}.")
    return " ".join(sentences)


def _realizations(mr: dict[str, str], k: int, rng: random.Random) -> list[str]:
    """k different realizations of one MR (different as far as 50 tries allow)."""
    refs: list[str] = []
    for _ in range(50 * k):
        text = realize(mr, rng)
        if text not in refs:
            refs.append(text)
        if len(refs) == k:
            return refs
    return refs + [realize(mr, rng) for _ in range(k - len(refs))]


def _sample_mrs(split: str, n_mrs: int, rng: random.Random) -> list[dict[str, str]]:
    """n_mrs distinct MRs of one split, drawn by rejection on `split_of_mr`."""
    seen: set[str] = set()
    mrs: list[dict[str, str]] = []
    while len(mrs) < n_mrs:
        mr = sample_mr(rng)
        text = format_mr(mr)
        if text not in seen and split_of_mr(text) == split:
            seen.add(text)
            mrs.append(mr)
    return mrs


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return split


def synthetic_e2e(
    split: str = "train",
    *,
    n_mrs: int | None = None,
    refs_per_mr: int = 4,
    seed: int = 0,
) -> E2EDataset:
    """A synthetic E2E-format dataset made by this project's generator.

    Args:
        split: "train", "validation" or "test". Splits never share an MR (see `split_of_mr`).
        n_mrs: number of distinct MRs; default 1000 for train, 100 for validation and test.
        refs_per_mr: references per MR (distinct realizations), written on consecutive rows.
        seed: same seed, same data. Different seeds give different MRs of the same split.

    Returns:
        E2EDataset with n_mrs * refs_per_mr (mr, ref) pairs, named like "synthetic-train(seed=0)".
    """
    _check_split(split)
    n_mrs = DEFAULT_N_MRS[split] if n_mrs is None else n_mrs
    if isinstance(n_mrs, bool) or not isinstance(n_mrs, int) or n_mrs < 1:
        raise ValueError(f"n_mrs must be an int >= 1, got {n_mrs!r}.")
    if isinstance(refs_per_mr, bool) or not isinstance(refs_per_mr, int) or refs_per_mr < 1:
        raise ValueError(f"refs_per_mr must be an int >= 1, got {refs_per_mr!r}; E2E has about 8.")
    rng = random.Random(f"prefixlab-e2e:{split}:{seed}")
    pairs = []
    for mr in _sample_mrs(split, n_mrs, rng):
        text = format_mr(mr)
        pairs += [(text, ref) for ref in _realizations(mr, refs_per_mr, rng)]
    return E2EDataset(pairs, f"synthetic-{split}(seed={seed})")


def synthetic_pretraining_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (mr, realization) pairs for pretraining, each from a fresh training-split MR.

    The MRs are returned so that tests can check the corpus never realizes a validation or
    test MR; pretraining itself uses only the text (`synthetic_sentences`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}.")
    rng = random.Random(f"prefixlab-pretrain:{seed}")
    pairs = []
    while len(pairs) < n:
        mr = sample_mr(rng)
        text = format_mr(mr)
        if split_of_mr(text) == "train":
            pairs.append((text, realize(mr, rng)))
    return pairs


# Keys of the fact sheets in the pretraining corpus: deliberately not E2E's slot names.
FACT_KEYS = {
    "name": "name",
    "eatType": "type",
    "food": "cuisine",
    "priceRange": "price",
    "customer rating": "rating",
    "area": "area",
    "familyFriendly": "kids",
    "near": "near",
}


def fact_sheet(mr: dict[str, str] | str, rng: random.Random) -> str:
    """The facts of an MR in the pretraining corpus's own plain format, in a shuffled order.

    `name=The Copper Pot; cuisine=Italian; kids=yes` — not E2E's `name[The Copper Pot]`:
    other keys (`FACT_KEYS`), other punctuation, any order. Values follow `=` with no space,
    as they follow `[` in an MR, so a value's tokens are the same in both formats.
    """
    mr = parse_mr(mr) if isinstance(mr, str) else mr
    slots = list(mr)
    rng.shuffle(slots)
    return "; ".join(f"{FACT_KEYS[slot]}={mr[slot]}" for slot in slots)


def synthetic_pretraining_corpus(n: int, seed: int = 0, fact_share: float = 0.4) -> list[str]:
    """The tiny model's pretraining documents: n restaurant descriptions of training-split MRs,
    a `fact_share` of them preceded by their `fact_sheet` and a newline.

    The fact sheets are what teaches the model to copy from its context (names, landmarks,
    values), as web text teaches real language models; E2E's own MR format never appears.
    """
    if not (isinstance(fact_share, (int, float)) and 0 <= fact_share <= 1):
        raise ValueError(f"fact_share must be a number in [0, 1], got {fact_share!r}; try 0.4.")
    rng = random.Random(f"prefixlab-facts:{seed}")
    docs = []
    for mr, text in synthetic_pretraining_pairs(n, seed):
        if rng.random() < fact_share:
            docs.append(f"{fact_sheet(mr, rng)}\n {text}")
        else:
            docs.append(text)
    return docs


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    """n restaurant descriptions with no MR attached: the tiny model's pretraining text."""
    return [text for _, text in synthetic_pretraining_pairs(n, seed)]


# ---------------------------------------------------------------------------------------------
# Loading real E2E
# ---------------------------------------------------------------------------------------------

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
    """Read a CSV in the E2E release format (header `mr,ref`, one reference per row)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if _pick(columns, MR_COLUMNS) is None or _pick(columns, REF_COLUMNS) is None:
            dataset_from_rows([], columns, path.name)  # raises with the columns found
        return dataset_from_rows(list(reader), columns, path.name)


def _offline() -> bool:
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
    if _offline():
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
    _check_split(split)
    if isinstance(source, str) and source == "synthetic":
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
# Token batches
# ---------------------------------------------------------------------------------------------

SEPARATOR = " ||"


_SENTENCE_END = r"[.!?](?=\s|$)"  # a full stop, ! or ? followed by a space or the end


def first_sentence(text: str) -> str:
    """The text up to and including its first sentence end (the whole text if it has none).

    >>> first_sentence("Aromi is a pub. It is cheap.")
    'Aromi is a pub.'
    """
    import re

    match = re.match(r".*?" + _SENTENCE_END, text)
    return match.group(0) if match else text


def count_sentences(text: str) -> int:
    """Sentence ends in a text (full stops, ! and ? followed by a space or the end)."""
    import re

    return len(re.findall(_SENTENCE_END, text))


def format_source(mr: str) -> str:
    """The model's input for an MR: the MR then `SEPARATOR` ("name[X], area[riverside] ||").

    The target follows with a leading space, so the separator is a token the text never uses.
    """
    return mr + SEPARATOR


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(
            "The tokenizer has neither a pad nor an eos token; set tokenizer.pad_token."
        )
    return int(pad)


def _source_ids(tokenizer, mrs: Sequence[str]) -> list[list[int]]:
    """Token ids of format_source(mr), with a BOS first if the tokenizer normally adds one."""
    ids = tokenizer([format_source(mr) for mr in mrs], add_special_tokens=False)["input_ids"]
    specials = tokenizer("", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and specials[:1] == [bos]:
        ids = [[bos] + row for row in ids]
    return [list(row) for row in ids]


def encode_for_training(
    tokenizer,
    pairs: Sequence[tuple[str, str]] | E2EDataset,
    max_length: int = 224,
    *,
    overflow: str = "error",
) -> dict[str, torch.Tensor]:
    """Tokenize (mr, ref) pairs as source + target, right padded, loss on the target only.

    Each row is `format_source(mr)` then `" " + ref` then EOS. Labels copy the target tokens
    (EOS included) and are -100 on the source and on padding, so the loss only scores the text.

    Args:
        max_length: longest row allowed (source + target). The default fits synthetic data and
            the real E2E devset with the tiny model's tokenizer (longest row 208) and leaves 32 of
            its 256 positions for a prefix or soft prompt. It only guards the context: rows are
            padded to the longest one, not to max_length.
        overflow: what to do with a pair longer than `max_length` — "error" (default) raises
            with the length needed; "skip" drops it with a warning that counts the dropped pairs.
            Nothing is ever cut short.

    Returns:
        {"input_ids", "attention_mask", "labels"}, each [N, T] (long), T = longest kept row.
    """
    if overflow not in ("error", "skip"):
        raise ValueError(f"overflow must be 'error' or 'skip', got {overflow!r}.")
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no eos token; the target must end with one.")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("No pairs to encode; the dataset is empty.")
    sources = _source_ids(tokenizer, [mr for mr, _ in pairs])
    targets = tokenizer([" " + ref for _, ref in pairs], add_special_tokens=False)["input_ids"]
    rows, too_long = [], []
    for i, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        tgt = list(tgt) + [tokenizer.eos_token_id]
        if len(src) + len(tgt) > max_length:
            too_long.append((i, len(src), len(tgt)))
            continue
        rows.append((src, tgt))
    if too_long:
        need = max(s + t for _, s, t in too_long)
        i, s, t = max(too_long, key=lambda x: x[1] + x[2])
        message = (
            f"{len(too_long)} of {len(pairs)} pairs are longer than max_length={max_length} "
            f"tokens (the longest, pair {i}, has source {s} + target {t} = {s + t})"
        )
        if overflow == "error":
            raise ValueError(f"{message}. Pass max_length={need}, or overflow='skip' to drop them.")
        warnings.warn(f"{message}; skipped them (overflow='skip').", stacklevel=2)
        if not rows:
            raise ValueError(f"{message}; nothing left. Pass max_length={need}.")
    width = max(len(s) + len(t) for s, t in rows)
    pad = _pad_id(tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [N, T]
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # [N, T]
    for row, (src, tgt) in enumerate(rows):
        n_src, n = len(src), len(src) + len(tgt)
        input_ids[row, :n] = torch.tensor(src + tgt)
        attention_mask[row, :n] = 1
        labels[row, n_src:n] = torch.tensor(tgt)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def encode_for_generation(
    tokenizer, mrs: Sequence[str], max_length: int = 128
) -> dict[str, torch.Tensor]:
    """Tokenize MRs as sources only, left padded, so that generation continues every row.

    Returns:
        {"input_ids", "attention_mask"}, each [N, T] (long), T = longest source.

    Raises:
        ValueError: when a source is longer than `max_length` (sources are never cut).
    """
    mrs = [mrs] if isinstance(mrs, str) else list(mrs)
    if not mrs:
        raise ValueError("No MRs to encode.")
    sources = _source_ids(tokenizer, mrs)
    longest = max(range(len(sources)), key=lambda i: len(sources[i]))
    if len(sources[longest]) > max_length:
        raise ValueError(
            f"MR {mrs[longest]!r} takes {len(sources[longest])} tokens, more than "
            f"max_length={max_length}; pass max_length={len(sources[longest])} or more."
        )
    width = len(sources[longest])
    input_ids = torch.full((len(sources), width), _pad_id(tokenizer), dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((len(sources), width), dtype=torch.long)  # [N, T]
    for row, src in enumerate(sources):
        input_ids[row, width - len(src) :] = torch.tensor(src)
        attention_mask[row, width - len(src) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def iterate_batches(
    encoded: dict[str, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    trim: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield dict slices of `encoded` ([N, T] tensors) of `batch_size` rows each.

    shuffle: a random row order fixed by `seed` (same seed, same batches).
    trim: drop columns that are padding in every row of the batch (on either side), so short
    batches run faster. Yields {key: [B, T_batch]}.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    n = len(encoded["input_ids"])
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(n)
    )
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if drop_last and len(index) < batch_size:
            return
        batch = {key: value[index] for key, value in encoded.items()}
        if trim and "attention_mask" in batch:
            used = batch["attention_mask"].any(dim=0).nonzero().flatten()  # columns with a token
            if len(used):
                lo, hi = int(used[0]), int(used[-1]) + 1
                batch = {key: value[:, lo:hi] for key, value in batch.items()}
        yield batch
