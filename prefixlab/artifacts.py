"""Save and load trained adapters: safetensors plus a small JSON, never pickle.

prefixlab's own format, a folder with

    adapter.safetensors   one tensor "weight": [P, L*2*kv_dim] (prefix) or [P, d_model] (prompt)
    adapter.json          method, P, base model name, dims and fingerprint, init, metadata

An MLP-reparameterized prefix is always saved materialized (the MLP is a training device).
PEFT's format (adapter_config.json + adapter_model.safetensors with "prompt_embeddings")
holds the same matrix, so export and import are a copy plus a config.
Encoder-decoder adapters (prefixlab.seq2seq) are handed to seq2seq_artifacts by all four
functions.

The base fingerprint (`loading.base_fingerprint`: shapes plus a checksum of the input
embeddings) lets `load_adapter` warn when the model it loads onto has the same dimensions
but other weights, e.g. another vocabulary: the adapter would load and produce nonsense.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prefixlab.artifact_format import (
    CONFIG_NAME,
    FORMAT_VERSION,
    PEFT_CONFIG_NAME,
    PEFT_RANDOM_PROMPT,
    PEFT_WEIGHTS_NAME,
    WEIGHTS_NAME,
    _base_name,
    check_saved_method,
    info_text,
    peft_base_fields,
    peft_method,
    read_adapter_info,
    read_peft_config,
    read_peft_matrix,
    restore_saved_fields,
)
from prefixlab.loading import ModelDims, base_fingerprint, model_dims
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning
from prefixlab.seq2seq import Seq2SeqPrefixTuning, Seq2SeqPromptTuning


def _check_adapter(adapter) -> None:
    if not isinstance(adapter, (PrefixTuning, PromptTuning)):
        hint = ""
        if type(adapter).__name__ == "AdaptedModel":
            hint = (
                " Pass adapted.adapter; for a prefix + LoRA hybrid use prefixlab.hybrid "
                "(save_hybrid, export_peft_hybrid): PEFT holds prefix tuning and LoRA only as "
                "two adapters applied in sequence, not as one."
            )
        raise ValueError(
            f"Expected a PrefixTuning or PromptTuning adapter, got {type(adapter).__name__}." + hint
        )


def _is_seq2seq(adapter) -> bool:
    """An encoder-decoder adapter (prefixlab.seq2seq): saved by seq2seq_artifacts."""
    return isinstance(adapter, (Seq2SeqPrefixTuning, Seq2SeqPromptTuning))


def save_adapter(adapter, path, *, model=None, metadata: dict | None = None) -> Path:
    """Write `adapter` (materialized) to the folder `path`; returns the folder.

    Args:
        model: the base model, to record its name and fingerprint in the JSON (optional:
            without it, the fingerprint of the model the adapter was built for is kept).
        metadata: JSON-serializable training details (steps, lr, losses, ...).
    """
    if _is_seq2seq(adapter):
        from prefixlab.seq2seq_artifacts import save_seq2seq_adapter

        return save_seq2seq_adapter(adapter, path, model=model, metadata=metadata)
    _check_adapter(adapter)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    direct = adapter.materialize()
    weight = direct.flat().detach().contiguous().cpu()
    save_file({"weight": weight}, str(folder / WEIGHTS_NAME))
    info = {
        "format": "prefixlab-adapter",
        "format_version": FORMAT_VERSION,
        "method": adapter.method,
        "prefix_length": adapter.prefix_length,
        "trained_reparam": adapter.reparam,
        "init": adapter.init,
        "init_text": adapter.init_text,
        "dtype": str(weight.dtype).replace("torch.", ""),
        "base_model": _base_name(model),
        "dims": asdict(adapter.dims),
        "base_fingerprint": (
            base_fingerprint(model) if model is not None else adapter.base_fingerprint
        ),
        "metadata": metadata or {},
    }
    text = info_text(info)
    (folder / CONFIG_NAME).write_text(text)
    return folder


def _check_dims(saved: ModelDims, dims: ModelDims, method: str) -> None:
    fields = ("n_layers", "n_kv_heads", "head_dim") if method == "prefix" else ("d_model",)
    for field in fields:
        a, b = getattr(saved, field), getattr(dims, field)
        if a != b:
            label = {"n_layers": "layers", "n_kv_heads": "key/value heads", "head_dim": "head dim"}
            raise ValueError(
                f"Adapter does not fit this model: it was trained with {label.get(field, field)}="
                f"{a}, the model has {b} ({field}). Load it onto the base model it was trained "
                f"for (saved base: {saved.model_type})."
            )


def _warn_if_other_base(path, info: dict, model, fingerprint: dict) -> None:
    """Warn when the saved base fingerprint differs from the model's (old artifacts: none)."""
    saved = info.get("base_fingerprint")
    if not saved or saved == fingerprint:
        return
    differ = sorted(
        k for k in saved.keys() | fingerprint.keys() if saved.get(k) != fingerprint.get(k)
    )
    warnings.warn(
        f"The adapter in {path} was trained on another base model: saved base "
        f"{info.get('base_model') or 'unnamed'!r} has fingerprint {saved}, this model "
        f"{_base_name(model) or 'unnamed'!r} has {fingerprint} (they differ in "
        f"{', '.join(differ)}). It loads, but its outputs are likely meaningless; load it onto "
        "the model it was trained on.",
        UserWarning,
        stacklevel=3,
    )


def _build(method: str, dims: ModelDims, prefix_length: int, weight: torch.Tensor, model):
    cls = PrefixTuning if method == "prefix" else PromptTuning
    adapter = cls(dims, prefix_length, init="zero" if method == "prefix" else "random")
    expected = adapter.weight.shape
    if tuple(weight.shape) != tuple(expected):
        raise ValueError(
            f"Stored tensor has shape {tuple(weight.shape)}, expected {tuple(expected)} for a "
            f"{method} adapter of length {prefix_length} on this model."
        )
    first = next(model.parameters())
    adapter.weight = torch.nn.Parameter(weight.to(device=first.device, dtype=first.dtype))
    return adapter


def load_adapter(path, model, *, method: str | None = None):
    """Load a folder written by `save_adapter` for `model`, checking that they match.

    Args:
        method: if given ("prefix" or "prompt"), the saved method must be this one.
    Warns:
        UserWarning: when the model has the same dimensions but another fingerprint (other
            weights or vocabulary) than the base the adapter was saved with.
    Raises:
        ValueError: naming the mismatch (method, layers, heads, dims) when the artifact does
            not fit the model.
    """
    info = read_adapter_info(path)
    if info.get("architecture") == "encoder-decoder":
        from prefixlab.seq2seq_artifacts import load_seq2seq_adapter

        return load_seq2seq_adapter(path, model, method=method)
    if info.get("format") != "prefixlab-adapter":
        raise ValueError(f"{path} is not a prefixlab adapter (format={info.get('format')!r}).")
    saved_method = info["method"]
    check_saved_method(path, saved_method, method)
    saved = ModelDims(**info["dims"])
    _check_dims(saved, model_dims(model), saved_method)
    weight = load_file(str(Path(path) / WEIGHTS_NAME))["weight"]
    adapter = _build(saved_method, model_dims(model), info["prefix_length"], weight, model)
    restore_saved_fields(adapter, info)
    adapter.base_fingerprint = base_fingerprint(model)
    _warn_if_other_base(path, info, model, adapter.base_fingerprint)
    return adapter


def export_peft(adapter, path, *, model=None, base_model_name: str | None = None) -> Path:
    """Write `adapter` in PEFT's adapter format (loadable by `PeftModel.from_pretrained`)."""
    if _is_seq2seq(adapter):
        from prefixlab.seq2seq_artifacts import export_peft_seq2seq

        return export_peft_seq2seq(adapter, path, model=model, base_model_name=base_model_name)
    _check_adapter(adapter)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    dims = adapter.dims
    weight = adapter.materialize().flat().detach().contiguous().cpu()
    save_file({"prompt_embeddings": weight}, str(folder / PEFT_WEIGHTS_NAME))
    common = {
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": adapter.prefix_length,
        "num_transformer_submodules": 1,
        "num_attention_heads": dims.n_heads,
        "num_layers": dims.n_layers,
        **peft_base_fields(model, base_model_name),
    }
    if adapter.method == "prefix":
        config = {
            **common,
            "peft_type": "PREFIX_TUNING",
            "token_dim": dims.kv_dim,
            "encoder_hidden_size": getattr(adapter, "mlp_hidden", dims.kv_dim),
            "prefix_projection": False,  # the MLP is not saved: PEFT serves it materialized
        }
    else:
        config = {
            **common,
            "peft_type": "PROMPT_TUNING",
            "token_dim": dims.d_model,
            **PEFT_RANDOM_PROMPT,
        }
    (folder / PEFT_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def import_peft(path, model):
    """Read a PEFT prefix- or prompt-tuning adapter folder into a prefixlab adapter."""
    folder, config = read_peft_config(path)
    if config.get("task_type") == "SEQ_2_SEQ_LM":
        from prefixlab.seq2seq_artifacts import import_peft_seq2seq

        return import_peft_seq2seq(folder, model)
    method = peft_method(folder, config)
    weight = read_peft_matrix(folder)
    dims = model_dims(model)
    if method == "prefix" and config.get("num_layers") not in (None, dims.n_layers):
        raise ValueError(
            f"PEFT prefix has num_layers={config['num_layers']}, the model has {dims.n_layers}."
        )
    return _build(method, dims, int(config["num_virtual_tokens"]), weight, model)


# ---------------------------------------------------------------------------------------------
# Adapter banks: N adapters (one per user or task) in one safetensors file
# ---------------------------------------------------------------------------------------------

BANK_FORMAT = "prefixlab-bank"


def save_bank(bank, path, *, model=None) -> Path:
    """Write an AdapterBank to ONE safetensors file; returns its path.

    The file holds one tensor "weights" [N, P, width] (every adapter materialized, in bank
    order) and, in the safetensors header, the method, P, the adapter names, the model dims
    and the base fingerprint. N = 1,000 direct prefixes on the embedded tiny model (P=10,
    width 1,024) is about 40 MB, one read.

    Args:
        path: the file to write (its folder is created); ".safetensors" is the usual suffix.
        model: the base model, to record its name and fingerprint (else the first adapter's).
    """
    from prefixlab.adapted import AdapterBank

    if not isinstance(bank, AdapterBank):
        raise ValueError(f"Expected an AdapterBank, got {type(bank).__name__}.")
    file = Path(path)
    if file.is_dir():
        raise ValueError(
            f"{file} is a folder; pass a file path such as {file / 'bank.safetensors'}."
        )
    file.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        weights = torch.stack([a.materialize().flat() for a in bank.adapters])  # [N, P, width]
    first = bank.adapters[0]
    header = {
        "format": BANK_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": bank.method,
        "prefix_length": str(bank.prefix_length),
        "names": json.dumps(bank.names),
        "dims": json.dumps(asdict(bank.dims)),
        "base_model": json.dumps(_base_name(model)),
        "base_fingerprint": json.dumps(
            base_fingerprint(model) if model is not None else first.base_fingerprint
        ),
    }
    save_file({"weights": weights.detach().contiguous().cpu()}, str(file), metadata=header)
    return file


def load_bank(path, model):
    """Read a file written by `save_bank` into an AdapterBank for `model` (names kept).

    Warns when the model's fingerprint differs from the saved base's; raises ValueError
    naming the mismatch when the dims do not fit.
    """
    from safetensors import safe_open

    from prefixlab.adapted import AdapterBank

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"No bank file {file}; save one with save_bank(bank, path).")
    with safe_open(str(file), framework="pt") as handle:
        header = handle.metadata() or {}
        if header.get("format") != BANK_FORMAT:
            raise ValueError(f"{file} is not a prefixlab bank (format={header.get('format')!r}).")
        weights = handle.get_tensor("weights")  # [N, P, width]
    method = header["method"]
    saved = ModelDims(**json.loads(header["dims"]))
    dims = model_dims(model)
    _check_dims(saved, dims, method)
    names = json.loads(header["names"])
    if len(names) != weights.shape[0]:
        raise ValueError(f"{file}: {len(names)} names for {weights.shape[0]} adapters.")
    prefix_length = int(header["prefix_length"])
    fingerprint = base_fingerprint(model)
    info = {
        "base_model": json.loads(header.get("base_model", "null")),
        "base_fingerprint": json.loads(header.get("base_fingerprint", "null")),
    }
    _warn_if_other_base(file, info, model, fingerprint)
    adapters = {}
    for name, weight in zip(names, weights, strict=True):
        adapter = _build(method, dims, prefix_length, weight, model)
        adapter.base_fingerprint = fingerprint
        adapters[name] = adapter
    return AdapterBank(adapters)
