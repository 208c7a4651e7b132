"""Training and run configurations: validated dataclasses and three named presets.

    from prefixlab.config import FAST, CPU, GPU, active_preset

    cfg = active_preset()                          # FAST under nbval/CI, else CPU
    cfg = cfg.with_(method="prefix+mlp", lr=3e-3)  # override any field by keyword
    cfg.train.steps, cfg.prefix_length             # training fields live in cfg.train

A `TrainConfig` says how to optimise (steps, batch, learning-rate schedule, clipping, when to
validate). A `RunConfig` says what to train (method, prefix length, model, data) and holds a
`TrainConfig`. Both are frozen, so a config can key the on-disk cache (see run_cache.py), and both
check every field when built, raising a ValueError that says how to fix the call.

Presets (env var PREFIXLAB_PRESET picks one for `active_preset()`):

- FAST: tens of steps, a few seconds per run; nbval and CI.
- CPU: a few hundred steps, about 20 s to 2 min per run on the embedded tiny model.
- GPU: gpt2-size models on a Colab GPU.

Encoder-decoder runs: model="tiny-bart" (the embedded BART, `prefixlab.seq2seq`) or any
encoder-decoder folder or hub id; `parts` says which attentions get a prefix ("encoder",
"decoder", "cross"; all three by default) and the methods are ENCODER_DECODER_METHODS.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

from prefixlab._validate import (
    did_you_mean,
    is_number,
    require_bool,
    require_choice,
    require_int,
    require_number,
)
from prefixlab.e2e.held_out import format_held_out, parse_held_out
from prefixlab.e2e.load import offline
from prefixlab.methods import ENCODER_DECODER_METHODS, METHOD_TABLE, METHODS, method
from prefixlab.paths import EMBEDDED_MODELS, EMBEDDED_SEQ2SEQ_RUN_NAMES
from prefixlab.seq2seq import PARTS, SEQ2SEQ_PREFIX_INITS, check_parts

SCHEDULES = ("linear", "cosine", "constant")
# How "prefix+lora" trains its two parts (prefixlab.hybrid.train_hybrid): both at once, or the
# prefix alone and then LoRA alone with the prefix frozen.
HYBRID_SCHEDULES = ("joint", "prefix-then-lora")
EVAL_SPLITS = ("validation", "test")
PRESET_ENV = "PREFIXLAB_PRESET"

# Peak learning rate per method when TrainConfig.lr is None: a read-only view of the
# `prefixlab.methods` table, kept under this name because the notebooks cite it.
DEFAULT_LR = types.MappingProxyType({m.name: m.default_lr for m in METHOD_TABLE})


def encoder_decoder_model(model: str) -> bool | None:
    """Whether a RunConfig's `model` is an encoder-decoder: True for "tiny-bart", False for the
    embedded decoder-only models, read from config.json for a local folder, None for a hub id
    (known once it is loaded; `prefixlab.runs.build` checks the run then)."""
    if model in EMBEDDED_SEQ2SEQ_RUN_NAMES:
        return True
    if model in EMBEDDED_MODELS:
        return False
    return _folder_is_encoder_decoder(str(Path(model).expanduser().resolve()))


@functools.lru_cache(maxsize=64)
def _folder_is_encoder_decoder(folder: str) -> bool | None:
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    except (OSError, ValueError):
        return None


def parse_parts(parts) -> tuple[str, ...]:
    """`RunConfig.parts` from what a call gives: a tuple or list of names from PARTS, one name,
    or names joined by "+" ("encoder+cross", as run tables show them). Returns them in PARTS
    order."""
    if isinstance(parts, str):
        parts = tuple(parts.split("+"))
    elif isinstance(parts, list):
        parts = tuple(parts)
    try:
        return check_parts(parts)
    except ValueError as err:
        raise ValueError(
            f"{err} parts picks the attentions of an encoder-decoder model that get a prefix: "
            "any of 'encoder', 'decoder', 'cross', e.g. parts=('encoder', 'decoder') or "
            "parts='encoder+decoder'."
        ) from None


def _unknown_field(cls, key: str, valid) -> ValueError:
    return ValueError(
        f"{cls.__name__} has no field {key!r}.{did_you_mean(key, valid)} "
        f"Fields: {', '.join(valid)}."
    )


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise: AdamW, warmup then decay, optional clipping, periodic validation."""

    steps: int = 300  # optimizer updates
    batch_size: int = 16  # (mr, text) pairs per update
    lr: float | None = None  # peak learning rate; None = DEFAULT_LR of the method
    weight_decay: float = 0.0  # AdamW decoupled decay (0: do not pull prefixes towards zero)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    warmup_steps: int | None = None  # linear warmup length; None = warmup_ratio * steps
    warmup_ratio: float = 0.06  # used when warmup_steps is None
    schedule: str = "linear"  # after warmup: "linear" or "cosine" decay, or "constant"
    min_lr_ratio: float = 0.0  # decay floor, as a fraction of the peak
    clip_grad_norm: float | None = 1.0  # max global gradient norm; None = no clipping
    eval_every: int | None = 50  # validate every n steps (also before step 1 and at the end)
    eval_batches: int | None = None  # validation batches per evaluation; None = all
    eval_batch_size: int | None = None  # None = batch_size
    seed: int = 0  # seeds batch order, adapter init and everything random in a run
    max_length: int = 128  # longest (source + text) in tokens; longer pairs are skipped

    def __post_init__(self):
        require_int("steps", self.steps, low=1, hint="Try 300 (CPU) or 30 (FAST).")
        require_int("batch_size", self.batch_size, low=1, hint="Try 16.")
        require_number(
            "lr", self.lr, above=0, allow_none=True,
            hint="None = the method's default; try 3e-2 for direct prefixes and soft prompts, "
            "3e-3 for the MLP.",
        )  # fmt: skip
        require_number("weight_decay", self.weight_decay, at_least=0, hint="Try 0.0.")
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(is_number(b) and 0 <= b < 1 for b in betas)
        ):
            raise ValueError(
                f"betas must be two numbers in [0, 1), got {betas!r}; try (0.9, 0.999)."
            )
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        require_int("warmup_steps", self.warmup_steps, low=0, allow_none=True)
        if self.warmup_steps is not None and self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} leaves no steps after warmup (steps="
                f"{self.steps}); choose warmup_steps < steps, e.g. {self.steps // 10}."
            )
        require_number("warmup_ratio", self.warmup_ratio, at_least=0, below=1, hint="Try 0.06.")
        require_choice("schedule", self.schedule, SCHEDULES)
        require_number("min_lr_ratio", self.min_lr_ratio, at_least=0, at_most=1, hint="Try 0.0.")
        require_number(
            "clip_grad_norm", self.clip_grad_norm, above=0, allow_none=True,
            hint="Pass None to switch clipping off; try 1.0.",
        )  # fmt: skip
        require_int(
            "eval_every", self.eval_every, low=1, allow_none=True, hint="None = only at the end."
        )
        require_int("eval_batches", self.eval_batches, low=1, allow_none=True, hint="None = all.")
        require_int("eval_batch_size", self.eval_batch_size, low=1, allow_none=True)
        require_int("seed", self.seed, low=0)
        require_int("max_length", self.max_length, low=8, hint="Try 128.")

    @property
    def n_warmup(self) -> int:
        """Warmup length in steps (warmup_steps, else round(warmup_ratio * steps))."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(int(round(self.warmup_ratio * self.steps)), self.steps - 1)

    def lr_at(self, step: int, peak: float | None = None) -> float:
        """Learning rate of update `step` (1-based): linear warmup, then the schedule's decay.

        Warmup climbs to the peak over `n_warmup` steps (step 1 uses peak / n_warmup); decay
        then goes from the peak to `min_lr_ratio * peak` at the last step.
        """
        peak = self.lr if peak is None else peak
        if peak is None:
            raise ValueError("lr is None: pass peak=..., or set lr (see DEFAULT_LR).")
        warmup = self.n_warmup
        if step <= warmup:
            return peak * step / warmup
        if self.schedule == "constant":
            return peak
        progress = (step - warmup - 1) / max(1, self.steps - warmup - 1)  # 0 .. 1
        progress = min(max(progress, 0.0), 1.0)
        if self.schedule == "linear":
            factor = 1.0 - progress
        else:
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        return peak * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * factor)

    def with_(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        valid = [f.name for f in fields(self)]
        for key in changes:
            if key not in valid:
                raise _unknown_field(type(self), key, valid)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RunConfig:
    """One experiment: which method on which model and data, trained with `train`.

    method is one of:
        "none"        nothing trained (the frozen model reads the MR cold)
        "prompt"      prompt tuning, P soft input embeddings
        "prefix"      prefix tuning, keys/values optimised directly
        "prefix+mlp"  prefix tuning through the MLP reparameterization (Li & Liang)
        "lora"        LoRA of rank lora_rank on the attention projections
        "full"        full fine-tuning of a copy of the model
        "prefix+lora" a direct prefix plus LoRA (`prefixlab.hybrid`): lr is the prefix's rate,
                      LoRA's is lr * lora_lr_ratio; hybrid_schedule trains both at once
                      ("joint") or the prefix first ("prefix-then-lora", prefix_share of
                      the steps), then LoRA with the prefix frozen
    """

    method: str = "prefix"
    prefix_length: int = 10  # P, for "prompt", "prefix" and "prefix+mlp"
    init: str = "random"  # adapter init (prefix: random/zero/vocab/text; prompt: +mean, no zero)
    init_text: str | None = None  # for init="text"
    mlp_hidden: int = 512  # hidden width of the prefix MLP (512 in the paper)
    lora_rank: int = 8  # r, for "lora" and "prefix+lora"
    lora_alpha: float = 16.0  # LoRA scale is lora_alpha / lora_rank
    hybrid_schedule: str = "joint"  # "prefix+lora": "joint" or "prefix-then-lora"
    lora_lr_ratio: float = 0.1  # "prefix+lora": LoRA's peak rate = lr * this (3e-3 / 3e-2)
    prefix_share: float = 0.5  # "prefix-then-lora": the prefix stage's share of the steps
    model: str = "tiny"  # load_model name: "tiny" ("nano", "mini"), a hub id ("gpt2"), a folder;
    # or an encoder-decoder: "tiny-bart" (load_seq2seq("tiny")), a hub id ("t5-small"), a folder
    parts: tuple[str, ...] = PARTS  # encoder-decoder prefix: which of encoder, decoder, cross
    data: str = "synthetic"  # load_e2e source: "synthetic", a CSV path, a folder, ...
    n_train_mrs: int | None = None  # low-data runs: this many training MRs; None = all
    n_val_mrs: int | None = 50  # validation MRs for the validation loss; None = all
    eval_mrs: int = 30  # held-out MRs to generate for (BLEU, slot errors); 0 = skip
    eval_split: str = "validation"  # where the held-out MRs come from
    num_beams: int = 1  # 1 = greedy decoding
    max_new_tokens: int = 64  # generation budget per MR
    data_seed: int = 0  # picks the MR subsets; fixed while the run seed varies
    subsample_per_seed: bool = False  # True: the n_train_mrs subset changes with the run seed
    held_out: tuple[str, ...] = ()  # "slot=value"s: train without them, evaluate on tables with
    device: str | None = None  # None = "cuda" when available, else "cpu"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        require_choice(
            "method", self.method, METHODS, "Prefix tuning through the MLP is method='prefix+mlp'."
        )
        require_int("prefix_length", self.prefix_length, low=1, hint="Try 10.")
        inits = method(self.method).inits
        if inits:
            require_choice(f"init (for method={self.method!r})", self.init, inits)
        if self.init == "text" and not (isinstance(self.init_text, str) and self.init_text):
            raise ValueError(
                "init='text' needs init_text, e.g. init_text='Describe the restaurant:'."
            )
        require_int("mlp_hidden", self.mlp_hidden, low=1, hint="512 in the paper.")
        require_int("lora_rank", self.lora_rank, low=1, hint="Try 8.")
        require_number("lora_alpha", self.lora_alpha, above=0, hint="Try 2 * lora_rank.")
        for name in ("model", "data"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
        require_int("n_train_mrs", self.n_train_mrs, low=1, allow_none=True, hint="None = all.")
        require_int("n_val_mrs", self.n_val_mrs, low=1, allow_none=True, hint="None = all.")
        require_int("eval_mrs", self.eval_mrs, low=0, hint="0 skips generation.")
        require_choice("eval_split", self.eval_split, EVAL_SPLITS)
        require_int("num_beams", self.num_beams, low=1, hint="1 = greedy.")
        require_int("max_new_tokens", self.max_new_tokens, low=1)
        require_int("data_seed", self.data_seed, low=0)
        require_bool("subsample_per_seed", self.subsample_per_seed)
        # "slot=value" strings, validated (e.g. 'food=Japanese'), stored as a tuple
        object.__setattr__(self, "held_out", format_held_out(parse_held_out(self.held_out)))
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError("device must be a string such as 'cpu' or 'cuda', or None.")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(
                f"train must be a TrainConfig, got {type(self.train).__name__}; "
                "override training fields with cfg.with_(steps=..., lr=...)."
            )
        self._check_hybrid()
        object.__setattr__(self, "parts", parse_parts(self.parts))
        kind = encoder_decoder_model(self.model)
        if kind is not None:
            self.check_model_kind(kind)

    def check_model_kind(self, encoder_decoder: bool) -> None:
        """Check the fields that depend on the model's architecture: `parts`, and for an
        encoder-decoder the method and its init. Called when the config is built (the model
        is known by name or folder) and again by `runs.build` once the model is loaded.

        Raises:
            ValueError: parts on a decoder-only model, or a method (or init) that the
                encoder-decoder adapters do not have, naming those that work.
        """
        if not encoder_decoder:
            if self.parts != PARTS:
                raise ValueError(
                    f"parts={self.parts} places the prefix of an encoder-decoder model, but "
                    f"{self.model!r} is decoder-only (its prefix is in every self-attention "
                    "layer). Leave parts out, or use model='tiny-bart'."
                )
            return
        require_choice(
            f"method (for the encoder-decoder model {self.model!r})", self.method,
            ENCODER_DECODER_METHODS,
            "Prefixes (direct or through the MLP) and soft prompts are built for "
            "encoder-decoder models; the others need a decoder-only model such as 'tiny'.",
        )  # fmt: skip
        if method(self.method).adapter == "prefix":
            require_choice(
                f"init (for an encoder-decoder {self.method!r})", self.init,
                SEQ2SEQ_PREFIX_INITS, "'vocab' and 'text' are decoder-only for now.",
            )  # fmt: skip

    def _check_hybrid(self) -> None:
        """The fields of "prefix+lora" (checked for every method, as lora_rank is)."""
        require_choice(
            "hybrid_schedule", self.hybrid_schedule, HYBRID_SCHEDULES,
            "'joint' trains prefix and LoRA together; 'prefix-then-lora' trains them in turn.",
        )  # fmt: skip
        require_number(
            "lora_lr_ratio", self.lora_lr_ratio, above=0,
            hint="LoRA's rate is lr * lora_lr_ratio; try 0.1 (LoRA's default 3e-3 over the "
            "prefix's 3e-2).",
        )  # fmt: skip
        require_number("prefix_share", self.prefix_share, above=0, below=1, hint="Try 0.5.")
        if not (method(self.method).is_hybrid and self.hybrid_schedule == "prefix-then-lora"):
            return
        first = round(self.prefix_share * self.train.steps)
        if not 1 <= first < self.train.steps:
            raise ValueError(
                f"prefix_share={self.prefix_share} of steps={self.train.steps} gives the "
                f"prefix {first} steps and LoRA {self.train.steps - first}: each stage needs "
                "at least one. Raise steps or move prefix_share toward 0.5."
            )

    # -- derived --------------------------------------------------------------------------
    @property
    def adapter_method(self) -> str:
        """'prefix' for both prefix variants, 'prompt', else the method itself."""
        return method(self.method).adapter or self.method

    @property
    def reparam(self) -> str:
        """'mlp' for method 'prefix+mlp', else 'none'."""
        return method(self.method).reparam

    @property
    def lora_lr(self) -> float | None:
        """LoRA's peak learning rate in "prefix+lora" (lr * lora_lr_ratio); None otherwise
        ("lora" alone trains at lr)."""
        return self.lr * self.lora_lr_ratio if method(self.method).is_hybrid else None

    @property
    def uses_prefix_length(self) -> bool:
        """Whether the method trains P virtual positions (prefix and prompt tuning)."""
        return method(self.method).uses_prefix_length

    @property
    def lr(self) -> float:
        """The peak learning rate this run uses (train.lr, else the method's default)."""
        return self.train.lr if self.train.lr is not None else method(self.method).default_lr

    def resolved(self) -> RunConfig:
        """The same run with every default made explicit (lr filled in); keys the cache."""
        if self.method == "none" or self.train.lr is not None:
            return self
        return dataclasses.replace(self, train=self.train.with_(lr=self.lr))

    def with_(self, **changes) -> RunConfig:
        """A copy with fields changed; training fields (steps, lr, seed, ...) may be given here
        too and go to `train`. Raises ValueError for an unknown field, naming the close ones.
        """
        mine = [f.name for f in fields(self)]
        theirs = [f.name for f in fields(TrainConfig)]
        top, sub = {}, {}
        for key, value in changes.items():
            if key == "schedule" and value in HYBRID_SCHEDULES:
                raise ValueError(
                    f"schedule is the learning-rate schedule (one of {SCHEDULES}); the order "
                    f"in which prefix+lora trains its parts is hybrid_schedule={value!r}."
                )
            if key in mine:
                top[key] = value
            elif key in theirs:
                sub[key] = value
            else:
                raise _unknown_field(type(self), key, mine + theirs)
        train = top.pop("train", self.train)
        if sub:
            if not isinstance(train, TrainConfig):
                raise ValueError("train must be a TrainConfig.")
            train = train.with_(**sub)
        return dataclasses.replace(self, train=train, **top)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        data = dict(data)
        train = data.pop("train", {}) or {}
        if "betas" in train:
            train = {**train, "betas": tuple(train["betas"])}
        return cls(train=TrainConfig(**train), **data)

    def to_row(self) -> dict:
        """The config as one level of fields, run fields then training fields: the columns
        a run contributes to a table row."""
        out = {k: v for k, v in self.to_dict().items() if k != "train"}
        out.update({k: v for k, v in dataclasses.asdict(self.train).items()})
        out["lr"] = self.lr
        out["betas"] = list(self.train.betas)
        out["held_out"] = list(self.held_out)  # as the run cache's JSON reads it back
        out["parts"] = "+".join(self.parts)  # one string per row: groups and filters easily
        return out


FAST = RunConfig(
    n_train_mrs=40,
    n_val_mrs=10,
    eval_mrs=4,
    max_new_tokens=40,
    train=TrainConfig(steps=30, batch_size=8, eval_every=10, eval_batches=2, warmup_ratio=0.1),
)
CPU = RunConfig(
    n_train_mrs=None,
    n_val_mrs=50,
    eval_mrs=30,
    train=TrainConfig(steps=300, batch_size=16, eval_every=50),
)
GPU = RunConfig(
    model="gpt2",
    n_train_mrs=None,
    n_val_mrs=None,
    eval_mrs=100,
    num_beams=5,
    max_new_tokens=80,
    train=TrainConfig(steps=2000, batch_size=16, eval_every=200, eval_batches=20),
)
PRESETS = {"fast": FAST, "cpu": CPU, "gpu": GPU}


def preset(name: str) -> RunConfig:
    """The preset called `name` ("fast", "cpu" or "gpu"; case-insensitive)."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {tuple(PRESETS)}.")
    return PRESETS[key]


def active_preset(default: str = "cpu") -> RunConfig:
    """The preset named by $PREFIXLAB_PRESET ("fast" under nbval/CI), else `default`."""
    name = os.environ.get(PRESET_ENV, "").strip() or default
    try:
        return preset(name)
    except ValueError as err:
        raise ValueError(f"${PRESET_ENV}={name!r}: {err}") from None


def lab_preset(model: str = "tiny") -> RunConfig:
    """The preset a notebook trains with on `model`: "cpu" for the embedded models, "gpu" for
    anything else (a hub model or a folder); $PREFIXLAB_PRESET overrides both ("fast" under
    nbval/CI). The returned config runs on `model`."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string such as 'tiny', got {model!r}.")
    embedded = model in EMBEDDED_MODELS or model in EMBEDDED_SEQ2SEQ_RUN_NAMES
    return active_preset("cpu" if embedded else "gpu").with_(model=model)


def lab_sources(model: str = "tiny", data: str = "synthetic") -> tuple[str, str]:
    """The (model, data) a notebook runs on: what it asked for, or the embedded default.

    A hub model that cannot be loaded (offline and not in the local Hugging Face cache, or
    an unknown id) is replaced by "tiny" with the synthetic data, with a warning that says
    so; so is hub data ("e2e", an "owner/name" id or a URL) while offline. Local models,
    local CSVs, the embedded models ("nano", "tiny", "mini") and "synthetic" pass through
    untouched. Nothing is downloaded here beyond a model's config file.
    """
    for name, value in (("model", model), ("data", data)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    fallback = "Falling back to the embedded default: model 'tiny', data 'synthetic'."
    embedded = model in EMBEDDED_MODELS or model in EMBEDDED_SEQ2SEQ_RUN_NAMES
    if not embedded and not Path(model).expanduser().is_dir():
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(model)
        except (OSError, ValueError) as err:
            reason = str(err).splitlines()[0][:200]
            warnings.warn(
                f"Could not load the model {model!r} ({type(err).__name__}: {reason}). "
                f"{fallback} Online, check the id; offline, download it once beforehand.",
                stacklevel=2,
            )
            return "tiny", "synthetic"
    local = data == "synthetic" or Path(data).expanduser().exists()
    if not local and offline():
        warnings.warn(
            f"The data {data!r} lives on the hub and this session is offline (HF_HUB_OFFLINE "
            "or HF_DATASETS_OFFLINE is set). Using data 'synthetic'; pass a local CSV path "
            "(columns mr, ref) to use real E2E rows offline.",
            stacklevel=2,
        )
        return model, "synthetic"
    return model, data
