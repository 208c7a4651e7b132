"""Record attention probabilities while a model runs, under stable TransformerLens-style names.

    with record_attention(adapted) as cache:
        adapted(input_ids, attention_mask)
    cache["pattern", 0]                     # [batch, head, query_pos, key_pos], layer 0
    cache["blocks.0.attn.hook_pattern"]     # the same tensor
    cache.stacked()                         # [layer, batch, head, query_pos, key_pos]

The key axis holds P + T positions, the P virtual ones first (prefix tuning: the prefix keys;
prompt tuning: the soft tokens); `cache.prefix_length` is P. Pure analysis of the recorded
tensors lives in `prefixlab.attention`; `attention_report` runs both for one batch.

Under transformers 5's default "sdpa" attention no probabilities exist, so the recorder
switches the model to "eager" for the duration (with a one-line warning) and switches it back
on exit. The recorded tensors are exactly what `output_attentions=True` returns in eager mode.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from prefixlab.adapted import AdaptedModel
from prefixlab.attention import (
    attention_entropy,
    prefix_attention_mass,
    real_query_mask,
    sink_attention_mass,
    top_prefix_slot,
)

PATTERN_HOOK = "blocks.{layer}.attn.hook_pattern"
_PATTERN_NAME = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")


def pattern_hook_name(layer: int) -> str:
    """The name under which layer `layer`'s attention probabilities are recorded."""
    return PATTERN_HOOK.format(layer=layer)


def _inner_model(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, AdaptedModel) else model


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every layer, in layer order.

    Found generically: modules whose class name ends in "Attention" and that carry a
    `layer_idx` (GPT-2: `transformer.h[i].attn`; Llama, Qwen, Mistral: `model.layers[i].self_attn`).
    Cross-attention modules are skipped.

    Args:
        model: a transformers causal LM or an `AdaptedModel`.
    """
    found: dict[int, nn.Module] = {}
    for name, module in _inner_model(model).named_modules():
        layer = getattr(module, "layer_idx", None)
        if not type(module).__name__.endswith("Attention") or not isinstance(layer, int):
            continue
        if getattr(module, "is_cross_attention", False) or "cross" in name.rsplit(".", 1)[-1]:
            continue
        if layer in found:
            raise ValueError(
                f"Two attention modules claim layer {layer} ({name} and an earlier one); "
                "record_attention supports decoder-only models with one self-attention per layer."
            )
        found[layer] = module
    if not found or sorted(found) != list(range(len(found))):
        raise ValueError(
            f"Could not find one self-attention module per layer in {type(model).__name__} "
            f"(found layers {sorted(found)}). record_attention expects a transformers "
            "decoder-only model such as GPT-2 or Llama."
        )
    return [found[layer] for layer in range(len(found))]


class AttentionCache(Mapping):
    """Attention probabilities recorded by `record_attention`, by hook name.

    A mapping from `blocks.{l}.attn.hook_pattern` to a [batch, head, query_pos, key_pos] tensor,
    also indexable as `cache["pattern", l]` (negative l counts from the last layer).

    Each forward call appends one pattern per recorded layer; `generate` makes one call per new
    token. Indexing returns call 0 (the only call of a forward pass; the prefill, which sees the
    whole prompt, during generate). `cache.calls[i]` holds every layer of call i, and
    `cache.pattern(l, call=i)` a single one.

    Attributes:
        layers: the recorded layer indices, in order (the first axis of `stacked()`).
        n_layers: the model's number of layers.
        prefix_length: P, the number of virtual key positions at the start of the key axis
            (set from the AdaptedModel; 0 without adapter).
        method: "prefix", "prompt" or None (no adapter, or a plain model).
    """

    def __init__(
        self,
        layers: list[int],
        n_layers: int,
        prefix_length: int = 0,
        method: str | None = None,
    ):
        self.layers = list(layers)
        self.n_layers = n_layers
        self.prefix_length = prefix_length
        self.method = method
        self._records: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}

    def _append(self, layer: int, pattern: torch.Tensor) -> None:
        self._records[layer].append(pattern)

    def hook_names(self) -> list[str]:
        """Names of the hooked layers, in layer order (whether or not anything ran yet)."""
        return [pattern_hook_name(layer) for layer in self.layers]

    @property
    def n_calls(self) -> int:
        """Number of complete forward calls recorded."""
        return min((len(r) for r in self._records.values()), default=0)

    @property
    def calls(self) -> list[dict[str, torch.Tensor]]:
        """One dict per forward call, hook name -> [batch, head, query_pos, key_pos]."""
        return [
            {pattern_hook_name(layer): self._records[layer][i] for layer in self.layers}
            for i in range(self.n_calls)
        ]

    def _layer(self, layer: int) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise KeyError(f"layer must be an int, got {layer!r}.")
        resolved = layer + self.n_layers if layer < 0 else layer
        if resolved not in self._records:
            raise KeyError(
                f"Layer {layer} was not recorded; recorded layers are {self.layers}. Pass "
                "layers=None (all) or include it in record_attention(..., layers=[...])."
            )
        return resolved

    def pattern(self, layer: int, call: int = 0) -> torch.Tensor:
        """Layer `layer`'s probabilities in forward call `call`. [batch, head, query_pos, key_pos]."""
        records = self._records[self._layer(layer)]
        if not records:
            raise KeyError(
                "Nothing recorded yet: run a forward pass or generate inside `with "
                "record_attention(model) as cache:`."
            )
        return records[call]

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):
            if len(key) != 2 or key[0] != "pattern":
                raise KeyError(f"Use cache['pattern', layer]; got {key!r}.")
            return self.pattern(key[1])
        match = _PATTERN_NAME.match(key) if isinstance(key, str) else None
        if match is None:
            raise KeyError(
                f"{key!r} is not a hook name; names look like {pattern_hook_name(0)!r} "
                f"(see cache.hook_names())."
            )
        layer = int(match.group(1))
        if layer not in self._records or not self._records[layer]:
            raise KeyError(f"{key!r} holds nothing; recorded: {list(self)}.")
        return self._records[layer][0]

    def __iter__(self) -> Iterator[str]:
        return (pattern_hook_name(layer) for layer in self.layers if self._records[layer])

    def __len__(self) -> int:
        return sum(1 for layer in self.layers if self._records[layer])

    def stacked(self, call: int = 0) -> torch.Tensor:
        """All recorded layers of call `call` in one tensor. [layer, batch, head, query_pos, key_pos].

        The layer axis follows `self.layers` (all layers unless `layers=` selected some).
        """
        if call >= self.n_calls:
            raise IndexError(f"Call {call} was not recorded ({self.n_calls} calls recorded).")
        return torch.stack([self._records[layer][call] for layer in self.layers])

    def clear(self) -> None:
        """Drop everything recorded so far (the hooks, if still active, keep recording)."""
        for records in self._records.values():
            records.clear()

    def __repr__(self) -> str:
        return (
            f"AttentionCache(layers={self.layers}, calls={self.n_calls}, "
            f"prefix_length={self.prefix_length}, method={self.method!r})"
        )


def _resolve_layers(layers, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, Iterable):
        raise ValueError(f"layers must be None, an int or a list of ints, got {layers!r}.")
    resolved = []
    for layer in layers:
        if (
            isinstance(layer, bool)
            or not isinstance(layer, int)
            or not -n_layers <= layer < n_layers
        ):
            raise ValueError(
                f"layers must be ints in 0..{n_layers - 1} (or negative), got {layer!r}."
            )
        resolved.append(layer % n_layers)
    return sorted(set(resolved))


@contextmanager
def record_attention(
    model: nn.Module, layers: int | Iterable[int] | None = None, *, prefix_length: int | None = None
) -> Iterator[AttentionCache]:
    """Record the attention probabilities of every (or the selected) layer while inside the block.

    Works for any forward or generate call on the model. The hooks are removed and the
    attention implementation restored on exit, also when the block raises.

    Args:
        model: an `AdaptedModel` (P and the method are read from its adapter) or a
            transformers causal LM.
        layers: None for all layers, or an int / list of layer indices.
        prefix_length: overrides P (for a plain model that you feed a prefix yourself).
    Yields:
        an `AttentionCache`; `cache["pattern", l]` is [batch, head, query_pos, key_pos].
    """
    base = _inner_model(model)
    modules = attention_modules(base)
    cache = AttentionCache(_resolve_layers(layers, len(modules)), len(modules))
    if isinstance(model, AdaptedModel):
        cache.prefix_length = model.prefix_length
        cache.method = None if model.adapter is None else model.adapter.method
    if prefix_length is not None:
        cache.prefix_length = prefix_length

    handles = []
    with eager_attention(base, stacklevel=5):
        try:
            for layer in cache.layers:
                handles.append(modules[layer].register_forward_hook(_recorder(cache, layer)))
            yield cache
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def eager_attention(model: nn.Module, *, stacklevel: int = 3) -> Iterator[None]:
    """Run `model` (a transformers model, or an AdaptedModel) with eager attention inside the
    block, which returns probabilities and takes an additive float mask; a one-line warning
    when it had to switch, and the original implementation restored on exit."""
    base = _inner_model(model)
    config = getattr(base, "config", None)
    original = getattr(config, "_attn_implementation", None)
    switched = False
    try:
        if original not in (None, "eager"):
            if not hasattr(base, "set_attn_implementation"):
                raise ValueError(
                    f"The model uses attn_implementation={original!r}, which returns no attention "
                    "probabilities, and cannot be switched; load it with attn_implementation='eager'."
                )
            warnings.warn(
                f"{original!r} attention returns no probabilities; using 'eager' inside this "
                "block (restored on exit).",
                stacklevel=stacklevel,  # past contextlib: points at the caller's `with` line
            )
            base.set_attn_implementation("eager")
            switched = True
            if base.config._attn_implementation != "eager":
                raise ValueError(
                    f"Could not switch {type(base).__name__} to eager attention; load it with "
                    "attn_implementation='eager'."
                )
        yield
    finally:
        if switched:
            base.set_attn_implementation(original)


def _recorder(cache: AttentionCache, layer: int):
    def hook(module, args, output):
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise RuntimeError(
                f"Layer {layer}'s attention returned no probabilities (attn_implementation="
                f"{getattr(module.config, '_attn_implementation', None)!r}). Load the model with "
                "attn_implementation='eager'."
            )
        pattern = weights.detach().clone()  # [batch, head, query_pos, key_pos]
        cache._append(layer, pattern)

    return hook


@torch.no_grad()
def attention_report(
    adapted: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    task_ids=None,
):
    """Where each head looks, for one batch: a table with one row per (layer, head).

    Runs one forward pass while recording, then averages over the batch and the real input
    tokens as queries (padding and, for prompt tuning, the soft-token rows are left out).

    Args:
        adapted: an `AdaptedModel` (or a plain causal LM, treated as having no adapter).
        input_ids: [batch, T]; attention_mask: [batch, T] (1 real, 0 padding) or None.
        task_ids: one task per row when the adapter is an AdapterBank.
    Returns:
        pandas DataFrame with columns layer, head, prefix_mass (share of attention on the P
        virtual positions), sink_mass (on the first real token), entropy (nats) and
        top_prefix_slot (-1 without adapter). `df.attrs` holds method and prefix_length.
    """
    import pandas as pd

    if not isinstance(adapted, AdaptedModel):
        adapted = AdaptedModel(adapted)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    with record_attention(adapted) as cache:
        adapted(input_ids, attention_mask, task_ids=task_ids)
    stacked = cache.stacked()  # [layer, batch, head, query_pos, key_pos]
    P = cache.prefix_length
    query_mask = real_query_mask(attention_mask, stacked.shape[-2])  # [batch, query_pos]
    columns = {
        "prefix_mass": prefix_attention_mass(stacked, P, query_mask),
        "sink_mass": sink_attention_mass(stacked, P, attention_mask, query_mask),
        "entropy": attention_entropy(stacked, query_mask),
        "top_prefix_slot": top_prefix_slot(stacked, P, query_mask),
    }  # each [layer, head]
    n_layers, n_heads = columns["prefix_mass"].shape
    frame = pd.DataFrame(
        {
            "layer": [cache.layers[i] for i in range(n_layers) for _ in range(n_heads)],
            "head": list(range(n_heads)) * n_layers,
            **{name: values.flatten().cpu().numpy() for name, values in columns.items()},
        }
    )
    frame.attrs.update(method=cache.method, prefix_length=P)
    return frame
