"""The on-disk cache of runs: what keys a run, and reading and writing an entry.

A run is keyed by the sha256 of its canonical config (`canonical`: fields its method ignores
reset, the learning rate filled in), the package version, the code of every module that can
change its numbers (`result_modules`), the model's weights and the data files. Re-running a
notebook cell is then instant, and any change that could change a number misses the cache.

An entry is `<key>.json` (config, table row, History) plus `<key>.safetensors` (the trained
parameters, when there are at most MAX_CACHED_PARAMETERS of them).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prefixlab._version import __version__
from prefixlab.config import RunConfig, TrainConfig
from prefixlab.methods import method
from prefixlab.paths import (
    EMBEDDED_MODELS,
    EMBEDDED_SEQ2SEQ_RUN_NAMES,
    embedded_model_dir,
    embedded_seq2seq_dir,
)
from prefixlab.train import History, jsonable

CACHE_ENV = "PREFIXLAB_CACHE"
CACHE_FORMAT = 1
MAX_CACHED_PARAMETERS = 20_000_000  # trained weights kept on disk only below this size
# The module whose code, with everything it imports from prefixlab, decides a run's numbers.
RUN_MODULE = "prefixlab.runs"
# RunConfig fields only "prefix+lora" reads (prefixlab.hybrid); reset for every other method.
HYBRID_FIELDS = ("hybrid_schedule", "lora_lr_ratio", "prefix_share")
# RunConfig fields added after runs were cached: left out of the key at their default value,
# so that every run made before them keeps its key.
LATER_FIELDS = ("parts",)
_FINGERPRINTS: dict = {}  # model name / "code" -> fingerprint, computed once per process


def cache_dir() -> Path:
    """Where run results live: $PREFIXLAB_CACHE, else ~/.cache/prefixlab (subfolder runs/)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "prefixlab"
    return Path(root).expanduser() / "runs"


# -- fingerprints ----------------------------------------------------------------------------


def _hash_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _model_fingerprint(name: str) -> str:
    """Hash of a local model's config and weights (the embedded ones included); the name for
    hub ids."""
    if name in _FINGERPRINTS:
        return _FINGERPRINTS[name]
    path = None
    if name in EMBEDDED_MODELS:
        path = embedded_model_dir(name)
    elif name in EMBEDDED_SEQ2SEQ_RUN_NAMES:
        path = embedded_seq2seq_dir(EMBEDDED_SEQ2SEQ_RUN_NAMES[name])
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
    if path is None:
        value = name
    else:
        files = [p for p in path.iterdir() if p.suffix in (".json", ".safetensors", ".bin")]
        value = f"{name}:{_hash_files(files)}"
    _FINGERPRINTS[name] = value
    return value


def _data_fingerprint(source: str) -> str:
    path = Path(source).expanduser()
    if source != "synthetic" and path.is_file():
        return f"{source}:{_hash_files([path])}"
    if source != "synthetic" and path.is_dir():
        return f"{source}:{_hash_files([p for p in path.iterdir() if p.suffix == '.csv'])}"
    return source


def code_digest(source: str) -> str:
    """Hash of Python source that ignores what cannot change a result: comments, docstrings,
    blank lines and formatting. Any change to the code itself changes the hash."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def _source_file(name: str) -> Path | None:
    """The .py file of module `name`, found without importing it; None when there is none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _prefixlab_imports(tree: ast.Module) -> set[str]:
    """Names of the prefixlab modules an AST imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prefixlab."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefixlab"):
            found.add(node.module)
            # `from prefixlab.pkg import module` imports a module, not only a name
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def result_modules(root: str = RUN_MODULE) -> dict[str, Path]:
    """Every prefixlab module `root` imports, directly or through another: {name: file}.

    The modules whose code a run executes (config, methods, the adapters, training, data,
    evaluation, ...) found by reading the import statements, so a module that starts to
    decide numbers is fingerprinted the moment it is imported. The package root
    (`prefixlab/__init__.py`, which only re-exports) is left out.
    """
    found: dict[str, Path] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in found or name == "prefixlab":
            continue
        parent = name.rpartition(".")[0]
        parent_file = _source_file(parent) if parent != "prefixlab" else None
        if parent_file is not None and parent_file.name != "__init__.py":
            continue  # `from prefixlab.train import History`: History is not a module
        path = _source_file(name)
        if path is None:  # a name imported from a module, not a module itself
            continue
        found[name] = path
        todo.extend(_prefixlab_imports(ast.parse(path.read_text(encoding="utf-8"))))
    return dict(sorted(found.items()))


def _code_fingerprint() -> str:
    """Hash of the code (not the comments or docstrings) of `result_modules()`: editing prose
    keeps the run cache, editing code empties it."""
    if "code" not in _FINGERPRINTS:
        digests = [
            f"{name}:{code_digest(path.read_text(encoding='utf-8'))}"
            for name, path in result_modules().items()
        ]
        _FINGERPRINTS["code"] = hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]
    return _FINGERPRINTS["code"]


# -- keys ------------------------------------------------------------------------------------


def canonical(config: RunConfig) -> RunConfig:
    """The run with fields its method ignores reset to defaults, and lr filled in.

    Two configs with the same canonical form give the same result (e.g. prefix_length for
    LoRA, or seed and lr for "none"), so they share one cache entry and one grid row.
    """
    defaults = RunConfig()
    row = method(config.method)
    changes: dict = {}
    if not row.uses_prefix_length:
        changes.update(prefix_length=defaults.prefix_length, init=defaults.init, init_text=None)
    if row.reparam != "mlp":
        changes["mlp_hidden"] = defaults.mlp_hidden
    if not row.uses_lora:
        changes.update(lora_rank=defaults.lora_rank, lora_alpha=defaults.lora_alpha)
    if row.adapter != "prefix":  # parts places a prefix; a soft prompt sits in the encoder input
        changes["parts"] = defaults.parts
    if not row.is_hybrid:
        changes.update({name: getattr(defaults, name) for name in HYBRID_FIELDS})
    elif config.hybrid_schedule == "joint":  # one stage: no share to split
        changes["prefix_share"] = defaults.prefix_share
    if config.n_train_mrs is None:  # every training MR: nothing to subsample per seed
        changes["subsample_per_seed"] = False
    if config.method == "none":
        t = config.train
        changes["train"] = TrainConfig(
            max_length=t.max_length,
            batch_size=t.batch_size,
            eval_batch_size=t.eval_batch_size,
            eval_batches=t.eval_batches,
        )
    return dataclasses.replace(config, **changes).resolved()


def key_fields(config: RunConfig) -> dict:
    """The config part of a run's cache key: the canonical config as a dict, without the
    fields of "prefix+lora" for the other methods, and without the LATER_FIELDS at their
    defaults, so that adding the hybrid and encoder-decoder runs left the other keys' config
    part as it was (tests/test_hybrid_runs.py pins it)."""
    config = canonical(config)
    fields = config.to_dict()
    if not method(config.method).is_hybrid:
        for name in HYBRID_FIELDS:
            del fields[name]
    defaults = RunConfig()
    for name in LATER_FIELDS:
        if fields[name] == getattr(defaults, name):
            del fields[name]
    return jsonable(fields)


def run_key(config: RunConfig) -> str:
    """Cache key: sha256 of the canonical config, package version, code, model and data."""
    config = canonical(config)
    payload = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "code": _code_fingerprint(),
        "model": _model_fingerprint(config.model),
        "data": _data_fingerprint(config.data),
        "config": key_fields(config),
    }
    text = json.dumps(jsonable(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- entries ---------------------------------------------------------------------------------


def _cache_paths(key: str) -> tuple[Path, Path]:
    folder = cache_dir()
    return folder / f"{key}.json", folder / f"{key}.safetensors"


def n_trainable_parameters(adapted: nn.Module) -> int:
    """Number of parameters of `adapted` that require grad."""
    return sum(p.numel() for p in adapted.parameters() if p.requires_grad)


def trainable_state(adapted: nn.Module) -> dict[str, torch.Tensor]:
    """{name: a CPU copy} of every parameter of `adapted` that requires grad: what a run
    trained, as the cache (and a study's adapters file) stores it."""
    return {
        name: p.detach().contiguous().cpu().clone()
        for name, p in adapted.named_parameters()
        if p.requires_grad
    }


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(jsonable(payload), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_entry(key: str) -> dict | None:
    """The cached {"key", "config", "row", "history", "created"} of a run, or None.

    A missing or damaged entry (or one written under another key) reads as None, so the run
    is computed again.
    """
    path, _ = _cache_paths(key)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if payload.get("key") == key else None


def save_entry(key: str, config: RunConfig, row: dict, history: History, adapted) -> None:
    """Write a run: its JSON, and its trained parameters when there are few enough."""
    path, weights = _cache_paths(key)
    if config.method != "none" and n_trainable_parameters(adapted) <= MAX_CACHED_PARAMETERS:
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(f".tmp{os.getpid()}")
        save_file(trainable_state(adapted), str(tmp))
        os.replace(tmp, weights)
    payload = {
        "key": key,
        "config": config.to_dict(),
        "row": row,
        "history": history.to_dict(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_json_atomic(path, payload)


def entry_keys(run_id: str) -> list[str]:
    """The keys of the cache entries whose name starts with `run_id` (a run table's run_id is
    the first 12 characters of its key), sorted."""
    if not isinstance(run_id, str) or not run_id.isalnum():
        raise ValueError(f"run_id must be the letters and digits of a run id, got {run_id!r}.")
    folder = cache_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"{run_id}*.json"))


def read_trained(key: str) -> dict[str, torch.Tensor] | None:
    """The trained parameters a cache entry kept ({name: tensor}), or None when it kept none."""
    _, weights = _cache_paths(key)
    return load_file(str(weights)) if weights.is_file() else None


@torch.no_grad()
def load_state(adapted: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Copy `state` ({name: tensor}, `trainable_state`) into the trainable parameters of
    `adapted`. Returns False, leaving `adapted` as it was, when `state` misses one of them or
    holds one of another shape."""
    trainable = [(name, p) for name, p in adapted.named_parameters() if p.requires_grad]
    if any(name not in state or state[name].shape != p.shape for name, p in trainable):
        return False
    for name, p in trainable:
        p.copy_(state[name].to(p.device))
    return True


def load_trained(key: str, adapted: nn.Module) -> bool:
    """Copy a cached run's trained parameters into `adapted` (built untrained, same config).

    Returns False, leaving `adapted` as it was, when the weights were not kept (too many) or
    do not cover every trainable parameter.
    """
    state = read_trained(key)
    return state is not None and load_state(adapted, state)
