"""Record the attention of an encoder-decoder model, its three kinds named apart.

    with record_seq2seq_attention(adapted) as cache:
        adapted(input_ids, attention_mask, labels=labels)
    cache["encoder.blocks.0.attn.hook_pattern"]        # [batch, head, source_q, P + source_k]
    cache["decoder.blocks.0.attn.hook_pattern"]        # [batch, head, target_q, P + target_k]
    cache["decoder.blocks.0.cross_attn.hook_pattern"]  # [batch, head, target_q, P + source_k]
    cache.prefix_keys("cross")                         # P: the virtual keys come first
    seq2seq_prefix_mass(adapted, batch)                # part -> [layer, head] mass on its prefix

`prefix_keys(part)` is the number of virtual key positions at the start of that part's key
axis: P for a part with a prefix; for prompt tuning P in the encoder and in the cross
attention (the soft tokens are encoder positions); 0 otherwise. The recorded tensors are
what eager attention returns as `output_attentions` (the recorder switches to eager while
recording, with a warning, and back on exit).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from prefixlab.seq2seq import PARTS, check_parts
from prefixlab.seq2seq_adapted import Seq2SeqAdaptedModel, seq2seq_attention_modules

HOOK_NAMES = {
    "encoder": "encoder.blocks.{layer}.attn.hook_pattern",
    "decoder": "decoder.blocks.{layer}.attn.hook_pattern",
    "cross": "decoder.blocks.{layer}.cross_attn.hook_pattern",
}


def seq2seq_hook_name(part: str, layer: int) -> str:
    """The name under which `part`'s attention in `layer` is recorded."""
    return HOOK_NAMES[part].format(layer=layer)


class Seq2SeqAttentionCache(Mapping):
    """Attention probabilities by hook name; each [batch, head, query_pos, key_pos].

    Indexing by name returns forward call 0 (generate makes one call per new token; the
    encoder runs once); `pattern(part, layer, call)` reaches later calls.
    """

    def __init__(self, names: list[str], prefix_keys: dict[str, int]):
        self._records: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        self._prefix_keys = prefix_keys

    def prefix_keys(self, part: str) -> int:
        """Virtual key positions at the start of `part`'s key axis (see module doc)."""
        return self._prefix_keys[part]

    def hook_names(self) -> list[str]:
        return list(self._records)

    def pattern(self, part: str, layer: int, call: int = 0) -> torch.Tensor:
        records = self._records.get(seq2seq_hook_name(part, layer)) if part in HOOK_NAMES else None
        if records is None:
            raise KeyError(f"No {part!r} layer {layer} was recorded; names: {self.hook_names()}.")
        if call >= len(records):
            raise KeyError(f"{len(records)} calls recorded for {part!r} layer {layer}.")
        return records[call]

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._records or not self._records[name]:
            raise KeyError(f"{name!r} holds nothing; names look like {self.hook_names()[:1]}.")
        return self._records[name][0]

    def __iter__(self) -> Iterator[str]:
        return (name for name, records in self._records.items() if records)

    def __len__(self) -> int:
        return sum(1 for records in self._records.values() if records)


@contextmanager
def record_seq2seq_attention(model: nn.Module, parts=PARTS) -> Iterator[Seq2SeqAttentionCache]:
    """Record encoder, decoder and cross attention probabilities inside the block.

    Args:
        model: a `Seq2SeqAdaptedModel` (P read from its adapter) or a transformers
            encoder-decoder model.
        parts: which attentions to record, from ("encoder", "decoder", "cross").
    Yields:
        a `Seq2SeqAttentionCache`.
    """
    parts = check_parts(parts)
    base = model.model if isinstance(model, Seq2SeqAdaptedModel) else model
    modules = seq2seq_attention_modules(base)
    prefix_keys = dict.fromkeys(PARTS, 0)
    adapter = getattr(model, "adapter", None)
    if adapter is not None:
        for part in PARTS:
            fed = part in adapter.parts or (adapter.method == "prompt" and part == "cross")
            prefix_keys[part] = adapter.prefix_length if fed else 0
    names = [seq2seq_hook_name(p, layer) for p in parts for layer in range(len(modules[p]))]
    cache = Seq2SeqAttentionCache(names, prefix_keys)
    original = getattr(base.config, "_attn_implementation", None)
    switched, handles = False, []
    try:
        if original not in (None, "eager"):
            warnings.warn(
                f"record_seq2seq_attention: {original!r} attention returns no probabilities; "
                "using 'eager' while recording (restored on exit).",
                stacklevel=3,
            )
            base.set_attn_implementation("eager")
            switched = True
        for part in parts:
            for layer, module in enumerate(modules[part]):
                records = cache._records[seq2seq_hook_name(part, layer)]
                handles.append(module.register_forward_hook(_recorder(records, part, layer)))
        yield cache
    finally:
        for handle in handles:
            handle.remove()
        if switched:
            base.set_attn_implementation(original)


def _recorder(records: list, part: str, layer: int):
    def hook(module, args, output):
        weights = (
            output[-1] if isinstance(output, tuple) else None
        )  # BART (out, w); T5 (out, bias, w)
        if weights is None:
            raise RuntimeError(
                f"The {part} attention of layer {layer} returned no probabilities; load the "
                "model with attn_implementation='eager'."
            )
        records.append(weights.detach().clone())

    return hook


@torch.no_grad()
def seq2seq_prefix_mass(model: nn.Module, batch: Mapping, parts=PARTS) -> dict[str, torch.Tensor]:
    """Share of each attention spent on its own prefix, per layer and head, over real queries.

    Args:
        model: a `Seq2SeqAdaptedModel` (a part without prefix gives zeros).
        batch: `encode_seq2seq` output: input_ids and attention_mask [B, S], labels and
            decoder_attention_mask [B, T]. The encoder's queries are the real source tokens,
            the decoder's and the cross-attention's the real target tokens.
        parts: which attentions, from ("encoder", "decoder", "cross").
    Returns:
        part -> [layers, heads], each in [0, 1] (`attention.prefix_attention_mass` per layer).
    """
    from prefixlab.attention import prefix_attention_mass

    missing = [k for k in ("input_ids", "attention_mask", "labels", "decoder_attention_mask")
               if k not in batch]  # fmt: skip
    if missing:
        raise ValueError(f"batch needs {missing}: pass encode_seq2seq(tokenizer, pairs).")
    queries = {"encoder": batch["attention_mask"], "decoder": batch["decoder_attention_mask"],
               "cross": batch["decoder_attention_mask"]}  # fmt: skip
    with record_seq2seq_attention(model, parts) as cache:
        model(**batch)
    out = {}
    for part in check_parts(parts):
        names = set(cache.hook_names())
        layers = sum(seq2seq_hook_name(part, layer) in names for layer in range(len(names)))
        out[part] = torch.stack([
            prefix_attention_mass(cache.pattern(part, layer), cache.prefix_keys(part), queries[part])
            for layer in range(layers)
        ])  # fmt: skip
    return out
