"""The on-disk format shared by decoder-only and encoder-decoder adapters: file names, the
format version, the JSON half (read and write) and the base model's name. Both
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
