"""Whole runs from a RunConfig: build the model and adapter, train, score, tabulate.

- `build(config)`: the frozen model (loaded once per process, `base_model`) and an untrained
  AdaptedModel for the method: prefix, prompt, LoRA, prefix + LoRA, full fine-tuning or
  nothing. For an encoder-decoder model (model="tiny-bart", or any BART/T5 folder or hub id)
  a Seq2SeqAdaptedModel: a prefix in the attentions `config.parts` names, a soft prompt, or
  nothing. Everything after the build is shared: the batches, the loss, generation and the
  table gain read the architecture from the model (`prefixlab.pair_format`); for an
  encoder-decoder the table gain swaps the encoder's input.
- `train_run(config)`: build and train only (what `run_experiment` does before measuring).
- `run_experiment(config)`: build, `prefixlab.train.train` (`prefixlab.hybrid.train_hybrid`
  for "prefix+lora", with its schedule), then generate for held-out MRs and
  score them (BLEU, slot errors, table gain). Results are cached on disk
  (`prefixlab.run_cache`), so re-running a notebook cell is instant. The History keeps the
  scores table by table (`generations`, `table_losses`) for intervals over tables.
- `run_grid(base, method=[...], seed=[...], ...)`: the product of the given values as a tidy
  pandas table (one row per run) plus each run's History; `lr_sweep` runs the MLP study and
  summarises it with `prefixlab.stability.stability_summary`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from prefixlab._validate import require_bool, require_int, require_number
from prefixlab.adapted import AdaptedModel
from prefixlab.config import RunConfig, active_preset, encoder_decoder_model
from prefixlab.e2e import load_e2e
from prefixlab.e2e.held_out import (
    HELD_OUT_POOL_MRS,
    filter_by_held_out,
    held_out_errors,
    parse_held_out,
)
from prefixlab.evaluate import (
    generate_texts,
    score_texts,
    table_gain,
    table_scores,
    validation_loss,
)
from prefixlab.hybrid import build_hybrid, train_hybrid
from prefixlab.infix import InfixTuning, separator_ids
from prefixlab.loading import load_model
from prefixlab.lora import add_lora
from prefixlab.methods import method
from prefixlab.pair_format import is_encoder_decoder, pair_format
from prefixlab.paths import EMBEDDED_SEQ2SEQ_RUN_NAMES
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning
from prefixlab.run_cache import (
    HYBRID_FIELDS,
    canonical,
    load_trained,
    n_trainable_parameters,
    read_entry,
    run_key,
    save_entry,
)
from prefixlab.seq2seq import Seq2SeqPrefixTuning, Seq2SeqPromptTuning, load_seq2seq
from prefixlab.seq2seq_adapted import Seq2SeqAdaptedModel
from prefixlab.stability import count_spikes, final_loss, stability_summary
from prefixlab.train import History, jsonable, progress_enabled, train

_MODELS: dict = {}  # (name, device) -> (model, tokenizer): loaded once per process
_DATA: dict = {}  # data key -> encoded tensors / grouped references

# ---------------------------------------------------------------------------------------------
# Model, data and adapter of a run
# ---------------------------------------------------------------------------------------------


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(name: str, device: str):
    key = (name, device)
    if key not in _MODELS:
        if names_encoder_decoder(name):
            _MODELS[key] = load_seq2seq(EMBEDDED_SEQ2SEQ_RUN_NAMES.get(name, name), device=device)
        else:
            _MODELS[key] = load_model(name, device=device)
    return _MODELS[key]


@functools.lru_cache(maxsize=32)
def names_encoder_decoder(model: str) -> bool:
    """Whether RunConfig.model names an encoder-decoder model: known from the name or the
    folder (`config.encoder_decoder_model`), else from the hub config (only the config file is
    read). A name that cannot be read counts as decoder-only: `load_model` says what is wrong."""
    kind = encoder_decoder_model(model)
    if kind is None:
        from transformers import AutoConfig

        try:
            kind = bool(getattr(AutoConfig.from_pretrained(model), "is_encoder_decoder", False))
        except (OSError, ValueError):
            kind = False
    return kind


def base_model(config: RunConfig | None = None):
    """The frozen (model, tokenizer) a RunConfig names, loaded once per process and shared
    with the runs (do not modify it; `build` copies it for LoRA and full fine-tuning)."""
    config = active_preset() if config is None else config
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}.")
    return _load(config.model, _resolve_device(config.device))


# What each size field draws: training and validation tables never use a held-out value,
# evaluation tables use at least one (`RunConfig.held_out`; all tables when none is held out).
_KEEP = {"n_train_mrs": "without", "n_val_mrs": "without", "eval_mrs": "with"}


def subset_seed(config: RunConfig, field_name: str = "n_train_mrs") -> int:
    """The seed that picks a run's MRs for one size field: `data_seed`, except for the training
    MRs of a run with `subsample_per_seed`, which get one subset per (data_seed, run seed).
    Validation and evaluation tables never move with the run seed, so runs stay paired."""
    if field_name == "n_train_mrs" and config.subsample_per_seed:
        return 1_000_003 * (config.data_seed + 1) + config.train.seed
    return config.data_seed


def data_pool(config: RunConfig, split: str, field_name: str = "eval_mrs"):
    """Every table of `split` a run may draw from for one size field (`n_train_mrs`,
    `n_val_mrs`, `eval_mrs`), after the held-out filter (`prefixlab.e2e.held_out`). With held-out
    values the synthetic validation and test splits are drawn larger (`HELD_OUT_POOL_MRS`), so
    that enough tables remain on each side."""
    if field_name not in _KEEP:
        raise ValueError(f"field_name must be one of {tuple(_KEEP)}, got {field_name!r}.")
    held = parse_held_out(config.held_out)
    extra = (
        {"n_mrs": HELD_OUT_POOL_MRS}
        if held and config.data == "synthetic" and split != "train"
        else {}
    )
    return filter_by_held_out(load_e2e(config.data, split, **extra), held, keep=_KEEP[field_name])


def _dataset(config: RunConfig, split: str, n_mrs: int | None, field_name: str):
    seed = subset_seed(config, field_name)
    key = ("dataset", config.data, split, n_mrs, seed, config.held_out, _KEEP[field_name])
    if key not in _DATA:
        data = data_pool(config, split, field_name)
        try:
            _DATA[key] = data.subset(n_mrs, seed=seed)
        except ValueError as err:
            where = f"{split} split" + (
                f" with held_out={config.held_out}" if config.held_out else ""
            )
            raise ValueError(
                f"{field_name}={n_mrs} does not fit the {where} ({err}) Lower {field_name}."
            ) from None
    return _DATA[key]


def run_data(config: RunConfig, role: str):
    """The tables a run uses in one role: "train", "validation" (validation loss and table
    gain) or "eval" (generation, from `eval_split`), as `run_experiment` draws them."""
    roles = {"train": ("train", config.n_train_mrs, "n_train_mrs"),
             "validation": ("validation", config.n_val_mrs, "n_val_mrs"),
             "eval": (config.eval_split, config.eval_mrs or None, "eval_mrs")}  # fmt: skip
    if role not in roles:
        raise ValueError(f"role must be one of {tuple(roles)}, got {role!r}.")
    return _dataset(config, *roles[role])


def _encoded(config: RunConfig, tokenizer, split: str, n_mrs: int | None, field_name: str):
    key = ("encoded", config.model, config.data, split, n_mrs, subset_seed(config, field_name),
           config.held_out, _KEEP[field_name], config.train.max_length)  # fmt: skip
    if key not in _DATA:
        # Pairs longer than max_length are skipped: the encoder warns once with the count,
        # and the run row carries it (dropped_train_pairs, dropped_val_pairs). The model's
        # architecture decides the layout (`prefixlab.pair_format`).
        form = pair_format(base_model(config)[0])
        _DATA[key] = form.encode(
            tokenizer, _dataset(config, split, n_mrs, field_name).pairs,
            config.train.max_length,
            overflow="skip",
        )  # fmt: skip
    return _DATA[key]


def build(config: RunConfig):
    """Model, tokenizer and AdaptedModel for a run, untrained.

    Returns:
        (adapted, tokenizer). Prefix, prompt and "none" share the frozen base model loaded
        once per process; LoRA, prefix + LoRA and full fine-tuning get their own copy.
    """
    base, tokenizer = base_model(config)
    config.check_model_kind(is_encoder_decoder(base))  # a hub model is known once loaded
    if is_encoder_decoder(base):
        return _build_seq2seq(config, base, tokenizer), tokenizer
    seed = config.train.seed
    adapter_kind = method(config.method).adapter
    if method(config.method).is_hybrid:  # a direct prefix plus LoRA on a copy of the model
        adapted = build_hybrid(
            base, config.prefix_length, rank=config.lora_rank, alpha=config.lora_alpha,
            seed=seed, init=config.init, init_text=config.init_text, tokenizer=tokenizer,
        )  # fmt: skip
        return adapted, tokenizer
    if adapter_kind == "prompt":
        adapter = PromptTuning(
            base, config.prefix_length, init=config.init, init_text=config.init_text,
            tokenizer=tokenizer, seed=seed,
        )  # fmt: skip
        return AdaptedModel(base, adapter), tokenizer
    if adapter_kind == "prefix":
        adapter = PrefixTuning(
            base, config.prefix_length, reparam=config.reparam, mlp_hidden=config.mlp_hidden,
            init=config.init, init_text=config.init_text, tokenizer=tokenizer, seed=seed,
        )  # fmt: skip
        return AdaptedModel(base, adapter), tokenizer
    if adapter_kind == "infix":
        adapter = InfixTuning(
            base, config.prefix_length, separator=separator_ids(tokenizer), init=config.init,
            init_text=config.init_text, tokenizer=tokenizer, seed=seed,
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


def _build_seq2seq(config: RunConfig, base, tokenizer) -> Seq2SeqAdaptedModel:
    """The untrained Seq2SeqAdaptedModel of an encoder-decoder run (method checked by
    `RunConfig.check_model_kind`): a prefix in `config.parts`, a soft prompt, or nothing."""
    seed = config.train.seed
    adapter_kind = method(config.method).adapter
    if adapter_kind == "prefix":
        adapter = Seq2SeqPrefixTuning(
            base, config.prefix_length, parts=config.parts, reparam=config.reparam,
            mlp_hidden=config.mlp_hidden, init=config.init, seed=seed,
        )  # fmt: skip
        return Seq2SeqAdaptedModel(base, adapter)
    if adapter_kind == "prompt":
        adapter = Seq2SeqPromptTuning(
            base, config.prefix_length, init=config.init, init_text=config.init_text,
            tokenizer=tokenizer, seed=seed,
        )  # fmt: skip
        return Seq2SeqAdaptedModel(base, adapter)
    return Seq2SeqAdaptedModel(base, None)


def _places_parts(config: RunConfig) -> bool:
    """Whether the run's `parts` decides anything: a prefix on an encoder-decoder model."""
    return method(config.method).adapter == "prefix" and names_encoder_decoder(config.model)


def _label(config: RunConfig) -> str:
    parts = [config.method]
    if config.uses_prefix_length:
        parts.append(f"P={config.prefix_length}")
    if _places_parts(config):
        parts.append("+".join(config.parts))
    if method(config.method).uses_lora:
        parts.append(f"r={config.lora_rank}")
    if method(config.method).is_hybrid:
        parts.append(config.hybrid_schedule)
    if config.method != "none":
        parts += [f"lr={config.lr:g}", f"seed={config.train.seed}"]
    return " ".join(parts)


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
    for name, value in (("cache", cache), ("progress", progress), ("return_model", return_model)):
        require_bool(name, value)
    if overrides:
        config = config.with_(**overrides)
    config = canonical(config)
    key = run_key(config) if cache else None
    if cache:
        hit = read_entry(key)
        if hit is not None:
            adapted = None
            if return_model:
                adapted = _rebuild(config, key)
            if adapted is not None or not return_model:
                row = dict(hit["row"], cached=True)
                return row, History.from_dict(hit["history"]), adapted
    row, history, adapted = _run(config, progress=progress)
    row["run_id"] = (key or run_key(config))[:12]
    if cache and history.stopped_reason in ("completed", "nan", "diverged"):
        save_entry(key, config, row, history, adapted)
    row["cached"] = False
    return row, history, (adapted if return_model else None)


def _rebuild(config: RunConfig, key: str):
    """The trained AdaptedModel of a cached run, or None when its weights were not kept."""
    adapted, _ = build(config)
    if config.method == "none" or load_trained(key, adapted):
        return adapted
    return None


def train_run(config: RunConfig, *, progress: bool = False, callback=None):
    """Build and train one run exactly as `run_experiment` does, and nothing else: no cache,
    no table gain, no generation. For retraining a run and comparing it (`studies.live_slice`).

    Args:
        config: the run (a RunConfig).
        callback: called as callback(history, adapted) after every training step, e.g. to
            record attention while the run trains; returning True stops it ("stopped").
    Returns:
        (adapted, tokenizer, history): the trained AdaptedModel and its History (for "none",
        one validation of the frozen model).
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}.")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(history, adapted), or None.")
    require_bool("progress", progress)
    adapted, tokenizer = build(config)
    train_enc = _encoded(config, tokenizer, "train", config.n_train_mrs, "n_train_mrs")
    val_enc = _encoded(config, tokenizer, "validation", config.n_val_mrs, "n_val_mrs")
    t = config.train
    # train's callback sees the History only; the adapted model is added here
    watch = {} if callback is None else {"callback": lambda history: callback(history, adapted)}
    if config.method == "none":
        history = History(config=jsonable({"train": dataclasses.asdict(t)}))
        history.val_step.append(0)
        history.val_loss.append(
            validation_loss(adapted, val_enc, t.eval_batch_size or t.batch_size, t.eval_batches)
        )
    elif method(config.method).is_hybrid:
        history = train_hybrid(
            adapted, train_enc, t, schedule=config.hybrid_schedule, lora_lr=config.lora_lr,
            prefix_share=config.prefix_share, val_data=val_enc, progress=progress,
            desc=_label(config), **watch,
        )  # fmt: skip
    else:
        history = train(
            adapted, train_enc, t, val_data=val_enc, progress=progress, desc=_label(config),
            **watch,
        )  # fmt: skip
    return adapted, tokenizer, history


def _run(config: RunConfig, *, progress: bool):
    """Build, train, evaluate (no cache)."""
    adapted, tokenizer, history = train_run(config, progress=progress)
    train_enc = _encoded(config, tokenizer, "train", config.n_train_mrs, "n_train_mrs")
    val_enc = _encoded(config, tokenizer, "validation", config.n_val_mrs, "n_val_mrs")
    history.config["run"] = jsonable(config.to_dict())
    row = _row(config, adapted, history)
    row["dropped_train_pairs"] = getattr(train_enc, "n_dropped", 0)  # longer than max_length
    row["dropped_val_pairs"] = getattr(val_enc, "n_dropped", 0)
    if history.stopped_reason in ("completed", "stopped", "diverged"):  # finite weights
        gain = _table_gain(config, adapted, tokenizer)
        history.table_losses = gain.pop("per_table")
        row.update(gain)
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


def _table_gain(config: RunConfig, adapted, tokenizer) -> dict:
    """`table_gain` on the validation pairs the run validates on (the same batches), table by
    table; its right-MR loss is the run's final validation loss up to float rounding."""
    t = config.train
    pairs = _dataset(config, "validation", config.n_val_mrs, "n_val_mrs").pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long pairs are skipped, as in validation
        return table_gain(
            adapted, tokenizer, pairs, max_length=t.max_length,
            batch_size=t.eval_batch_size or t.batch_size, max_batches=t.eval_batches,
            overflow="skip", per_table=True,
        )  # fmt: skip


def write_texts(config: RunConfig, adapted, tokenizer, history: History) -> dict:
    """Generate for a trained run's evaluation tables as `run_experiment` does after training:
    the first `config.eval_mrs` MRs of `config.eval_split`, decoded with the config's beams and
    length. For a run retrained by `train_run` (`studies.live_slice(samples=...)`).

    Returns:
        The scores `run_experiment` puts in its row (bleu, slot_error_rate, missing_slots, ...);
        `history.generations` is set to one dict per table (mr, text and its slot errors).
    """
    require_int("eval_mrs", config.eval_mrs, low=1, hint="Give the config eval_mrs=4, say.")
    return _generation_scores(config, adapted, tokenizer, history)


def _generation_scores(config, adapted, tokenizer, history: History) -> dict:
    references = _dataset(config, config.eval_split, config.eval_mrs, "eval_mrs").grouped()
    mrs = list(references)
    texts = generate_texts(
        adapted, tokenizer, mrs, num_beams=config.num_beams,
        max_new_tokens=config.max_new_tokens, batch_size=config.train.eval_batch_size
        or config.train.batch_size, max_length=config.train.max_length,
    )  # fmt: skip
    per_table = table_scores(mrs, texts, references)
    history.generations = [
        {"mr": mr, "text": text, **scores}
        for mr, text, scores in zip(mrs, texts, per_table, strict=True)
    ]
    scores = score_texts(mrs, texts, references)
    out = {
        "bleu": scores["bleu"],
        "slot_error_rate": scores["slot_error_rate"],
        "missing_slots": scores["missing"],
        "contradicted_slots": scores["contradicted"],
        "added_slots": scores["added"],
    }
    held = parse_held_out(config.held_out)
    if held:  # the slot errors on the held-out values only
        counts = [held_out_errors(g["mr"], g["missing"], g["contradicted"], held)
                  for g in history.generations]  # fmt: skip
        slots = sum(n for _, n in counts)
        out["held_out_slots"] = slots
        out["held_out_slot_error_rate"] = sum(e for e, _ in counts) / slots if slots else math.nan
    return out


def _row(config: RunConfig, adapted, history: History) -> dict:
    flat = config.to_row()
    row_of_method = method(config.method)
    if not row_of_method.uses_prefix_length:
        for name in ("prefix_length", "init", "init_text"):
            flat[name] = None
    if row_of_method.reparam != "mlp":
        flat["mlp_hidden"] = None
    if not row_of_method.uses_lora:
        flat["lora_rank"] = flat["lora_alpha"] = None
    if not row_of_method.is_hybrid:
        for name in HYBRID_FIELDS:
            flat[name] = None
    elif config.hybrid_schedule == "joint":
        flat["prefix_share"] = None
    if config.method == "none":
        flat["lr"] = None
    if not _places_parts(config):
        flat["parts"] = None
    row = {"label": _label(config), "architecture": pair_format(adapted).name, **flat}
    row.update(
        trainable_params=n_trainable_parameters(adapted) if config.method != "none" else 0,
        steps_done=history.steps_done,
        stopped_reason=history.stopped_reason,
        final_train_loss=final_loss(history, which="train"),
        final_val_loss=history.final_val_loss,
        best_val_loss=history.best_val_loss,
        spikes=count_spikes(history.loss),
        max_grad_norm=max(history.grad_norm) if history.grad_norm else math.nan,
        diverged=history.stopped_reason in ("nan", "diverged"),
        diverged_at=history.diverged_at,
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
    base = active_preset() if base is None else base
    require_bool("cache", cache)
    require_bool("progress", progress)
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
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence) or not lrs:
        raise ValueError(f"lrs must be a non-empty list of learning rates, got {lrs!r}.")
    for lr in lrs:
        require_number("each of lrs", lr, above=0, hint="E.g. lrs=(1e-3, 1e-2, 1e-1).")
    table, histories = run_grid(
        base, method=list(methods), lr=list(lrs), seed=list(seeds), cache=cache, progress=progress
    )
    return stability_summary(table, histories, by=("method", "lr")), table, histories
