"""Training, experiment grids and loss-stability measures.

Three layers, each usable on its own:

1. `train(adapted, data, config)`: AdamW on whatever requires grad, warmup then decay,
   optional clipping, periodic validation. Returns a `History` (per-step loss, gradient norm
   before clipping, learning rate, wall time; validation loss every `eval_every` steps).
   Same seed, same history on a CPU. A NaN or infinite loss stops training with a message and
   restores the last parameters that gave a finite loss; Ctrl-C (or a notebook's stop button)
   returns the history so far.
2. `run_experiment(run_config)`: loads the model and data a `RunConfig` names, builds the
   adapter (prefix, prompt, LoRA, full fine-tuning or nothing), trains, generates for held-out
   MRs and scores them. Results are cached on disk, keyed by a hash of the whole config (plus
   the package version, the code of the modules that decide the numbers, and the model
   weights), so re-running a notebook cell is instant.
3. `run_grid(base, method=[...], seed=[...], ...)`: the product of the given values as a tidy
   pandas table (one row per run) plus each run's History; `lr_sweep` and
   `stability_summary` for the MLP study.

Stability measures (defined where they are computed): `seed_spread`, `count_spikes`,
`final_loss`, `final_loss_spread`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from prefixlab.config import DEFAULT_LR, RunConfig, TrainConfig, active_preset
from prefixlab.evaluate import (
    corpus_bleu,
    generate_texts,
    slot_error_rate,
    table_gain,
    validation_loss,
)

STOP_REASONS = ("completed", "nan", "diverged", "interrupted", "stopped")
DIVERGENCE_WINDOW = 10  # steps in the running mean of the training loss that divergence reads
DIVERGENCE_MARGIN = 0.05  # "above the reference" means more than 5% above it, not noise

# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------


@dataclass
class History:
    """What happened during one training run. Steps count optimizer updates from 1.

    Per step (equal-length lists): `step`, `loss` (training loss of that step's batch, before
    the update), `grad_norm` (global L2 norm of the gradient *before* clipping), `lr` (the
    rate used for the update), `time` (seconds of training so far, validation excluded).
    Per validation: `val_step` (0 = before any update) and `val_loss`.

    Divergence: a run that completes with its loss clearly worse than where it started is
    labelled `stopped_reason="diverged"` (it is not stopped early: a loss spike during warmup
    can come back, and learning-rate sweeps compare whole curves), with a RuntimeWarning that
    says to lower the learning rate. The test reads the running mean of the training loss over
    the last DIVERGENCE_WINDOW steps, at the end of the run:
    - with validation, it and the final validation loss both end more than DIVERGENCE_MARGIN
      (5%) above the validation loss before step 1 (the untrained model's loss);
    - without, the untrained loss is known only from step 1's batch (noisy), so the running
      mean must end above 1.5x that loss, or above ln V (uniform guessing over V tokens)
      when that is lower, and in any case 5% above the step-1 loss (a random start can lie
      above ln V).
    `diverged_at` is the first step from which that running mean stayed above the threshold to
    the end, never step 1 (measured before any update); None when the run did not diverge.
    A NaN or infinite loss is not divergence: it stops training with `stopped_reason="nan"`.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    stopped_reason: str = "completed"  # one of STOP_REASONS
    message: str = ""  # why training stopped early or diverged, in words
    diverged_at: int | None = None  # step from which the loss stayed too high (see above)
    generations: list[dict] = field(default_factory=list)  # [{"mr", "text"}] after training
    config: dict = field(default_factory=dict)  # the TrainConfig (and RunConfig) used

    def __len__(self) -> int:
        return len(self.step)

    @property
    def steps_done(self) -> int:
        return self.step[-1] if self.step else 0

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1] if self.val_loss else math.nan

    @property
    def best_val_loss(self) -> float:
        return min(self.val_loss) if self.val_loss else math.nan

    def to_frame(self):
        """One row per step (and per validation): columns step, loss, grad_norm, lr, time,
        val_loss (NaN on steps without validation; step 0 holds the validation before training).
        """
        import pandas as pd

        steps = pd.DataFrame(
            {
                "step": self.step,
                "loss": self.loss,
                "grad_norm": self.grad_norm,
                "lr": self.lr,
                "time": self.time,
            }
        )
        vals = pd.DataFrame({"step": self.val_step, "val_loss": self.val_loss})
        if not len(vals):
            steps["val_loss"] = math.nan
            return steps
        return steps.merge(vals, on="step", how="outer").sort_values("step", ignore_index=True)

    def to_dict(self) -> dict:
        """JSON-ready dict (non-finite numbers become None)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> History:
        def floats(values):
            return [math.nan if v is None else float(v) for v in values]

        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("loss", "grad_norm", "lr", "time", "val_loss"):
            data[key] = floats(data.get(key, []))
        return cls(**data)


def _jsonable(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _method_of(adapted) -> str:
    """Which DEFAULT_LR entry fits the trainable parameters of an AdaptedModel."""
    from prefixlab.lora import has_lora

    adapter = getattr(adapted, "adapter", None)
    if adapter is not None:
        if adapter.method == "prefix":
            return "prefix+mlp" if getattr(adapter, "reparam", "none") == "mlp" else "prefix"
        return adapter.method
    model = getattr(adapted, "model", adapted)
    return "lora" if has_lora(model) else "full"


def _as_encoded(data, tokenizer, max_length: int, what: str) -> dict[str, torch.Tensor]:
    """Accept encoded tensors, or (mr, ref) pairs / an E2EDataset plus a tokenizer."""
    if isinstance(data, Mapping):
        keys = ("input_ids", "attention_mask", "labels")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(
                f"{what} is a dict without {missing}; pass the output of "
                "prefixlab.data.encode_for_training(tokenizer, pairs, max_length)."
            )
        if data["input_ids"].dim() != 2 or len(data["input_ids"]) == 0:
            raise ValueError(f"{what}['input_ids'] must be a non-empty [N, T] tensor.")
        return {k: data[k] for k in keys}
    if tokenizer is None:
        raise ValueError(
            f"{what} is not encoded: pass tokenizer=... so train() can encode it, or pass "
            "prefixlab.data.encode_for_training(tokenizer, pairs, max_length)."
        )
    from prefixlab.data import encode_for_training

    return encode_for_training(tokenizer, list(data), max_length, overflow="skip")


def _batches(encoded, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches; epoch e uses the order fixed by (seed, e)."""
    from prefixlab.data import iterate_batches

    n = len(encoded["input_ids"])
    drop_last = n >= batch_size  # equal-size batches when the data allows it
    for epoch in itertools.count():
        yield from iterate_batches(
            encoded, batch_size, shuffle=True, seed=seed * 100_003 + epoch, drop_last=drop_last
        )


def _global_norm(params: Sequence[nn.Parameter]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
    return float(torch.linalg.vector_norm(norms))


def progress_enabled(requested: bool = True) -> bool:
    """Progress bars unless switched off here or by $PREFIXLAB_PROGRESS=0.

    The committed notebooks are executed with PREFIXLAB_PROGRESS=0: a saved progress-bar
    widget would show on GitHub as a bar frozen at 0%.
    """
    return bool(requested) and os.environ.get("PREFIXLAB_PROGRESS", "1").strip() != "0"


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, disable=not progress_enabled(enabled), desc=desc, leave=False,
        dynamic_ncols=True,
    )  # fmt: skip


def train(
    adapted: nn.Module,
    train_data,
    config: TrainConfig | RunConfig | None = None,
    *,
    val_data=None,
    tokenizer=None,
    progress: bool = True,
    callback: Callable[[History], bool | None] | None = None,
    desc: str = "train",
) -> History:
    """Train every parameter of `adapted` that requires grad; return the History.

    Args:
        adapted: an AdaptedModel (prefix, prompt, LoRA, or a fine-tunable copy of the model).
        train_data: {"input_ids", "attention_mask", "labels"} [N, T] tensors from
            `prefixlab.data.encode_for_training`, or (mr, ref) pairs / an E2EDataset together
            with `tokenizer=` (pairs longer than config.max_length are skipped with a warning).
        config: a TrainConfig (or a RunConfig, whose `.train` is used); None = the active
            preset's. lr=None picks DEFAULT_LR for the kind of parameters being trained.
        val_data: like train_data; validated before step 1, every `eval_every` steps and at
            the end (on `eval_batches` batches).
        progress: show a tqdm progress bar.
        callback: called as callback(history) after every step; return True to stop (the
            history is then marked "stopped").

    Returns:
        History. `stopped_reason` is "completed"; "nan" when a loss or gradient was not
        finite (parameters are restored to the last state with a finite loss and a warning
        says what to change); "diverged" when the run completed with its loss above where it
        started (rule in the History docstring; a warning says to lower the learning rate,
        `diverged_at` holds the step); "interrupted" after Ctrl-C / a notebook's stop button (the
        history so far is returned, never lost); or "stopped" by the callback.

    Raises:
        ValueError: nothing to train, bad data, or a config of the wrong type.
    """
    if config is None:
        config = active_preset().train
    if isinstance(config, RunConfig):
        config = config.resolved().train
    if not isinstance(config, TrainConfig):
        raise ValueError(
            f"config must be a TrainConfig or RunConfig, got {type(config).__name__}; "
            "e.g. prefixlab.config.FAST.train."
        )
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(history), or None.")
    params = [p for p in adapted.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "Nothing to train: no parameter requires grad. Wrap the model with an adapter "
            "(AdaptedModel(model, PrefixTuning(model))), add LoRA (prefixlab.lora.add_lora) or "
            "unfreeze a copy of the model for full fine-tuning."
        )
    peak = config.lr if config.lr is not None else DEFAULT_LR[_method_of(adapted)]
    encoded = _as_encoded(train_data, tokenizer, config.max_length, "train_data")
    val_encoded = (
        None
        if val_data is None
        else _as_encoded(val_data, tokenizer, config.max_length, "val_data")
    )
    device = params[0].device
    eval_batch_size = config.eval_batch_size or config.batch_size

    history = History(config=_jsonable({"train": dataclasses.asdict(config.with_(lr=peak))}))

    def validate(step: int) -> None:
        if val_encoded is None or (history.val_step and history.val_step[-1] == step):
            return
        loss = validation_loss(adapted, val_encoded, eval_batch_size, config.eval_batches)
        history.val_step.append(step)
        history.val_loss.append(loss)

    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        params, lr=peak, betas=config.betas, weight_decay=config.weight_decay
    )
    # The parameters as they were before the latest update: restored when a loss goes NaN,
    # or when an interrupt lands in the middle of an update.
    last_good = [p.detach().clone() for p in params]
    batches = _batches(encoded, config.batch_size, config.seed)
    bar = _progress_bar(config.steps, progress, desc)
    elapsed = 0.0
    updating = False
    try:
        if config.eval_every is not None:
            validate(0)
        for step in range(1, config.steps + 1):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            start = time.perf_counter()
            lr = config.lr_at(step, peak)
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = adapted(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
            loss, vocab_size = out.loss, out.logits.shape[-1]
            del out  # the [B, T, V] logits need not outlive the backward pass
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                _restore(params, last_good)
                history.stopped_reason = "nan"
                history.message = (
                    f"Stopped at step {step}: the training loss is {loss_value}. The "
                    f"parameters were restored to those that gave the last finite loss (step "
                    f"{step - 1}). Lower the learning rate (it was {lr:.3g} at this step) or "
                    "clip gradients (clip_grad_norm=1.0)."
                )
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = _global_norm(params)
            if not math.isfinite(grad_norm):
                history.stopped_reason = "nan"
                history.message = (
                    f"Stopped at step {step}: the gradient norm is {grad_norm} (the loss was "
                    f"{loss_value:.4f}); the update was not applied. Lower the learning rate "
                    f"(it was {lr:.3g} at this step) or clip gradients (clip_grad_norm=1.0)."
                )
                break
            if config.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
            _restore(last_good, params)  # remember the parameters this update starts from
            updating = True
            optimizer.step()
            updating = False
            elapsed += time.perf_counter() - start

            history.step.append(step)
            history.loss.append(loss_value)
            history.grad_norm.append(grad_norm)
            history.lr.append(lr)
            history.time.append(elapsed)
            bar.update(1)
            if step % 10 == 0 or step == config.steps:
                bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
            if config.eval_every is not None and step % config.eval_every == 0:
                validate(step)
            if callback is not None and callback(history) is True:
                history.stopped_reason = "stopped"
                history.message = f"Stopped by the callback after step {step}."
                break
        discarded = history.stopped_reason == "nan" and history.val_step
        if discarded and history.val_step[-1] == history.steps_done:
            history.val_step.pop()  # measured on the parameters that were just discarded
            history.val_loss.pop()
        validate(history.steps_done)
    except KeyboardInterrupt:
        if updating:  # half-applied update: go back to the parameters of the last step
            _restore(params, last_good)
            updating = False
        history.stopped_reason = "interrupted"
        history.message = (
            f"Interrupted after step {history.steps_done} of {config.steps}; the history so far "
            "is returned and the parameters are those after that step."
        )
    finally:
        bar.close()
    if history.stopped_reason == "completed" and history.loss:
        _label_divergence(history, vocab_size, peak)
    if history.stopped_reason in ("nan", "diverged"):
        warnings.warn(history.message, RuntimeWarning, stacklevel=2)
    return history


def _label_divergence(history: History, vocab_size: int, peak_lr: float) -> None:
    """Mark a completed run "diverged" when its loss ended above where it started.

    The rule is written in the History docstring; this sets stopped_reason, diverged_at and
    the message (which says what to change), and keeps the history as it is.
    """
    validated = bool(history.val_step) and history.val_step[0] == 0
    if validated:
        reference = history.val_loss[0]
        threshold = reference * (1 + DIVERGENCE_MARGIN)
        what = f"the validation loss before training ({reference:.3f}) by more than 5%"
    else:
        reference, ln_v = history.loss[0], math.log(vocab_size)
        threshold = max(reference * (1 + DIVERGENCE_MARGIN), min(ln_v, 1.5 * reference))
        what = (
            f"{threshold:.3f} (1.5x the loss of step 1, {reference:.3f}, or ln V = ln "
            f"{vocab_size} = {ln_v:.3f} if lower; no validation data to compare with)"
        )
    window = min(DIVERGENCE_WINDOW, len(history.loss))
    losses = torch.tensor(history.loss, dtype=torch.float64)
    sums = torch.cat([losses.new_zeros(1), losses.cumsum(0)])  # [n + 1]
    ends = torch.arange(1, len(losses) + 1)  # step i's window is losses[start:end]
    starts = (ends - window).clamp(min=0)
    running = (sums[ends] - sums[starts]) / (ends - starts)  # [n] running mean
    end = float(running[-1])
    if not end > threshold or (validated and not history.final_val_loss > threshold):
        return
    below = (running <= threshold).nonzero()
    # the first step of the final stretch above the threshold; never step 1, whose loss was
    # measured before any update
    first = max(int(below[-1]) + 1 if len(below) else 0, min(1, len(losses) - 1))
    history.diverged_at = history.step[first]
    history.stopped_reason = "diverged"
    val_part = f", validation loss {history.final_val_loss:.3f}" if validated else ""
    history.message = (
        f"Training diverged: the training loss went from {history.loss[0]:.3f} at step 1 to "
        f"{end:.3f} (mean of the last {window} steps){val_part}, above {what}, and stayed "
        f"there from step {history.diverged_at} on. The run completed and its history is kept; "
        f"lower the learning rate (its peak was {peak_lr:.3g}, try {peak_lr / 10:.3g}) or "
        "clip gradients (clip_grad_norm=1.0)."
    )


@torch.no_grad()
def _restore(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
    """Copy each source tensor into its target, in place."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)


# ---------------------------------------------------------------------------------------------
# Stability measures
# ---------------------------------------------------------------------------------------------


def count_spikes(losses: Sequence[float], *, factor: float = 1.5, window: int = 20) -> int:
    """Number of loss spikes in a loss curve.

    A step is spiking when its loss exceeds `factor` times the median of the `window` losses
    just before it (so the first `window` steps are never spikes). Consecutive spiking steps
    count as one spike.
    """
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise ValueError(f"factor must be a number > 1, got {factor!r}; try 1.5.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}; try 20.")
    values = [float(v) for v in losses]
    spikes, inside = 0, False
    for i in range(window, len(values)):
        previous = sorted(values[i - window : i])
        mid = len(previous) // 2
        median = previous[mid] if len(previous) % 2 else 0.5 * (previous[mid - 1] + previous[mid])
        spiking = values[i] > factor * median
        if spiking and not inside:
            spikes += 1
        inside = spiking
    return spikes


def loss_rise(losses: Sequence[float], *, window: int | None = None) -> float:
    """How far a loss curve climbed above where it started: the highest running mean of the
    training loss over its first value (1.0 when it never rose; inf for a NaN/inf loss).

    Complements `count_spikes`, which cannot see a blow-up in its first `window` steps.
    The running mean covers `window` steps (default: a tenth of the curve, at least 1) and,
    like pandas' rolling(window, min_periods=1), averages fewer steps at the start.
    """
    values = [float(v) for v in losses]
    if not values:
        return math.nan
    if not all(math.isfinite(v) for v in values):
        return math.inf
    window = max(1, len(values) // 10) if window is None else window
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1 or None, got {window!r}.")
    running, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        running.append(total / min(i + 1, window))
    return max(running) / running[0] if running[0] > 0 else math.nan


def final_loss(history: History, *, which: str = "val", window: int | None = None) -> float:
    """A run's final loss.

    which="val": the last validation loss. which="train": the mean training loss over the
    last `window` steps (default: the last 10% of steps, at least 1), which smooths batch noise.
    """
    if which == "val":
        return history.final_val_loss
    if which != "train":
        raise ValueError(f"which must be 'val' or 'train', got {which!r}.")
    if not history.loss:
        return math.nan
    window = max(1, len(history.loss) // 10) if window is None else window
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1 or None, got {window!r}.")
    tail = history.loss[-window:]
    return sum(tail) / len(tail)


def _histories(histories) -> list[History]:
    items = list(histories.values()) if isinstance(histories, Mapping) else list(histories)
    if not items or not all(isinstance(h, History) for h in items):
        raise ValueError("Pass a non-empty list (or dict) of History objects.")
    return items


def loss_matrix(histories, *, which: str = "loss"):
    """Loss curves of several runs as one array, for bands and overlays.

    Args:
        histories: Histories (list or dict).
        which: "loss" (training loss per step) or "val_loss" (per validation step).
    Returns:
        (steps, values): steps [S] (the union of all runs' steps, sorted) and values
        [runs, S] float, NaN where a run has no value (it stopped earlier).
    """
    import numpy as np

    items = _histories(histories)
    if which not in ("loss", "val_loss"):
        raise ValueError(f"which must be 'loss' or 'val_loss', got {which!r}.")
    x = "step" if which == "loss" else "val_step"
    steps = sorted({s for h in items for s in getattr(h, x)})
    column = {s: i for i, s in enumerate(steps)}
    values = np.full((len(items), len(steps)), np.nan)  # [runs, S]
    for row, h in enumerate(items):
        for s, v in zip(getattr(h, x), getattr(h, which), strict=True):
            values[row, column[s]] = v
    return np.asarray(steps), values


def seed_spread(histories, *, which: str = "loss"):
    """Spread of loss curves across runs (usually seeds of one setting), step by step.

    Args:
        histories: Histories (list or dict) of runs that differ only in seed.
        which: "loss" (training loss per step) or "val_loss" (per validation step).
    Returns:
        DataFrame indexed by step with columns mean, std (sample std over runs, NaN when
        fewer than two runs reached the step), min, max, n (runs that reached the step).
    """
    import pandas as pd

    items = _histories(histories)
    if which not in ("loss", "val_loss"):
        raise ValueError(f"which must be 'loss' or 'val_loss', got {which!r}.")
    x = "step" if which == "loss" else "val_step"
    columns = {
        i: pd.Series(getattr(h, which), index=getattr(h, x), dtype=float)
        for i, h in enumerate(items)
    }
    matrix = pd.DataFrame(columns)  # [steps, runs]
    matrix.index.name = "step"
    out = pd.DataFrame(
        {
            "mean": matrix.mean(axis=1),
            "std": matrix.std(axis=1, ddof=1),
            "min": matrix.min(axis=1),
            "max": matrix.max(axis=1),
            "n": matrix.count(axis=1),
        }
    )
    return out


def final_loss_spread(histories, *, which: str = "val", window: int | None = None) -> dict:
    """Spread of final losses across runs: {"n", "mean", "std", "min", "max", "range"}.

    Runs without a finite final loss (no validation, or stopped at step 0) are left out and
    not counted in n. std is the sample std (NaN for a single run).
    """
    values = [final_loss(h, which=which, window=window) for h in _histories(histories)]
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan,
                "range": math.nan}  # fmt: skip
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "range": max(values) - min(values),
    }


# ---------------------------------------------------------------------------------------------
# Experiments: model, data and adapter from a RunConfig, with an on-disk cache
# ---------------------------------------------------------------------------------------------

CACHE_ENV = "PREFIXLAB_CACHE"
CACHE_FORMAT = 1
MAX_CACHED_PARAMETERS = 20_000_000  # trained weights kept on disk only below this size
_RESULT_MODULES = ("adapted", "prefix", "prompt", "lora", "train", "evaluate", "data", "config")
_MODELS: dict = {}  # (name, device) -> (model, tokenizer): loaded once per process
_DATA: dict = {}  # data key -> encoded tensors / grouped references
_FINGERPRINTS: dict = {}


def cache_dir() -> Path:
    """Where run results live: $PREFIXLAB_CACHE, else ~/.cache/prefixlab (subfolder runs/)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "prefixlab"
    return Path(root).expanduser() / "runs"


def clear_memory() -> None:
    """Forget the models and data kept in memory between runs (the disk cache stays)."""
    _MODELS.clear()
    _DATA.clear()


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(name: str, device: str):
    key = (name, device)
    if key not in _MODELS:
        from prefixlab.loading import load_model

        _MODELS[key] = load_model(name, device=device)
    return _MODELS[key]


def base_model(config: RunConfig | None = None):
    """The frozen (model, tokenizer) a RunConfig names, loaded once per process and shared
    with the runs (do not modify it; `build` copies it for LoRA and full fine-tuning)."""
    config = active_preset() if config is None else config
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}.")
    return _load(config.model, _resolve_device(config.device))


def _hash_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _model_fingerprint(name: str) -> str:
    """Hash of a local model's config and weights ("tiny" included); the name for hub ids."""
    if name in _FINGERPRINTS:
        return _FINGERPRINTS[name]
    path = None
    if name == "tiny":
        from prefixlab.paths import tiny_model_dir

        path = tiny_model_dir()
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
    import ast

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


def _code_fingerprint() -> str:
    """Hash of the code (not the comments or docstrings) of the modules that decide a run's
    numbers: editing prose keeps the run cache, editing code empties it."""
    if "code" not in _FINGERPRINTS:
        here = Path(__file__).resolve().parent
        digests = [f"{m}:{code_digest((here / f'{m}.py').read_text())}" for m in _RESULT_MODULES]
        _FINGERPRINTS["code"] = hashlib.sha256(" ".join(digests).encode()).hexdigest()[:16]
    return _FINGERPRINTS["code"]


def canonical(config: RunConfig) -> RunConfig:
    """The run with fields its method ignores reset to defaults, and lr filled in.

    Two configs with the same canonical form give the same result (e.g. prefix_length for
    LoRA, or seed and lr for "none"), so they share one cache entry and one grid row.
    """
    defaults = RunConfig()
    changes: dict = {}
    if not config.uses_prefix_length:
        changes.update(prefix_length=defaults.prefix_length, init=defaults.init, init_text=None)
    if config.method != "prefix+mlp":
        changes["mlp_hidden"] = defaults.mlp_hidden
    if config.method != "lora":
        changes.update(lora_rank=defaults.lora_rank, lora_alpha=defaults.lora_alpha)
    if config.method == "none":
        t = config.train
        changes["train"] = TrainConfig(
            max_length=t.max_length,
            batch_size=t.batch_size,
            eval_batch_size=t.eval_batch_size,
            eval_batches=t.eval_batches,
        )
    return dataclasses.replace(config, **changes).resolved()


def run_key(config: RunConfig) -> str:
    """Cache key: sha256 of the canonical config, package version, code, model and data."""
    from prefixlab import __version__

    config = canonical(config)
    payload = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "code": _code_fingerprint(),
        "model": _model_fingerprint(config.model),
        "data": _data_fingerprint(config.data),
        "config": config.to_dict(),
    }
    text = json.dumps(_jsonable(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _dataset(config: RunConfig, split: str, n_mrs: int | None, field_name: str):
    key = ("dataset", config.data, split, n_mrs, config.data_seed)
    if key not in _DATA:
        from prefixlab.data import load_e2e

        data = load_e2e(config.data, split)
        try:
            _DATA[key] = data.subset(n_mrs, seed=config.data_seed)
        except ValueError as err:
            raise ValueError(
                f"{field_name}={n_mrs} does not fit the {split} split ({err}) Lower {field_name}."
            ) from None
    return _DATA[key]


def _encoded(config: RunConfig, tokenizer, split: str, n_mrs: int | None, field_name: str):
    key = ("encoded", config.model, config.data, split, n_mrs, config.data_seed,
           config.train.max_length)  # fmt: skip
    if key not in _DATA:
        from prefixlab.data import encode_for_training

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # over-long pairs are skipped, as documented
            _DATA[key] = encode_for_training(
                tokenizer, _dataset(config, split, n_mrs, field_name).pairs,
                config.train.max_length,
                overflow="skip",
            )  # fmt: skip
    return _DATA[key]


def build(config: RunConfig):
    """Model, tokenizer and AdaptedModel for a run, untrained.

    Returns:
        (adapted, tokenizer). Prefix, prompt and "none" share the frozen base model loaded
        once per process; LoRA and full fine-tuning get their own copy.
    """
    from prefixlab.adapted import AdaptedModel
    from prefixlab.lora import add_lora
    from prefixlab.prefix import PrefixTuning
    from prefixlab.prompt import PromptTuning

    base, tokenizer = base_model(config)
    seed = config.train.seed
    if config.method == "prompt":
        adapter = PromptTuning(
            base, config.prefix_length, init=config.init, init_text=config.init_text,
            tokenizer=tokenizer, seed=seed,
        )  # fmt: skip
        return AdaptedModel(base, adapter), tokenizer
    if config.method in ("prefix", "prefix+mlp"):
        adapter = PrefixTuning(
            base, config.prefix_length, reparam=config.reparam, mlp_hidden=config.mlp_hidden,
            init=config.init, init_text=config.init_text, tokenizer=tokenizer, seed=seed,
        )  # fmt: skip
        return AdaptedModel(base, adapter), tokenizer
    if config.method == "lora":
        model = copy.deepcopy(base)
        add_lora(model, config.lora_rank, config.lora_alpha, seed=seed)
        return AdaptedModel(model, None), tokenizer
    if config.method == "full":
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(True)
        return AdaptedModel(model, None), tokenizer
    return AdaptedModel(base, None), tokenizer


def _trainable_state(adapted: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().contiguous().cpu().clone()
        for name, p in adapted.named_parameters()
        if p.requires_grad
    }


def _cache_paths(key: str) -> tuple[Path, Path]:
    folder = cache_dir()
    return folder / f"{key}.json", folder / f"{key}.safetensors"


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _read_cache(key: str) -> dict | None:
    path, _ = _cache_paths(key)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed
    return payload if payload.get("key") == key else None


def _label(config: RunConfig) -> str:
    parts = [config.method]
    if config.uses_prefix_length:
        parts.append(f"P={config.prefix_length}")
    if config.method == "lora":
        parts.append(f"r={config.lora_rank}")
    if config.method != "none":
        parts += [f"lr={config.lr:g}", f"seed={config.train.seed}"]
    return " ".join(parts)


def _trainable_count(adapted: nn.Module) -> int:
    return sum(p.numel() for p in adapted.parameters() if p.requires_grad)


def run_experiment(
    config: RunConfig | None = None,
    *,
    cache: bool = True,
    progress: bool = True,
    return_model: bool = True,
    **overrides,
):
    """Train and evaluate one run; read it from the disk cache when it was done before.

    Args:
        config: a RunConfig (default: `active_preset()`); keyword `overrides` are applied with
            `config.with_(...)`, e.g. run_experiment(FAST, method="prompt", seed=1).
        cache: read and write the on-disk cache (`cache_dir()`).
        progress: progress bars.
        return_model: also return the trained AdaptedModel. From the cache it is rebuilt from
            the saved trained weights; when those were too large to keep (full fine-tuning of
            big models) the run is trained again.

    Returns:
        (row, history, adapted): row is a flat dict (config fields, trainable parameter
        count, losses, BLEU, slot error rate, spikes, seconds, "cached"); adapted is None when
        return_model=False.
    """
    config = active_preset() if config is None else config
    if not isinstance(config, RunConfig):
        raise ValueError(
            f"config must be a RunConfig (e.g. prefixlab.config.FAST), got {type(config).__name__}."
        )
    if overrides:
        config = config.with_(**overrides)
    config = canonical(config)
    key = run_key(config) if cache else None
    if cache:
        hit = _read_cache(key)
        if hit is not None:
            adapted = None
            if return_model:
                adapted = _rebuild(config, key)
            if adapted is not None or not return_model:
                row = dict(hit["row"], cached=True)
                return row, History.from_dict(hit["history"]), adapted
    row, history, adapted = _run(config, progress=progress)
    row["run_id"] = (key or run_key(config))[:12]
    if cache and history.stopped_reason in ("completed", "nan"):
        _save_cache(key, config, row, history, adapted)
    row["cached"] = False
    return row, history, (adapted if return_model else None)


def _rebuild(config: RunConfig, key: str):
    from safetensors.torch import load_file

    _, weights = _cache_paths(key)
    adapted, _ = build(config)
    if config.method == "none":
        return adapted
    if not weights.is_file():
        return None
    state = load_file(str(weights))
    device = next(adapted.parameters()).device
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if p.requires_grad:
                if name not in state:
                    return None
                p.copy_(state[name].to(device))
    return adapted


def _save_cache(key, config, row, history, adapted) -> None:
    from safetensors.torch import save_file

    path, weights = _cache_paths(key)
    if config.method != "none" and _trainable_count(adapted) <= MAX_CACHED_PARAMETERS:
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(f".tmp{os.getpid()}")
        save_file(_trainable_state(adapted), str(tmp))
        os.replace(tmp, weights)
    payload = {
        "key": key,
        "config": config.to_dict(),
        "row": row,
        "history": history.to_dict(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_json_atomic(path, payload)


def _run(config: RunConfig, *, progress: bool):
    """Build, train, evaluate (no cache)."""
    adapted, tokenizer = build(config)
    train_enc = _encoded(config, tokenizer, "train", config.n_train_mrs, "n_train_mrs")
    val_enc = _encoded(config, tokenizer, "validation", config.n_val_mrs, "n_val_mrs")
    t = config.train
    if config.method == "none":
        history = History(config=_jsonable({"train": dataclasses.asdict(t)}))
        history.val_step.append(0)
        history.val_loss.append(
            validation_loss(adapted, val_enc, t.eval_batch_size or t.batch_size, t.eval_batches)
        )
    else:
        history = train(
            adapted, train_enc, t, val_data=val_enc, progress=progress, desc=_label(config)
        )
    history.config["run"] = _jsonable(config.to_dict())
    row = _row(config, adapted, history)
    if history.stopped_reason in ("completed", "stopped"):  # not NaN weights, not interrupted
        row.update(_table_gain(config, adapted, tokenizer, history.final_val_loss))
    if config.eval_mrs and history.stopped_reason != "interrupted":
        try:
            scores = _generation_scores(config, adapted, tokenizer, history)
        except KeyboardInterrupt:
            history.stopped_reason = "interrupted"
            history.message = "Interrupted during generation; BLEU and slot errors are missing."
            scores = {}
        row.update(scores)
        row["stopped_reason"] = history.stopped_reason
    return row, history, adapted


def _table_gain(config: RunConfig, adapted, tokenizer, right_loss: float) -> dict:
    """`table_gain` on the validation pairs the run validates on (the same batches); the
    right-MR loss is the run's final validation loss, already measured on the final weights."""
    t = config.train
    pairs = _dataset(config, "validation", config.n_val_mrs, "n_val_mrs").pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long pairs are skipped, as in validation
        return table_gain(
            adapted, tokenizer, pairs, max_length=t.max_length,
            batch_size=t.eval_batch_size or t.batch_size, max_batches=t.eval_batches,
            overflow="skip", right_loss=right_loss,
        )  # fmt: skip


def _generation_scores(config, adapted, tokenizer, history: History) -> dict:
    references = _dataset(config, config.eval_split, config.eval_mrs, "eval_mrs").grouped()
    mrs = list(references)
    texts = generate_texts(
        adapted, tokenizer, mrs, num_beams=config.num_beams,
        max_new_tokens=config.max_new_tokens, batch_size=config.train.eval_batch_size
        or config.train.batch_size, max_length=config.train.max_length,
    )  # fmt: skip
    history.generations = [{"mr": mr, "text": text} for mr, text in zip(mrs, texts, strict=True)]
    ser = slot_error_rate(mrs, texts)
    return {
        "bleu": corpus_bleu(texts, [references[mr] for mr in mrs]),
        "slot_error_rate": ser["slot_error_rate"],
        "missing_slots": ser["missing"],
        "contradicted_slots": ser["contradicted"],
        "added_slots": ser["added"],
    }


def _row(config: RunConfig, adapted, history: History) -> dict:
    flat = config.flat()
    if not config.uses_prefix_length:
        for name in ("prefix_length", "init", "init_text"):
            flat[name] = None
    if config.method != "prefix+mlp":
        flat["mlp_hidden"] = None
    if config.method != "lora":
        flat["lora_rank"] = flat["lora_alpha"] = None
    if config.method == "none":
        flat["lr"] = None
    row = {"label": _label(config), **flat}
    row.update(
        trainable_params=_trainable_count(adapted) if config.method != "none" else 0,
        steps_done=history.steps_done,
        stopped_reason=history.stopped_reason,
        final_train_loss=final_loss(history, which="train"),
        final_val_loss=history.final_val_loss,
        best_val_loss=history.best_val_loss,
        spikes=count_spikes(history.loss),
        max_grad_norm=max(history.grad_norm) if history.grad_norm else math.nan,
        diverged=history.stopped_reason == "nan",
        seconds=history.time[-1] if history.time else 0.0,
        bleu=math.nan,
        slot_error_rate=math.nan,
        loss_right_mr=math.nan,
        loss_wrong_mr=math.nan,
        table_gain=math.nan,
    )
    return row


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------

_AXIS_ALIASES = {"methods": "method", "seeds": "seed", "prefix_lengths": "prefix_length",
                 "lrs": "lr"}  # fmt: skip


def grid_configs(base: RunConfig, **axes) -> list[RunConfig]:
    """The product of the axis values applied to `base`, duplicates (same canonical run) removed.

    Axes are field names of RunConfig or TrainConfig (or the plurals methods, seeds,
    prefix_lengths, lrs) with a list of values each; a single value is a list of one.
    """
    if not isinstance(base, RunConfig):
        raise ValueError(f"base must be a RunConfig (e.g. FAST), got {type(base).__name__}.")
    names, values = [], []
    for name, vals in axes.items():
        name = _AXIS_ALIASES.get(name, name)
        if name in names:
            raise ValueError(f"Axis {name!r} is given twice (directly and by its plural).")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            vals = [vals]
        if len(vals) == 0:
            raise ValueError(f"Axis {name!r} has no values; give at least one.")
        names.append(name)
        values.append(list(vals))
    configs, seen = [], set()
    for combo in itertools.product(*values):
        config = canonical(base.with_(**dict(zip(names, combo, strict=True))))
        if config not in seen:
            seen.add(config)
            configs.append(config)
    return configs


def run_grid(
    base: RunConfig | None = None,
    *,
    cache: bool = True,
    progress: bool = True,
    **axes,
):
    """Run every combination of the axes (cached), e.g.

        table, histories = run_grid(FAST, method=["prefix", "prompt"], seed=[0, 1],
                                    prefix_length=[5, 10], lr=[1e-2, 3e-2])

    Args:
        base: the RunConfig the axes modify (default `active_preset()`).
        **axes: field -> list of values (RunConfig or TrainConfig fields; plurals methods,
            seeds, prefix_lengths, lrs are accepted too).

    Returns:
        (table, histories): a pandas DataFrame with one row per distinct run (columns: run_id,
        label, every config field, trainable_params, losses, bleu, slot_error_rate, spikes,
        table_gain (`evaluate.table_gain`: how much the run reads the MR), ...) and
        {run_id: History}. Ctrl-C stops the grid and returns the runs finished so far.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    base = active_preset() if base is None else base
    configs = grid_configs(base, **axes)
    rows, histories = [], {}
    bar = tqdm(
        configs, disable=not progress_enabled(progress) or len(configs) < 2, desc="grid",
        dynamic_ncols=True,
    )  # fmt: skip
    try:
        for config in bar:
            row, history, _ = run_experiment(
                config, cache=cache, progress=progress, return_model=False
            )
            rows.append(row)
            histories[row["run_id"]] = history
            if history.stopped_reason == "interrupted":
                break
    except KeyboardInterrupt:
        warnings.warn(f"Grid interrupted after {len(rows)} of {len(configs)} runs.", stacklevel=2)
    finally:
        bar.close()
    table = pd.DataFrame(rows)
    if len(table):
        table = table[["run_id", *[c for c in table.columns if c != "run_id"]]]
    return table, histories


def stability_summary(
    table, histories: Mapping[str, History], by=("method", "lr"), *, blowup_factor: float = 1.5
):
    """Loss-stability measures per setting, across the seeds of each setting.

    Args:
        table, histories: from `run_grid`.
        by: the columns that define a setting (runs differing in anything else, usually the
            seed, are pooled).
    Returns:
        DataFrame, one row per setting: runs, diverged (stopped on NaN), final_val mean/std/
        range (`final_loss_spread`), final_train mean/std, spikes mean and max
        (`count_spikes`), blowups (runs whose `loss_rise` exceeds `blowup_factor`: the running
        mean of the training loss climbed above 1.5x its start, which spikes cannot see early
        on), max_rise, mean_seed_std (the per-step std of the training loss across seeds,
        `seed_spread`, averaged over steps), max_grad_norm.
    """
    if not (isinstance(blowup_factor, (int, float)) and blowup_factor > 1):
        raise ValueError(f"blowup_factor must be a number > 1, got {blowup_factor!r}; try 1.5.")
    import pandas as pd

    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise ValueError(
            f"Columns {missing} are not in the table; choose from {list(table.columns)}."
        )
    out = []
    for key, group in table.groupby(by, dropna=False, sort=True):
        runs = [histories[r] for r in group["run_id"]]
        val = final_loss_spread(runs, which="val")
        tr = final_loss_spread(runs, which="train")
        spikes = [count_spikes(h.loss) for h in runs]
        rises = [loss_rise(h.loss) for h in runs]
        spread = seed_spread(runs)["std"] if len(runs) > 1 else None
        key = key if isinstance(key, tuple) else (key,)
        out.append(
            {
                **dict(zip(by, key, strict=True)),
                "runs": len(runs),
                "diverged": sum(h.stopped_reason == "nan" for h in runs),
                "final_val_mean": val["mean"],
                "final_val_std": val["std"],
                "final_val_range": val["range"],
                "final_train_mean": tr["mean"],
                "final_train_std": tr["std"],
                "spikes_mean": sum(spikes) / len(spikes),
                "spikes_max": max(spikes),
                "blowups": sum(r > blowup_factor for r in rises),
                "max_rise": max(rises),
                "mean_seed_std": float(spread.mean()) if spread is not None else math.nan,
                "max_grad_norm": max(
                    (max(h.grad_norm) for h in runs if h.grad_norm), default=math.nan
                ),
            }
        )
    return pd.DataFrame(out)


def lr_sweep(
    base: RunConfig | None = None,
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    *,
    methods: Sequence[str] = ("prefix", "prefix+mlp"),
    seeds: Sequence[int] = (0, 1, 2),
    cache: bool = True,
    progress: bool = True,
    **overrides,
):
    """Direct optimisation vs the MLP at several learning rates, several seeds each.

    Returns:
        (summary, table, histories): `stability_summary` by (method, lr), the run table and
        the histories. Report what comes out: nothing here assumes which method wins.
    """
    base = active_preset() if base is None else base
    if overrides:
        base = base.with_(**overrides)
    if not lrs or any(not isinstance(lr, (int, float)) or lr <= 0 for lr in lrs):
        raise ValueError(f"lrs must be positive numbers, got {lrs!r}.")
    table, histories = run_grid(
        base, method=list(methods), lr=list(lrs), seed=list(seeds), cache=cache, progress=progress
    )
    return stability_summary(table, histories, by=("method", "lr")), table, histories
