"""Save, load, and exchange with PEFT the encoder-decoder adapters of prefixlab.seq2seq.

prefixlab's format is the decoder-only one (artifacts.py), with one tensor per part:

    adapter.safetensors   "encoder", "decoder", "cross": [P, L*2*kv_dim] each (prefix, the
                          parts it has), or "weight": [P, d_model] (prompt)
    adapter.json          format, architecture "encoder-decoder", method, parts, P, dims, ...

PEFT's SEQ_2_SEQ_LM format, as PEFT 0.21 uses it with transformers 5 (checked in the tests):

- Prefix tuning stores one matrix `prompt_embeddings` [P, L*2*kv_dim] and feeds it to the
  decoder self-attention only: PEFT duplicates it along the layer axis for a self and a cross
  half, then discards the cross half (an empty cross-attention cache). After the duplication
  decoder layer l reads the key/value block stored for layer (2l mod L). With an odd number of
  layers that is a permutation of the layers; with an even number, layers l and l + L/2 read
  the same block and half of the matrix is never read.
  So: only a prefix with parts=("decoder",) can be exported, and with an even L only when
  layers l and l + L/2 hold the same keys and values (any PEFT-trained prefix does); import
  gives every decoder layer the block PEFT would feed it, so logits agree exactly.
- Prompt tuning stores [2P, d_model] (one block per "transformer submodule") and feeds only
  the first P rows, in front of the encoder input. Export writes zeros in the unused rows.
"""

from __future__ import annotations

import json
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
from prefixlab.seq2seq import (
    Seq2SeqDims,
    Seq2SeqPrefixTuning,
    Seq2SeqPromptTuning,
    seq2seq_dims,
    seq2seq_fingerprint,
)

ARCHITECTURE = "encoder-decoder"


def is_seq2seq_adapter(adapter) -> bool:
    return isinstance(adapter, (Seq2SeqPrefixTuning, Seq2SeqPromptTuning))


def _check_adapter(adapter) -> None:
    if not is_seq2seq_adapter(adapter):
        raise ValueError(
            "Expected a Seq2SeqPrefixTuning or Seq2SeqPromptTuning adapter, got "
            f"{type(adapter).__name__}."
        )


def save_seq2seq_adapter(adapter, path, *, model=None, metadata: dict | None = None) -> Path:
    """Write `adapter` (materialized) to the folder `path`; returns the folder.

    Args:
        model: the base model, to record its name and fingerprint (optional).
        metadata: JSON-serializable training details.
    """
    _check_adapter(adapter)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    direct = adapter.materialize()
    if adapter.method == "prefix":
        tensors = {part: direct.flat(part).detach().contiguous().cpu() for part in adapter.parts}
    else:
        tensors = {"weight": direct.flat().detach().contiguous().cpu()}
    info = {
        "format": "prefixlab-adapter",
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "method": adapter.method,
        "parts": list(adapter.parts),
        "prefix_length": adapter.prefix_length,
        "trained_reparam": adapter.reparam,
        "init": adapter.init,
        "init_text": adapter.init_text,
        "base_model": _base_name(model),
        "dims": asdict(adapter.dims),
        "base_fingerprint": (
            seq2seq_fingerprint(model) if model is not None else adapter.base_fingerprint
        ),
        "metadata": metadata or {},
    }
    text = info_text(info)
    save_file(tensors, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(text)
    return folder


def _build(method: str, dims: Seq2SeqDims, P: int, tensors: dict, model, parts=None):
    """A direct adapter for `model` holding `tensors` (checked against the expected shapes)."""
    first = next(model.parameters())
    if method == "prefix":
        adapter = Seq2SeqPrefixTuning(dims, P, parts=tuple(parts), init="zero")
        for part in adapter.parts:
            _set(adapter.weights, part, tensors[part], first)
    else:
        adapter = Seq2SeqPromptTuning(dims, P)
        expected = tuple(adapter.weight.shape)
        if tuple(tensors["weight"].shape) != expected:
            raise ValueError(
                f"Stored prompt has shape {tuple(tensors['weight'].shape)}, expected {expected}."
            )
        adapter.weight = torch.nn.Parameter(tensors["weight"].to(first.device, first.dtype))
    adapter.base_fingerprint = seq2seq_fingerprint(model)
    return adapter


def _set(weights, part: str, tensor: torch.Tensor, like: torch.Tensor) -> None:
    expected = tuple(weights[part].shape)
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"Stored {part} prefix has shape {tuple(tensor.shape)}, expected {expected} for "
            "this model: load it onto the model it was trained for."
        )
    weights[part] = torch.nn.Parameter(tensor.to(device=like.device, dtype=like.dtype))


def load_seq2seq_adapter(path, model, *, method: str | None = None):
    """Load a folder written by `save_seq2seq_adapter` for `model`, checking that they match.

    Raises:
        ValueError: not an encoder-decoder artifact, another method than `method`, or shapes
            that do not fit the model (naming the mismatch).
    """
    info = read_adapter_info(path)
    if info.get("format") != "prefixlab-adapter" or info.get("architecture") != ARCHITECTURE:
        raise ValueError(
            f"{path} is not an encoder-decoder prefixlab adapter (architecture="
            f"{info.get('architecture')!r}); load decoder-only adapters with load_adapter."
        )
    check_saved_method(path, info["method"], method)
    saved, dims = Seq2SeqDims(**info["dims"]), seq2seq_dims(model)
    for field in ("n_encoder_layers", "n_decoder_layers", "n_encoder_heads", "n_decoder_heads",
                  "encoder_head_dim", "decoder_head_dim", "d_model"):  # fmt: skip
        if getattr(saved, field) != getattr(dims, field):
            raise ValueError(
                f"Adapter does not fit this model: it was saved for {field}="
                f"{getattr(saved, field)}, the model has {getattr(dims, field)}. Load it onto "
                f"the base model it was trained for (saved base: {info.get('base_model')!r})."
            )
    tensors = load_file(str(Path(path) / WEIGHTS_NAME))
    adapter = _build(info["method"], dims, info["prefix_length"], tensors, model, info["parts"])
    restore_saved_fields(adapter, info)
    return adapter


def peft_layer_slot(layer: int, n_layers: int) -> int:
    """The layer block of PEFT's SEQ_2_SEQ_LM prefix matrix that decoder layer `layer` reads.

    PEFT views the matrix as [B, P, 2L, H, D], concatenates it with itself along the 2L axis
    (a self and a cross half) and cuts groups of four (self key, self value, cross key, cross
    value): group l starts at entry 4l, i.e. at entry 4l mod 2L of the stored matrix.
    """
    return (2 * layer) % n_layers


def export_peft_seq2seq(adapter, path, *, model=None, base_model_name: str | None = None) -> Path:
    """Write `adapter` in PEFT's SEQ_2_SEQ_LM format (loadable by `PeftModel.from_pretrained`).

    Raises:
        ValueError: a prefix with encoder or cross parts (PEFT has nowhere to put them), or an
            even number of decoder layers whose layers l and l + L/2 differ (PEFT feeds them
            one block); the message says what would export.
    """
    _check_adapter(adapter)
    dims, P = adapter.dims, adapter.prefix_length
    common = {
        "task_type": "SEQ_2_SEQ_LM",
        "num_virtual_tokens": P,
        "num_transformer_submodules": 2,
        **peft_base_fields(model, base_model_name),
    }
    if adapter.method == "prefix":
        weight = _peft_prefix_matrix(adapter)
        config = {
            **common,
            "peft_type": "PREFIX_TUNING",
            # written out, so PEFT does not size the prefix from the encoder's config fields
            "num_layers": dims.n_decoder_layers,
            "num_attention_heads": dims.n_decoder_heads,
            "token_dim": dims.kv_dim("decoder"),
            "encoder_hidden_size": dims.kv_dim("decoder"),
            "prefix_projection": False,
        }
    else:
        soft = adapter.flat().detach().cpu()
        weight = torch.cat([soft, torch.zeros_like(soft)])  # PEFT reads rows 0..P-1 only
        config = {
            **common,
            "peft_type": "PROMPT_TUNING",
            "num_layers": dims.n_encoder_layers,
            "num_attention_heads": dims.n_encoder_heads,
            "token_dim": dims.d_model,
            **PEFT_RANDOM_PROMPT,
        }
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeddings": weight.contiguous()}, str(folder / PEFT_WEIGHTS_NAME))
    (folder / PEFT_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


@torch.no_grad()
def _peft_prefix_matrix(adapter) -> torch.Tensor:
    """Our decoder prefix [P, L*2*kv] -> PEFT's matrix, each layer in the slot PEFT reads."""
    if adapter.parts != ("decoder",):
        raise ValueError(
            f"PEFT's SEQ_2_SEQ_LM prefix feeds the decoder self-attention only; this prefix has "
            f"parts {adapter.parts}. Only a prefix built with parts=('decoder',) exports to PEFT "
            "(save the others with save_seq2seq_adapter)."
        )
    L, P = adapter.dims.n_decoder_layers, adapter.prefix_length
    ours = adapter.flat("decoder").detach().cpu().view(P, L, -1)  # [P, L, 2*kv]
    theirs = torch.zeros_like(ours)
    owner: dict[int, int] = {}
    for layer in range(L):
        slot = peft_layer_slot(layer, L)
        if slot in owner and not torch.equal(ours[:, layer], ours[:, owner[slot]]):
            raise ValueError(
                f"PEFT feeds decoder layers {owner[slot]} and {layer} the same prefix block "
                f"(layer l reads block 2l mod {L}), but this prefix gives them different keys "
                "and values, so PEFT cannot hold it. With an even number of layers only a "
                "prefix whose layers l and l + L/2 agree exports (e.g. one imported from PEFT)."
            )
        owner[slot] = layer
        theirs[:, slot] = ours[:, layer]
    return theirs.reshape(P, -1)


def import_peft_seq2seq(path, model):
    """Read a PEFT SEQ_2_SEQ_LM prefix- or prompt-tuning adapter into a prefixlab adapter.

    A prefix becomes a Seq2SeqPrefixTuning with parts=("decoder",) whose layer l holds the
    block PEFT feeds layer l (see module doc), so both give the same logits.
    """
    folder, config = read_peft_config(path)
    if config.get("task_type") != "SEQ_2_SEQ_LM":
        raise ValueError(
            f"{folder} holds a {config.get('task_type')} adapter; import_peft_seq2seq reads "
            "SEQ_2_SEQ_LM adapters (use import_peft for CAUSAL_LM)."
        )
    method = peft_method(folder, config)
    if config.get("num_transformer_submodules", 2) != 2:
        raise ValueError(
            "This adapter sets num_transformer_submodules="
            f"{config['num_transformer_submodules']}; PEFT's SEQ_2_SEQ_LM default (2) is the "
            "only layout prefixlab maps."
        )
    weight = read_peft_matrix(folder)
    dims, P = seq2seq_dims(model), int(config["num_virtual_tokens"])
    if method == "prompt":
        return _build("prompt", dims, P, {"weight": weight[:P]}, model)
    L = dims.n_decoder_layers
    if config.get("num_layers") not in (None, L):
        raise ValueError(
            f"PEFT prefix has num_layers={config['num_layers']}, the decoder has {L} layers."
        )
    if tuple(weight.shape) != (P, dims.width("decoder")):
        raise ValueError(
            f"PEFT prefix has shape {tuple(weight.shape)}, expected {(P, dims.width('decoder'))} "
            "for this model's decoder."
        )
    theirs = weight.view(P, L, -1)
    ours = torch.stack([theirs[:, peft_layer_slot(layer, L)] for layer in range(L)], dim=1)
    return _build("prefix", dims, P, {"decoder": ours.reshape(P, -1)}, model, ("decoder",))
