"""Infix tuning (Li & Liang, 2021, Table 5): trainable activations between the table and the text.

A prefix sits before everything: [PREFIX; x; y]. An infix sits between the table x and the
text y: [x; INFIX; y]. Like a prefix it is P trainable keys and values in every layer (same
storage, same inits, see prefix.py); unlike a prefix the table's own tokens cannot read it,
only the text side can. Li & Liang use this to ask where trainable vectors should go.

Where exactly: a row is `format_source(mr)` = the MR, then the separator " ||", then the text
(`prefixlab.batching`). The infix goes right before the separator, so the separator token,
which predicts the first word of the text, already reads it; every predicted text token does.

How it is fed to a frozen model (`infix_forward`, `infix_generate`), in two passes:

1. the table x alone (rows left-padded to one width) fills an attention cache;
2. the infix's keys and values are appended to that cache, and the rest of the row (separator
   and text, right-padded) runs on top of it. Position ids count on after the P infix
   slots, as they count on after a prefix's.

The logits of both passes are put back in the row's own layout, so `AdaptedModel` returns
[B, T, V] for the T real tokens, as it does for a prefix or a soft prompt.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from prefixlab.batching import SEPARATOR, format_source
from prefixlab.loading import cache_kwarg, model_dims, output_cache
from prefixlab.prefix import PrefixTuning, split_key_values


def separator_ids(tokenizer) -> list[int]:
    """The token ids the separator takes at the end of a source (`format_source`).

    Read from the tokenizer as the difference between a source and its MR, so a tokenizer that
    merges the separator with what precedes it is caught here instead of silently misplacing
    the infix.

    Raises:
        ValueError: when the separator's tokens depend on the MR before it.
    """
    found = set()
    for mr in ("name[The Eagle]", "name[Aromi], area[riverside]", "near[Café Brazil]"):
        whole = tokenizer(format_source(mr), add_special_tokens=False)["input_ids"]
        head = tokenizer(mr, add_special_tokens=False)["input_ids"]
        if list(whole[: len(head)]) != list(head) or len(whole) == len(head):
            raise ValueError(
                f"This tokenizer merges the separator {SEPARATOR!r} with the MR before it, so "
                "an infix cannot be placed between them; use method='prefix' with it."
            )
        found.add(tuple(whole[len(head) :]))
    if len(found) != 1:
        raise ValueError(
            f"The separator {SEPARATOR!r} tokenizes differently after different MRs "
            f"({sorted(found)}); an infix needs one fixed separator."
        )
    return list(found.pop())


class InfixTuning(PrefixTuning):
    """P trainable keys and values per layer, placed between the table and the text.

    Args:
        model: the frozen causal LM (or `ModelDims` with inits "random" and "zero").
        prefix_length: P, the number of infix positions.
        separator: the separator's token ids (`separator_ids(tokenizer)`); the infix goes right
            before their first occurrence in each row.
        **kw: as `PrefixTuning` (init, init_text, tokenizer, init_std, seed); reparam "none".

    Shapes: as PrefixTuning, `flat()` [P, L * 2 * kv_dim].
    """

    method = "infix"

    def __init__(self, model, prefix_length: int = 10, *, separator, **kw):
        if kw.get("reparam", "none") != "none":
            raise ValueError("InfixTuning trains its key/values directly: leave out reparam.")
        super().__init__(model, prefix_length, **kw)
        if (
            not isinstance(separator, (list, tuple))
            or not separator
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in separator)
        ):
            raise ValueError(
                f"separator must be a non-empty list of token ids, got {separator!r}; use "
                "prefixlab.infix.separator_ids(tokenizer)."
            )
        self.separator = [int(i) for i in separator]

    @torch.no_grad()
    def materialize(self) -> InfixTuning:
        """A detached copy (no reparameterization to discard)."""
        copy = InfixTuning(self.dims, self.prefix_length, separator=self.separator, init="zero")
        copy.init, copy.base_fingerprint = self.init, self.base_fingerprint
        copy.weight = torch.nn.Parameter(self.weight.detach().clone())
        return copy

    def extra_repr(self) -> str:
        return super().extra_repr() + f", separator={self.separator}"


# -- splitting rows at the infix ---------------------------------------------------------------


def _find(row: list[int], pattern: list[int]) -> int:
    """Index of the first occurrence of `pattern` in `row`, or -1."""
    n = len(pattern)
    for i in range(len(row) - n + 1):
        if row[i : i + n] == pattern:
            return i
    return -1


def split_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, separator: list[int]):
    """Cut each row's real tokens where the infix goes (before the separator).

    Args:
        input_ids, attention_mask: [B, T]; each row's real tokens are contiguous (left or right
            padding).
    Returns:
        (starts, cuts, ends): per row, where its real tokens start, where the infix goes and
        where they end (positions in T; cuts[i] is the separator's first position).
    Raises:
        ValueError: a row without the separator, or with padding inside its tokens.
    """
    starts, cuts, ends = [], [], []
    for i in range(input_ids.shape[0]):
        real = attention_mask[i].nonzero().flatten().tolist()
        if not real or real != list(range(real[0], real[-1] + 1)):
            raise ValueError(
                f"Row {i} has padding between its tokens (or no tokens); an infix needs each "
                "row's tokens in one block, padded on the left or the right."
            )
        tokens = input_ids[i, real[0] : real[-1] + 1].tolist()
        at = _find(tokens, separator)
        if at <= 0:
            raise ValueError(
                f"Row {i} has no table before the separator {separator} (the ids of "
                f"{SEPARATOR!r}); an infix sits between the table and the text, so every row "
                "must hold format_source(mr) (prefixlab.batching)."
            )
        starts.append(real[0])
        cuts.append(real[0] + at)
        ends.append(real[-1] + 1)
    return starts, cuts, ends


def _pack(input_ids, pieces, *, left: bool):
    """Rows of different lengths -> ([B, W] ids, [B, W] mask), padded on the left or right
    (with id 0: padding is masked out)."""
    width = max(1, max(b - a for a, b in pieces))
    ids = input_ids.new_zeros((len(pieces), width))
    mask = input_ids.new_zeros((len(pieces), width))
    for i, (a, b) in enumerate(pieces):
        n = b - a
        if n:
            cols = slice(width - n, width) if left else slice(0, n)
            ids[i, cols] = input_ids[i, a:b]
            mask[i, cols] = 1
    return ids, mask


def infix_inputs(model, adapter_rows, input_ids, attention_mask, separator, repeat: int = 1):
    """The two passes' inputs: run the table, append the infix, return what the rest needs.

    Args:
        adapter_rows: [B, P, L*2*kv_dim], the infix per row.
        repeat: repeat each row's cache (for beam search / several samples per row).
    Returns:
        dict with "table_logits" [B, Lx, V] and "table" (ids, mask) of pass 1; "rest" (ids
        [B, Lr], mask [B, Lr]); "model_kwargs" for pass 2 (input_ids [B, Lr], attention_mask
        [B, Lx+P+Lr], position_ids [B, Lr], the cache); and "pieces" (starts, cuts, ends).
    """
    B, P = input_ids.shape[0], adapter_rows.shape[1]
    starts, cuts, ends = split_rows(input_ids, attention_mask, separator)
    # padding ids are masked out, so any id will do
    table_ids, table_mask = _pack(input_ids, list(zip(starts, cuts, strict=True)), left=True)
    rest_ids, rest_mask = _pack(input_ids, list(zip(cuts, ends, strict=True)), left=False)
    table_pos = (table_mask.cumsum(-1) - 1).clamp(min=0)  # the table counts from 0
    with torch.no_grad():  # the frozen model on the table: nothing trainable reads it
        out = model(input_ids=table_ids, attention_mask=table_mask, position_ids=table_pos,
                    use_cache=True)  # fmt: skip
    cache = output_cache(out)
    infix = split_key_values(adapter_rows, model_dims(model))  # L x [B, n_kv, P, D]
    pairs = []
    for layer, (k, v) in enumerate(infix):
        table_k, table_v = cache.layers[layer].keys, cache.layers[layer].values
        k = torch.cat([table_k, k.to(table_k.dtype)], dim=2)  # [B, n_kv, Lx+P, D]
        v = torch.cat([table_v, v.to(table_v.dtype)], dim=2)
        if repeat > 1:
            k, v = k.repeat_interleave(repeat, dim=0), v.repeat_interleave(repeat, dim=0)
        pairs.append((k, v))
    mask = torch.cat([table_mask, table_mask.new_ones(B, P), rest_mask], dim=1)  # [B, Lx+P+Lr]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, table_ids.shape[1] + P :]  # [B, Lr]
    kwargs = {
        "input_ids": rest_ids,
        "attention_mask": mask,
        "position_ids": positions,
        cache_kwarg(model): DynamicCache(ddp_cache_data=pairs, config=model.config),
    }
    return {
        "table_logits": out.logits,
        "table": (table_ids, table_mask),
        "rest": (rest_ids, rest_mask),
        "model_kwargs": kwargs,
        "pieces": (starts, cuts, ends),
    }


def infix_logits(input_ids, table_logits, rest_logits, pieces) -> torch.Tensor:
    """Both passes' logits back in the rows' own layout. Returns [B, T, V] (0 on padding)."""
    B, T = input_ids.shape
    V = rest_logits.shape[-1]
    Lx = table_logits.shape[1]
    rows = []
    for i, (a, c, b) in enumerate(zip(*pieces, strict=True)):
        parts = [
            rest_logits.new_zeros(a, V),
            table_logits[i, Lx - (c - a) :].to(rest_logits.dtype),  # the table, left-padded
            rest_logits[i, : b - c],  # separator and text, right-padded
            rest_logits.new_zeros(T - b, V),
        ]
        rows.append(torch.cat(parts))
    return torch.stack(rows)  # [B, T, V]
