"""The methods a run can train, in one table: name, labels, colour, learning rate, inits.

Every other module reads the table instead of keeping its own list, so adding a method (or
changing a default learning rate) is one edit here:

    from prefixlab.methods import METHODS, method

    METHODS    # ("prefix", "prefix+mlp", "prompt", "infix", "lora", "full", "none",
               #  "prefix+lora")
    method("prefix+mlp").default_lr, method("prefix+mlp").reparam   # 0.003, "mlp"
    method("prefix-mlp")         # ValueError: ... Did you mean 'prefix+mlp'?

The order of the table is the order of tables and legends across the series. The prefix +
LoRA hybrid (`prefixlab.hybrid`, issue #22) comes last, after "none": appended, it leaves the
colours of the default colour cycle and the rows of existing tables where they were.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefixlab._validate import did_you_mean

PREFIX_INITS = ("random", "zero", "vocab", "text")  # see PrefixTuning
PROMPT_INITS = ("random", "vocab", "text", "mean")  # see PromptTuning


@dataclass(frozen=True)
class Method:
    """One trainable method of the lab."""

    name: str  # the RunConfig.method value, e.g. "prefix+mlp"
    label: str  # the full name, as in parameter-count tables ("prefix tuning (direct)")
    short_label: str  # the name in figures, legends and the lab ("prefix tuning")
    color: str  # one colour per method across the series (Okabe-Ito, colour-blind safe)
    adapter: str | None  # "prefix", "prompt" or "infix" (the adapter module); None = none
    reparam: str  # "mlp" when the prefix is produced by an MLP while training, else "none"
    default_lr: float  # peak learning rate when TrainConfig.lr is None (0 = nothing trains)
    inits: tuple[str, ...]  # allowed `init` values; () when the method has no adapter init
    uses_prefix_length: bool  # trains P virtual positions (prefix_length matters)
    uses_lora: bool = False  # trains LoRA in the attention projections (lora_rank matters)
    # runs on an encoder-decoder model too (`prefixlab.seq2seq`; RunConfig(model="tiny-bart"))
    encoder_decoder: bool = False

    @property
    def is_hybrid(self) -> bool:
        """Whether the method trains a prefix and LoRA together (`prefixlab.hybrid`)."""
        return self.uses_lora and self.uses_prefix_length


# Learning rates: those that work on the embedded tiny model in our runs. Direct prefixes and
# soft prompts want rates far above the 5e-5 of Li & Liang's GPT-2 runs; the MLP form one ten
# times smaller.
METHOD_TABLE: tuple[Method, ...] = (
    Method("prefix", "prefix tuning (direct)", "prefix tuning", "#0072b2",  # blue
           "prefix", "none", 3e-2, PREFIX_INITS, True, encoder_decoder=True),
    # sky blue: the same family as "prefix", trained through an MLP
    Method("prefix+mlp", "prefix tuning + MLP (while training)", "prefix tuning + MLP",
           "#56b4e9", "prefix", "mlp", 3e-3, PREFIX_INITS, True, encoder_decoder=True),
    Method("prompt", "prompt tuning", "prompt tuning", "#d55e00",  # vermillion: the contrast
           "prompt", "none", 3e-2, PROMPT_INITS, True, encoder_decoder=True),
    # orange: a prefix's key/values placed between table and text (Li & Liang's Table 5)
    Method("infix", "infix tuning (between table and text)", "infix tuning", "#e69f00",
           "infix", "none", 3e-2, PREFIX_INITS, True),
    Method("lora", "LoRA", "LoRA", "#009e73",  # bluish green
           None, "none", 3e-3, (), False, True),
    Method("full", "full fine-tuning", "full fine-tuning", "#cc79a7",  # reddish purple
           None, "none", 5e-4, (), False),
    Method("none", "frozen model (nothing trained)", "frozen model", "#4d4d4d",  # dark grey
           None, "none", 0.0, (), False, encoder_decoder=True),
    # indigo (Paul Tol): a prefix (its lr is the prefix's rate; LoRA trains at
    # RunConfig.lora_lr_ratio times it) plus LoRA, trained by prefixlab.hybrid.train_hybrid
    Method("prefix+lora", "prefix tuning + LoRA (hybrid)", "prefix + LoRA", "#332288",
           "prefix", "none", 3e-2, PREFIX_INITS, True, True),
)  # fmt: skip

METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_TABLE)
# What an encoder-decoder run can train: a prefix (direct or through the MLP), a soft prompt,
# or nothing (the frozen model reads the MR cold).
ENCODER_DECODER_METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_TABLE if m.encoder_decoder)
_BY_NAME = {m.name: m for m in METHOD_TABLE}


def method(name: str) -> Method:
    """The table row of method `name`.

    Raises:
        ValueError: for an unknown name, naming the closest one and the choices.
    """
    if name not in _BY_NAME:
        raise ValueError(
            f"Unknown method {name!r}.{did_you_mean(name, METHODS)} Choose one of {METHODS}."
        )
    return _BY_NAME[name]


def method_of_adapter(adapter: str, reparam: str = "none") -> Method:
    """The row whose adapter module is `adapter` ("prefix" or "prompt") with `reparam`, and
    no LoRA (the hybrid is never the method of an adapter alone)."""
    for row in METHOD_TABLE:
        if row.adapter == adapter and row.reparam == reparam and not row.uses_lora:
            return row
    raise ValueError(
        f"No method trains a {adapter!r} adapter with reparam={reparam!r}; adapters are "
        f"{sorted({m.adapter for m in METHOD_TABLE if m.adapter})}, reparams 'none' and 'mlp'."
    )
