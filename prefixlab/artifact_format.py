"""The on-disk format shared by decoder-only and encoder-decoder adapters: file names, the
format version, the JSON half (read and write), the base model's name, and the parts of
PEFT's adapter folders that do not depend on the architecture. Both
`prefixlab.artifacts` and `prefixlab.seq2seq_artifacts` build on it, so neither imports the
other at module level."""

from __future__ import annotations

import json
from pathlib import Path

FORMAT_VERSION = 1
WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter.json"
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"


def _base_name(model) -> str | None:
    if model is None:
        return None
    return getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)


def info_text(info: dict) -> str:
    """The adapter JSON as written (a ValueError for metadata that is not JSON-serializable)."""
    try:
        return json.dumps(info, indent=2) + "\n"
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serializable: {err}") from err


def read_adapter_info(path) -> dict:
    """The JSON half of a saved adapter (no tensors are read)."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"No {CONFIG_NAME} in {path}: not a prefixlab adapter folder.")
    return json.loads(file.read_text())


def check_saved_method(path, saved_method: str, method: str | None) -> None:
    """A ValueError when `method` is given and the adapter in `path` holds another one."""
    if method is not None and method != saved_method:
        raise ValueError(f"Expected a {method} adapter but {path} holds a {saved_method} adapter.")


def restore_saved_fields(adapter, info: dict) -> None:
    """Give a loaded adapter its saved init, init text and metadata."""
    adapter.init, adapter.init_text = info.get("init", adapter.init), info.get("init_text")
    adapter.metadata = info.get("metadata", {})


# -- PEFT's adapter folders ---------------------------------------------------------------------

PEFT_METHODS = {"PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}
# The fields of a PEFT prompt-tuning config whose prompt is stored as is (no init to redo).
PEFT_RANDOM_PROMPT = {
    "prompt_tuning_init": "RANDOM",
    "prompt_tuning_init_text": None,
    "tokenizer_name_or_path": None,
    "tokenizer_kwargs": None,
}


def peft_base_fields(model, base_model_name: str | None) -> dict:
    """The base model and serving fields every exported PEFT config carries."""
    return {
        "base_model_name_or_path": base_model_name or _base_name(model),
        "inference_mode": True,
        "revision": None,
        "modules_to_save": None,
        "auto_mapping": None,
    }


def read_peft_config(path) -> tuple[Path, dict]:
    """(folder, its adapter_config.json); FileNotFoundError when it is not a PEFT folder."""
    folder = Path(path)
    config_file = folder / PEFT_CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"No {PEFT_CONFIG_NAME} in {folder}: not a PEFT adapter folder.")
    return folder, json.loads(config_file.read_text())


def peft_method(folder, config: dict) -> str:
    """The method of a PEFT config, "prefix" or "prompt"; a ValueError for other PEFT types."""
    peft_type = config.get("peft_type")
    if peft_type not in PEFT_METHODS:
        raise ValueError(
            f"{folder} holds a {peft_type} adapter; prefixlab imports PREFIX_TUNING and "
            "PROMPT_TUNING only."
        )
    return PEFT_METHODS[peft_type]


def read_peft_matrix(folder: Path):
    """The one matrix a PEFT prefix- or prompt-tuning folder stores ("prompt_embeddings")."""
    from safetensors.torch import load_file

    weights_file = folder / PEFT_WEIGHTS_NAME
    if not weights_file.is_file():
        raise FileNotFoundError(f"No {PEFT_WEIGHTS_NAME} in {folder}.")
    return load_file(str(weights_file))["prompt_embeddings"]
