"""What attention does with a prefix: pure functions on recorded attention probabilities.

Every function here takes probabilities as recorded by `prefixlab.hooks.record_attention`:

    pattern: [batch, head, query_pos, key_pos]            one layer, or
    stacked: [layer, batch, head, query_pos, key_pos]     several (`AttentionCache.stacked()`)

and keeps whatever leading layer axis it is given: a 4-D pattern gives per-head results [H],
a stacked one gives [L, H].

The key axis always starts with the P virtual positions, then the T input tokens (padding
included, wherever the tokenizer put it):

    keys:    [P prefix slots][T tokens]
    queries: [T tokens]                  prefix tuning, or no adapter
             [P soft tokens][T tokens]   prompt tuning (the soft tokens are inputs, so queries too)

Averages run over *real* queries only, selected by a `query_mask` [batch, query_pos] (1 real,
0 skipped); `real_query_mask` builds it from the tokenizer's attention mask for either layout.
Nothing here runs a model, so every function can be checked on hand-made tensors.
"""

from __future__ import annotations

import torch

from prefixlab._validate import require_int


def _check_pattern(pattern: torch.Tensor, prefix_length: int = 0) -> None:
    if not isinstance(pattern, torch.Tensor) or pattern.dim() not in (4, 5):
        shape = tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern)
        raise ValueError(
            "Expected attention probabilities [batch, head, query_pos, key_pos] or stacked "
            f"[layer, batch, head, query_pos, key_pos]; got {shape}. Use cache['pattern', l] "
            "or cache.stacked()."
        )
    require_int("prefix_length", prefix_length, low=0, hint="0 for a model without adapter.")
    if not 0 <= prefix_length <= pattern.shape[-1]:
        raise ValueError(
            f"prefix_length={prefix_length} does not fit the key axis of {pattern.shape[-1]} "
            "positions; pass the adapter's prefix_length (0 for a model without adapter)."
        )


def _check_query_mask(pattern: torch.Tensor, query_mask: torch.Tensor | None) -> None:
    if query_mask is None:
        return
    want = (pattern.shape[-4], pattern.shape[-2])
    if tuple(query_mask.shape) != want:
        raise ValueError(
            f"query_mask must be [batch, query_pos] = {list(want)}, got {list(query_mask.shape)}. "
            "Build it with real_query_mask(attention_mask, n_queries)."
        )


def real_query_mask(attention_mask: torch.Tensor, n_queries: int) -> torch.Tensor:
    """Which query rows are real input tokens. Returns [batch, n_queries] (same dtype as the mask).

    The last T query rows are the input tokens (T = attention_mask.shape[1]); any rows before
    them are soft-prompt positions (prompt tuning) and are marked 0, like padding.

    Args:
        attention_mask: [batch, T], 1 for real tokens and 0 for padding (the tokenizer's mask).
        n_queries: length of the query axis, pattern.shape[-2] (T, or P + T for prompt tuning).
    """
    B, T = attention_mask.shape
    if n_queries < T:
        raise ValueError(
            f"The pattern has {n_queries} query rows but attention_mask has {T} tokens; pass the "
            "mask of the batch that was recorded (for a generate step, pass query_mask=None)."
        )
    virtual = attention_mask.new_zeros(B, n_queries - T)  # soft-prompt rows are not real queries
    return torch.cat([virtual, attention_mask], dim=1)


def mean_over_real_queries(values: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Average a per-query quantity over the batch and the real queries, per head.

    Args:
        values: [..., batch, head, query_pos].
        query_mask: [batch, query_pos] (1 real, 0 skipped), or None to average over all rows.
    Returns:
        [..., head].
    """
    if query_mask is None:
        return values.mean(dim=(-3, -1))
    weights = query_mask.to(device=values.device, dtype=values.dtype)[:, None, :]  # [B, 1, Q]
    count = weights.sum()
    if count == 0:
        raise ValueError("query_mask selects no query row: every position is padding.")
    kept = torch.where(weights > 0, values, torch.zeros_like(values))  # drops NaNs in skipped rows
    return (kept * weights).sum(dim=(-3, -1)) / count


def prefix_mass_per_token(
    pattern: torch.Tensor, prefix_length: int, query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention mass each query puts on the P prefix positions (all slots together).

    Args:
        pattern: [batch, head, query_pos, key_pos] or stacked [layer, batch, ...].
        prefix_length: P, the number of virtual key positions at the start of the key axis.
        query_mask: optional [batch, query_pos]; rows that are not real queries become NaN,
            so that plots leave them blank and `torch.nanmean` skips them.
    Returns:
        [..., batch, head, query_pos], each in [0, 1]; zeros when P is 0.
    """
    _check_pattern(pattern, prefix_length)
    _check_query_mask(pattern, query_mask)
    mass = pattern[..., :prefix_length].sum(dim=-1)  # [..., B, H, Q]
    if query_mask is not None:
        real = query_mask.to(mass.device)[:, None, :] > 0  # [B, 1, Q]
        mass = torch.where(real, mass, torch.full_like(mass, float("nan")))
    return mass


def prefix_attention_mass(
    pattern: torch.Tensor, prefix_length: int, query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of attention spent on the prefix, per head: mean over the batch and real queries.

    What is left, 1 - mass, goes to the input tokens (the row of a softmax sums to 1).

    Args:
        pattern: [batch, head, query_pos, key_pos] or stacked [layer, batch, ...].
        prefix_length: P (0 for a model without adapter gives zeros).
        query_mask: [batch, query_pos], 1 for real-token queries; None counts every row.
    Returns:
        [head] for one layer, [layer, head] for a stacked pattern.
    """
    _check_pattern(pattern, prefix_length)
    _check_query_mask(pattern, query_mask)
    mass = pattern[..., :prefix_length].sum(dim=-1)  # [..., B, H, Q]
    return mean_over_real_queries(mass, query_mask)


def prefix_slot_mass(
    pattern: torch.Tensor, prefix_length: int, query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention on each prefix slot separately, per head (mean over the batch and real queries).

    Returns:
        [..., head, P]; summing over the last axis gives `prefix_attention_mass`.
    """
    _check_pattern(pattern, prefix_length)
    _check_query_mask(pattern, query_mask)
    slots = pattern[..., :prefix_length].movedim(-1, 0)  # [P, ..., B, H, Q]
    return mean_over_real_queries(slots, query_mask).movedim(0, -1)  # [..., H, P]


def top_prefix_slot(
    pattern: torch.Tensor, prefix_length: int, query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The prefix slot each head attends to most (on average over real queries).

    Returns:
        LongTensor [head] or [layer, head] with slot indices 0..P-1; -1 everywhere when P is 0
        (a model without adapter has no slot to pick).
    """
    slots = prefix_slot_mass(pattern, prefix_length, query_mask)  # [..., H, P]
    if prefix_length == 0:
        return torch.full(slots.shape[:-1], -1, dtype=torch.long, device=slots.device)
    return slots.argmax(dim=-1)


def sink_attention_mass(
    pattern: torch.Tensor,
    prefix_length: int,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention on the first real input token (the "attention sink"), per head, for contrast.

    Trained models often park attention on the first token; a prefix can take over that role.
    The first real token is the first non-padding key after the P prefix positions, so left
    padding moves it right: key index P + (index of the first 1 in attention_mask).

    Args:
        pattern: [batch, head, query_pos, key_pos] or stacked [layer, batch, ...].
        prefix_length: P.
        attention_mask: [batch, T] of the input tokens (no prefix); None means no padding.
        query_mask: [batch, query_pos] of real queries (see `real_query_mask`), or None.
    Returns:
        [head] or [layer, head].
    """
    _check_pattern(pattern, prefix_length)
    _check_query_mask(pattern, query_mask)
    B = pattern.shape[-4]
    if attention_mask is None:
        first = torch.zeros(B, dtype=torch.long)
    else:
        if attention_mask.dim() != 2 or attention_mask.shape[0] != B:
            raise ValueError(
                f"attention_mask must be [batch={B}, T] (the tokenizer's mask, without the "
                f"prefix), got {list(attention_mask.shape)}."
            )
        first = (attention_mask > 0).long().argmax(dim=-1)  # first real token of each row
    key_index = (prefix_length + first).to(pattern.device)  # [B]
    if (key_index >= pattern.shape[-1]).any():
        raise ValueError("attention_mask is longer than the recorded key axis.")
    index = key_index.view(B, 1, 1, 1).expand(*pattern.shape[:-1], 1)  # [..., B, H, Q, 1]
    sink = pattern.gather(-1, index).squeeze(-1)  # [..., B, H, Q]
    return mean_over_real_queries(sink, query_mask)


def attention_entropy(
    pattern: torch.Tensor, query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Entropy of each attention row in nats, averaged per head over the batch and real queries.

    0 means a head looks at a single position; log(n) means uniform over n positions.

    Returns:
        [head] or [layer, head].
    """
    _check_pattern(pattern)
    _check_query_mask(pattern, query_mask)
    entropy = torch.special.entr(pattern).sum(dim=-1)  # [..., B, H, Q]; 0 log 0 counts as 0
    return mean_over_real_queries(entropy, query_mask)
