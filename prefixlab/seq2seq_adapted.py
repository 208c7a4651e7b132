"""Feed a Seq2SeqPrefixTuning or Seq2SeqPromptTuning to a frozen encoder-decoder model.

How each part of a prefix reaches its attention (nothing in the model is edited):

- "decoder": as for decoder-only models, a cache holding the prefix as P past positions, so
  target tokens are numbered from P (BART's learned positions, T5's relative bias) and the
  decoder attention mask gets P ones on the left. This is exactly what PEFT does.
- "cross": the cross-attention half of the same `EncoderDecoderCache`, pre-filled with the
  prefix and marked "not yet computed": the first decoder pass appends the keys and values
  of the encoder output after it, so every decoder token attends to [prefix; source].
- "encoder": encoders take no cache, so a forward pre-hook on each encoder self-attention
  hands it a stand-in cache that puts the prefix's keys and values in front of the layer's
  own (T5's relative bias then places the prefix at positions 0..P-1 before the source;
  BART's learned positions of the source do not move).

The hooks also widen the encoder and cross attention masks by P visible key positions; they
exist only inside `attached()`, so the bare model is untouched outside a call.

Prompt tuning puts P soft tokens before the encoder input (and P ones before its mask); the
decoder and the logits are as without adapter: [B, T_dec, V].
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import Seq2SeqLMOutput

from prefixlab.adapted import check_adapter_fits
from prefixlab.loading import cache_kwarg
from prefixlab.seq2seq import (
    Seq2SeqDims,
    Seq2SeqPrefixTuning,
    Seq2SeqPromptTuning,
    seq2seq_dims,
)

SELF_ATTENTION_NAMES = ("self_attn", "SelfAttention")  # BART, T5
CROSS_ATTENTION_NAMES = ("encoder_attn", "EncDecAttention")
MASK_KWARGS = ("attention_mask", "mask")  # how BART and T5 layers pass the mask


def _collect(stack: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    return [m for n, m in stack.named_modules() if n.rsplit(".", 1)[-1] in names]


def seq2seq_attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The attention modules of an encoder-decoder model, per part, in layer order.

    Returns:
        {"encoder": encoder self-attentions, "decoder": decoder self-attentions,
         "cross": decoder cross-attentions}, each one module per layer.
    Raises:
        ValueError: when the layout is not BART- or T5-like (module names differ).
    """
    model = getattr(model, "model", model) if isinstance(model, Seq2SeqAdaptedModel) else model
    dims = seq2seq_dims(model)
    encoder, decoder = model.get_encoder(), model.get_decoder()
    found = {
        "encoder": _collect(encoder, SELF_ATTENTION_NAMES),
        "decoder": _collect(decoder, SELF_ATTENTION_NAMES),
        "cross": _collect(decoder, CROSS_ATTENTION_NAMES),
    }
    for part, modules in found.items():
        if len(modules) != dims.n_layers(part):
            raise ValueError(
                f"Found {len(modules)} {part} attention modules in {type(model).__name__} for "
                f"{dims.n_layers(part)} layers; prefixlab.seq2seq knows BART- and T5-style "
                f"layouts (modules named {SELF_ATTENTION_NAMES} and {CROSS_ATTENTION_NAMES})."
            )
    return found


class _PrefixedKeyValues:
    """Stands in for a cache in one encoder self-attention call.

    The attention module asks a cache for its past length (T5: to place the relative bias) and
    calls `update` with its own keys and values; the answer puts the prefix in front.
    key, value: [1, H, P, D], expanded to the batch of the call.
    """

    def __init__(self, key: torch.Tensor, value: torch.Tensor):
        self.key, self.value = key, value

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.key.shape[-2]

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        B = key_states.shape[0]  # key_states: [B, H, T, D]
        key = self.key.expand(B, -1, -1, -1).to(key_states.dtype)
        value = self.value.expand(B, -1, -1, -1).to(value_states.dtype)
        return torch.cat([key, key_states], dim=-2), torch.cat([value, value_states], dim=-2)


def _widen_mask(kwargs: dict, P: int) -> None:
    """Give a 4-D attention mask [B, 1, Q, K] P visible key positions on the left, in place."""
    for name in MASK_KWARGS:
        mask = kwargs.get(name)
        if isinstance(mask, torch.Tensor):
            shape = (*mask.shape[:-1], P)
            pad = mask.new_ones(shape) if mask.dtype == torch.bool else mask.new_zeros(shape)
            kwargs[name] = torch.cat([pad, mask], dim=-1)


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of decoder logits [B, T, V] against labels [B, T] (-100 ignored).

    No shift: the decoder input is the labels shifted right, so position t predicts labels[t].
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels must be [batch, target length] = {list(logits.shape[:2])}, got "
            f"{list(labels.shape)}; put -100 where a token should not be scored."
        )
    targets = labels.reshape(-1).to(logits.device)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=-100)


class Seq2SeqAdaptedModel(nn.Module):
    """A frozen encoder-decoder model plus one adapter (prefix, prompt, or None).

    `forward` returns a Seq2SeqLMOutput whose `logits` are [B, T_dec, V] and whose `loss` is
    the mean cross-entropy over labels != -100; `generate` returns decoder token ids.
    """

    def __init__(self, model: nn.Module, adapter: nn.Module | None = None):
        super().__init__()
        self.dims: Seq2SeqDims = seq2seq_dims(model)
        if adapter is not None:
            if not isinstance(adapter, (Seq2SeqPrefixTuning, Seq2SeqPromptTuning)):
                raise ValueError(
                    "adapter must be a Seq2SeqPrefixTuning, a Seq2SeqPromptTuning or None; got "
                    f"{type(adapter).__name__} (decoder-only adapters go with AdaptedModel)."
                )
            _check_compatible(model, adapter)
        self.model = model
        self.adapter = adapter
        self._attention = seq2seq_attention_modules(model)  # plain dict: not re-registered

    @property
    def prefix_length(self) -> int:
        return 0 if self.adapter is None else self.adapter.prefix_length

    def _has(self, part: str) -> bool:
        return (
            self.adapter is not None
            and self.adapter.method == "prefix"
            and part in self.adapter.parts
        )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- building the model inputs -------------------------------------------------------
    def encoder_inputs(self, input_ids, attention_mask=None) -> dict:
        """input_ids [B, S] and mask [B, S] -> the encoder's keyword arguments.

        Prompt tuning: inputs_embeds [B, P+S, d] and attention_mask [B, P+S]; otherwise as given.
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a LongTensor [batch, source length].")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must have the shape of input_ids.")
        B, S = input_ids.shape
        if self.adapter is None or self.adapter.method != "prompt":
            self._check_positions("source", S, 0)
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        P = self.prefix_length
        self._check_positions("source", S, P)
        embeds = self.model.get_input_embeddings()(input_ids)  # [B, S, d]
        soft = self.adapter(B).to(embeds.dtype)  # [B, P, d]
        mask = torch.cat([attention_mask.new_ones(B, P), attention_mask], dim=1)
        return {"inputs_embeds": torch.cat([soft, embeds], dim=1), "attention_mask": mask}

    def _check_positions(self, what: str, length: int, P: int) -> None:
        limit = self.dims.n_positions
        if limit and P + length > limit:
            raise ValueError(
                f"Prefix ({P}) plus {what} ({length}) is {P + length} positions, more than the "
                f"model's {limit}. Shorten the {what} or use a smaller prefix_length."
            )

    def decoder_cache(self, batch_size: int) -> EncoderDecoderCache | None:
        """A fresh cache holding the decoder and cross prefixes for `batch_size` rows, or None.

        Self-attention half: L pairs [B, H, P, D] (empty without a "decoder" part). Cross half:
        the same for "cross", marked not computed, so the first pass appends the encoder's keys.
        """
        if not (self._has("decoder") or self._has("cross")):
            return None
        halves = []
        for part in ("decoder", "cross"):
            pairs = self.adapter.key_values(part, batch_size) if self._has(part) else None
            halves.append(DynamicCache(ddp_cache_data=pairs) if pairs else DynamicCache())
        cache = EncoderDecoderCache(*halves)
        for layer in range(self.dims.n_decoder_layers):
            cache.is_updated[layer] = False
        return cache

    @contextmanager
    def attached(self):
        """Inside the block, the encoder and cross attentions see the prefix (see module doc)."""
        handles = []
        P = self.prefix_length
        try:
            if self._has("encoder"):
                pairs = self.adapter.key_values("encoder", 1)  # once per call: one MLP pass
                for layer, module in enumerate(self._attention["encoder"]):
                    handles.append(
                        module.register_forward_pre_hook(
                            _encoder_hook(pairs[layer], P), with_kwargs=True
                        )
                    )
            if self._has("cross"):
                for module in self._attention["cross"]:
                    handles.append(
                        module.register_forward_pre_hook(_cross_hook(P), with_kwargs=True)
                    )
            yield self
        finally:
            for handle in handles:
                handle.remove()

    # -- forward and generate -----------------------------------------------------------
    def forward(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """Loss and logits of the target tokens.

        Args:
            input_ids: [B, S] source; attention_mask: [B, S] (1 real, 0 padding) or None.
            decoder_input_ids: [B, T] target input; None derives it from labels (shifted
                right, as the model does).
            decoder_attention_mask: [B, T] or None.
            labels: [B, T], -100 where no loss.
            **kwargs: passed on to the model (e.g. output_attentions=True).
        Returns:
            Seq2SeqLMOutput with logits [B, T, V], loss (scalar or None) and, when asked, the
            attentions (prompt tuning: the encoder's include the P soft positions).
        """
        inputs = self.encoder_inputs(input_ids, attention_mask)
        B = input_ids.shape[0]
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("Pass decoder_input_ids or labels (the target tokens).")
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        if decoder_input_ids.dim() != 2 or decoder_input_ids.shape[0] != B:
            raise ValueError(
                f"decoder_input_ids must be [batch={B}, target length], got "
                f"{list(decoder_input_ids.shape)}."
            )
        if labels is not None and labels.shape != decoder_input_ids.shape:
            raise ValueError(
                f"labels must have the shape of decoder_input_ids {list(decoder_input_ids.shape)}, "
                f"got {list(labels.shape)}."
            )
        P_dec = self.prefix_length if self._has("decoder") else 0
        self._check_positions("target", decoder_input_ids.shape[1], P_dec)
        if decoder_attention_mask is not None:
            if decoder_attention_mask.shape != decoder_input_ids.shape:
                raise ValueError("decoder_attention_mask must have the shape of decoder_input_ids.")
            if P_dec:
                ones = decoder_attention_mask.new_ones(B, P_dec)
                decoder_attention_mask = torch.cat([ones, decoder_attention_mask], dim=1)
        cache = self.decoder_cache(B)
        if cache is not None:
            inputs[cache_kwarg(self.model)] = cache
        with self.attached():
            out = self.model(
                **inputs,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                use_cache=cache is not None,
                **kwargs,
            )
        loss = None if labels is None else seq2seq_loss(out.logits, labels)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=out.logits,
            encoder_attentions=out.encoder_attentions,
            decoder_attentions=out.decoder_attentions,
            cross_attentions=out.cross_attentions,
        )

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, **generate_kwargs):
        """Generate targets with the adapter attached: greedy, sampling or beam search.

        Returns:
            LongTensor [B * num_return_sequences, 1 + new]: the decoder start token, then the
            new tokens (as the model's own `generate` for encoder-decoder models).
        """
        new_tokens = generate_kwargs.get("max_new_tokens")
        if new_tokens is None:
            new_tokens = getattr(
                getattr(self.model, "generation_config", None), "max_new_tokens", None
            )
        if new_tokens is not None:
            if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
                raise ValueError(f"max_new_tokens must be an int >= 1, got {new_tokens!r}.")
            self._check_positions(
                "max_new_tokens", new_tokens, self.prefix_length if self._has("decoder") else 0
            )
        inputs = self.encoder_inputs(input_ids, attention_mask)
        repeat = max(
            generate_kwargs.get("num_beams", 1) or 1,
            generate_kwargs.get("num_return_sequences", 1) or 1,
        )
        cache = self.decoder_cache(input_ids.shape[0] * repeat)
        if cache is not None:
            inputs[cache_kwarg(self.model)] = cache
        with self.attached():
            return self.model.generate(**inputs, **generate_kwargs)


def _encoder_hook(pair: tuple[torch.Tensor, torch.Tensor], P: int):
    key, value = pair  # [1, H, P, D]

    def hook(module, args, kwargs):
        kwargs[cache_kwarg(module)] = _PrefixedKeyValues(key, value)
        _widen_mask(kwargs, P)
        return args, kwargs

    return hook


def _cross_hook(P: int):
    def hook(module, args, kwargs):
        _widen_mask(kwargs, P)  # the keys come from the pre-filled cross-attention cache
        return args, kwargs

    return hook


def _check_compatible(model: nn.Module, adapter: nn.Module) -> None:
    """Fail early, naming the mismatch, when an adapter was built for another model."""
    fields = ("n_encoder_layers", "n_decoder_layers", "n_encoder_heads", "n_decoder_heads",
              "encoder_head_dim", "decoder_head_dim", "d_model")  # fmt: skip
    check_adapter_fits(model, adapter, seq2seq_dims(model), adapter.dims, fields)
