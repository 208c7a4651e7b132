"""Training on Hugging Face Accelerate: one process, several GPUs (DDP), mixed precision.

`train_accelerated(config, out)` trains any method of a RunConfig through `accelerate.Accelerator`
and writes what a user keeps:

    out/adapter/        prefixlab artifact, `load_adapter` reads it (prefix, prefix+mlp, prompt)
    out/peft/           the same prefix or prompt in PEFT's format (`PeftModel.from_pretrained`)
    out/lora/           LoRA matrices (lora.safetensors + lora.json)             (lora)
    out/model/          a full model folder `load_model` reads, LoRA merged in   (lora, full)
    out/metrics.json    losses, steps, world size, global batch, wall time, versions, scores
    out/checkpoints/    step_000050/ ...: the state to resume from (`resume=True`)

Launched plainly it runs on one device; under `accelerate launch --num_processes N` each
process takes its share of every batch and DDP averages the gradients.

What stays the same as `prefixlab.train.train` (and is reused from it): the global batches (the
same shuffled rows per step, whatever the number of processes), the loss (mean cross-entropy
over every target token of the global batch: each process scales its token sum by the global
token count, so N processes or A accumulation steps give the loss and gradient of one batch),
AdamW with the same learning-rate schedule (`TrainConfig.lr_at`), clipping of the global norm,
and a stop with a message on a non-finite loss. Parameters and the optimizer state are saved
every `checkpoint_every` steps; a run resumed from there (after Ctrl-C, a crash or a pre-empted
job) ends with the same prefix and losses as one that was never stopped.

Validation (`eval_every`) and the final generation (`eval_mrs`, scored with sacrebleu BLEU and
slot errors) run on the main process only.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from prefixlab._validate import require_bool, require_choice, require_int
from prefixlab._validate import require_number as _require_number
from prefixlab._version import __version__
from prefixlab.artifacts import export_peft, save_adapter
from prefixlab.batching import iterate_batches
from prefixlab.config import RunConfig, lab_sources
from prefixlab.evaluate import other_e2e_metrics, validation_loss
from prefixlab.lora import lora_modules, remove_lora
from prefixlab.methods import method
from prefixlab.runs import _dataset, _encoded, _generation_scores, build
from prefixlab.train import (
    History,
    _endless_batches,
    _global_norm,
    _progress_bar,
    jsonable,
)

MIXED_PRECISION = ("no", "fp16", "bf16")
CHECKPOINTS = "checkpoints"
STATE_NAME = "run_state.json"  # history and config, next to accelerate's files in a checkpoint
METRICS_NAME = "metrics.json"
PROCESS_GROUP_TIMEOUT = 3 * 3600  # seconds a process may wait for the main one (see below)

# ---------------------------------------------------------------------------------------------
# Checking the call
# ---------------------------------------------------------------------------------------------


def _check_call(config, out, epochs, grad_accum, mixed_precision, checkpoint_every, resume,
                progress, callback) -> None:  # fmt: skip
    if not isinstance(config, RunConfig):
        raise ValueError(
            f"config must be a RunConfig, got {type(config).__name__}; e.g. "
            "prefixlab.config.FAST.with_(method='prefix')."
        )
    if config.method == "none":
        raise ValueError(
            "method='none' trains nothing; choose one of prefix, prefix+mlp, prompt, lora, full "
            "(the frozen baseline is prefixlab.runs.run_experiment(method='none'))."
        )
    if method(config.method).is_hybrid:
        raise ValueError(
            "method='prefix+lora' is not supported by the accelerated trainer (it trains one "
            "rate and one stage; the hybrid needs two); train it with "
            "prefixlab.runs.run_experiment, or prefixlab.hybrid.train_hybrid."
        )
    if config.method == "infix":
        raise ValueError(
            "method='infix' is not supported by the accelerated trainer (its artifacts are "
            "prefix and prompt folders); train it with prefixlab.runs.run_experiment."
        )
    if config.device not in (None, "cpu"):
        raise ValueError(
            f"device={config.device!r}: accelerate places each process on its own device. Pass "
            "device=None (a GPU when there is one) or 'cpu', and choose GPUs with "
            "CUDA_VISIBLE_DEVICES or `accelerate launch --gpu_ids`."
        )
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise ValueError(f"out must be a folder path, got {out!r}; e.g. out='runs/prefix-tiny'.")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out={str(out)!r} is a file; pass a folder (it is created if missing).")
    _require_number("epochs", epochs, above=0, allow_none=True, hint="E.g. 5; None = use steps.")
    require_int("grad_accum", grad_accum, low=1, hint="1 = no accumulation.")
    if mixed_precision is not None:
        require_choice("mixed_precision", mixed_precision, MIXED_PRECISION,
                       "None = accelerate's setting (`accelerate launch --mixed_precision`).")  # fmt: skip
    require_int("checkpoint_every", checkpoint_every, low=1, allow_none=True,
                hint="None = no checkpoints; e.g. 500 steps.")  # fmt: skip
    require_bool("resume", resume)
    require_bool("progress", progress)
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(history), or None.")


def _check_batch(batch_size: int, world: int, grad_accum: int) -> None:
    shards = world * grad_accum
    if batch_size % shards:
        fit = max(shards, batch_size // shards * shards)
        raise ValueError(
            f"batch_size={batch_size} (the global batch) does not split evenly over {world} "
            f"process(es) x {grad_accum} accumulation step(s) = {shards} parts. Pass a "
            f"batch_size that is a multiple of {shards} (e.g. {fit}), or change grad_accum."
        )


def _warn_if_one_cpu_process(world: int) -> None:
    """`accelerate launch --cpu --num_processes N` starts one process unless MPI is set up
    (--mpirun_hostfile): it sets MASTER_ADDR but no WORLD_SIZE. Say so, and what works."""
    env = os.environ
    cpu_launch = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if world == 1 and cpu_launch and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        warnings.warn(
            "accelerate launch --cpu --num_processes N started a single process (accelerate "
            "runs several CPU processes only through MPI, --mpirun_hostfile); this run trains on "
            "one process. For N CPU processes use `accelerate launch --multi_gpu "
            "--num_processes N -m prefixlab train --cpu ...` (torchrun underneath, gloo "
            "backend) or `torchrun --nproc_per_node N -m prefixlab train --cpu ...`.",
            RuntimeWarning,
            stacklevel=3,
        )


def _fresh_accelerator(*, cpu: bool, mixed_precision: str | None, grad_accum: int):
    """An Accelerator with these settings. accelerate keeps process-wide state and refuses a
    second Accelerator with other settings (a notebook, the tests); that state is reset here,
    the process group (PartialState, set up by `accelerate launch`) is kept."""
    from accelerate import Accelerator, InitProcessGroupKwargs
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    if mixed_precision == "fp16" and (cpu or not torch.cuda.is_available()):
        raise ValueError("mixed_precision='fp16' needs a GPU; on a CPU pass 'bf16' or 'no'.")
    # Validation and the final generation run on the main process while the others wait at
    # a barrier: a generous timeout keeps a long beam search from tripping the default one.
    wait = InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT))
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        kwargs_handlers=[wait],
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def latest_checkpoint(out) -> Path | None:
    """The newest complete checkpoint folder in out/checkpoints, or None.

    A checkpoint is complete once its run_state.json is written (the last file written)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [
        p for p in root.iterdir()
        if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit()
        and (p / STATE_NAME).is_file()
    ]  # fmt: skip
    return max(done, key=lambda p: int(p.name[5:]), default=None)


def _comparable(config: RunConfig) -> dict:
    return {k: v for k, v in config.to_row().items() if k != "device"}


def _check_same_run(saved: dict, config: RunConfig, folder: Path) -> None:
    mine = _comparable(config)
    theirs = _comparable(RunConfig.from_dict(saved))
    differ = [k for k in mine if mine[k] != theirs.get(k)]
    if differ:
        details = ", ".join(f"{k}: {theirs.get(k)!r} there, {mine[k]!r} now" for k in differ)
        raise ValueError(
            f"The checkpoint {folder} belongs to another run ({details}). Resume with the "
            "options it was started with, or choose another out folder."
        )


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Artifacts
# ---------------------------------------------------------------------------------------------


def _write_artifacts(out: Path, config: RunConfig, adapted, tokenizer, metadata: dict) -> dict:
    """The trained adapter (prefix/prompt: prefixlab + PEFT), or LoRA matrices and a merged
    model folder, or the fine-tuned model folder. Returns {name: path}."""
    kind = method(config.method).adapter
    if kind is not None:
        save_adapter(adapted.adapter, out / "adapter", model=adapted.model, metadata=metadata)
        export_peft(adapted.adapter, out / "peft", model=adapted.model)
        return {"adapter": str(out / "adapter"), "peft": str(out / "peft")}
    written = {}
    model = adapted.model
    if config.method == "lora":
        folder = out / "lora"
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            name: p.detach().contiguous().cpu()
            for name, p in model.named_parameters()
            if p.requires_grad
        }
        save_file(state, str(folder / "lora.safetensors"))
        info = {
            "format": "prefixlab-lora",
            "rank": config.lora_rank,
            "alpha": config.lora_alpha,
            "modules": sorted(lora_modules(model)),
            "base_model": config.model,
            "metadata": metadata,
        }
        _write_json(folder / "lora.json", info)
        written["lora"] = str(folder)
        model = remove_lora(_copy(model), merge=True)
    folder = out / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    written["model"] = str(folder)
    return written


def _copy(model):
    import copy

    return copy.deepcopy(model)


def _versions() -> dict:
    import accelerate
    import transformers

    return {
        "prefixlab": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_accelerated(
    config: RunConfig,
    out,
    *,
    epochs: float | None = None,
    grad_accum: int = 1,
    mixed_precision: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[History], bool | None] | None = None,
    eval_mrs: int | str | None = None,
    recipe_name: str | None = None,
) -> dict:
    """Train `config`'s method through `accelerate.Accelerator` and write the results to `out`.

    Args:
        config: what to train (method, model, data, P, ...) and how (`config.train`: steps,
            batch_size = the global batch over all processes, lr, schedule, clipping, seed).
            device None = what accelerate picks (a GPU when there is one), or "cpu".
        out: the output folder (created); see the module docstring for what goes in it.
        epochs: passes over the training rows; sets steps (steps = epochs x batches per
            epoch, rounded up). None = config.train.steps.
        grad_accum: micro-batches per process and update; the global batch is split into
            processes x grad_accum equal parts (batch_size must be a multiple of that).
        mixed_precision: "no", "bf16" or "fp16" (GPU); None = accelerate's own setting
            (`accelerate launch --mixed_precision`, `accelerate config`), else "no".
        checkpoint_every: save the trainable parameters, optimizer and RNG state every n
            steps in out/checkpoints (the newest complete one is kept). None = never.
        resume: continue from the newest checkpoint in out (same config required). Without it,
            an out folder holding checkpoints is refused, so a run is never overwritten.
        progress: a progress bar on the main process ($PREFIXLAB_PROGRESS=0 switches it off).
        callback: called as callback(history) after every update on every process; returning
            True stops the run (return the same on every process).
        eval_mrs: after training, generate for this many MRs of config.eval_split (beam
            width config.num_beams) and score them (sacrebleu BLEU, slot errors); "all" = every
            MR of the split; None = config.eval_mrs.
        recipe_name: recorded in metrics.json (`prefixlab train --recipe`).

    Returns:
        The metrics dict written to out/metrics.json (on the main process; the others return
        theirs without validation and scores). Its "stopped_reason" is "completed",
        "diverged", "stopped", "interrupted" (Ctrl-C: nothing but metrics is written; resume
        from the last checkpoint) or "nan" (no artifact is written).

    Raises:
        ValueError: a bad option, naming the fix (batch not divisible by processes x
            grad_accum, checkpoints of another run in `out`, ...).
    """
    _check_call(config, out, epochs, grad_accum, mixed_precision, checkpoint_every, resume,
                progress, callback)  # fmt: skip
    if eval_mrs not in (None, "all"):
        require_int("eval_mrs", eval_mrs, low=0, hint="Or 'all' (the whole split), None.")
    out = Path(out)
    latest = latest_checkpoint(out)
    if latest is not None and not resume:
        raise ValueError(
            f"{out} holds checkpoints of an earlier run (newest: {latest.name}). Pass "
            "resume=True (--resume) to continue it, or choose another out folder."
        )
    session_start = time.perf_counter()
    accelerator = _fresh_accelerator(
        cpu=config.device == "cpu", mixed_precision=mixed_precision, grad_accum=grad_accum
    )
    world, rank, main = (accelerator.num_processes, accelerator.process_index,
                         accelerator.is_main_process)  # fmt: skip
    _check_batch(config.train.batch_size, world, grad_accum)
    _warn_if_one_cpu_process(world)
    requested = config
    model_name, data_name = lab_sources(config.model, config.data)  # offline: embedded default
    config = config.with_(model=model_name, data=data_name, device=str(accelerator.device))
    if eval_mrs is not None:
        n_eval = count_mrs(config.data, config.eval_split) if eval_mrs == "all" else eval_mrs
        config = config.with_(eval_mrs=n_eval)
    with accelerator.main_process_first():  # the main process downloads, the others read
        adapted, tokenizer = build(config)
        train_enc = _encoded(config, tokenizer, "train", config.n_train_mrs, "n_train_mrs")
        val_enc = None
        if main:
            val_enc = _encoded(config, tokenizer, "validation", config.n_val_mrs, "n_val_mrs")
    n_rows, batch_size = len(train_enc["input_ids"]), config.train.batch_size
    if world * grad_accum > 1 and n_rows < batch_size:
        raise ValueError(
            f"The training data has {n_rows} rows, fewer than batch_size={batch_size}: a global "
            "batch could not be split over processes. Lower batch_size or use more data "
            "(n_train_mrs)."
        )
    if epochs is not None:
        per_epoch = max(1, n_rows // batch_size)  # full batches, as prefixlab.train draws them
        config = config.with_(steps=max(1, math.ceil(epochs * per_epoch)))
    config = config.resolved()
    t = config.train
    kept_config = config.with_(device=requested.device)

    params = [p for p in adapted.parameters() if p.requires_grad]
    torch.manual_seed(t.seed)
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    model, optimizer = accelerator.prepare(adapted, optimizer)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}

    def keep_trainable(models, weights, output_dir):  # checkpoints hold what trains, not the base
        for i, state in enumerate(weights):
            weights[i] = {k: v for k, v in state.items() if k in trainable}

    accelerator.register_save_state_pre_hook(keep_trainable)

    history = History(
        config=jsonable({"train": dataclasses.asdict(t), "run": kept_config.to_dict()})
    )
    start = 0
    if latest is not None:
        state = json.loads((latest / STATE_NAME).read_text(encoding="utf-8"))
        _check_same_run(state["config"], kept_config, latest)
        accelerator.load_state(str(latest), strict=False)
        history = History.from_dict(state["history"])
        start = history.steps_done

    device = accelerator.device
    eval_batch_size = t.eval_batch_size or batch_size
    unwrapped = accelerator.unwrap_model(model)

    def validate(step: int) -> None:
        if not main or (history.val_step and history.val_step[-1] == step):
            return
        history.val_step.append(step)
        history.val_loss.append(
            validation_loss(unwrapped, val_enc, eval_batch_size, t.eval_batches)
        )

    def save_checkpoint(step: int) -> None:
        folder = out / CHECKPOINTS / f"step_{step:06d}"
        accelerator.save_state(str(folder))
        accelerator.wait_for_everyone()
        if main:
            _write_json(folder / STATE_NAME,
                        {"config": kept_config.to_dict(), "history": history.to_dict()})  # fmt: skip
            for old in (out / CHECKPOINTS).iterdir():
                if old != folder and old.name.startswith("step_"):
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    shards = world * grad_accum
    micro = batch_size // shards
    batches = _endless_batches(train_enc, batch_size, t.seed)  # the global batches of train()
    for _ in range(start):
        next(batches)
    bar = _progress_bar(t.steps, progress and main, _label(config, world))
    bar.update(start)
    elapsed = history.time[-1] if history.time else 0.0
    try:
        if t.eval_every is not None and start == 0:
            validate(0)
        for step in range(start + 1, t.steps + 1):
            global_batch = next(batches)
            tic = time.perf_counter()
            # Rows r*micro.. of the global batch: process `rank` takes parts rank*A .. rank*A+A-1
            parts = list(iterate_batches(global_batch, micro))  # padding trimmed per part
            mine = [{k: v.to(device) for k, v in p.items()}
                    for p in parts[rank * grad_accum : (rank + 1) * grad_accum]]  # fmt: skip
            counts = [int((p["labels"][:, 1:] != -100).sum()) for p in mine]  # scored tokens
            total = float(accelerator.reduce(torch.tensor(float(sum(counts)), device=device)))
            lr = t.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for part, n in zip(mine, counts, strict=True):
                with accelerator.accumulate(model):
                    token_sum = model(part["input_ids"], part["attention_mask"],
                                      labels=part["labels"]).loss.float() * n  # fmt: skip
                    # backward divides by grad_accum and DDP averages over processes: scaled
                    # so, the gradient is that of (summed token loss) / (global token count)
                    accelerator.backward(token_sum * (shards / total))
                    loss_sum += token_sum.detach()
            loss_value = float(accelerator.reduce(loss_sum)) / total
            if not math.isfinite(loss_value):
                history.stopped_reason = "nan"
                history.message = (
                    f"Stopped at step {step}: the training loss is {loss_value}; no artifact "
                    f"was written. Lower the learning rate (it was {lr:.3g}) or clip gradients, "
                    "and start again (or resume from a checkpoint with the same settings)."
                )
                break
            accelerator.unscale_gradients()
            grad_norm = _global_norm(params)
            if not math.isfinite(grad_norm) and accelerator.mixed_precision != "fp16":
                # (under fp16 the gradient scaler skips such a step and lowers its scale)
                history.stopped_reason = "nan"
                history.message = (
                    f"Stopped at step {step}: the gradient norm is {grad_norm}; no artifact was "
                    f"written. Lower the learning rate (it was {lr:.3g}) or clip gradients."
                )
                break
            if t.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, t.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed += time.perf_counter() - tic

            history.add_step(step, loss_value, grad_norm, lr, elapsed)
            bar.update(1)
            if step % 10 == 0 or step == t.steps:
                bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
            if t.eval_every is not None and step % t.eval_every == 0:
                validate(step)
            if checkpoint_every is not None and step % checkpoint_every == 0 and step < t.steps:
                save_checkpoint(step)
            if callback is not None and callback(history) is True:
                history.stopped_reason = "stopped"
                history.message = f"Stopped by the callback after step {step}."
                break
        if history.stopped_reason != "nan":
            validate(history.steps_done)
    except KeyboardInterrupt:
        newest = latest_checkpoint(out)
        where = (
            f"pass --resume (resume=True) to continue from {newest.name}"
            if newest is not None
            else "no checkpoint was saved yet (checkpoint_every)"
        )
        history.stopped_reason = "interrupted"
        history.message = f"Interrupted after step {history.steps_done} of {t.steps}; {where}."
    finally:
        bar.close()
    if history.stopped_reason == "completed" and history.loss:
        from prefixlab.train import _label_divergence

        _label_divergence(history, unwrapped.dims.vocab_size, t.lr)

    metrics = {
        "recipe": recipe_name,
        "method": config.method,
        "model": config.model,
        "data": config.data,
        "requested_model": requested.model,
        "requested_data": requested.data,
        "steps": t.steps,
        "epochs": epochs,
        "steps_done": history.steps_done,
        "resumed_from_step": start,
        "stopped_reason": history.stopped_reason,
        "message": history.message,
        "world_size": world,
        "grad_accum": grad_accum,
        "global_batch": batch_size,
        "per_process_batch": batch_size // world,
        "micro_batch": micro,
        "mixed_precision": accelerator.mixed_precision,
        "distributed_type": str(accelerator.distributed_type),
        "train_rows": n_rows,
        "dropped_train_pairs": getattr(train_enc, "n_dropped", 0),
        "trainable_params": sum(p.numel() for p in params),
        "final_loss": history.loss[-1] if history.loss else math.nan,
        "final_val_loss": history.final_val_loss,
        "train_seconds": elapsed,
        "wall_seconds": time.perf_counter() - session_start,
        "versions": _versions(),
        "config": kept_config.to_dict(),
        "history": history.to_dict(),
        "artifacts": {},
        "scores": {},
    }
    if main and history.stopped_reason in ("completed", "diverged", "stopped"):
        out.mkdir(parents=True, exist_ok=True)
        summary = {k: metrics[k] for k in ("method", "model", "data", "steps_done", "world_size",
                                            "global_batch", "final_loss", "recipe")}  # fmt: skip
        metrics["artifacts"] = _write_artifacts(out, config, unwrapped, tokenizer, summary)
        if config.eval_mrs:
            metrics["scores"] = _generation_scores(config, unwrapped, tokenizer, history)
            grouped = _dataset(config, config.eval_split, config.eval_mrs, "eval_mrs").grouped()
            metrics["scores"].update(other_e2e_metrics(
                [g["text"] for g in history.generations],
                [grouped[g["mr"]] for g in history.generations],
            ))  # fmt: skip
            _write_json(out / "generations.json", {"generations": history.generations})
            metrics["artifacts"]["generations"] = str(out / "generations.json")
        metrics["wall_seconds"] = time.perf_counter() - session_start
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / METRICS_NAME, metrics)
    accelerator.wait_for_everyone()
    return metrics


def _label(config: RunConfig, world: int) -> str:
    parts = [config.method, config.model]
    if config.uses_prefix_length:
        parts.append(f"P={config.prefix_length}")
    if world > 1:
        parts.append(f"x{world} processes")
    return " ".join(parts)


def count_mrs(data: str, split: str) -> int:
    """Number of distinct MRs in a split of `data` (what eval_mrs='all' means)."""
    return len(_dataset(RunConfig(data=data), split, None, "eval_mrs").mrs)


__all__ = [
    "MIXED_PRECISION",
    "count_mrs",
    "latest_checkpoint",
    "train_accelerated",
]
