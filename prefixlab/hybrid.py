"""Prefix + LoRA hybrids: a prefix in the attention cache and LoRA in the projections.

Design: the hybrid is an ordinary `AdaptedModel` whose model carries LoRA (`add_lora` on a
copy) and whose adapter is a `PrefixTuning`. The two never touch: LoRA changes the weights
that compute the real tokens' queries, keys and values, the prefix adds P key/value
positions to the cache, which no projection sees. So the forward pass needs no new glue, and
the hybrid equals "merge LoRA into the weights, then serve the prefix on the merged model"
(tests/test_hybrid.py checks it). What is new lives here:

- `build_hybrid(model, P, rank=...)`: the untrained hybrid (on a copy of the model).
- `set_stage(adapted, "joint" | "prefix" | "lora")`: which part requires grad.
- `train_hybrid(adapted, data, config, schedule=...)`: "joint" (both at once, each at its own
  rate) or "prefix-then-lora" (the prefix alone, then LoRA with the prefix frozen), both
  through `prefixlab.train.train`, returning one History.
- `save_hybrid` / `load_hybrid`: a folder with the prefix (`save_adapter`) and the LoRA
  matrices (safetensors + JSON).
- `export_peft_hybrid`: PEFT holds prefix tuning and LoRA only as two adapters (its mixed
  models combine LoRA-like tuners, not prefix tuning), so the export is two PEFT folders
  applied in sequence: load "lora", `merge_and_unload()`, then load "prefix" on the result.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prefixlab._validate import require_choice, require_number
from prefixlab.adapted import AdaptedModel
from prefixlab.artifacts import export_peft, load_adapter, save_adapter
from prefixlab.config import HYBRID_SCHEDULES, RunConfig, TrainConfig, active_preset
from prefixlab.lora import add_lora, has_lora, lora_modules, trainable_lora_parameters
from prefixlab.methods import method
from prefixlab.prefix import PrefixTuning
from prefixlab.train import History, train

STAGES = ("joint", "prefix", "lora")
SCHEDULES = HYBRID_SCHEDULES  # ("joint", "prefix-then-lora"), also RunConfig.hybrid_schedule
LORA_WEIGHTS, LORA_CONFIG = "lora.safetensors", "lora.json"


def build_hybrid(
    model: nn.Module,
    prefix_length: int = 10,
    *,
    rank: int = 8,
    alpha: float | None = None,
    targets=None,
    seed: int = 0,
    **prefix_kwargs,
) -> AdaptedModel:
    """An untrained prefix + LoRA hybrid on a deep copy of `model` (left unchanged).

    Args:
        prefix_length, **prefix_kwargs: the PrefixTuning (reparam, init, init_text, tokenizer,
            mlp_hidden, ...).
        rank, alpha, targets: the LoRA (`prefixlab.lora.add_lora`).
        seed: seeds both the prefix and LoRA's A matrices.
    Returns:
        AdaptedModel(copy with LoRA, PrefixTuning); both parts require grad.
    """
    if has_lora(model):
        raise ValueError("The model already has LoRA; pass the frozen base model.")
    prefix = PrefixTuning(model, prefix_length, seed=seed, **prefix_kwargs)
    lora_model = copy.deepcopy(model)
    add_lora(lora_model, rank, alpha, targets, seed=seed)
    return AdaptedModel(lora_model, prefix)


def is_hybrid(adapted) -> bool:
    """Whether `adapted` is an AdaptedModel with a prefix and LoRA in its model."""
    return (
        isinstance(adapted, AdaptedModel)
        and isinstance(adapted.adapter, PrefixTuning)
        and has_lora(adapted.model)
    )


def _check_hybrid(adapted) -> None:
    if not is_hybrid(adapted):
        raise ValueError(
            "Expected a prefix + LoRA hybrid: an AdaptedModel whose adapter is a PrefixTuning "
            "and whose model has LoRA (build one with prefixlab.hybrid.build_hybrid)."
        )


def set_stage(adapted: AdaptedModel, stage: str) -> None:
    """Make the prefix, LoRA, or both ("joint") the parameters that train."""
    _check_hybrid(adapted)
    require_choice("stage", stage, STAGES)
    for p in adapted.adapter.parameters():
        p.requires_grad_(stage in ("joint", "prefix"))
    for p in trainable_lora_parameters(adapted.model):
        p.requires_grad_(stage in ("joint", "lora"))


def lora_lr_of(lora_lr: float):
    """`train(lr_of=...)` for the hybrid: LoRA's matrices at `lora_lr`, the prefix at the
    run's rate."""
    return lambda name: lora_lr if ".lora_A" in name or ".lora_B" in name else None


def train_hybrid(
    adapted: AdaptedModel,
    train_data,
    config: TrainConfig | RunConfig | None = None,
    *,
    schedule: str = "joint",
    lora_lr: float | None = None,
    prefix_share: float = 0.5,
    **train_kwargs,
) -> History:
    """Train a hybrid with one of two schedules, at one total step budget (`config.steps`).

    "joint": prefix and LoRA together, the prefix at config.lr (None = the prefix's default
    rate), LoRA at `lora_lr` (None = LoRA's default), one warmup and decay.
    "prefix-then-lora": the prefix alone for round(prefix_share * steps) steps at config.lr,
    then LoRA alone with the prefix frozen for the rest at `lora_lr`; each stage has its
    own warmup and decay and optimizer, and the second stage draws its batches with seed + 1
    so it does not replay the first stage's. The two stages come back as one History
    (steps, times and validations continue across the boundary; `config["stages"]` keeps
    both stages' settings). A first stage that stops early (NaN, interrupt, callback) ends
    the run there.

    **train_kwargs go to `prefixlab.train.train` (val_data, tokenizer, progress, callback,
    desc). Both parts require grad again afterwards.
    """
    _check_hybrid(adapted)
    require_choice("schedule", schedule, SCHEDULES)
    require_number("lora_lr", lora_lr, above=0, allow_none=True, hint="Try 3e-3 (None).")
    require_number("prefix_share", prefix_share, above=0, below=1, hint="Try 0.5.")
    if "lr_of" in train_kwargs:
        raise ValueError("train_hybrid sets lr_of itself; pass lora_lr instead.")
    if config is None:
        config = active_preset().train
    if isinstance(config, RunConfig):
        config = config.resolved().train
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig or RunConfig, got {type(config).__name__}.")
    prefix_lr = config.lr if config.lr is not None else method("prefix").default_lr
    lora_lr = method("lora").default_lr if lora_lr is None else lora_lr
    try:
        if schedule == "joint":
            set_stage(adapted, "joint")
            return train(
                adapted, train_data, config.with_(lr=prefix_lr), lr_of=lora_lr_of(lora_lr),
                **train_kwargs,
            )  # fmt: skip
        first_steps = round(prefix_share * config.steps)
        if not 1 <= first_steps < config.steps:
            raise ValueError(
                f"prefix_share={prefix_share} of steps={config.steps} leaves a stage without "
                "steps; raise steps or move prefix_share toward 0.5."
            )
        set_stage(adapted, "prefix")
        first = train(
            adapted, train_data, _stage_config(config, first_steps, prefix_lr, config.seed),
            **train_kwargs,
        )  # fmt: skip
        if first.stopped_reason not in ("completed", "diverged"):
            return first
        set_stage(adapted, "lora")
        second = train(
            adapted, train_data,
            _stage_config(config, config.steps - first_steps, lora_lr, config.seed + 1),
            **train_kwargs,
        )  # fmt: skip
        return concat_histories(first, second)
    finally:
        set_stage(adapted, "joint")


def _stage_config(config: TrainConfig, steps: int, lr: float, seed: int) -> TrainConfig:
    """The TrainConfig of one stage: its steps, rate and seed; an explicit warmup scaled to
    the stage's share of the steps."""
    warmup = config.warmup_steps
    if warmup is not None:
        warmup = min(round(warmup * steps / config.steps), steps - 1)
    return config.with_(steps=steps, lr=lr, seed=seed, warmup_steps=warmup)


def concat_histories(first: History, second: History) -> History:
    """One History of two consecutive stages: the second's steps, validation steps and times
    shifted to follow the first's; its validation before step 1 (the first's last) dropped."""
    offset = first.steps_done
    elapsed = first.time[-1] if first.time else 0.0
    val = [(s, v) for s, v in zip(second.val_step, second.val_loss, strict=True) if s > 0]
    return History(
        step=first.step + [s + offset for s in second.step],
        loss=first.loss + second.loss,
        grad_norm=first.grad_norm + second.grad_norm,
        lr=first.lr + second.lr,
        time=first.time + [t + elapsed for t in second.time],
        val_step=first.val_step + [s + offset for s, _ in val],
        val_loss=first.val_loss + [v for _, v in val],
        stopped_reason=second.stopped_reason,
        message=second.message,
        diverged_at=None if second.diverged_at is None else second.diverged_at + offset,
        config={"train": first.config.get("train"), "stages": [first.config, second.config]},
    )


# ---------------------------------------------------------------------------------------------
# Save, load, export
# ---------------------------------------------------------------------------------------------


def _lora_info(model: nn.Module) -> dict:
    modules = lora_modules(model)
    first = next(iter(modules.values()))
    return {
        "format": "prefixlab-lora",
        "rank": first.rank,
        "alpha": first.alpha,
        "targets": sorted({name.rsplit(".", 1)[-1] for name in modules}),
        "modules": sorted(modules),
    }


def save_hybrid(adapted: AdaptedModel, path, *, metadata: dict | None = None) -> Path:
    """Write a hybrid to the folder `path`: prefix/ (`save_adapter`) plus lora.safetensors
    (each wrapped projection's lora_A [r, in] and lora_B [out, r]) and lora.json."""
    _check_hybrid(adapted)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_adapter(adapted.adapter, folder / "prefix", model=adapted.model, metadata=metadata)
    state = {}
    for name, module in lora_modules(adapted.model).items():
        state[f"{name}.lora_A"] = module.lora_A.detach().contiguous().cpu()
        state[f"{name}.lora_B"] = module.lora_B.detach().contiguous().cpu()
    save_file(state, str(folder / LORA_WEIGHTS))
    (folder / LORA_CONFIG).write_text(json.dumps(_lora_info(adapted.model), indent=2) + "\n")
    return folder


def load_hybrid(path, model: nn.Module) -> AdaptedModel:
    """Rebuild a saved hybrid on a copy of the frozen base `model` (left unchanged)."""
    folder = Path(path)
    if not (folder / LORA_CONFIG).is_file():
        raise FileNotFoundError(f"No {LORA_CONFIG} in {folder}: not a saved prefix + LoRA hybrid.")
    info = json.loads((folder / LORA_CONFIG).read_text())
    prefix = load_adapter(folder / "prefix", model, method="prefix")
    lora_model = copy.deepcopy(model)
    add_lora(lora_model, info["rank"], info["alpha"], info["targets"])
    modules = lora_modules(lora_model)
    if sorted(modules) != info["modules"]:
        raise ValueError(
            f"The saved LoRA wraps {info['modules']}, this model's matching projections are "
            f"{sorted(modules)}; load onto the base model the hybrid was trained on."
        )
    state = load_file(str(folder / LORA_WEIGHTS))
    with torch.no_grad():
        for name, module in modules.items():
            for part in ("lora_A", "lora_B"):
                getattr(module, part).copy_(state[f"{name}.{part}"])
    return AdaptedModel(lora_model, prefix)


def export_peft_lora(model: nn.Module, path, *, base_model_name: str | None = None) -> Path:
    """Write a model's LoRA matrices as a PEFT LORA adapter folder (`PeftModel.from_pretrained`).

    PEFT's LoRA computes the same update (scale alpha / r, lora_A [r, in], lora_B [out, r]);
    on GPT-2's Conv1D projections it needs fan_in_fan_out=True, which the config says.
    """
    modules = lora_modules(model)
    if not modules:
        raise ValueError("The model has no LoRA modules (prefixlab.lora.add_lora adds them).")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    info = _lora_info(model)
    state = {}
    for name, module in modules.items():
        for part in ("lora_A", "lora_B"):
            tensor = getattr(module, part).detach().contiguous().cpu()
            state[f"base_model.model.{name}.{part}.weight"] = tensor
    save_file(state, str(folder / "adapter_model.safetensors"))
    conv1d = any(type(m.base).__name__ == "Conv1D" for m in modules.values())
    name_or_path = getattr(model.config, "_name_or_path", None) or None
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": info["rank"],
        "lora_alpha": info["alpha"],
        "target_modules": info["targets"],
        "lora_dropout": 0.0,
        "fan_in_fan_out": conv1d,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
        "base_model_name_or_path": base_model_name or name_or_path,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def export_peft_hybrid(adapted: AdaptedModel, path, *, base_model_name: str | None = None):
    """Export a hybrid as two PEFT folders, path/lora and path/prefix; returns both paths.

    PEFT cannot hold a prefix and LoRA as one adapter: apply them in sequence, LoRA merged
    first (the prefix's keys and values bypass the projections LoRA changes, so this is
    exact):

        merged = PeftModel.from_pretrained(base, path / "lora").merge_and_unload()
        model = PeftModel.from_pretrained(merged, path / "prefix")
    """
    _check_hybrid(adapted)
    folder = Path(path)
    lora = export_peft_lora(adapted.model, folder / "lora", base_model_name=base_model_name)
    prefix = export_peft(
        adapted.adapter, folder / "prefix", model=adapted.model, base_model_name=base_model_name
    )
    return {"lora": lora, "prefix": prefix}


__all__ = [
    "SCHEDULES",
    "build_hybrid",
    "concat_histories",
    "export_peft_hybrid",
    "export_peft_lora",
    "is_hybrid",
    "load_hybrid",
    "lora_lr_of",
    "save_hybrid",
    "set_stage",
    "train_hybrid",
]
