"""Token batches for encoder-decoder models: (source, target) text pairs -> padded ids.

The convention the embedded encoder-decoder (`load_seq2seq("tiny")`, data/tiny-bart) was
pretrained with, and the one to tune it with:

    encoder input   " " + source, then eos     input_ids [N, S], attention_mask [N, S]
    labels          " " + target, then eos     labels [N, T], -100 on padding

The decoder input is the labels shifted right behind the decoder start token; the model
makes it (`prepare_decoder_input_ids_from_labels`, used by `Seq2SeqAdaptedModel.forward`).
The leading space is the one `prefixlab.batching` puts before a decoder-only target, so a
text's words are the same tokens for the decoder-only and the encoder-decoder models. No
separator: the source has an encoder of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from prefixlab._validate import require_int


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
) -> dict[str, torch.Tensor]:
    """Tokenize (source, target) pairs for an encoder-decoder model, right padded.

    Args:
        tokenizer: a tokenizer with an eos token (and a pad token, else eos pads).
        pairs: (source, target) string pairs, e.g. (mr, ref) of an E2EDataset's `.pairs`.
        max_source, max_target: longest source and target allowed, eos included. Nothing is
            cut short: a longer pair raises, saying the length it needs.
    Returns:
        {"input_ids": [N, S], "attention_mask": [N, S], "labels": [N, T]} (long); S and T are
        the longest source and target; labels are -100 on padding.
    Raises:
        ValueError: bad options, no pairs, pairs that are not string pairs, or too long.
    """
    require_int("max_source", max_source, low=2, hint="Tokens per source, eos included.")
    require_int("max_target", max_target, low=2, hint="Tokens per target, eos included.")
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no eos token; sources and targets end with one.")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("No pairs to encode; pass at least one (source, target) pair.")
    for i, pair in enumerate(pairs):
        if not (
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            raise ValueError(
                f"pairs must hold (source, target) string pairs; item {i} is {pair!r}. "
                "Pass dataset.pairs or a list of (mr, ref) tuples."
            )
    sources = _ids(tokenizer, [s for s, _ in pairs])
    targets = _ids(tokenizer, [t for _, t in pairs])
    for what, rows, limit in (("source", sources, max_source), ("target", targets, max_target)):
        longest = max(range(len(rows)), key=lambda i: len(rows[i]))
        if len(rows[longest]) > limit:
            raise ValueError(
                f"Pair {longest}'s {what} is {len(rows[longest])} tokens, more than "
                f"max_{what}={limit}; pass max_{what}={len(rows[longest])} or shorten it."
            )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = _padded(sources, pad)  # [N, S]
    attention_mask = _padded([[1] * len(row) for row in sources], 0)  # [N, S]
    labels = _padded(targets, -100)  # [N, T]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
