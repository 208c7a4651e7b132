"""Load a causal language model frozen, and read the few dimensions a prefix needs.

`load_model("tiny")` gives the embedded default (no network; "nano" and "mini" are its
smaller and larger siblings). Any other string is a hub id or a local folder handed to
transformers; when that fails offline, the error names the embedded default so the notebook
can keep going.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from prefixlab.paths import EMBEDDED_MODELS, embedded_model_dir

TINY = "tiny"
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")


@dataclass(frozen=True)
class ModelDims:
    """The shapes that decide how big a prefix or a soft prompt is."""

    model_type: str
    n_layers: int  # transformer blocks, one prefix key/value pair each
    n_heads: int  # query heads
    n_kv_heads: int  # key/value heads (< n_heads under grouped-query attention)
    head_dim: int  # width of one head
    d_model: int  # width of the residual stream (and of an input embedding)
    vocab_size: int
    n_positions: int  # context length: the prefix or soft prompt uses P of these

    @property
    def kv_dim(self) -> int:
        """Width of one position's keys (or values) across heads: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim


def _first(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


_CAUSAL_LM_HINT = (
    "prefixlab supports decoder-only causal LMs (GPT-2, Llama, Qwen, Mistral, ...): load one "
    "with prefixlab.load_model or transformers.AutoModelForCausalLM."
)


def check_causal_lm(config_or_model) -> None:
    """Refuse models that cannot continue text left to right, naming what they are.

    A prefix or soft prompt steers a model that predicts the next token from the tokens before
    it. Refused: encoder-decoder models (T5, BART), encoders whose config says
    `is_decoder=False` (BERT-style: every token sees the whole sequence), and loaded models
    that cannot generate (e.g. `BertForMaskedLM`). A config alone that does not say is
    accepted, so parameter counts work from a config.

    Raises:
        ValueError: saying what the model is and what to load instead.
    """
    config = getattr(config_or_model, "config", config_or_model)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{type(config).__name__} is an encoder-decoder model, not a causal LM; "
            + _CAUSAL_LM_HINT
            + " For encoder-decoder models (BART, T5) use prefixlab.seq2seq: load_seq2seq, "
            "Seq2SeqPrefixTuning and Seq2SeqAdaptedModel."
        )
    if getattr(config, "is_decoder", None) is False:  # only encoder-style configs carry it
        name = type(config_or_model).__name__
        raise ValueError(
            f"{name} is an encoder ({type(config).__name__} has is_decoder=False: every token "
            "attends to the whole sequence), not a causal LM; " + _CAUSAL_LM_HINT
        )
    can_generate = getattr(config_or_model, "can_generate", None)
    if isinstance(config_or_model, nn.Module) and callable(can_generate) and not can_generate():
        raise ValueError(
            f"{type(config_or_model).__name__} has no language-model head that generates "
            "text, so it is not a causal LM; " + _CAUSAL_LM_HINT
        )


def model_dims(config_or_model) -> ModelDims:
    """Read `ModelDims` from a transformers config (or a model that has `.config`).

    Works from a config alone, so parameter counts for GPT-2 XL or a 7B Llama need no weights.
    For a model the dims are read once and kept on it (a built model's shapes never change),
    so the adapter, the glue and the checks that all ask for them share one reading.

    Raises:
        ValueError: for models that are not decoder-only causal LMs (`check_causal_lm`) or
            configs missing sizes.
    """
    if isinstance(config_or_model, nn.Module):
        dims = config_or_model.__dict__.get("_prefixlab_dims")
        if dims is None:
            check_causal_lm(config_or_model)
            dims = _read_dims(getattr(config_or_model, "config", config_or_model))
            config_or_model.__dict__["_prefixlab_dims"] = dims
        return dims
    check_causal_lm(config_or_model)
    return _read_dims(getattr(config_or_model, "config", config_or_model))


def _read_dims(config) -> ModelDims:
    """`ModelDims` from a transformers config."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    n_layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    n_heads = _first(config, "num_attention_heads", "n_head")
    d_model = _first(config, "hidden_size", "n_embd", "d_model")
    if n_layers is None or n_heads is None or d_model is None:
        raise ValueError(
            f"Cannot read layers/heads/width from {type(config).__name__}; prefixlab needs a "
            "decoder-only transformer config with num_hidden_layers, num_attention_heads and "
            "hidden_size (or GPT-2's n_layer, n_head, n_embd)."
        )
    n_kv_heads = _first(config, "num_key_value_heads", default=n_heads)
    head_dim = _first(config, "head_dim", default=d_model // n_heads)
    n_positions = _first(config, "max_position_embeddings", "n_positions", "n_ctx", default=0)
    return ModelDims(
        model_type=getattr(config, "model_type", "unknown"),
        n_layers=int(n_layers),
        n_heads=int(n_heads),
        n_kv_heads=int(n_kv_heads),
        head_dim=int(head_dim),
        d_model=int(d_model),
        vocab_size=int(_first(config, "vocab_size", default=0)),
        n_positions=int(n_positions),
    )


FINGERPRINT_ROWS = 4096  # embedding rows hashed: enough to tell vocabularies apart, cheap


@torch.no_grad()
def base_fingerprint(model: nn.Module) -> dict:
    """A cheap identity card of a base model: its shapes plus a checksum of its embeddings.

    Two models with the same dimensions but another vocabulary or other weights get different
    checksums, so an adapter saved for one can warn when loaded onto the other. The checksum
    hashes at most FINGERPRINT_ROWS evenly spaced rows of the input embedding matrix [V, d],
    rounded to bfloat16 (a float32 model and its bfloat16 copy agree), in milliseconds even
    for a 50k-token vocabulary.

    Returns:
        dict: model_type, vocab_size, n_layers, d_model, n_heads, n_kv_heads and
        embedding_checksum (16 hex digits).
    """
    dims = model_dims(model)
    return {
        "model_type": dims.model_type,
        "vocab_size": dims.vocab_size,
        "n_layers": dims.n_layers,
        "d_model": dims.d_model,
        "n_heads": dims.n_heads,
        "n_kv_heads": dims.n_kv_heads,
        "embedding_checksum": embedding_checksum(model),
    }


@torch.no_grad()
def embedding_checksum(model: nn.Module) -> str:
    """16 hex digits hashing the input embeddings [V, d] (see `base_fingerprint`).

    Also used for encoder-decoder models (`prefixlab.seq2seq.seq2seq_fingerprint`).
    """
    table = model.get_input_embeddings().weight.detach()  # [V, d_model]
    rows = torch.linspace(0, table.shape[0] - 1, min(FINGERPRINT_ROWS, table.shape[0]))
    sample = table[rows.long().to(table.device)].to(device="cpu", dtype=torch.bfloat16)
    digest = hashlib.sha256(str(tuple(table.shape)).encode())
    digest.update(sample.contiguous().view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def freeze(model: nn.Module) -> nn.Module:
    """Set requires_grad False on every parameter and switch to eval mode (no dropout)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _offline_message(name: str, err: Exception) -> str:
    return (
        f"Could not load {name!r} ({type(err).__name__}: {err}). If you are offline and the "
        "model is not in your Hugging Face cache, use the embedded default instead: "
        "load_model('tiny'). Online, check the model id or path."
    )


@contextlib.contextmanager
def _quiet_loading(quiet: bool):
    """Hide transformers' per-file progress bars for the embedded model (seconds to load)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def dtype_from_name(dtype):
    """`dtype` given by name ("float32", "bfloat16") as the torch dtype; anything else as is.

    Raises:
        ValueError: for a name that is not a torch dtype.
    """
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype; try 'float32' or 'bfloat16'.")
        return resolved
    return dtype


def _from_pretrained(auto_class, path: str, check, *, dtype, attn_implementation: str, quiet: bool):
    """(model, tokenizer) from `path` with `auto_class` (e.g. AutoModelForCausalLM), after
    `check(config)` accepted its config (it raises for the wrong kind of model). `dtype` None
    keeps the checkpoint's; `quiet` hides the per-file progress bars. OSError when not found.
    """
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    check(config)
    kwargs = {"attn_implementation": attn_implementation}
    if dtype is not None:
        kwargs["dtype"] = dtype
    with _quiet_loading(quiet):
        model = auto_class.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def load_model(
    name_or_path: str = TINY,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    attn_implementation: str = "eager",
    fallback_to_tiny: bool = False,
):
    """Load a causal LM and its tokenizer with every base parameter frozen, in eval mode.

    Args:
        name_or_path: "tiny" (the embedded default shipped in data/), "nano" or "mini" (its
            smaller and larger siblings, same recipe: `prefixlab.paths.EMBEDDED_MODELS`), a
            hub id such as "gpt2", or a local folder.
        device: where to put the model ("cpu", "cuda", ...). None keeps it on the CPU.
        dtype: torch dtype or its name ("float32", "bfloat16", ...). None keeps the checkpoint's.
        attn_implementation: "eager" (default; attention probabilities can be recorded),
            "sdpa", or another implementation transformers knows.
        fallback_to_tiny: when loading a hub model fails (e.g. offline), warn and return the
            embedded default instead of raising.

    Returns:
        (model, tokenizer). The tokenizer has a pad token (eos when the checkpoint has none).
    """
    from transformers import AutoModelForCausalLM

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"name_or_path must be a string or path, got {type(name_or_path)}.")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={attn_implementation!r} is not one of {ATTN_IMPLEMENTATIONS}. "
            "Use 'eager' to be able to record attention."
        )
    dtype = dtype_from_name(dtype)

    name = str(name_or_path)
    embedded = name in EMBEDDED_MODELS
    path = str(embedded_model_dir(name)) if embedded else name
    try:
        # model_dims rejects models that are not causal LMs with a clear message
        model, tokenizer = _from_pretrained(AutoModelForCausalLM, path, model_dims, dtype=dtype,
                                            attn_implementation=attn_implementation,
                                            quiet=embedded)  # fmt: skip
    except OSError as err:  # a ValueError (e.g. an encoder-decoder config) passes unchanged
        if fallback_to_tiny and not embedded:
            warnings.warn(
                f"{_offline_message(name, err)} Falling back to the embedded default 'tiny'.",
                stacklevel=2,
            )
            return load_model(
                TINY, device=device, dtype=dtype, attn_implementation=attn_implementation
            )
        raise OSError(_offline_message(name, err)) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model.to(device)
    model.name_or_path = name
    return freeze(model), tokenizer


def cache_kwarg(model: nn.Module) -> str:
    """The keyword under which this model's forward (and generate) takes an attention cache.

    Newer transformers versions take it as `cache` and warn when given `past_key_values`;
    older ones only know `past_key_values`. Reading the forward signature picks the name this
    model takes, without a warning, on any version. It is read once per model class, not on
    every forward pass.
    """
    return _cache_kwarg_of(type(model))


@functools.cache
def _cache_kwarg_of(model_class: type) -> str:
    try:
        names = inspect.signature(model_class.forward).parameters
    except (
        AttributeError,
        TypeError,
        ValueError,
    ):  # not introspectable: the name every version knows
        names = {}
    return "cache" if "cache" in names else "past_key_values"


def output_cache(output):
    """The cache a forward pass returned, under either name (see `cache_kwarg`)."""
    return output["cache"] if "cache" in output else output["past_key_values"]
