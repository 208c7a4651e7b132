"""Token batches for encoder-decoder models: (source, target) text pairs -> padded ids.

The convention the embedded encoder-decoder (`load_seq2seq("tiny")`, data/tiny-bart) was
pretrained with, and the one to tune it with:

    encoder input   " " + source, then eos     input_ids [N, S], attention_mask [N, S]
    labels          " " + target, then eos     labels [N, T], -100 on padding
                                               decoder_attention_mask [N, T], 0 on padding

The decoder input is the labels shifted right behind the decoder start token; the model
makes it (`prepare_decoder_input_ids_from_labels`, used by `Seq2SeqAdaptedModel.forward`).
The leading space is the one `prefixlab.batching` puts before a decoder-only target, so a
text's words are the same tokens for the decoder-only and the encoder-decoder models. No
separator: the source has an encoder of its own. `encode_seq2seq_sources` encodes sources alone,
for generation.

The decoder attention mask marks the target's own columns: `batching.iterate_batches` trims a
batch's source and target padding separately when it is there.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch

from prefixlab._validate import require_choice, require_int
from prefixlab.batching import EncodedPairs, check_longest, pad_id, string_pairs


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """ " " + text, then eos, for each text (no other special tokens)."""
    eos = tokenizer.eos_token_id
    rows = tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"]
    return [list(row) + [eos] for row in rows]


def _padded(rows: list[list[int]], fill: int) -> torch.Tensor:
    """Right-pad rows to the longest. Returns [N, longest]."""
    width = max(len(row) for row in rows)
    return torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long)


def encode_seq2seq(
    tokenizer,
    pairs: Iterable[tuple[str, str]],
    *,
    max_source: int = 128,
    max_target: int = 128,
    overflow: str = "error",
) -> EncodedPairs:
    """Tokenize (source, target) pairs for an encoder-decoder model, right padded.

    Args:
        tokenizer: a tokenizer with an eos token (and a pad token, else eos pads).
        pairs: (source, target) string pairs, e.g. (mr, ref) of an E2EDataset's `.pairs`.
        max_source, max_target: longest source and target allowed, eos included. Nothing is
            cut short.
        overflow: a longer pair raises, saying the length it needs ("error", default), or is
            left out with one warning for the call ("skip", counted in `.n_dropped`).
    Returns:
        EncodedPairs {"input_ids": [N, S], "attention_mask": [N, S], "labels": [N, T],
        "decoder_attention_mask": [N, T]} (long); S and T are the longest kept source and
        target; labels are -100 and the decoder mask 0 on padding. `.kept[i]` is the index in
        `pairs` of row i.
    Raises:
        ValueError: bad options, no pairs, pairs that are not string pairs, or too long.
    """
    require_int("max_source", max_source, low=2, hint="Tokens per source, eos included.")
    require_int("max_target", max_target, low=2, hint="Tokens per target, eos included.")
    require_choice("overflow", overflow, ("error", "skip"), "'skip' leaves long pairs out.")
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no eos token; sources and targets end with one.")
    pairs = string_pairs(pairs, "(source, target)", ValueError,
                         "pass at least one (source, target) pair.")  # fmt: skip
    sources = _ids(tokenizer, [s for s, _ in pairs])
    targets = _ids(tokenizer, [t for _, t in pairs])
    kept = [
        i
        for i in range(len(pairs))
        if len(sources[i]) <= max_source and len(targets[i]) <= max_target
    ]
    if len(kept) < len(pairs):
        for what, rows, limit in (("source", sources, max_source), ("target", targets, max_target)):
            longest = max(range(len(rows)), key=lambda i: len(rows[i]))
            if len(rows[longest]) <= limit:
                continue
            message = (
                f"Pair {longest}'s {what} is {len(rows[longest])} tokens, more than "
                f"max_{what}={limit}"
            )
            if overflow == "error" or not kept:
                raise ValueError(
                    f"{message}; pass max_{what}={len(rows[longest])} or shorten it"
                    + (" (overflow='skip' leaves such pairs out)." if overflow == "error" else ".")
                )
            warnings.warn(
                f"{message}: {len(pairs) - len(kept)} of {len(pairs)} pairs are too long and "
                "were left out (overflow='skip', counted in .n_dropped).",
                stacklevel=2,
            )
            break
    sources = [sources[i] for i in kept]
    targets = [targets[i] for i in kept]
    pad = pad_id(tokenizer)
    tensors = {
        "input_ids": _padded(sources, pad),  # [N, S]
        "attention_mask": _padded([[1] * len(row) for row in sources], 0),  # [N, S]
        "labels": _padded(targets, -100),  # [N, T]
        "decoder_attention_mask": _padded([[1] * len(row) for row in targets], 0),  # [N, T]
    }
    return EncodedPairs(tensors, n_dropped=len(pairs) - len(kept), kept=kept)


def encode_seq2seq_sources(
    tokenizer, sources: list[str], max_source: int = 128
) -> dict[str, torch.Tensor]:
    """Sources alone, as `encode_seq2seq` encodes them, for `generate`: right padded.

    Returns:
        {"input_ids": [N, S], "attention_mask": [N, S]} (long).
    Raises:
        ValueError: no sources, or one longer than `max_source` (never cut), with the length.
    """
    require_int("max_source", max_source, low=2, hint="Tokens per source, eos included.")
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources or not all(isinstance(s, str) for s in sources):
        raise ValueError("sources must be a non-empty list of strings (MRs).")
    rows = _ids(tokenizer, sources)
    check_longest(rows, sources, "Source", "max_source", max_source)
    pad = pad_id(tokenizer)
    return {
        "input_ids": _padded(rows, pad),  # [N, S]
        "attention_mask": _padded([[1] * len(row) for row in rows], 0),  # [N, S]
    }
