"""Evaluation: validation loss, table gain, generation, corpus BLEU, samples side by side.

Generated texts are scored in one place, `score_texts` (BLEU against all references of each MR,
plus slot errors from `prefixlab.e2e.slots`); `evaluate` generates, then calls it.

Per table (one MR), for intervals over tables (`prefixlab.stats`): `table_scores` gives each
text's slot errors and BLEU n-gram counts (`bleu_statistics`; `bleu_from_statistics` turns
summed counts back into corpus BLEU), and `table_gain(..., per_table=True)` each table's
summed losses after the right and the wrong MR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from prefixlab._validate import require_bool
from prefixlab.batching import iterate_batches, pad_id
from prefixlab.e2e.mr import parse_mr

# Re-exported: notebooks and tests call prefixlab.evaluate.slot_error_rate and friends.
from prefixlab.e2e.slots import family_polarity as family_polarity
from prefixlab.e2e.slots import slot_error_rate, slot_errors
from prefixlab.pair_format import model_call, pair_format

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


BLEU_ORDER = 4  # n-grams up to 4, as sacrebleu's default BLEU
# The columns of `bleu_statistics`: lengths, matched n-grams, n-grams in the hypothesis.
BLEU_STATISTICS = (
    "hyp_len", "ref_len",
    *(f"matches_{n}" for n in range(1, BLEU_ORDER + 1)),
    *(f"totals_{n}" for n in range(1, BLEU_ORDER + 1)),
)  # fmt: skip


def bleu_statistics(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, lowercase: bool = False
) -> np.ndarray:
    """Each hypothesis's BLEU sufficient statistics: the counts corpus BLEU sums over segments.

    Summed over any set of hypotheses, they give that set's corpus BLEU through
    `bleu_from_statistics` (equal to `corpus_bleu` on the same set), so BLEU can be
    bootstrapped over tables (`prefixlab.stats.bootstrap(stats, bleu_from_statistics)`).

    Args:
        hypotheses, references: as `corpus_bleu` (N texts, N lists of references).
    Returns:
        int64 array [N, 10]: columns `BLEU_STATISTICS` (hypothesis length, closest reference
        length, matched 1..4-grams, hypothesis 1..4-grams), 13a tokenization.
    """
    from sacrebleu.metrics import BLEU

    corpus_bleu(hypotheses, references, lowercase=lowercase)  # same checks, same messages
    scorer = BLEU(lowercase=lowercase)
    rows = []
    for hyp, refs in zip(hypotheses, references, strict=True):
        score = scorer.corpus_score([hyp], [[r] for r in refs])
        rows.append([score.sys_len, score.ref_len, *score.counts, *score.totals])
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(BLEU_STATISTICS))


def bleu_from_statistics(sums) -> np.ndarray:
    """Corpus BLEU (0-100) from summed `bleu_statistics`, vectorized over leading axes.

    The formula of sacrebleu's default BLEU: brevity penalty times the geometric mean of the
    four n-gram precisions, an order with no match smoothed to 1 / (2^k * n-grams) (the k-th
    such order, "exp" smoothing); no match at all, or an order with no n-grams, gives 0.

    Args:
        sums: [..., 10] summed statistics (columns `BLEU_STATISTICS`).
    Returns:
        [...] BLEU values.
    """
    s = np.asarray(sums, dtype=float)
    if s.shape[-1:] != (len(BLEU_STATISTICS),):
        raise ValueError(
            f"sums must end in the {len(BLEU_STATISTICS)} columns of bleu_statistics, got shape "
            f"{s.shape}."
        )
    hyp_len, ref_len = s[..., 0], s[..., 1]
    matches, totals = s[..., 2 : 2 + BLEU_ORDER], s[..., 2 + BLEU_ORDER :]
    with np.errstate(divide="ignore", invalid="ignore"):
        penalty = np.where(
            hyp_len < ref_len, np.where(hyp_len > 0, np.exp(1 - ref_len / hyp_len), 0.0), 1.0
        )
        smooth = np.ones_like(hyp_len)
        log_precision = np.zeros_like(hyp_len)
        for n in range(BLEU_ORDER):
            none_matched = matches[..., n] == 0
            smooth = np.where(none_matched, smooth * 2, smooth)
            precision = np.where(
                none_matched,
                100.0 / (smooth * totals[..., n]),
                100.0 * matches[..., n] / totals[..., n],
            )
            log_precision = log_precision + np.log(precision)
        bleu = penalty * np.exp(log_precision / BLEU_ORDER)
    empty = (matches.sum(axis=-1) == 0) | (totals == 0).any(axis=-1)
    return np.where(empty, 0.0, bleu)


# -- scoring generated texts ------------------------------------------------------------------


def score_texts(
    mrs: Sequence[str],
    texts: Sequence[str],
    references: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
) -> dict:
    """Score generated texts against their MRs: corpus BLEU and slot errors.

    Args:
        mrs: N MR strings.
        texts: N generated texts, one per MR.
        references: {mr: [reference, ...]} holding every MR of `mrs` (`E2EDataset.grouped()`),
            or N lists of references in the order of `mrs`.
    Returns:
        {"bleu" (0-100), "slot_error_rate", "missing", "contradicted", "added", "slots",
        "texts_with_errors"}: the slot counts are corpus totals (`slot_error_rate`).
    """
    mrs, texts, ref_lists = _scoring_inputs(mrs, texts, references)
    return {"bleu": corpus_bleu(texts, ref_lists), **slot_error_rate(mrs, texts)}


def _scoring_inputs(mrs, texts, references) -> tuple[list, list, list]:
    """(mrs, texts, one reference list per MR), checked as `score_texts` documents."""
    if isinstance(mrs, str) or isinstance(texts, str):
        raise TypeError("mrs and texts must be lists of strings; wrap a single one in a list.")
    mrs, texts = list(mrs), list(texts)
    if len(mrs) != len(texts):
        raise ValueError(f"Got {len(mrs)} MRs but {len(texts)} texts; pass one text per MR.")
    if isinstance(references, Mapping):
        missing = [mr for mr in mrs if mr not in references]
        if missing:
            raise ValueError(
                f"references has no entry for {len(missing)} MR(s), e.g. {missing[0]!r}; pass "
                "a {mr: [ref, ...]} dict that covers every MR (dataset.grouped())."
            )
        ref_lists = [references[mr] for mr in mrs]
    elif isinstance(references, Sequence) and not isinstance(references, str):
        ref_lists = list(references)
        if len(ref_lists) != len(mrs):
            raise ValueError(
                f"Got {len(ref_lists)} reference lists for {len(mrs)} MRs; pass one list per "
                "MR, or a {mr: [ref, ...]} dict."
            )
    else:
        raise TypeError(
            f"references must be a {{mr: [ref, ...]}} dict or a list of reference lists, got "
            f"{type(references).__name__}."
        )
    if any(isinstance(refs, str) for refs in ref_lists):
        raise TypeError(
            "Each MR needs a list of references, got a single string; wrap it: [reference]."
        )
    return mrs, texts, ref_lists


def table_scores(
    mrs: Sequence[str],
    texts: Sequence[str],
    references: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
) -> list[dict]:
    """`score_texts` table by table: what each text gets wrong and its BLEU counts.

    Args:
        mrs, texts, references: as `score_texts`.
    Returns:
        N dicts {"missing", "contradicted", "added" (slot names, `slot_errors`), "slots"
        (slots in the MR), "bleu_stats" (the row of `bleu_statistics`, 10 ints)}. Summed over
        tables, (missing + contradicted) / slots is `score_texts`'s slot error rate and
        `bleu_from_statistics` of the summed counts its BLEU.
    """
    mrs, texts, ref_lists = _scoring_inputs(mrs, texts, references)
    counts = bleu_statistics(texts, ref_lists)
    out = []
    for mr, text, row in zip(mrs, texts, counts, strict=True):
        parsed = parse_mr(mr) if isinstance(mr, str) else dict(mr)
        errors = slot_errors(parsed, text)
        out.append({**errors, "slots": len(parsed), "bleu_stats": [int(x) for x in row]})
    return out


# -- loss and generation -----------------------------------------------------------------------


def _length_order(encoded: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Row indices from shortest to longest (real tokens, both sides of an encoder-decoder
    pair; stable): batches of similar lengths trim most of their padding away."""
    length = encoded["attention_mask"].sum(1)
    if "decoder_attention_mask" in encoded:
        length = length + encoded["decoder_attention_mask"].sum(1)
    return torch.argsort(length, stable=True)


def _first_batches(encoded: Mapping[str, torch.Tensor], batch_size: int, max_batches: int | None):
    """Yields (rows, batch): `rows` are the indices into `encoded` of the batch's rows.

    All rows (`max_batches` None): in length order, so each batch carries little padding (half
    the time of row order on the synthetic validation set; a sum over rows is unchanged up to
    float rounding). The first `max_batches` batches: in row order, the same fixed subset every
    time, so losses measured on it compare."""
    encoded = dict(encoded)
    if max_batches is None and "attention_mask" in encoded:
        order = _length_order(encoded)
        encoded = {key: value[order] for key, value in encoded.items()}
    else:
        order = torch.arange(len(encoded["input_ids"]))
    for i, batch in enumerate(iterate_batches(encoded, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield order[i * batch_size : (i + 1) * batch_size], batch


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
            (`prefixlab.batching.encode_for_training`), and optionally "task_ids" ([N] or
            [N, n_attributes]) for an AdapterBank or a ControlPrefix.
        batch_size: rows per forward pass.
        max_batches: evaluate only the first n batches (a fixed subset, for speed).
    """
    _check_encoded(encoded, ("input_ids", "attention_mask", "labels"))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(f"max_batches must be an int >= 1 or None (all), got {max_batches!r}.")
    device = _device_of(adapted)
    form = pair_format(adapted)  # decoder-only or encoder-decoder (`prefixlab.pair_format`)
    total, count = 0.0, 0
    for _, batch in _first_batches(encoded, batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        n = form.n_scored(batch["labels"])  # tokens the loss averages over
        if n == 0:
            continue
        loss = model_call(adapted, batch).loss
        total += float(loss) * n
        count += n
    if count == 0:
        raise ValueError("The validation set has no target tokens (all labels are -100).")
    return total / count


@torch.no_grad()
def row_losses(
    adapted,
    encoded: Mapping[str, torch.Tensor],
    batch_size: int = 16,
    max_batches: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`validation_loss` row by row: each row's summed cross-entropy and its scored tokens.

    The same batches as `validation_loss` (all rows by length, or the first `max_batches` in
    row order; "task_ids" passed on for an AdapterBank or a ControlPrefix), so `sums.sum() / tokens.sum()` is its
    value up to float rounding.

    Returns:
        (sums, tokens): float64 [n] (nats) and int64 [n], one entry per evaluated row (the
        first n rows of `encoded`: all of them, or those of the first `max_batches` batches).
    """
    _check_encoded(encoded, ("input_ids", "attention_mask", "labels"))
    device = _device_of(adapted)
    form = pair_format(adapted)  # which positions are scored (`prefixlab.pair_format`)
    rows, sums, tokens = [], [], []
    for index, batch in _first_batches(encoded, batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        row_sums, row_tokens = form.row_losses(adapted, batch)  # [B], [B]
        rows.append(index)
        sums.append(row_sums.cpu())
        tokens.append(row_tokens.cpu())
    if not sums:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    back = torch.argsort(torch.cat(rows))  # batches ran in length order: back to row order
    sums, tokens = torch.cat(sums)[back], torch.cat(tokens)[back]
    return sums.numpy(), tokens.numpy().astype(np.int64)


def _losses_by_table(adapted, tokenizer, pairs, tables, *, max_length, batch_size, max_batches,
                     overflow) -> dict[str, list[float]]:  # fmt: skip
    """{table: [summed loss, scored tokens]} over the rows evaluated; `tables[i]` names the
    table pair i belongs to (its reference's own MR, also when it is read after another)."""
    encoded = pair_format(adapted).encode(tokenizer, pairs, max_length, overflow=overflow)
    sums, tokens = row_losses(adapted, encoded, batch_size, max_batches)
    out: dict[str, list[float]] = {}
    for row, (loss, n) in enumerate(zip(sums, tokens, strict=True)):
        entry = out.setdefault(tables[encoded.kept[row]], [0.0, 0])
        entry[0] += float(loss)
        entry[1] += int(n)
    return out


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
    per_table: bool = False,
) -> dict:
    """How much a model reads the table: validation loss with the wrong MR minus with the right.

    Each reference is scored twice, after its own MR and after another one
    (`mismatched_pairs`). A model that ignores the MR scores both alike (gain about 0); one
    that reads it predicts the names and values in the text much better after the right MR.

    Returns:
        {"loss_right_mr", "loss_wrong_mr", "table_gain"} in nats per target token.
    `max_length` and `overflow` go to `encode_for_training`. `right_loss`: the loss after the
    right MRs when it was already measured on these pairs and batches (a run's final
    validation loss); measured here when None.

    per_table: also return "per_table", one dict per table (MR, first-seen order) that has an
    evaluated reference: {"mr", "right": [summed loss, tokens], "wrong": [summed loss,
    tokens]}, both for that table's references (read after their own MR, then after another).
    Both losses are then measured row by row (`row_losses`), so `right_loss` must be None.
    """
    require_bool("per_table", per_table)
    pairs = list(pairs)
    if per_table:
        if right_loss is not None:
            raise ValueError(
                "per_table=True measures the right-MR loss row by row; leave right_loss=None."
            )
        options = dict(max_length=max_length, batch_size=batch_size, max_batches=max_batches,
                       overflow=overflow)  # fmt: skip
        own = [mr for mr, _ in pairs]
        right = _losses_by_table(adapted, tokenizer, pairs, own, **options)
        wrong = _losses_by_table(adapted, tokenizer, mismatched_pairs(pairs), own, **options)
        tables = [mr for mr in dict.fromkeys(own) if mr in right or mr in wrong]
        per = [
            {"mr": mr, "right": right.get(mr, [0.0, 0]), "wrong": wrong.get(mr, [0.0, 0])}
            for mr in tables
        ]
        loss_right = sum(t["right"][0] for t in per) / max(1, sum(t["right"][1] for t in per))
        loss_wrong = sum(t["wrong"][0] for t in per) / max(1, sum(t["wrong"][1] for t in per))
        return {"loss_right_mr": loss_right, "loss_wrong_mr": loss_wrong,
                "table_gain": loss_wrong - loss_right, "per_table": per}  # fmt: skip

    def loss(rows):
        encoded = pair_format(adapted).encode(tokenizer, rows, max_length, overflow=overflow)
        return validation_loss(adapted, encoded, batch_size, max_batches)

    right = loss(pairs) if right_loss is None else right_loss
    wrong = loss(mismatched_pairs(pairs))
    return {"loss_right_mr": right, "loss_wrong_mr": wrong, "table_gain": wrong - right}


def _check_encoded(encoded, keys) -> None:
    if not isinstance(encoded, Mapping) or any(k not in encoded for k in keys):
        raise ValueError(
            f"Expected a dict with {list(keys)} (from prefixlab.batching.encode_for_training); "
            f"got {type(encoded).__name__}"
            + (f" with keys {list(encoded)}" if isinstance(encoded, Mapping) else "")
            + "."
        )


def _device_of(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


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
    pad = pad_id(tokenizer)  # the pad token, else eos; a ValueError when it has neither
    device = _device_of(adapted)
    form = pair_format(adapted)  # the source's layout and where the text starts
    generate_kwargs.setdefault("do_sample", False)
    texts: list[str] = []
    for start in range(0, len(mrs), batch_size):
        chunk = mrs[start : start + batch_size]
        enc = form.encode_sources(tokenizer, chunk, max_length)
        T = enc["input_ids"].shape[1]
        form.check_budget(adapted, T, max_new_tokens)
        out = adapted.generate(
            enc["input_ids"].to(device),
            enc["attention_mask"].to(device),
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            **generate_kwargs,
        )  # [B, T + new]
        for row in form.new_tokens(out, T).tolist():
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
        {"val_loss" (or None), the keys of `score_texts` ("bleu", "slot_error_rate", "missing",
        "contradicted", "added", "slots", "texts_with_errors"), "mrs": [...], "texts": [...]}.
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
    val_loss = None if encoded is None else validation_loss(adapted, encoded, batch_size=batch_size)
    return {"val_loss": val_loss, **score_texts(mrs, texts, references), "mrs": mrs, "texts": texts}


def other_e2e_metrics(
    texts: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float | None | str]:
    """ROUGE-L and NIST, the E2E challenge's other metrics that maintained packages compute.

    ROUGE-L: `rouge_score`'s rougeL F-measure against each reference, the best reference per
    text, averaged over texts (x100). NIST: `nltk`'s corpus NIST (n=5) on whitespace tokens.
    Neither is the official E2E script (which tokenizes and aggregates its own way), so compare
    runs with each other, not with published tables. METEOR (nltk needs WordNet data, a
    download) and CIDEr (no maintained package without a Java tokenizer) are not computed.

    Returns:
        {"rouge_l", "nist"} (None for a metric whose package is missing, with "missing" naming
        the pip package to install: `pip install "prefixlab[metrics]"`; NIST is also None when
        the texts are too short for nltk's 5-gram statistics).
    """
    texts = [str(t) for t in texts]
    references = [[str(r) for r in refs] for refs in references]
    if len(texts) != len(references) or not texts:
        raise ValueError(
            f"Give one list of references per text; got {len(texts)} texts and "
            f"{len(references)} reference lists."
        )
    if any(not refs for refs in references):
        raise ValueError("Every text needs at least one reference.")
    out: dict[str, float | None | str] = {"rouge_l": None, "nist": None}
    missing = []
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        missing.append("rouge-score")
    else:
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        best = [
            max(scorer.score(ref, text)["rougeL"].fmeasure for ref in refs)
            for text, refs in zip(texts, references, strict=True)
        ]
        out["rouge_l"] = 100.0 * float(np.mean(best))
    try:
        from nltk.translate.nist_score import corpus_nist
    except ImportError:
        missing.append("nltk")
    else:
        hypotheses = [t.split() for t in texts]
        try:
            out["nist"] = float(
                corpus_nist([[r.split() for r in refs] for refs in references], hypotheses, n=5)
            )
        except ZeroDivisionError:  # nltk divides by the count of some n-gram order: too short
            out["nist"] = None
    if missing:
        out["missing"] = ", ".join(missing)
    return out
