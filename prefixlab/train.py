"""Training: AdamW on whatever requires grad, and the History of what happened.

`train(adapted, data, config)`: warmup then decay, optional clipping, periodic validation.
Returns a `History` (per-step loss, gradient norm before clipping, learning rate, wall time;
validation loss every `eval_every` steps). Same seed, same history on a CPU. A NaN or infinite
loss stops training with a message and restores the last parameters that gave a finite loss;
Ctrl-C (or a notebook's stop button) returns the history so far.

Around it: `prefixlab.runs` builds, trains and scores whole runs from a RunConfig (cached on
disk by `prefixlab.run_cache`), and `prefixlab.stability` measures loss curves.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from prefixlab._validate import require_bool
from prefixlab.batching import iterate_batches
from prefixlab.config import RunConfig, TrainConfig, active_preset
from prefixlab.evaluate import validation_loss
from prefixlab.lora import has_lora
from prefixlab.methods import method, method_of_adapter
from prefixlab.pair_format import PairFormat, model_call, pair_format

DIVERGENCE_WINDOW = 10  # steps in the running mean of the training loss that divergence reads
DIVERGENCE_MARGIN = 0.05  # "above the reference" means more than 5% above it, not noise


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
    stopped_reason: str = "completed"  # completed, nan, diverged, interrupted or stopped
    message: str = ""  # why training stopped early or diverged, in words
    diverged_at: int | None = None  # step from which the loss stayed too high (see above)
    # After training, one dict per held-out table: {"mr", "text"} and the table's scores
    # (`evaluate.table_scores`: "missing", "contradicted", "added", "slots", "bleu_stats").
    generations: list[dict] = field(default_factory=list)
    # One dict per validation table: {"mr", "right", "wrong"}, each [summed loss, tokens]
    # (`evaluate.table_gain(per_table=True)`): validation loss and table gain per table.
    table_losses: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the TrainConfig (and RunConfig) used

    def __len__(self) -> int:
        return len(self.step)

    def add_step(self, step: int, loss: float, grad_norm: float, lr: float, seconds: float) -> None:
        """Record one optimisation step (the per-step lists grow together)."""
        self.step.append(step)
        self.loss.append(loss)
        self.grad_norm.append(grad_norm)
        self.lr.append(lr)
        self.time.append(seconds)

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
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> History:
        def floats(values):
            return [math.nan if v is None else float(v) for v in values]

        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("loss", "grad_norm", "lr", "time", "val_loss"):
            data[key] = floats(data.get(key, []))
        return cls(**data)


def jsonable(value):
    """`value` with dicts, lists and tuples walked, numpy/torch scalars made Python numbers
    and non-finite floats made None: what json.dumps accepts and reads back the same."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return value


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _method_of(adapted) -> str:
    """The method (`prefixlab.methods`) whose parameters `adapted` trains; it picks the
    default learning rate."""
    adapter = getattr(adapted, "adapter", None)
    if adapter is not None:
        return method_of_adapter(adapter.method, getattr(adapter, "reparam", "none")).name
    model = getattr(adapted, "model", adapted)
    return "lora" if has_lora(model) else "full"


# Columns a batch may carry besides input_ids, attention_mask and labels, one entry per row,
# passed to the model by name: task_ids for an AdapterBank or a ControlPrefix, the target
# padding of an encoder-decoder batch (`seq2seq_batching.encode_seq2seq`).
OPTIONAL_COLUMNS = ("task_ids", "decoder_attention_mask")


def _as_encoded(
    data, tokenizer, max_length: int, what: str, form: PairFormat
) -> dict[str, torch.Tensor]:
    """Accept encoded tensors, or (mr, ref) pairs / an E2EDataset plus a tokenizer (encoded
    in the model's `form`, `prefixlab.pair_format`)."""
    if isinstance(data, Mapping):
        keys = ("input_ids", "attention_mask", "labels")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(
                f"{what} is a dict without {missing}; pass the output of "
                "prefixlab.batching.encode_for_training(tokenizer, pairs, max_length)."
            )
        if data["input_ids"].dim() != 2 or len(data["input_ids"]) == 0:
            raise ValueError(f"{what}['input_ids'] must be a non-empty [N, T] tensor.")
        for column in OPTIONAL_COLUMNS:
            if column not in data:
                continue
            if len(data[column]) != len(data["input_ids"]):
                raise ValueError(
                    f"{what}[{column!r}] has {len(data[column])} rows, input_ids "
                    f"{len(data['input_ids'])}; give one entry per row."
                )
            keys += (column,)
        return {k: data[k] for k in keys}
    if tokenizer is None:
        raise ValueError(
            f"{what} is not encoded: pass tokenizer=... so train() can encode it, or pass "
            "prefixlab.batching.encode_for_training(tokenizer, pairs, max_length)."
        )
    return form.encode(tokenizer, list(data), max_length, overflow="skip")


def _endless_batches(encoded, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches; epoch e uses the order fixed by (seed, e)."""
    n = len(encoded["input_ids"])
    drop_last = n >= batch_size  # equal-size batches when the data allows it
    for epoch in itertools.count():
        yield from iterate_batches(
            encoded, batch_size, shuffle=True, seed=seed * 100_003 + epoch, drop_last=drop_last
        )


def _param_groups(named, peak: float, lr_of) -> list[dict]:
    """AdamW parameter groups, one per peak learning rate (in order of first appearance)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in named:
        own = None if lr_of is None else lr_of(name)
        if own is not None and not (isinstance(own, (int, float)) and own > 0):
            raise ValueError(f"lr_of({name!r}) returned {own!r}; return a rate > 0 or None.")
        groups.setdefault(float(peak if own is None else own), []).append(p)
    return [{"params": ps, "peak": rate} for rate, ps in groups.items()]


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
    lr_of: Callable[[str], float | None] | None = None,
) -> History:
    """Train every parameter of `adapted` that requires grad; return the History.

    Args:
        adapted: an AdaptedModel (prefix, prompt, LoRA, or a fine-tunable copy of the model),
            or a Seq2SeqAdaptedModel (an encoder-decoder with a prefix or a soft prompt).
        train_data: {"input_ids", "attention_mask", "labels"} [N, T] tensors from
            `prefixlab.batching.encode_for_training` (plus "task_ids" [N] or [N, n_attributes]
            for an AdapterBank or a ControlPrefix; for an encoder-decoder, the output of
            `prefixlab.seq2seq_batching.encode_seq2seq`), or (mr, ref) pairs / an E2EDataset
            together with `tokenizer=` (encoded for the model's architecture; pairs longer than
            config.max_length are skipped with a warning).
        config: a TrainConfig (or a RunConfig, whose `.train` is used); None = the active
            preset's. lr=None picks the default learning rate of the method being trained
            (`prefixlab.methods`: a prefix, a soft prompt, LoRA or every weight).
        val_data: like train_data; validated before step 1, every `eval_every` steps and at
            the end (on `eval_batches` batches).
        progress: show a tqdm progress bar.
        callback: called as callback(history) after every step; return True to stop (the
            history is then marked "stopped").
        lr_of: parameter name -> its own peak learning rate, or None for the run's (e.g. the
            prefix + LoRA hybrid gives the LoRA matrices LoRA's rate); every group follows
            the same warmup and decay. `History.lr` records the run's rate.

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
    require_bool("progress", progress)
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(history), or None.")
    if lr_of is not None and not callable(lr_of):
        raise ValueError("lr_of must be callable as lr_of(parameter_name) -> float or None.")
    named = [(name, p) for name, p in adapted.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not params:
        raise ValueError(
            "Nothing to train: no parameter requires grad. Wrap the model with an adapter "
            "(AdaptedModel(model, PrefixTuning(model))), add LoRA (prefixlab.lora.add_lora) or "
            "unfreeze a copy of the model for full fine-tuning."
        )
    peak = config.lr if config.lr is not None else method(_method_of(adapted)).default_lr
    form = pair_format(adapted)  # decoder-only or encoder-decoder batches
    encoded = _as_encoded(train_data, tokenizer, config.max_length, "train_data", form)
    val_encoded = (
        None
        if val_data is None
        else _as_encoded(val_data, tokenizer, config.max_length, "val_data", form)
    )
    device = params[0].device
    eval_batch_size = config.eval_batch_size or config.batch_size

    history = History(config=jsonable({"train": dataclasses.asdict(config.with_(lr=peak))}))

    def validate(step: int) -> None:
        if val_encoded is None or (history.val_step and history.val_step[-1] == step):
            return
        loss = validation_loss(adapted, val_encoded, eval_batch_size, config.eval_batches)
        history.val_step.append(step)
        history.val_loss.append(loss)

    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        _param_groups(named, peak, lr_of),
        lr=peak,
        betas=config.betas,
        weight_decay=config.weight_decay,
    )
    # The parameters as they were before the latest update: restored when a loss goes NaN,
    # or when an interrupt lands in the middle of an update.
    last_good = [p.detach().clone() for p in params]
    batches = _endless_batches(encoded, config.batch_size, config.seed)
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
                group["lr"] = config.lr_at(step, group["peak"])
            out = model_call(adapted, batch)  # labels and per-row columns by name
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

            history.add_step(step, loss_value, grad_norm, lr, elapsed)
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
