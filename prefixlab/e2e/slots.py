"""Slot errors: does a text say what its E2E meaning representation (MR) says?

Slot errors, as defined here (a pattern check, not a parser; good enough to compare methods):

- Open-valued slots (`name`, `near`) are *missing* when the value does not occur in the text
  (case-insensitive). They are never counted as contradicted.
- Closed-valued slots (`eatType`, `food`, `priceRange`, `customer rating`, `area`) have a
  list of phrasings per value (e.g. riverside: "riverside", "by the river"). A slot is
  *realized* when a phrasing of its value occurs, *contradicted* when only a phrasing of
  another value of the same slot occurs (e.g. "in the city centre" for area[riverside]), and
  *missing* when neither does. Values outside the E2E inventory are matched literally.
- `familyFriendly` is decided by polarity: each mention of family/families/kid(s)/child(ren)
  /adult(s) is negative when a negation ("not", "no", "non", "n't", "unsuitable", ...) sits
  within five words before it or three after it in the same clause (clauses end at , ; . and
  "and"/"but"), or when the word is adult(s) ("adults only"); else positive. The slot is
  realized when some mention has the MR's polarity, contradicted when all mentions have the
  other one, missing when there is none.
- Before closed slots are checked, the MR's own name and near values are blanked out of the
  text, so "The Riverside Pub" as a name does not count as an area or an eatType.
- *added*: closed-valued slots absent from the MR that the text nevertheless states (reported,
  not part of the rate).

slot error rate = (missing + contradicted) / number of slots in the MRs, over a corpus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from prefixlab.data import parse_mr

# -- slot phrasings ----------------------------------------------------------------------------

_WORD = r"(?<![\w-])"  # a word start that is not inside a hyphenated word like "non-expensive"
_PATTERNS: dict[str, dict[str, list[str]]] = {
    "eatType": {
        "coffee shop": [r"\bcoffee[- ]?(?:shop|house)s?\b", r"\bcaf[eé]s?\b"],
        "pub": [r"\bpubs?\b", r"\bbars?\b"],
        "restaurant": [r"\brestaurants?\b", r"\beater(?:y|ies)\b"],
    },
    "food": {
        "Chinese": [r"\bchinese\b"],
        "English": [r"\benglish\b", r"\bbritish\b"],
        "French": [r"\bfrench\b"],
        "Fast food": [r"\bfast[- ]food\b"],
        "Indian": [r"\bindian\b"],
        "Italian": [r"\bitalian\b"],
        "Japanese": [r"\bjapanese\b"],
    },
    "priceRange": {
        "cheap": [
            r"\bcheap(?:ly)?\b",
            r"\binexpensive\b",
            r"\blow[- ](?:priced|cost)\b",
            r"\blow prices?\b",
            r"\bbudget\b",
            r"\baffordabl[ey]\b",
            r"\bprices? (?:are|is) low\b",
            r"\bprice range (?:is|of) cheap\b",
        ],
        "moderate": [
            r"\bmoderate(?:ly)?\b",
            r"\bmid[- ](?:priced|range)\b",
            r"\breasonabl[ey] priced\b",
            r"\baverage prices?\b",
            r"\bprices? (?:are|is) (?:moderate|average)\b",
            r"\bprice range (?:is|of) moderate\b",
        ],
        "high": [
            r"\bexpensive\b",
            r"\bhigh[- ](?:priced|end)\b",
            r"\bpricey\b",
            r"\bupmarket\b",
            r"\bhigh prices?\b",
            r"\bhigh price range\b",
            r"\bprices? (?:are|is) high\b",
            r"\bprice range (?:is|of) high\b",
        ],
        "less than £20": [
            r"(?:less than|under|below|cheaper than) £ ?20\b(?!\s*(?:-|to)\s*£?\s*25)",
            r"\b(?:less than|under|below) 20 pounds\b",
        ],
        "£20-25": [
            r"£ ?20 ?(?:-|to|and) ?£? ?25\b",
            r"\b20 ?(?:-|to) ?25 pounds\b",
            r"\bbetween £? ?20 and £? ?25\b",
        ],
        "more than £30": [
            r"(?:more than|over|above) £ ?30\b",
            r"\b(?:more than|over|above) 30 pounds\b",
            r"£ ?30 ?(?:\+|plus)",
        ],
    },
    "customer rating": {
        "low": [
            r"\blow[- ]rated\b",
            r"\b(?:poorly|badly)[- ]rated\b",
            r"\brated (?:low|poorly|badly)\b",
            r"\blow (?:customer )?ratings?\b",
            r"\bpoor (?:customer )?(?:ratings?|reviews?)\b",
            r"\b(?:rating|reviews) (?:is|are) (?:low|poor)\b",
            r"\brate it (?:as )?low\b",
        ],
        "average": [
            r"\baverage(?:ly)?[- ]rated\b",
            r"\brated (?:as )?average\b",
            r"\baverage (?:customer )?(?:ratings?|reviews?)\b",
            r"\b(?:rating|reviews) (?:is|are) average\b",
            r"\brate it (?:as )?average\b",
        ],
        "high": [
            r"\bhigh(?:ly)?[- ]rated\b",
            r"\brated highly\b",
            r"\bhigh (?:customer )?ratings?\b",
            r"\btop[- ]rated\b",
            r"\bwell[- ]reviewed\b",
            r"\bexcellent (?:customer )?(?:ratings?|reviews?)\b",
            r"\b(?:rating|reviews) (?:is|are) (?:high|excellent)\b",
            r"\brate it highly\b",
        ],
    },
    "area": {
        "city centre": [
            r"\bcity[- ]cent(?:re|er)\b",
            r"\bcent(?:re|er) of (?:the )?(?:city|town)\b",
            r"\bcentral(?:ly)?\b",
            r"\bheart of the city\b",
            r"\bdowntown\b",
        ],
        "riverside": [r"\briverside\b", r"\briver\b"],
    },
}
for _stars in ("1", "3", "5"):
    # "3 out of 5", "3/5", "3 stars", "3-star"; not the "5 stars" of "1 out of 5 stars".
    _PATTERNS["customer rating"][f"{_stars} out of 5"] = [
        rf"(?<!out of ){_WORD}{_stars} ?(?:out of 5|/ ?5)\b",
        rf"(?<!out of ){_WORD}{_stars}[- ]?stars?\b",
        rf"(?<!out of ){_WORD}{_stars} star rated\b",
    ]
CLOSED_SLOTS = tuple(_PATTERNS)
OPEN_SLOTS = ("name", "near")
_COMPILED = {
    slot: {value: [re.compile(p) for p in pats] for value, pats in values.items()}
    for slot, values in _PATTERNS.items()
}

_FAMILY_WORDS = {
    "family", "families", "kid", "kids", "child", "children", "toddlers", "adult", "adults",
}  # fmt: skip
_ADULT_WORDS = {"adult", "adults"}
_NEGATIONS = {
    "not", "no", "non", "never", "nor", "without", "unsuitable", "unfriendly", "unwelcome",
    "unwelcoming", "cannot", "neither",
}  # fmt: skip
_CLAUSE_BREAK = {"and", "but", "although", "while", "whereas", "though"}
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[,.;:!?|]")


def _normalize(text: str) -> str:
    return " ".join(text.replace("’", "'").lower().split())


def _is_negation(tokens: list[str], j: int) -> bool:
    token = tokens[j]
    if token == "not" and j + 1 < len(tokens) and tokens[j + 1] == "far":
        return False  # "not far from": about distance
    return token in _NEGATIONS or token.endswith("n't")


def family_polarity(text: str) -> list[bool]:
    """Polarity of each family/children mention in `text`: True = family-friendly.

    See the module docstring for the rule. Returns one bool per mention, in order.
    """
    tokens = _TOKEN.findall(_normalize(text))  # "non-family-friendly" -> non, family, friendly
    polarities = []
    for i, tok in enumerate(tokens):
        if tok not in _FAMILY_WORDS:
            continue
        if tok in _ADULT_WORDS:
            polarities.append(False)
            continue
        negative = False
        for j in range(i - 1, max(-1, i - 6), -1):  # up to five words back, same clause
            if tokens[j] in _CLAUSE_BREAK or not tokens[j][0].isalpha():
                break
            if _is_negation(tokens, j):
                negative = True
                break
        if not negative:
            for j in range(i + 1, min(len(tokens), i + 4)):  # up to three words ahead
                if tokens[j] in _CLAUSE_BREAK or not tokens[j][0].isalpha():
                    break
                if _is_negation(tokens, j):
                    negative = True
                    break
        polarities.append(not negative)
    return polarities


def _mentions(slot: str, text: str) -> set[str]:
    """Values of a closed-valued slot that `text` (normalized, lowercase) states."""
    return {
        value
        for value, patterns in _COMPILED[slot].items()
        if any(p.search(text) for p in patterns)
    }


def _literal(value: str) -> re.Pattern:
    """A value as a whole-word pattern (case-insensitive): "A" matches "A is", not "bar"."""
    return re.compile(rf"(?<!\w){re.escape(_normalize(value))}(?!\w)")


def _blank_out(text: str, values: Sequence[str]) -> str:
    for value in values:
        if value:
            text = _literal(value).sub(" | ", text)  # "|" also ends a clause
    return text


def _check_slot(slot: str, value: str, text: str) -> str:
    """'ok', 'missing' or 'contradicted' for one slot of an MR, `text` normalized."""
    if slot == "familyFriendly":
        want = value.strip().lower() == "yes"
        polarity = family_polarity(text)
        if not polarity:
            return "missing"
        return "ok" if want in polarity else "contradicted"
    if slot in _COMPILED:
        known = {v.lower(): v for v in _COMPILED[slot]}
        canonical = known.get(value.strip().lower())
        mentioned = _mentions(slot, text)
        if canonical is None:  # a value outside the inventory: literal match only
            return "ok" if _literal(value).search(text) else "missing"
        if canonical in mentioned:
            return "ok"
        return "contradicted" if mentioned else "missing"
    return "ok" if _literal(value).search(text) else "missing"


def slot_errors(mr: str | Mapping[str, str], text: str) -> dict[str, list[str]]:
    """Which slots of one MR the text fails to say (see the module docstring).

    Args:
        mr: an MR string ("name[X], area[riverside]") or a parsed {slot: value} dict.
        text: the generated (or reference) text.
    Returns:
        {"missing": [slot, ...], "contradicted": [slot, ...], "added": [slot, ...]}, slots in
        MR order ("added" in E2E slot order).
    """
    if isinstance(mr, str):
        mr = parse_mr(mr)
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    full = _normalize(text)
    blanked = _blank_out(full, [mr.get("name", ""), mr.get("near", "")])
    out: dict[str, list[str]] = {"missing": [], "contradicted": [], "added": []}
    for slot, value in mr.items():
        verdict = _check_slot(slot, value, full if slot in OPEN_SLOTS else blanked)
        if verdict != "ok":
            out[verdict].append(slot)
    for slot in (*CLOSED_SLOTS, "familyFriendly"):
        if slot in mr:
            continue
        said = (
            bool(family_polarity(blanked)) if slot == "familyFriendly" else _mentions(slot, blanked)
        )
        if said:
            out["added"].append(slot)
    return out


def slot_error_rate(mrs: Sequence[str | Mapping[str, str]], texts: Sequence[str]) -> dict:
    """Corpus slot error rate: (missing + contradicted) / slots in the MRs.

    Returns:
        {"slot_error_rate", "missing", "contradicted", "added", "slots", "texts_with_errors"}
        (counts over the corpus; "added" is not part of the rate).
    """
    if len(mrs) != len(texts):
        raise ValueError(f"Got {len(mrs)} MRs but {len(texts)} texts; pass one text per MR.")
    if not mrs:
        raise ValueError("No MRs given; pass at least one (mr, text) pair.")
    totals = {"missing": 0, "contradicted": 0, "added": 0, "slots": 0, "texts_with_errors": 0}
    for mr, text in zip(mrs, texts, strict=True):
        parsed = parse_mr(mr) if isinstance(mr, str) else dict(mr)
        errors = slot_errors(parsed, text)
        for key in ("missing", "contradicted", "added"):
            totals[key] += len(errors[key])
        totals["slots"] += len(parsed)
        totals["texts_with_errors"] += bool(errors["missing"] or errors["contradicted"])
    rate = (totals["missing"] + totals["contradicted"]) / totals["slots"]
    return {"slot_error_rate": rate, **totals}
