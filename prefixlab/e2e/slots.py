"""Slot errors: does a text say what its E2E meaning representation (MR) says?

A pattern check, not a parser; good enough to compare methods, and measured on the human
references of the real E2E dev split (`scripts/measure_slot_checker.py`).

- Texts and values are compared after normalization: lowercase, accents dropped ("Cafe Rouge"
  is "Café Rouge"), curly quotes made straight, runs of spaces collapsed.
- Open-valued slots (`name`, `near`) are *missing* when the value does not occur in the text
  as whole words; punctuation between its words may differ ("Burger-King"), and one letter
  added, dropped or changed is forgiven in words of six letters or more ("Crown Plaza" for
  "Crowne Plaza"), not in shorter ones ("Cotton" is not "Cotto"). They are never counted as
  contradicted. A dropped "The" still counts as missing: "Eagle" is not "The Eagle".
- Closed-valued slots (`eatType`, `food`, `priceRange`, `customer rating`, `area`) have a
  list of phrasings per value (e.g. riverside: "riverside", "by the river", "waterfront").
  A slot is *realized* when a phrasing of its value occurs, *contradicted* when only phrasings
  of other values occur or its own phrasing is negated ("not cheap", "not in the city
  centre"), and *missing* when neither does. Other values are matched literally.
- Price and rating values come in two forms for three levels, and both forms of a level are
  the same value here: `cheap` = `less than £20`, `moderate` = `£20-25`, `high` = `more than
  £30`; rating `low` = `1 out of 5`, `average` = `3 out of 5`, `high` = `5 out of 5`. So
  "cheap" realizes `less than £20` and "five-star" realizes `high`; "expensive" contradicts
  `£20-25`. Vague words stand for two levels: "affordable" and "reasonably priced" realize
  cheap or moderate and contradict high.
- A rating is also said by a judgement of the venue as a whole ("an average place", "a great
  coffee shop"), never by the quality of its food ("excellent food" says nothing).
- `familyFriendly` is decided by polarity: each mention of family/families/kid(s)/child(ren)
  /adult(s) ("all ages" counts as families) is negative when a negation ("not", "no", "none",
  "n't", "unsuitable", "bad", "leave", ...) sits within six words before it or three after
  it in the same clause (clauses end at , ; . and "and"/"but"), when "free" follows it
  ("child-free"), or when the word is adult(s) or childless ("adults only"); else positive.
  The slot is realized when some mention has the MR's polarity, contradicted when all
  mentions have the other one, missing when there is none.
- Before closed slots are checked, the MR's own name and near values are blanked out of the
  text, so "The Riverside Pub" as a name does not count as an area or an eatType.
- *added*: closed-valued slots absent from the MR that the text states (not in the rate).

slot error rate = (missing + contradicted) / number of slots in the MRs, over a corpus.

What the checker cannot see (its figures on real text are in the README):
- paraphrase it has no pattern for: "you will not spend much" for cheap, "a place to take the
  grandchildren" for family-friendly, praise or blame without a rating word ("it is really
  good" for a high rating);
- negation beyond a few words, or carried by the sentence rather than a word ("the last
  place you would take children"); a negation in front of a phrase it does not govern;
- misspellings beyond one letter in a long word, and garbled numbers ("one-one star");
- values it does not know: a rating of 4 out of 5, a price in euros, a cuisine outside the
  E2E inventory say nothing to it (neither realize nor contradict);
- who a statement is about: "near a riverside pub" realizes area and eatType for the venue.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from prefixlab.e2e.mr import parse_mr

# -- normalization -----------------------------------------------------------------------------


def _normalize(text: str) -> str:
    """Lowercase, accents dropped (é -> e), curly quotes straight, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.replace("’", "'").replace("‘", "'"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


# -- slot phrasings ----------------------------------------------------------------------------

_WORD = r"(?<![\w-])"  # a word start that is not inside a hyphenated word like "non-expensive"
# Words that end a stretch of nearby words: a new clause or another slot's fact begins.
_BREAKS = r"and|but|or|while|whereas|although|though|with|yet"
_PRICE = r"price|prices|priced|pricing|price range|cost|costs|costing"
_RATING = (
    r"ratings?|rated|rates?|reviews?|reviewed|scores?|stars?|rank(?:s|ed)?|satisfaction|feedback"
)
_VENUE = r"coffee shop|restaurant|pub|place|venue|eatery|establishment"


def _near(first: str, second: str, gap: int, stop: str = "") -> str:
    """A pattern for `first`, at most `gap` words, then `second`, all in one clause.

    Gap words are never a clause break (`_BREAKS`) nor a word of `stop`; words are joined by a
    space, a hyphen or a colon, so commas and full stops end the stretch.
    """
    barred = f"{_BREAKS}|{stop}" if stop else _BREAKS
    sep = r"(?:[ -]'?|: )"  # "low rating", "low-rated", "rating: low", "rating is 'low'"
    skip = rf"(?:{sep}(?!(?:{barred})\b)[\w'|]+){{0,{gap}}}"  # "|": a blanked-out name
    return rf"\b(?:{first})\b{skip}{sep}(?:{second})\b"


def _price_level(words: str) -> list[str]:
    """A price level said by an adjective near a price word: "low prices", "prices are low"."""
    not_rating = rf"(?![ -](?:customer )?(?:{_RATING})\b)"
    return [
        _near(words, _PRICE, 2, stop=_RATING),
        _near(_PRICE, rf"(?:{words}){not_rating}", 3, stop=_RATING),
    ]


def _rating_level(words: str) -> list[str]:
    """A rating level said by a word near a rating word: "low rating", "rated as average"."""
    not_price = rf"(?![ -](?:{_PRICE})\b)"
    return [
        _near(words, _RATING, 2, stop=_PRICE),
        _near(rf"customer|{_RATING}", rf"(?:{words}){not_price}", 3, stop=_PRICE),
    ]


def _stars(digit: str, word: str) -> list[str]:
    """A numeric rating: "3 out of 5", "three out of five", "3/5", "3 stars", "three-star".

    Not the "5 stars" of "1 out of 5 stars", nor a number inside a price ("£35").
    """
    n = rf"(?:{digit}|{word})"
    five = r"(?:5|five)"
    return [
        rf"(?<!out of ){_WORD}{n} ?(?:out of|our of|out|of) ?{five}\b",
        rf"(?<!out of ){_WORD}{n} ?/ ?5\b",
        rf"(?<!out of ){_WORD}(?:(?<!of ){digit}|{word})[- ]?stars?\b",  # not "1 of 5 stars"
        rf"(?<!out of ){_WORD}{n}[- ]star(?:red|[- ]rated)\b",
        rf"\b(?:rated|rating of|rating is|rates|scores?|(?:rate|rating|rated|give|gave) it)"
        rf" (?:a )?{n}\b(?! ?(?:£|pounds|-|to))",
    ]


_AFFORDABLE = [r"\baffordabl[ey]\b", r"\breasonabl[ey][- ]priced\b", r"\breasonable prices?\b"]
_PATTERNS: dict[str, dict[str, list[str]]] = {
    "eatType": {
        "coffee shop": [r"\bcoffee[- ]?(?:shop|house)s?\b", r"\bcafes?\b", r"\bcoffee\b"],
        "pub": [r"\bpubs?\b", r"\bbars?\b"],
        "restaurant": [r"\brestaurants?\b", r"\beater(?:y|ies)\b"],
    },
    "food": {
        "Chinese": [r"\bchinese\b"],
        "English": [r"\benglish\b", r"\bbritish\b(?! pounds?\b)"],
        "French": [r"\bfrench\b"],
        "Fast food": [r"\bfast[- ]?food\b"],
        "Indian": [r"\bindian\b"],
        "Italian": [r"\bitalian\b"],
        "Japanese": [r"\bjapanese\b"],
    },
    # Price levels: both E2E forms of a level (cheap / less than £20) share its phrasings.
    "priceRange": {
        "cheap": [
            r"\bcheap(?:ly|er|est)?\b",
            r"\binexpensive\b",
            r"\blow[- ]?(?:priced|cost|price)\b",
            r"\bbudget\b",
            r"\b(?:less than|below|lower than|under) average (?:prices?|price range|cost)\b",
            *_AFFORDABLE,
            *_price_level("low|lower|lowest|cheap|cheaper"),
            r"(?:less than|under|below|cheaper than|lower than|no more than) £? ?(?:20|twenty)\b"
            r"(?!\s*(?:-|to)\s*£?\s*25)",
            r"\b£? ?20 (?:pounds )?or (?:less|under)\b",
        ],
        "moderate": [
            r"\bmoderate(?:ly)?\b(?![ -](?:customer )?(?:ratings?|rated|reviews?)\b)",
            r"\bmid[- ]?(?:priced|range|ranged|price)\b",
            r"\baverage(?:ly)?[- ]priced\b",
            r"\bfairly priced\b",
            *_AFFORDABLE,
            r"\b(?:moderately|fairly) expensive\b",
            *_price_level(
                "(?<!than )(?<!below )average|moderate|medium|mid|middle|reasonable|decent"
            ),
            r"(?<![\d£])£? ?20 ?(?:-|to|and) ?£? ?25\b",
            r"\bbetween £? ?20 and £? ?25\b",
            r"\btwenty to twenty[- ]five\b",
        ],
        "high": [
            r"(?<!moderately )(?<!fairly )\bexpensive\b",
            r"\bhigh[- ](?:priced|end|cost)\b",
            r"\bpric(?:e?y|ier|iest)\b",
            r"\bup(?:market|scale)\b",
            r"\bcostly\b",
            *_price_level("high|higher|highest|highly|expensive|premium|upper"),
            r"(?:more (?:than )?|over |above |higher than |at least |exceeding )£? ?(?:30|thirty)\b",
            r"£ ?30 ?(?:\+|plus|(?:or|and) (?:more|above|over|up))",
        ],
    },
    # Rating levels: low / 1 out of 5, average / 3 out of 5, high / 5 out of 5.
    "customer rating": {
        "low": [
            r"\blow(?:ly)?[- ]rated\b",
            r"\b(?:poorly|badly)[- ]rated\b",
            r"\b(?:below|lower than|less than) average\b",
            *_rating_level("low|lower|lowest|lowly|poor|poorly|bad|badly|negative|terrible"),
            r"\b(?:1|one) ?(?:-|to|or) ?(?:2|two)[- ]stars?\b",
            *_stars("1", "one"),
        ],
        "average": [
            r"\baverage(?:ly)?[- ]rated\b",
            r"\bmid[- ]?ranged? rating\b",
            *_rating_level(
                "average|averagely|moderate|moderately|mediocre|middling|mid|reasonable|decent"
                "|fair|ok|okay"
            ),
            # "an average coffee shop": a judgement of the venue as a whole
            rf"\b(?:average|decent|mediocre),? (?!pric|cost)(?:[\w-]+,? ){{0,2}}(?:{_VENUE})\b",
            r"(?<!price )(?<!prices )(?<!range )(?<!food )\b(?:is|it's) (?:just |only )?average\b"
            r"(?![ -](?:pric|cost))",
            *_stars("3", "three"),
        ],
        "high": [
            r"\bhigh(?:ly)?[- ]rated\b",
            r"\b(?:top|well)[- ]rated\b",
            r"\bwell[- ](?:reviewed|liked)\b",
            r"\bhighly recommended\b",
            r"\bcustomers? (?:love|adore)\b",
            rf"\b(?:great|excellent|really good|very good|superb|wonderful),? (?:[\w-]+,? ){{0,2}}"
            rf"(?:{_VENUE})\b",
            r"\b(?:above|better than) average\b",
            *_rating_level(
                "high|higher|highest|highly|excellent|great|top|perfect|outstanding|best"
            ),
            *_stars("5", "five"),
        ],
    },
    "area": {
        "city centre": [
            r"\bcity[- ]?cent(?:re|er)\b",
            r"\btown[- ]?cent(?:re|er)\b",
            r"\bcent(?:re|er) of (?:the )?(?:city|town)\b",
            r"\bcentral(?:ly)?\b",
            r"\bheart of the city\b",
            r"\bdowntown\b",
        ],
        "riverside": [r"\briver[- ]?(?:side|front|bank)?\b", r"\bwater[- ]?front\b"],
    },
}
# The E2E values of price and rating, and the level whose phrasings realize each.
_LEVEL_OF = {
    "priceRange": {
        "cheap": "cheap", "less than £20": "cheap",
        "moderate": "moderate", "£20-25": "moderate",
        "high": "high", "more than £30": "high",
    },
    "customer rating": {
        "low": "low", "1 out of 5": "low",
        "average": "average", "3 out of 5": "average",
        "high": "high", "5 out of 5": "high",
    },
}  # fmt: skip
CLOSED_SLOTS = tuple(_PATTERNS)
OPEN_SLOTS = ("name", "near")
_COMPILED = {
    slot: {value: [re.compile(p) for p in pats] for value, pats in values.items()}
    for slot, values in _PATTERNS.items()
}

_FAMILY_WORDS = {
    "family", "families", "kid", "kids", "child", "children", "toddlers", "adult", "adults",
    "childless",
}  # fmt: skip
_NEGATIVE_WORDS = {"adult", "adults", "childless"}  # a mention that is negative by itself
_NEGATIONS = {
    "not", "no", "non", "none", "never", "nor", "without", "unsuitable", "unfriendly",
    "unwelcome", "unwelcoming", "cannot", "neither", "prohibited", "banned", "bad", "poor", "leave",
}  # fmt: skip
_ALL_AGES = re.compile(r"\ball age(?:s| groups?)\b")
_CLAUSE_BREAK = {"and", "but", "although", "while", "whereas", "though"}
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[,.;:!?|]")
# Words that deny a closed-slot phrasing right after them: "not cheap", "isn't in the centre".
# Only small words may stand between: "not very cheap", "isn't in the centre"; not "not kids
# friendly Chinese", where the negation belongs to the words in between.
_DENIAL = re.compile(
    r"(?:\bnot|n't|\bnever|\bnor|\boutside(?: of)?)"
    r"(?: (?:very|too|so|that|really|particularly|quite|overly|exactly|located|situated|in|at"
    r"|on|by|the|a|an)){0,3} $"
)


def _is_negation(tokens: list[str], j: int) -> bool:
    token = tokens[j]
    if token == "not" and j + 1 < len(tokens) and tokens[j + 1] == "far":
        return False  # "not far from": about distance
    return token in _NEGATIONS or token.endswith("n't")


def family_polarity(text: str) -> list[bool]:
    """Polarity of each family/children mention in `text`: True = family-friendly.

    See the module docstring for the rule. Returns one bool per mention, in order.
    """
    text = _ALL_AGES.sub("all families", _normalize(text))  # "open to all ages"
    tokens = _TOKEN.findall(text)  # "non-family-friendly" -> non, family, friendly
    polarities = []
    for i, tok in enumerate(tokens):
        if tok not in _FAMILY_WORDS:
            continue
        if tok in _NEGATIVE_WORDS or tokens[i + 1 : i + 2] == ["free"]:  # "child-free"
            polarities.append(False)
            continue
        negative = False
        for j in range(i - 1, max(-1, i - 7), -1):  # up to six words back, same clause
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


def _mentions(slot: str, text: str) -> tuple[set[str], set[str]]:
    """Values (levels, for price and rating) of a closed slot that `text` states or denies.

    `text` is normalized. A phrasing right after "not", "n't", "never" or "outside" (up to two
    words between: "not very cheap") denies its value instead of stating it.
    Returns (stated, denied).
    """
    stated, denied = set(), set()
    for value, patterns in _COMPILED[slot].items():
        for pattern in patterns:
            for match in pattern.finditer(text):
                before = text[max(0, match.start() - 40) : match.start()]
                if _DENIAL.search(before) and not before.endswith(("not far from ", "not only ")):
                    denied.add(value)
                else:
                    stated.add(value)
    return stated, denied


def _literal(value: str) -> re.Pattern:
    """A value as whole words, any punctuation between them: "Browns Cambridge" matches
    "browns-cambridge"; "A" matches "a is", not "bar". Match against normalized text."""
    words = re.findall(r"[^\W_]+|[^\w\s]", _normalize(value))
    return re.compile(r"(?<!\w)" + r"[\W_]*".join(re.escape(w) for w in words) + r"(?!\w)")


def _one_slip(want: str, got: str) -> bool:
    """True when `got` is `want` with at most one letter added, dropped or changed."""
    if abs(len(want) - len(got)) > 1:
        return False
    if len(want) == len(got):
        return sum(a != b for a, b in zip(want, got, strict=True)) <= 1
    short, long_ = sorted((want, got), key=len)
    i = next((k for k, (a, b) in enumerate(zip(short, long_, strict=False)) if a != b), len(short))
    return short[i:] == long_[i + 1 :]


def _says_open_value(value: str, text: str) -> bool:
    """Whether normalized `text` names `value`: as whole words, forgiving one slip of a letter
    in words of six letters or more ("Crown Plaza" for "Crowne Plaza"); short words, where one
    letter makes another name ("Cotton" for "Cotto"), must match exactly."""
    if _literal(value).search(text):
        return True
    want = re.findall(r"[^\W_]+", _normalize(value))
    got = re.findall(r"[^\W_]+", text)
    for start in range(len(got) - len(want) + 1):
        window = got[start : start + len(want)]
        if all(
            w == g or (len(w) >= 6 and _one_slip(w, g)) for w, g in zip(want, window, strict=True)
        ):
            return True
    return False


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
        known = {v.lower(): v for v in _LEVEL_OF.get(slot, _COMPILED[slot])}
        canonical = known.get(value.strip().lower())
        if canonical is None:  # a value outside the inventory: literal match only
            return "ok" if _literal(value).search(text) else "missing"
        level = _LEVEL_OF.get(slot, {}).get(canonical, canonical)
        stated, denied = _mentions(slot, text)
        if level in stated:
            return "ok"
        return "contradicted" if stated or level in denied else "missing"
    return "ok" if _says_open_value(value, text) else "missing"


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
            bool(family_polarity(blanked))
            if slot == "familyFriendly"
            else _mentions(slot, blanked)[0]
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
