"""What the prefix-length lab trains and measures, apart from its widgets.

`interactive_config` makes a preset light enough to retrain while you watch; `info_html`,
`trainable_count`, `attention_probe` and `prefix_mass_grid` compute what the lab's panels
show. `prefixlab.widgets.PrefixLengthLab` wires them to the controls.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from prefixlab.accounting import context_budget, parameter_counts
from prefixlab.batching import encode_for_training
from prefixlab.config import RunConfig, active_preset
from prefixlab.e2e import load_e2e
from prefixlab.hooks import attention_report
from prefixlab.methods import METHOD_TABLE, method

# The method dropdown: one entry per adapter the lab shows, prefix and prompt (the MLP is a
# switch of its own; the infix, which needs the table/text split, is left to notebook 07), and
# every method the lab can show: those of these adapters, without LoRA. The prefix + LoRA
# hybrid is left out: the lab is about what P does, and the hybrid's LoRA part trains a rank-r
# update of every attention projection whatever P is, so its count, its attention and its
# result would not be P's alone (a method that needs notebook 08, as the infix needs 07).
_LAB_ADAPTERS = ("prefix", "prompt")
METHOD_CHOICES = tuple(
    (m.short_label, m.name) for m in METHOD_TABLE if m.adapter == m.name and m.name in _LAB_ADAPTERS
)
LAB_METHODS = tuple(m.name for m in METHOD_TABLE if m.adapter in _LAB_ADAPTERS and not m.uses_lora)
# interactive_config caps: a retrain should take seconds on a laptop CPU.
INTERACTIVE_STEPS = 60
INTERACTIVE_EVAL_MRS = 8
LR_RANGE = (-4.0, -0.5)  # log10 of the learning-rate slider's ends
STEPS_RANGE = (10, 500, 10)  # steps slider: min, max, step


def lab_method(method: str, mlp: bool) -> str:
    """The RunConfig method of the lab's controls: "prefix" + MLP -> "prefix+mlp"."""
    if method not in ("prefix", "prompt"):
        raise ValueError(f"method must be 'prefix' or 'prompt', got {method!r}.")
    return "prefix+mlp" if method == "prefix" and mlp else method


def interactive_config(base: RunConfig | None = None) -> RunConfig:
    """`base` made light enough to retrain while you watch.

    At most INTERACTIVE_STEPS optimizer steps, INTERACTIVE_EVAL_MRS generated MRs (for BLEU),
    and validation only at the end unless `eval_every` fits twice into the steps; everything
    else (batch size, data, model, validation set) stays. The FAST preset is already lighter
    and comes back unchanged.
    """
    base = active_preset() if base is None else base
    if not isinstance(base, RunConfig):
        raise ValueError(f"base must be a RunConfig, got {type(base).__name__}.")
    steps = min(base.train.steps, INTERACTIVE_STEPS)
    eval_every = base.train.eval_every
    if eval_every is not None and 2 * eval_every > steps:
        eval_every = None  # validate once, after the last step
    return base.with_(
        steps=steps, eval_every=eval_every, eval_mrs=min(base.eval_mrs, INTERACTIVE_EVAL_MRS)
    )


def trainable_count(model, config: RunConfig) -> int:
    """Trainable parameters of `config`'s method on `model`, from prefixlab.accounting."""
    rows = parameter_counts(model, config.prefix_length, mlp_hidden=config.mlp_hidden)
    return next(r["trainable"] for r in rows if r["method"] == config.method)


def info_html(model, config: RunConfig) -> str:
    """The lab's accounting line for `config` on `model` (HTML, two lines).

    "trainable parameters: 20,480 (2.13% of the model)" then "context: P=10 uses 10 of 256
    positions (3.9%), 246 left for tokens". For the MLP the count is what trains; what is
    kept after training (the materialized prefix) is named after it.
    """
    P = config.prefix_length
    rows = {r["method"]: r for r in parameter_counts(model, P, mlp_hidden=config.mlp_hidden)}
    row, budget = rows[config.method], context_budget(model, P)
    share = f"{row['percent_of_base']:.2f}% of the model"
    if row["stored"] != row["trainable"]:
        share += f"; {row['stored']:,} kept after training"
    return (
        f"trainable parameters: {row['trainable']:,} ({share})<br>"
        f"context: P={P} uses {P} of {budget['context']:,} positions "
        f"({budget['percent_used']:.1f}%), {budget['left_for_tokens']:,} left for tokens"
    )


def attention_probe(tokenizer, config: RunConfig, n_examples: int = 8) -> dict:
    """A fixed attention probe: the first `n_examples` validation MRs, each with its first
    reference, encoded as in training (so MR and text tokens are the queries).

    Returns:
        {"input_ids", "attention_mask", "labels"}, each [n_examples, T].
    """
    grouped = load_e2e(config.data, "validation").grouped()
    pairs = [(mr, refs[0]) for mr, refs in list(grouped.items())[:n_examples]]
    if not pairs:
        raise ValueError(f"The validation split of {config.data!r} is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long pairs are dropped, as in training
        return encode_for_training(tokenizer, pairs, config.train.max_length, overflow="skip")


def prefix_mass_grid(adapted, probe: dict) -> np.ndarray:
    """Share of attention on the P virtual positions per layer and head, averaged over the
    probe's real tokens (`prefixlab.hooks.attention_report`). Returns [layers, heads]."""
    with warnings.catch_warnings():
        # record_attention says once that it switches sdpa to eager while recording; the
        # lab knows, and a warning raised in a widget callback would land in no cell.
        warnings.simplefilter("ignore")
        report = attention_report(adapted, probe["input_ids"], probe["attention_mask"])
    return report.pivot(index="layer", columns="head", values="prefix_mass").to_numpy()


def fmt_lr(lr: float) -> str:
    return f"{lr:.1e}"


def run_caption(config: RunConfig) -> str:
    """What a run was, in the lab's words: "prefix tuning, P=10, 60 steps"."""
    label = method(config.method).short_label
    return f"{label}, P={config.prefix_length}, {config.train.steps} steps"


def result_text(row: dict) -> str:
    """A run row as one line: validation loss, BLEU, how it ended, trained or cached."""
    val = row.get("final_val_loss", math.nan)
    text = f"validation loss {val:.3f}"
    bleu = row.get("bleu")
    if bleu is not None and math.isfinite(bleu):
        text += f", BLEU {bleu:.1f}"
    reason = row.get("stopped_reason")
    if reason == "diverged":  # ran to the end, but ended worse than it started
        text += ", diverged: lower the learning rate"
    elif reason not in (None, "completed"):
        text += f", stopped early ({reason})"
    how = "from the cache" if row.get("cached") else f"trained in {row.get('seconds', 0):.1f} s"
    return f"{text} ({how})"
