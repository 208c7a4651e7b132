"""Evaluation: validation loss, generation, corpus BLEU, slot error rate, samples side by side.

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

import torch

from prefixlab.data import encode_for_generation, encode_for_training, parse_mr

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


# -- BLEU --------------------------------------------------------------------------------------


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, lowercase: bool = False
) -> float:
    """Corpus BLEU (sacrebleu, 13a tokenization) against several references per hypothesis.

    Args:
        hypotheses: N generated texts.
        references: N lists of references; the lists may differ in length (E2E has 1 to ~8
            references per MR). Each hypothesis is scored against all references of its MR.
        lowercase: compare case-insensitively.
    Returns:
        BLEU on sacrebleu's 0-100 scale.
    """
    import sacrebleu

    hypotheses, references = list(hypotheses), [list(r) for r in references]
    if len(hypotheses) != len(references):
        raise ValueError(
            f"Got {len(hypotheses)} hypotheses but {len(references)} reference lists; "
            "pass one list of references per hypothesis."
        )
    if not hypotheses:
        raise ValueError("No hypotheses; pass at least one.")
    if any(not refs for refs in references):
        raise ValueError("Every hypothesis needs at least one reference; one list is empty.")
    if any(not isinstance(h, str) for h in hypotheses):
        raise ValueError("Hypotheses must be strings (decode generated ids first).")
    width = max(len(refs) for refs in references)
    # sacrebleu wants reference *streams*: stream k holds the k-th reference of every segment;
    # None marks a segment with fewer references.
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    return float(sacrebleu.corpus_bleu(hypotheses, streams, lowercase=lowercase).score)


# -- loss and generation -----------------------------------------------------------------------


def _batches(encoded: Mapping[str, torch.Tensor], batch_size: int, max_batches: int | None):
    from prefixlab.data import iterate_batches

    for i, batch in enumerate(iterate_batches(dict(encoded), batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield batch


@torch.no_grad()
def validation_loss(
    adapted,
    encoded: Mapping[str, torch.Tensor],
    batch_size: int = 16,
    max_batches: int | None = None,
) -> float:
    """Mean next-token cross-entropy (nats per target token) over a validation set.

    Token-weighted: every scored token counts once, whatever batch it falls in.

    Args:
        adapted: an AdaptedModel (or anything returning `.loss` for input_ids, attention_mask,
            labels).
        encoded: {"input_ids", "attention_mask", "labels"}, each [N, T]
            (`prefixlab.data.encode_for_training`).
        batch_size: rows per forward pass.
        max_batches: evaluate only the first n batches (a fixed subset, for speed).
    """
    _check_encoded(encoded, ("input_ids", "attention_mask", "labels"))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    device = _device_of(adapted)
    total, count = 0.0, 0
    for batch in _batches(encoded, batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())  # tokens the loss averages over
        if n == 0:
            continue
        loss = adapted(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        total += float(loss) * n
        count += n
    if count == 0:
        raise ValueError("The validation set has no target tokens (all labels are -100).")
    return total / count


def mismatched_pairs(pairs: Sequence[tuple[str, str]], shift: int = 1) -> list[tuple[str, str]]:
    """Each reference given the MR of another group: the distinct MRs, in first-seen order,
    are rotated by `shift`, so every reference keeps its place but describes another table."""
    mrs = list(dict.fromkeys(mr for mr, _ in pairs))
    if len(mrs) < 2:
        raise ValueError(f"Need at least 2 distinct MRs to mismatch them, got {len(mrs)}.")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift % len(mrs) == 0:
        raise ValueError(
            f"shift must be an int that moves every MR (not a multiple of {len(mrs)})."
        )
    other = {mr: mrs[(i + shift) % len(mrs)] for i, mr in enumerate(mrs)}
    return [(other[mr], ref) for mr, ref in pairs]


def table_gain(
    adapted,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    max_length: int = 224,
    batch_size: int = 16,
    max_batches: int | None = None,
    overflow: str = "error",
    right_loss: float | None = None,
) -> dict[str, float]:
    """How much a model reads the table: validation loss with the wrong MR minus with the right.

    Each reference is scored twice, after its own MR and after another one
    (`mismatched_pairs`). A model that ignores the MR scores both alike (gain about 0); one
    that reads it predicts the names and values in the text much better after the right MR.

    Returns:
        {"loss_right_mr", "loss_wrong_mr", "table_gain"} in nats per target token.
    `max_length` and `overflow` go to `encode_for_training`. `right_loss`: the loss after the
    right MRs when it was already measured on these pairs and batches (a run's final
    validation loss); measured here when None.
    """
    pairs = list(pairs)

    def loss(rows):
        encoded = encode_for_training(tokenizer, rows, max_length, overflow=overflow)
        return validation_loss(adapted, encoded, batch_size, max_batches)

    right = loss(pairs) if right_loss is None else right_loss
    wrong = loss(mismatched_pairs(pairs))
    return {"loss_right_mr": right, "loss_wrong_mr": wrong, "table_gain": wrong - right}


def _check_encoded(encoded, keys) -> None:
    if not isinstance(encoded, Mapping) or any(k not in encoded for k in keys):
        raise ValueError(
            f"Expected a dict with {list(keys)} (from prefixlab.data.encode_for_training); "
            f"got {type(encoded).__name__}"
            + (f" with keys {list(encoded)}" if isinstance(encoded, Mapping) else "")
            + "."
        )


def _device_of(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _context_length(adapted) -> int:
    dims = getattr(adapted, "dims", None)
    return int(getattr(dims, "n_positions", 0) or 0)


@torch.no_grad()
def generate_texts(
    adapted,
    tokenizer,
    mrs: Sequence[str],
    *,
    num_beams: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    max_length: int = 128,
    **generate_kwargs,
) -> list[str]:
    """Texts the model writes for MRs: greedy (num_beams=1) or beam search, deterministic.

    Each MR is encoded as its source (`format_source`, left padded); generation stops at EOS
    or after `max_new_tokens`. The prompt is stripped and the text cut at the first EOS.

    Args:
        adapted: an AdaptedModel.
        mrs: N MR strings.
        num_beams: 1 = greedy; more = beam search.
        max_new_tokens: generation budget per MR (prefix + source + budget must fit the
            model's context).
        batch_size: MRs per generate call (rows are left padded, so batching does not change
            the output).
        max_length: longest source in tokens (longer sources raise a ValueError).
        generate_kwargs: passed to `generate` (e.g. repetition_penalty=1.2); sampling is off
            unless you pass do_sample=True.
    Returns:
        N strings, whitespace-stripped.
    """
    mrs = [mrs] if isinstance(mrs, str) else list(mrs)
    if not mrs:
        raise ValueError("No MRs to generate for.")
    for name, value, low in (
        ("num_beams", num_beams, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    device = _device_of(adapted)
    context = _context_length(adapted)
    prefix_length = int(getattr(adapted, "prefix_length", 0) or 0)
    generate_kwargs.setdefault("do_sample", False)
    texts: list[str] = []
    for start in range(0, len(mrs), batch_size):
        chunk = mrs[start : start + batch_size]
        enc = encode_for_generation(tokenizer, chunk, max_length=max_length)
        T = enc["input_ids"].shape[1]
        if context and prefix_length + T + max_new_tokens > context:
            room = context - prefix_length - T
            raise ValueError(
                f"Prefix ({prefix_length}) + source ({T}) + max_new_tokens ({max_new_tokens}) "
                f"exceeds the model's context of {context} positions; pass max_new_tokens <= "
                f"{max(room, 0)} or use a shorter prefix."
            )
        out = adapted.generate(
            enc["input_ids"].to(device),
            enc["attention_mask"].to(device),
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            **generate_kwargs,
        )  # [B, T + new]
        for row in out[:, T:].tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts


# -- tables ------------------------------------------------------------------------------------


def samples_table(
    mrs: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    references: Sequence[Sequence[str]] | Sequence[str] | None = None,
    *,
    mark_errors: bool = False,
):
    """MRs and what each system wrote for them, side by side (a pandas DataFrame).

    Args:
        mrs: N MRs.
        outputs: {system name: N texts}, e.g. {"prefix": [...], "prompt": [...]}.
        references: optional N references (or N lists; the first is shown).
        mark_errors: add a column per system listing its missing/contradicted slots.
    Returns:
        DataFrame with columns "mr", ["reference"], then one column per system (plus
        "<system> errors" when mark_errors).
    """
    import pandas as pd

    mrs = list(mrs)
    table = {"mr": mrs}
    if references is not None:
        references = list(references)
        if len(references) != len(mrs):
            raise ValueError(f"Got {len(references)} references for {len(mrs)} MRs.")
        table["reference"] = [r if isinstance(r, str) else (r[0] if r else "") for r in references]
    for name, texts in outputs.items():
        texts = list(texts)
        if len(texts) != len(mrs):
            raise ValueError(f"System {name!r} has {len(texts)} texts for {len(mrs)} MRs.")
        table[name] = texts
        if mark_errors:
            marks = []
            for mr, text in zip(mrs, texts, strict=True):
                err = slot_errors(mr, text)
                parts = [f"missing {s}" for s in err["missing"]]
                parts += [f"contradicted {s}" for s in err["contradicted"]]
                marks.append(", ".join(parts))
            table[f"{name} errors"] = marks
    return pd.DataFrame(table)


def evaluate(
    adapted,
    tokenizer,
    references: Mapping[str, Sequence[str]],
    *,
    encoded: Mapping[str, torch.Tensor] | None = None,
    num_beams: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    max_length: int = 128,
) -> dict:
    """Generate for held-out MRs and score the texts; validation loss too when `encoded` is given.

    Args:
        references: {mr: [reference, ...]} (`E2EDataset.grouped()`, maybe a slice of it).
        encoded: validation batches for the loss (`encode_for_training`), optional.
    Returns:
        {"val_loss" (or None), "bleu", "slot_error_rate", "missing", "contradicted", "added",
        "slots", "texts_with_errors", "mrs": [...], "texts": [...]}.
    """
    if not isinstance(references, Mapping) or not references:
        raise ValueError(
            "references must be a non-empty {mr: [ref, ...]} dict, e.g. dataset.grouped()."
        )
    mrs = list(references)
    texts = generate_texts(
        adapted,
        tokenizer,
        mrs,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_length=max_length,
    )
    result: dict = {
        "val_loss": None
        if encoded is None
        else validation_loss(adapted, encoded, batch_size=batch_size),
        "bleu": corpus_bleu(texts, [references[mr] for mr in mrs]),
    }
    result.update(slot_error_rate(mrs, texts))
    result["mrs"], result["texts"] = mrs, texts
    return result
