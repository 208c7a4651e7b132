"""The glue: feed a prefix or a soft prompt to a frozen causal LM, for training and generation.

Everything that PEFT spreads over a long file lives here, in one place you can read:

- prefix tuning: the prefix becomes a fresh attention cache per call (a forward pass appends
  to a cache in place, so a cache is never reused); the attention mask gets P ones on the left.
- prompt tuning: the soft prompt is concatenated before the token embeddings; the mask gets
  P ones on the left; the P virtual positions are cut from the logits.
- infix tuning: keys and values like a prefix's, but between the table and the text; fed in
  two passes (the table fills a cache, the infix is appended, the text runs on top), see
  infix.py.
- all: position ids count only real (unpadded) positions, continuing after the P virtual
  ones, so left-padded batches see the same positions as unpadded rows. The loss is computed
  on real tokens only, so every method returns logits and loss of the same shape and meaning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutput

from prefixlab.control import ControlPrefix
from prefixlab.infix import InfixTuning, infix_inputs, infix_logits
from prefixlab.loading import cache_kwarg, model_dims
from prefixlab.prefix import PrefixTuning, split_key_values
from prefixlab.prompt import PromptTuning


class AdapterBank(nn.Module):
    """Several trained adapters of one method and one P, selected per row by a task index.

    `AdaptedModel(model, bank)(input_ids, task_ids=...)` serves rows of different tasks in
    one forward pass; row i uses adapter `task_ids[i]`.

    Args:
        adapters: a dict name -> adapter (or a list; names are then "0", "1", ...).
    """

    def __init__(self, adapters):
        super().__init__()
        if isinstance(adapters, (list, tuple)):
            adapters = {str(i): a for i, a in enumerate(adapters)}
        if not adapters:
            raise ValueError("AdapterBank needs at least one adapter.")
        methods = {a.method for a in adapters.values()}
        lengths = {a.prefix_length for a in adapters.values()}
        if len(methods) != 1:
            raise ValueError(f"All adapters in a bank must use one method; got {sorted(methods)}.")
        if len(lengths) != 1:
            raise ValueError(
                f"All adapters in a bank must have the same prefix_length; got {sorted(lengths)}."
            )
        self.names = list(adapters)
        self.adapters = nn.ModuleList(adapters.values())
        first = self.adapters[0]
        self.method, self.prefix_length, self.dims = first.method, first.prefix_length, first.dims

    def task_index(self, task_ids) -> torch.Tensor:
        """Task names or ints -> LongTensor [B] of positions in the bank."""
        if isinstance(task_ids, torch.Tensor):
            index = task_ids.long()
        else:
            index = torch.tensor(
                [self.names.index(t) if isinstance(t, str) else int(t) for t in task_ids]
            )
        if index.numel() and (index.min() < 0 or index.max() >= len(self.adapters)):
            raise ValueError(f"task_ids must lie in 0..{len(self.adapters) - 1} ({self.names}).")
        return index

    def flat_rows(self, task_ids) -> torch.Tensor:
        """Per-row adapter matrices. Returns [B, P, width] (width of one adapter's flat()).

        Only the adapters the batch uses are stacked, so a call costs the same with 10 or
        1,000 adapters in the bank.
        """
        used, inverse = torch.unique(self.task_index(task_ids), return_inverse=True)
        stack = torch.stack([self.adapters[i].flat() for i in used.tolist()])  # [n_used, P, w]
        return stack[inverse.to(stack.device)]


PER_ROW_ADAPTERS = (AdapterBank, ControlPrefix)  # adapters that pick rows by task_ids


class AdaptedModel(nn.Module):
    """A frozen causal LM plus one adapter (PrefixTuning, PromptTuning, InfixTuning, an
    AdapterBank, a ControlPrefix, or None).

    The model may carry LoRA (`prefixlab.lora.add_lora`): with a prefix that is the prefix +
    LoRA hybrid (`prefixlab.hybrid`).

    `forward` returns a CausalLMOutput whose `logits` are [B, T, V] for the T real tokens,
    whichever method is used, and whose `loss` is the mean next-token cross-entropy over
    labels != -100 (within the real tokens).
    """

    def __init__(self, model: nn.Module, adapter: nn.Module | None = None):
        super().__init__()
        self.dims = model_dims(model)
        if adapter is not None:
            if not isinstance(
                adapter, (PrefixTuning, PromptTuning, InfixTuning) + PER_ROW_ADAPTERS
            ):
                raise ValueError(
                    "adapter must be a PrefixTuning, a PromptTuning, an InfixTuning, an "
                    f"AdapterBank, a ControlPrefix or None; got {type(adapter).__name__}."
                )
            if isinstance(adapter, AdapterBank) and adapter.method == "infix":
                raise ValueError("An AdapterBank holds prefixes or soft prompts, not infixes.")
            _check_compatible(model, adapter)
        self.model = model
        self.adapter = adapter

    @property
    def prefix_length(self) -> int:
        return 0 if self.adapter is None else self.adapter.prefix_length

    @property
    def is_infix(self) -> bool:
        """Whether the adapter sits between table and text (two passes, see infix.py)."""
        return isinstance(self.adapter, InfixTuning)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- building the model inputs -------------------------------------------------------
    def _adapter_rows(self, batch_size: int, task_ids, device) -> torch.Tensor | None:
        """[B, P, width] per-row adapter tensors, or None without an adapter."""
        if self.adapter is None:
            return None
        if isinstance(self.adapter, PER_ROW_ADAPTERS):
            if task_ids is None:
                what = type(self.adapter).__name__
                raise ValueError(
                    f"This model holds a {what}: pass task_ids (one task, or one set of "
                    "attribute values, per row)."
                )
            rows = self.adapter.flat_rows(task_ids)
            if rows.shape[0] != batch_size:
                raise ValueError(f"task_ids has {rows.shape[0]} entries for {batch_size} rows.")
            return rows.to(device)
        if task_ids is not None:
            raise ValueError(
                "task_ids only applies to an AdapterBank or a ControlPrefix; drop it for one "
                "adapter."
            )
        return self.adapter.flat().unsqueeze(0).expand(batch_size, -1, -1)

    def model_inputs(self, input_ids, attention_mask=None, task_ids=None, repeat: int = 1) -> dict:
        """Keyword arguments for the frozen model that carry the adapter.

        Args:
            input_ids: [B, T]; attention_mask: [B, T] (1 real, 0 padding) or None.
            repeat: repeat each row's prefix (for beam search / several samples per row).
        Returns:
            dict with attention_mask [B, P+T] and either a cache (prefix: a fresh
            DynamicCache of B*repeat rows, under the model's own keyword, see
            `loading.cache_kwarg`) or inputs_embeds [B, P+T, d] (prompt), plus position_ids.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}.")
        if self.is_infix:
            raise ValueError(
                "An infix is fed in two passes, so there are no single-pass model inputs; call "
                "the model (forward) or generate, or see prefixlab.infix.infix_inputs."
            )
        B, T = input_ids.shape
        P = self.prefix_length
        if self.dims.n_positions and self.dims.n_positions < P + T:
            raise ValueError(
                f"Prefix ({P}) plus input ({T}) is {P + T} positions, longer than the model's "
                f"context of {self.dims.n_positions}. Shorten the input (max_length) or use a "
                "smaller prefix_length."
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must have the same shape as input_ids.")
        device = input_ids.device
        mask = torch.cat([attention_mask.new_ones(B, P), attention_mask], dim=1)  # [B, P+T]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real positions count on after P
        rows = self._adapter_rows(B, task_ids, device)
        if rows is None:
            return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}
        if self.adapter.method == "prefix":
            if repeat > 1:
                rows = rows.repeat_interleave(repeat, dim=0)
            pairs = split_key_values(rows, self.dims)
            cache = DynamicCache(ddp_cache_data=pairs, config=self.model.config)
            return {
                "input_ids": input_ids,
                "attention_mask": mask,
                "position_ids": positions[:, P:],
                cache_kwarg(self.model): cache,
            }
        embeds = self.model.get_input_embeddings()(input_ids)  # [B, T, d]
        inputs_embeds = torch.cat([rows.to(embeds.dtype), embeds], dim=1)  # [B, P+T, d]
        return {"inputs_embeds": inputs_embeds, "attention_mask": mask, "position_ids": positions}

    # -- forward and generate -----------------------------------------------------------
    def forward(self, input_ids, attention_mask=None, labels=None, task_ids=None, **kwargs):
        """Loss and logits of the real tokens.

        Args:
            input_ids: [B, T]; attention_mask: [B, T]; labels: [B, T] with -100 where no loss.
            task_ids: one task per row when the adapter is an AdapterBank; each row's
                attribute values for a ControlPrefix (`ControlPrefix.value_index`).
            **kwargs: passed on to the model (e.g. output_attentions=True).
        Returns:
            CausalLMOutput with logits [B, T, V] and loss (a scalar, or None without labels);
            `attentions` when requested, with key length P+T.
        """
        if labels is not None and tuple(labels.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                f"{tuple(labels.shape)}; put -100 where a token should not be scored."
            )
        if self.is_infix:
            return self._infix_forward(input_ids, attention_mask, labels, task_ids, **kwargs)
        inputs = self.model_inputs(input_ids, attention_mask, task_ids)
        out = self.model(**inputs, use_cache=False, **kwargs)
        virtual = out.logits.shape[1] - input_ids.shape[1]  # P for prompt tuning, else 0
        # The loss reads the model's logits as they are (contiguous, soft-prompt slots and
        # all) and shifts the labels instead: slicing [B, T, V] logits first would copy them
        # forward and allocate a zero gradient of their full size backward.
        loss = None if labels is None else causal_lm_loss(out.logits, labels, offset=virtual)
        logits = out.logits[:, virtual:] if virtual else out.logits  # [B, T, V]
        return CausalLMOutput(loss=loss, logits=logits, attentions=getattr(out, "attentions", None))

    def _check_infix_call(self, input_ids, attention_mask, task_ids, new_tokens: int = 0):
        if task_ids is not None:
            raise ValueError("task_ids only applies to an AdapterBank; drop it for one adapter.")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}.")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must have the same shape as input_ids.")
        total = self.prefix_length + input_ids.shape[1] + new_tokens
        if self.dims.n_positions and self.dims.n_positions < total:
            raise ValueError(
                f"Infix ({self.prefix_length}) plus input ({input_ids.shape[1]}) plus new tokens "
                f"({new_tokens}) is {total} positions, longer than the model's context of "
                f"{self.dims.n_positions}. Shorten the input or use a smaller prefix_length."
            )
        return torch.ones_like(input_ids) if attention_mask is None else attention_mask

    def _infix_forward(self, input_ids, attention_mask, labels, task_ids, **kwargs):
        """forward for an infix: the table, then the infix and the rest (infix.py)."""
        attention_mask = self._check_infix_call(input_ids, attention_mask, task_ids)
        rows = self._adapter_rows(input_ids.shape[0], None, input_ids.device)
        parts = infix_inputs(self.model, rows, input_ids, attention_mask, self.adapter.separator)
        out = self.model(**parts["model_kwargs"], use_cache=False, **kwargs)
        logits = infix_logits(input_ids, parts["table_logits"], out.logits, parts["pieces"])
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return CausalLMOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def _infix_generate(self, input_ids, attention_mask, **generate_kwargs):
        """generate for an infix: every row must end with the separator (left padding)."""
        new_tokens = generate_kwargs.get("max_new_tokens") or 0
        attention_mask = self._check_infix_call(input_ids, attention_mask, None, new_tokens)
        num_beams = generate_kwargs.get("num_beams", 1) or 1
        num_return = generate_kwargs.get("num_return_sequences", 1) or 1
        rows = self._adapter_rows(input_ids.shape[0], None, input_ids.device)
        parts = infix_inputs(self.model, rows, input_ids, attention_mask, self.adapter.separator,
                             repeat=max(num_beams, num_return))  # fmt: skip
        _, cuts, ends = parts["pieces"]
        n_sep, width = len(self.adapter.separator), input_ids.shape[1]
        if any(b != width or b - c != n_sep for c, b in zip(cuts, ends, strict=True)):
            raise ValueError(
                "generate with an infix continues after the separator: each row must end with "
                "format_source(mr) (prefixlab.batching.encode_for_generation), left-padded."
            )
        kwargs = parts["model_kwargs"]
        kwargs.pop("position_ids")  # generate derives positions from the mask at every step
        generate_kwargs.setdefault("pad_token_id", _generation_pad_id(self.model))
        out = self.model.generate(**kwargs, **generate_kwargs)  # [B * n, Lr + new]
        prompt = input_ids.repeat_interleave(num_return, dim=0)
        return torch.cat([prompt, out[:, kwargs["input_ids"].shape[1] :]], dim=1)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, task_ids=None, **generate_kwargs):
        """Generate with the adapter attached; greedy, sampling or beam search.

        Batches of different lengths must be left-padded (tokenizer.padding_side = "left").
        The prefix (P), the input (T) and max_new_tokens must fit the model's context
        (`check_generation_budget`); a ValueError says what to lower when they do not.

        Returns:
            LongTensor [B * num_return_sequences, T + new]: the prompt tokens, then the new ones.
        """
        if attention_mask is not None and (attention_mask[:, -1] == 0).any():
            raise ValueError(
                "generate needs left padding: a row ends with padding. Set "
                "tokenizer.padding_side = 'left' (prefixlab.batching.encode_for_generation does)."
            )
        if self.is_infix:
            if task_ids is not None:
                raise ValueError("task_ids only applies to an AdapterBank; drop it.")
            return self._infix_generate(input_ids, attention_mask, **generate_kwargs)
        new_tokens = generate_kwargs.get("max_new_tokens")
        if new_tokens is None:  # the model's default budget, when it has one
            new_tokens = getattr(
                getattr(self.model, "generation_config", None), "max_new_tokens", None
            )
        if new_tokens is not None:
            check_generation_budget(
                self.prefix_length, input_ids.shape[-1], new_tokens, self.dims.n_positions
            )
        num_beams = generate_kwargs.get("num_beams", 1) or 1
        num_return = generate_kwargs.get("num_return_sequences", 1) or 1
        inputs = self.model_inputs(
            input_ids, attention_mask, task_ids, repeat=max(num_beams, num_return)
        )
        inputs.pop("position_ids")  # generate derives positions from the mask at every step
        generate_kwargs.setdefault("pad_token_id", _generation_pad_id(self.model))
        if "inputs_embeds" in inputs:
            new = self.model.generate(**inputs, **generate_kwargs)  # only the new tokens
            prompt = input_ids.repeat_interleave(num_return, dim=0)
            return torch.cat([prompt, new], dim=1)
        return self.model.generate(**inputs, **generate_kwargs)


def check_generation_budget(
    prefix_length: int, input_length: int, max_new_tokens, context: int
) -> None:
    """Fail before generating when P + T + max_new_tokens does not fit the model's context.

    Past the context a model with learned positions indexes past its position table (an
    IndexError deep in torch); one with rotary positions silently runs beyond its training.
    `context` 0 means unknown: only max_new_tokens is checked.

    Raises:
        ValueError: max_new_tokens not an int >= 1, or the budget overflowing, with the
            largest max_new_tokens that fits.
    """
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}.")
    if context and prefix_length + input_length + max_new_tokens > context:
        room = context - prefix_length - input_length
        raise ValueError(
            f"Prefix ({prefix_length}) + input ({input_length}) + max_new_tokens "
            f"({max_new_tokens}) is {prefix_length + input_length + max_new_tokens} positions, "
            f"more than the model's context of {context}; pass max_new_tokens <= {max(room, 0)}, "
            "or shorten the input or the prefix."
        )


def _generation_pad_id(model) -> int | None:
    """The pad id `generate` should use: the model's own, else its (first) eos id."""
    config = model.generation_config if hasattr(model, "generation_config") else model.config
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        eos = getattr(config, "eos_token_id", None)
        pad = eos[0] if isinstance(eos, (list, tuple)) else eos
    return pad


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy over labels != -100.

    Args:
        logits: [B, offset + T, V]; the first `offset` positions (soft-prompt slots) are not
            scored.
        labels: [B, T] (-100 = ignored); logits position offset + t is scored against
            labels[t + 1].
    The labels are shifted, not the logits, so contiguous logits are flattened as a view.
    """
    if logits.shape[1] != offset + labels.shape[1]:
        raise ValueError(
            f"logits cover {logits.shape[1]} positions but offset + labels cover "
            f"{offset} + {labels.shape[1]}; pass offset = number of soft-prompt positions."
        )
    targets = F.pad(labels[:, 1:], (offset, 1), value=-100).reshape(-1).to(logits.device)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=-100)


def _check_compatible(model: nn.Module, adapter: nn.Module) -> None:
    """Fail early, naming the mismatch, when an adapter was built for another model."""
    check_adapter_fits(model, adapter, model_dims(model), adapter.dims,
                       ("n_layers", "n_kv_heads", "head_dim", "d_model"))  # fmt: skip


def check_adapter_fits(model: nn.Module, adapter: nn.Module, dims, want, fields) -> None:
    """The checks every adapted model makes when it gets an adapter: `dims` (the model's) and
    `want` (the adapter's) agree on `fields`, and the adapter's parameters share the model's
    device and dtype; a ValueError saying how to fix it otherwise."""
    for field in fields:
        if getattr(dims, field) != getattr(want, field):
            raise ValueError(
                f"The adapter was built for {field}={getattr(want, field)} but the model has "
                f"{field}={getattr(dims, field)}. Build or load the adapter for this model."
            )
    base = next(model.parameters())
    for name, p in adapter.named_parameters():
        if p.device != base.device:
            raise ValueError(
                f"Adapter parameter {name} is on {p.device} but the model is on {base.device}; "
                f"call adapter.to({str(base.device)!r})."
            )
        if p.dtype != base.dtype:
            raise ValueError(
                f"Adapter parameter {name} is {p.dtype} but the model is {base.dtype}; "
                f"call adapter.to({base.dtype})."
            )
