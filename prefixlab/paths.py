"""Where the embedded default (tiny model, tokenizer, model card) lives on disk.

The repository keeps these files in its top-level ``data/`` folder. They are found,
in this order:

1. ``$PREFIXLAB_DATA`` when set (a folder laid out like ``data/``);
2. the installed package ``prefixlab._embedded`` (``pip install .`` copies ``data/`` there,
   and an editable install maps it back to the checkout);
3. ``data/`` next to the ``prefixlab/`` folder (a plain checkout, e.g. Colab after ``git clone``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TINY_MODEL_DIRNAME = "tiny-gpt2"
# The embedded models, smallest first: one recipe at three sizes (scripts/build_tiny_model.py
# --size NAME), each in data/<name>-gpt2. "tiny" is the default everywhere.
EMBEDDED_MODELS = ("nano", "tiny", "mini")
# The embedded encoder-decoder (scripts/build_tiny_seq2seq.py), in data/<name>-bart, loaded by
# prefixlab.seq2seq.load_seq2seq(name); it shares tiny-gpt2's tokenizer.
EMBEDDED_SEQ2SEQ_MODELS = ("tiny",)
# What a RunConfig calls each embedded encoder-decoder: its folder's name, "tiny-bart" for
# load_seq2seq("tiny") (RunConfig's "tiny" is the decoder-only tiny-gpt2).
EMBEDDED_SEQ2SEQ_RUN_NAMES = {f"{name}-bart": name for name in EMBEDDED_SEQ2SEQ_MODELS}
SYNTHETIC_E2E_DIRNAME = "synthetic-e2e"


def _candidates() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("PREFIXLAB_DATA")
    if env:
        found.append(Path(env).expanduser())
    # data/ has no __init__.py, so prefixlab._embedded is a namespace package: its folders are
    # the spec's search locations (importlib.resources.files would give a MultiplexedPath).
    try:
        spec = importlib.util.find_spec("prefixlab._embedded")
    except ModuleNotFoundError:
        spec = None
    if spec is not None:
        found.extend(Path(p) for p in spec.submodule_search_locations or [])
    found.append(Path(__file__).resolve().parent.parent / "data")
    return found


def data_dir() -> Path:
    """Return the folder that holds the embedded default.

    Raises:
        FileNotFoundError: when none of the locations above exists, with the places tried.
    """
    tried = _candidates()
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "prefixlab could not find its data/ folder. Tried: "
        + ", ".join(str(p) for p in tried)
        + ". Reinstall with `pip install -e .` from the repository, or set PREFIXLAB_DATA "
        "to the repository's data/ folder."
    )


def embedded_model_dir(name: str = "tiny") -> Path:
    """Folder of one embedded model (config, safetensors weights, tokenizer, model card).

    Args:
        name: one of `EMBEDDED_MODELS` ("nano", "tiny", "mini").

    Raises:
        ValueError: another name, listing the embedded ones.
        FileNotFoundError: the folder is missing, saying how to rebuild it.
    """
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"No embedded model {name!r}; the embedded models are {EMBEDDED_MODELS}.")
    path = data_dir() / f"{name}-gpt2"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The embedded model {name!r} is missing from {path}. Rebuild it with "
            f"`python scripts/build_tiny_model.py --size {name}`, or check out the repository's "
            "data/ folder."
        )
    return path


def embedded_seq2seq_dir(name: str = "tiny") -> Path:
    """Folder of the embedded encoder-decoder model (a tiny BART): data/<name>-bart.

    Args:
        name: one of `EMBEDDED_SEQ2SEQ_MODELS` ("tiny").

    Raises:
        ValueError: another name, listing the embedded ones.
        FileNotFoundError: the folder is missing, saying how to rebuild it.
    """
    if name not in EMBEDDED_SEQ2SEQ_MODELS:
        raise ValueError(
            f"No embedded encoder-decoder model {name!r}; the embedded ones are "
            f"{EMBEDDED_SEQ2SEQ_MODELS}."
        )
    path = data_dir() / f"{name}-bart"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The embedded encoder-decoder model {name!r} is missing from {path}. Rebuild it "
            "with `python scripts/build_tiny_seq2seq.py`, or check out the repository's data/ "
            "folder."
        )
    return path


def tiny_model_dir() -> Path:
    """Folder of the embedded default, the tiny GPT-2 (`embedded_model_dir("tiny")`)."""
    return embedded_model_dir("tiny")


def synthetic_e2e_dir() -> Path:
    """Folder of the synthetic E2E data as CSV files in the release's names and format
    (trainset.csv, devset.csv, testset_w_refs.csv): `load_e2e(synthetic_e2e_dir(), split)`
    reads the same pairs that `load_e2e("synthetic", split)` generates."""
    return data_dir() / SYNTHETIC_E2E_DIRNAME
