"""Prefix and prompt tuning for encoder-decoder models (BART, T5): shapes, loader, adapters.

Li & Liang ran summarization on BART with a prefix in front of the source and another in
front of the target, z = [PREFIX; x; PREFIX'; y]. A prefix here can sit in three attentions,
named `parts`:

    "encoder"  encoder self-attention: every source token also attends to P extra keys
    "decoder"  decoder self-attention: every target token attends to P keys before its own
    "cross"    the decoder's attention over the encoder: P extra keys before the source's

Li & Liang's BART code trains all three (one MLP each), and so does the default here. Each
part is stored as the decoder-only prefix is (prefix.py), one matrix

    flat(part): [P, L_part * 2 * heads * head_dim]

layer l's keys in row block 2l, its values in 2l+1. `key_values(part, B)` gives one
(key, value) pair per layer, each [B, heads, P, head_dim].

PEFT (0.21, with transformers 5) feeds its SEQ_2_SEQ_LM prefix to the decoder
self-attention only; `seq2seq_artifacts` maps between the two (and says what cannot be).

Prompt tuning: P soft tokens in front of the encoder input, as PEFT does; the decoder is
untouched. `Seq2SeqAdaptedModel` (seq2seq_adapted.py) feeds either adapter to the model.

`load_seq2seq("tiny")` loads the embedded encoder-decoder (data/tiny-bart, a 2 + 2 layer BART
pretrained by this project with tiny-gpt2's tokenizer); `seq2seq_batching.encode_seq2seq`
makes its batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from prefixlab._validate import require_choice, require_int, require_number
from prefixlab.loading import (
    ATTN_IMPLEMENTATIONS,
    _first,
    _from_pretrained,
    dtype_from_name,
    embedding_checksum,
    freeze,
)
from prefixlab.paths import EMBEDDED_SEQ2SEQ_MODELS, embedded_seq2seq_dir
from prefixlab.prefix import check_prefix_length
from prefixlab.prompt import PROMPT_INITS, initial_prompt

PARTS = ("encoder", "decoder", "cross")
TINY_SEQ2SEQ = "tiny"  # the embedded encoder-decoder, data/tiny-bart
SEQ2SEQ_PREFIX_INITS = ("random", "zero")
REPARAMS = ("none", "mlp")


@dataclass(frozen=True)
class Seq2SeqDims:
    """The shapes of an encoder-decoder model that decide how big its adapters are."""

    model_type: str
    n_encoder_layers: int
    n_decoder_layers: int
    n_encoder_heads: int
    n_decoder_heads: int  # heads of the decoder self- and cross-attention
    encoder_head_dim: int
    decoder_head_dim: int
    d_model: int  # width of the residual stream and of an input embedding
    vocab_size: int
    n_positions: int  # learned position table (BART); 0 when positions are relative (T5)

    def n_layers(self, part: str) -> int:
        """Layers that carry the prefix of `part` (the cross-attention lives in the decoder)."""
        return self.n_encoder_layers if part == "encoder" else self.n_decoder_layers

    def n_heads(self, part: str) -> int:
        return self.n_encoder_heads if part == "encoder" else self.n_decoder_heads

    def head_dim(self, part: str) -> int:
        return self.encoder_head_dim if part == "encoder" else self.decoder_head_dim

    def kv_dim(self, part: str) -> int:
        """Width of one position's keys (or values) across heads in `part`."""
        return self.n_heads(part) * self.head_dim(part)

    def width(self, part: str) -> int:
        """Columns of `flat(part)`: L * 2 * kv_dim."""
        return self.n_layers(part) * 2 * self.kv_dim(part)


_SEQ2SEQ_HINT = (
    "prefixlab.seq2seq handles encoder-decoder models (BART, T5): load one with "
    "prefixlab.seq2seq.load_seq2seq or transformers.AutoModelForSeq2SeqLM. For a decoder-only "
    "causal LM use prefixlab.load_model, PrefixTuning and AdaptedModel."
)


def check_seq2seq(config_or_model) -> None:
    """Refuse models that are not encoder-decoder, saying what to use instead.

    Raises:
        ValueError: for decoder-only or encoder-only models and configs.
    """
    config = getattr(config_or_model, "config", config_or_model)
    if not getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{type(config).__name__} is not an encoder-decoder model; {_SEQ2SEQ_HINT}"
        )


def seq2seq_dims(config_or_model) -> Seq2SeqDims:
    """Read `Seq2SeqDims` from a BART- or T5-style config (or a model that has `.config`).

    Works from a config alone (parameter tables need no weights). For a model the reading is
    kept on it, as `loading.model_dims` does.

    Raises:
        ValueError: for models that are not encoder-decoder, or configs missing sizes.
    """
    if isinstance(config_or_model, nn.Module):
        dims = config_or_model.__dict__.get("_prefixlab_seq2seq_dims")
        if dims is None:
            dims = seq2seq_dims(config_or_model.config)
            config_or_model.__dict__["_prefixlab_seq2seq_dims"] = dims
        return dims
    config = getattr(config_or_model, "config", config_or_model)
    check_seq2seq(config)
    d_model = _first(config, "d_model", "hidden_size")
    enc_layers = _first(config, "encoder_layers", "num_layers")
    dec_layers = _first(config, "decoder_layers", "num_decoder_layers", default=enc_layers)
    enc_heads = _first(config, "encoder_attention_heads", "num_heads")
    dec_heads = _first(config, "decoder_attention_heads", "num_heads", default=enc_heads)
    if None in (d_model, enc_layers, enc_heads):
        raise ValueError(
            f"Cannot read layers/heads/width from {type(config).__name__}; prefixlab.seq2seq "
            "reads BART-style (encoder_layers, encoder_attention_heads, d_model) or T5-style "
            "(num_layers, num_heads, d_kv, d_model) configs."
        )
    d_kv = getattr(config, "d_kv", None)  # T5: the head width is set, not derived
    is_t5_style = d_kv is not None
    return Seq2SeqDims(
        model_type=getattr(config, "model_type", "unknown"),
        n_encoder_layers=int(enc_layers),
        n_decoder_layers=int(dec_layers),
        n_encoder_heads=int(enc_heads),
        n_decoder_heads=int(dec_heads),
        encoder_head_dim=int(d_kv if is_t5_style else d_model // enc_heads),
        decoder_head_dim=int(d_kv if is_t5_style else d_model // dec_heads),
        d_model=int(d_model),
        vocab_size=int(_first(config, "vocab_size", default=0)),
        # T5's relative positions have no table to run out of, whatever n_positions says
        n_positions=0 if is_t5_style else int(_first(config, "max_position_embeddings", default=0)),
    )


def seq2seq_fingerprint(model: nn.Module) -> dict:
    """Shapes plus a checksum of the input embeddings (see `loading.base_fingerprint`)."""
    dims = seq2seq_dims(model)
    return {
        "model_type": dims.model_type,
        "vocab_size": dims.vocab_size,
        "n_encoder_layers": dims.n_encoder_layers,
        "n_decoder_layers": dims.n_decoder_layers,
        "d_model": dims.d_model,
        "embedding_checksum": embedding_checksum(model),
    }


def load_seq2seq(
    name_or_path: str = TINY_SEQ2SEQ,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    attn_implementation: str = "eager",
):
    """Load an encoder-decoder model (BART, T5, ...) and its tokenizer, frozen, in eval mode.

    Args:
        name_or_path: "tiny" (the embedded tiny BART shipped in data/tiny-bart, pretrained by
            this project; `prefixlab.paths.EMBEDDED_SEQ2SEQ_MODELS`), a hub id such as
            "facebook/bart-base" or "t5-small", or a local folder.
        device: where to put the model; None keeps it on the CPU.
        dtype: torch dtype or its name ("float32", "bfloat16"); None keeps the checkpoint's,
            except for the embedded model: stored in float16 to fit the data budget, it loads
            in float32 (its card gives the logit difference).
        attn_implementation: "eager" (default; attention can be recorded) or "sdpa".
    Returns:
        (model, tokenizer).
    Raises:
        ValueError: bad options, or a model that is not encoder-decoder (naming what to use).
        OSError: the model cannot be found (offline and not cached), saying what to do.
    """
    from transformers import AutoModelForSeq2SeqLM

    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ValueError(
            f"name_or_path must be a hub id or a folder such as 't5-small', got {name_or_path!r}."
        )
    require_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS[:2])
    dtype = dtype_from_name(dtype)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch dtype or its name, got {dtype!r}.")
    name = str(name_or_path)
    embedded = name in EMBEDDED_SEQ2SEQ_MODELS
    path = str(embedded_seq2seq_dir(name)) if embedded else name
    if embedded and dtype is None:
        dtype = torch.float32  # the weights are stored in float16 (see the model card)
    try:
        model, tokenizer = _from_pretrained(AutoModelForSeq2SeqLM, path, check_seq2seq, dtype=dtype,
                                            attn_implementation=attn_implementation,
                                            quiet=embedded)  # fmt: skip
    except OSError as err:
        raise OSError(
            f"Could not load {name!r} ({type(err).__name__}: {err}). Offline, only models in "
            "your Hugging Face cache or a local folder load; check the id or path, use the "
            "embedded load_seq2seq('tiny'), or build a small random model from a config "
            "(transformers.BartConfig / T5Config)."
        ) from err
    if device is not None:
        model.to(device)
    model.name_or_path = name
    return freeze(model), tokenizer


def check_parts(parts) -> tuple[str, ...]:
    """Validate `parts` (a non-empty tuple of names from PARTS); returns them in PARTS order."""
    if isinstance(parts, str) or not isinstance(parts, (tuple, list)):
        raise ValueError(
            f"parts must be a tuple of names from {PARTS}, got {parts!r}; e.g. parts=('decoder',)."
        )
    for part in parts:
        require_choice("each of parts", part, PARTS)
    if not parts or len(set(parts)) != len(parts):
        raise ValueError(
            f"parts must name each attention at most once and at least one: {parts!r}."
        )
    return tuple(p for p in PARTS if p in parts)


def split_part(
    flat: torch.Tensor, n_layers: int, n_heads: int, head_dim: int, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[P, L*2*H*D] -> L pairs (key, value), each [batch_size, H, P, D]."""
    P = flat.shape[0]
    kv = flat.view(P, n_layers * 2, n_heads, head_dim).permute(1, 2, 0, 3)  # (L*2, H, P, D)
    parts = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1).unbind(0)
    return [(parts[2 * layer], parts[2 * layer + 1]) for layer in range(n_layers)]


class Seq2SeqPrefixTuning(nn.Module):
    """Trainable keys and values for the encoder, decoder and cross attention of a frozen
    encoder-decoder model.

    Args:
        model: the frozen model, or a `Seq2SeqDims` (for loading artifacts).
        prefix_length: P, the number of virtual key/value positions per layer and part.
        parts: which attentions get a prefix, a tuple from ("encoder", "decoder", "cross").
        reparam: "none" (optimise the key/values directly) or "mlp" (one MLP per part,
            embedding [P, kv_dim] -> Linear -> Tanh -> Linear, discarded by `materialize()`).
        mlp_hidden: hidden width of the MLPs (512 in Li & Liang).
        init: "random" (normal, std `init_std`) or "zero".
        seed: makes the init reproducible.

    Shapes: `flat(part)` is [P, L*2*kv_dim]; `key_values(part, B)` L pairs [B, H, P, head_dim].
    """

    method = "prefix"

    def __init__(
        self,
        model,
        prefix_length: int = 10,
        *,
        parts=PARTS,
        reparam: str = "none",
        mlp_hidden: int = 512,
        init: str = "random",
        init_std: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        self.dims = dims = model if isinstance(model, Seq2SeqDims) else seq2seq_dims(model)
        self.base_fingerprint = (
            None if isinstance(model, Seq2SeqDims) else seq2seq_fingerprint(model)
        )
        self.prefix_length = P = check_prefix_length(prefix_length, dims)
        self.parts = check_parts(parts)
        require_choice("reparam", reparam, REPARAMS, "The MLP of Li & Liang is reparam='mlp'.")
        require_choice(
            "init", init, SEQ2SEQ_PREFIX_INITS, "'vocab' and 'text' are decoder-only for now."
        )
        require_int("mlp_hidden", mlp_hidden, low=1, hint="512 in the paper.")
        require_number("init_std", init_std, above=0, hint="Try 1.0.")
        self.reparam, self.mlp_hidden, self.init, self.init_text = reparam, mlp_hidden, init, None
        kw = {}
        if not isinstance(model, Seq2SeqDims):
            first = next(model.parameters())
            kw = {"device": first.device, "dtype": first.dtype}
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the MLPs' default init
            if reparam == "none":
                self.weights = nn.ParameterDict()
                for part in self.parts:
                    flat = torch.randn(P, dims.width(part), generator=g) * init_std
                    if init == "zero":
                        flat.zero_()
                    self.weights[part] = nn.Parameter(flat.to(**kw))
            else:
                self.embeddings, self.mlps = nn.ParameterDict(), nn.ModuleDict()
                for part in self.parts:
                    kv_dim = dims.kv_dim(part)
                    emb = torch.randn(P, kv_dim, generator=g)
                    self.embeddings[part] = nn.Parameter(emb.to(**kw))
                    mlp = nn.Sequential(
                        nn.Linear(kv_dim, mlp_hidden),
                        nn.Tanh(),
                        nn.Linear(mlp_hidden, dims.width(part)),
                    ).to(**kw)
                    if init == "zero":
                        nn.init.zeros_(mlp[2].weight)
                        nn.init.zeros_(mlp[2].bias)
                    self.mlps[part] = mlp

    def _check_part(self, part: str) -> None:
        if part not in self.parts:
            raise ValueError(f"This prefix has no {part!r} part; its parts are {self.parts}.")

    def flat(self, part: str) -> torch.Tensor:
        """The prefix of one part, in PEFT's layout. Returns [P, L * 2 * kv_dim]."""
        self._check_part(part)
        if self.reparam == "none":
            return self.weights[part]
        return self.mlps[part](self.embeddings[part])

    def key_values(self, part: str, batch_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One (key, value) pair per layer of `part`, each [batch_size, heads, P, head_dim]."""
        d = self.dims
        return split_part(
            self.flat(part), d.n_layers(part), d.n_heads(part), d.head_dim(part), batch_size
        )

    @torch.no_grad()
    def materialize(self) -> Seq2SeqPrefixTuning:
        """The direct form: same key/values, MLPs discarded. What is saved and served."""
        direct = Seq2SeqPrefixTuning(self.dims, self.prefix_length, parts=self.parts, init="zero")
        direct.init, direct.base_fingerprint = self.init, self.base_fingerprint
        for part in self.parts:
            direct.weights[part] = nn.Parameter(self.flat(part).detach().clone())
        return direct

    def extra_repr(self) -> str:
        return f"P={self.prefix_length}, parts={self.parts}, reparam={self.reparam!r}, init={self.init!r}"


class Seq2SeqPromptTuning(nn.Module):
    """A soft prompt of P trainable embeddings in front of the encoder input (as PEFT).

    Args:
        model: the frozen model (or `Seq2SeqDims`, init "random" only, for loading).
        prefix_length: P, the number of soft tokens.
        init: "random" (normal with the std of the embedding matrix), "vocab" (embeddings of
            P random real tokens), "text" (of `init_text`, repeated or cut to P) or "mean".
        init_text, tokenizer: needed by init="text".
        seed: makes the init reproducible.

    Shapes: `forward(B)` returns [B, P, d_model]; `flat()` [P, d_model].
    """

    method = "prompt"
    reparam = "none"
    parts = ("encoder",)

    def __init__(
        self,
        model,
        prefix_length: int = 10,
        *,
        init: str = "random",
        init_text: str | None = None,
        tokenizer=None,
        seed: int = 0,
    ):
        super().__init__()
        from_dims = isinstance(model, Seq2SeqDims)
        self.dims = dims = model if from_dims else seq2seq_dims(model)
        self.base_fingerprint = None if from_dims else seq2seq_fingerprint(model)
        self.prefix_length = P = check_prefix_length(prefix_length, dims)
        require_choice("init", init, PROMPT_INITS)
        self.init, self.init_text = init, init_text
        table, scale = None, 1.0
        if not from_dims:
            # The rows as the encoder sees them: BART's embedding module multiplies its
            # weight by embed_scale (sqrt(d_model) when config.scale_embedding), T5's does not.
            embed = model.get_input_embeddings()
            table, scale = embed.weight, float(getattr(embed, "embed_scale", 1.0) or 1.0)
        soft = initial_prompt(table, P, dims.d_model, init=init, seed=seed, tokenizer=tokenizer,
                              init_text=init_text, scale=scale)  # fmt: skip
        self.weight = nn.Parameter(soft)  # [P, d_model]

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        """The soft prompt for a batch. Returns [batch_size, P, d_model]."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def flat(self, part: str = "encoder") -> torch.Tensor:
        """The soft prompt as stored. Returns [P, d_model]."""
        return self.weight

    @torch.no_grad()
    def materialize(self) -> Seq2SeqPromptTuning:
        return self

    def extra_repr(self) -> str:
        return f"P={self.prefix_length}, d_model={self.dims.d_model}, init={self.init!r}"
