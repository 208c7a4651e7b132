"""What the benchmark compares: run settings, models, batches and the training variants.

A variant builds a `Trainer` (a loss and AdamW over its trainable parameters) from a frozen
base model, a batch and a prefix length P. prefixlab variants (LoRA and full fine-tuning
included) go through `AdaptedModel` and its loss; PEFT variants through PEFT and
transformers' loss, as their users would call them. All models stay in eval mode, so no
variant runs dropout and every one computes the same network.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmarks.harness import interleave, saved_tensor_bytes
from prefixlab import AdaptedModel, PrefixTuning, PromptTuning
from prefixlab.loading import freeze, model_dims

BATCH, SEQ, PREFIX = 8, 64, 10
MLP_HIDDEN, LORA_RANK, LR = 512, 8, 1e-4
PROMPT_LEN, NEW_TOKENS = 32, 32  # generation: prompt tokens and new tokens per row
N_TASKS = 4  # adapters in the mixed-task bank

_SHARE_BASE = False  # in an RSS child process, variants use the base model instead of a copy


def share_base_weights() -> None:
    """From now on, variants train the base model itself instead of a private copy.

    Only for a process that builds a single variant (the peak-RSS child): a copy there
    would count the weights twice.
    """
    global _SHARE_BASE
    _SHARE_BASE = True


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How long each comparison runs. Two presets: `full` (the default) and `quick`."""

    quick: bool
    rounds: int  # timed rounds per comparison on small models
    warmup: int  # untimed rounds first
    inner: int  # calls per timed sample on small models
    big_rounds: int  # timed rounds at GPT-2-small dimensions (one call per sample)
    p_values: tuple[int, ...]  # prefix lengths for the scaling sweep on the tiny model
    big_p_values: tuple[int, ...]  # prefix lengths at GPT-2-small dimensions
    models: tuple[str, ...]  # model sizes for the size sweep
    rss: bool  # peak RSS of a fresh process per variant (GPT-2-small dimensions)
    new_tokens: int  # generated tokens per row

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            rounds=15,
            warmup=2,
            inner=3,
            big_rounds=8,
            p_values=(1, 10, 50, 100, 200),
            big_p_values=(1, 200),
            models=("tiny", "mid", "gpt2-small"),
            rss=True,
            new_tokens=NEW_TOKENS,
        )

    @classmethod
    def quick_preset(cls) -> Settings:
        return cls(
            quick=True,
            rounds=5,
            warmup=1,
            inner=2,
            big_rounds=2,
            p_values=(1, 10, 200),
            big_p_values=(),
            models=("tiny", "mid"),
            rss=False,
            new_tokens=16,
        )


# -- models and inputs ----------------------------------------------------------------------

# name -> (layers, width, heads, vocab, positions) of a random-initialized GPT-2
RANDOM_GPT2 = {
    "mid": (6, 256, 8, 8192, 512),
    "gpt2-small": (12, 768, 12, 50257, 1024),
}


def build_model(name: str, attn: str = "eager") -> tuple[nn.Module, str]:
    """A frozen causal LM in eval mode, and a one-line description of where it came from."""
    if name == "tiny":
        from prefixlab import load_model

        model, _ = load_model("tiny", attn_implementation=attn)
        return model, "embedded tiny model (`load_model('tiny')`, data/tiny-gpt2)"
    from transformers import GPT2Config, GPT2LMHeadModel

    layers, width, heads, vocab, positions = RANDOM_GPT2[name]
    config = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=heads,
        vocab_size=vocab,
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    return freeze(model), f"random GPT-2, {layers} layers x {width} wide, {heads} heads ({name})"


def describe(model: nn.Module) -> str:
    dims = model_dims(model)
    n = sum(p.numel() for p in model.parameters())
    return (
        f"{dims.n_layers} layers, d_model {dims.d_model}, {dims.n_heads} heads, vocab "
        f"{dims.vocab_size}, context {dims.n_positions}, {n / 1e6:.2f}M parameters"
    )


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]


def make_batch(vocab_size: int, batch: int = BATCH, seq: int = SEQ, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch, seq), generator=g)
    return Batch(ids, torch.ones_like(ids), ids.clone())


def private_copy(base: nn.Module) -> nn.Module:
    """Variants that change or train the model get their own copy of the same weights."""
    return base if _SHARE_BASE else copy.deepcopy(base)


# -- training variants ----------------------------------------------------------------------


@dataclass
class Trainer:
    """One way to train: a loss function and AdamW over its trainable parameters."""

    loss_fn: Callable[[], torch.Tensor]
    params: list[nn.Parameter]
    modules: list[nn.Module]  # whose parameters count as weights, not as training memory
    opt: torch.optim.Optimizer = field(init=False)

    def __post_init__(self):
        self.opt = torch.optim.AdamW(self.params, lr=LR)

    def step(self) -> None:
        self.loss_fn().backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def _adapter(kind: str, model: nn.Module, P: int) -> nn.Module:
    if kind == "prompt":
        return PromptTuning(model, P)
    return PrefixTuning(model, P, reparam="mlp" if kind == "prefix+mlp" else "none")


def ours(kind: str, *, attn: str | None = None):
    def build(base: nn.Module, batch: Batch, P: int) -> Trainer:
        model = base
        if attn is not None:
            model = private_copy(base)
            model.set_attn_implementation(attn)
        adapter = _adapter(kind, model, P)
        adapted = AdaptedModel(model, adapter)

        def loss():
            return adapted(batch.ids, batch.mask, labels=batch.labels).loss

        return Trainer(loss, list(adapter.parameters()), [adapted])

    return build


def peft_variant(kind: str):
    def build(base: nn.Module, batch: Batch, P: int) -> Trainer:
        from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

        if kind == "prompt":
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P)
        elif kind == "lora":
            config = LoraConfig(
                task_type="CAUSAL_LM",
                r=LORA_RANK,
                lora_alpha=2 * LORA_RANK,
                lora_dropout=0.0,
                target_modules=["c_attn"],
                fan_in_fan_out=True,  # GPT-2's Conv1D stores [in, out]
            )
        else:
            config = PrefixTuningConfig(
                task_type="CAUSAL_LM",
                num_virtual_tokens=P,
                prefix_projection=kind == "prefix+mlp",
                encoder_hidden_size=MLP_HIDDEN,
            )
        model = get_peft_model(private_copy(base), config).eval()

        def loss():
            return model(input_ids=batch.ids, attention_mask=batch.mask, labels=batch.labels).loss

        return Trainer(loss, [p for p in model.parameters() if p.requires_grad], [model])

    return build


def lora_variant(base: nn.Module, batch: Batch, P: int) -> Trainer:
    from prefixlab.lora import add_lora

    model = private_copy(base)
    params = add_lora(model, rank=LORA_RANK)
    adapted = AdaptedModel(model, None)

    def loss():
        return adapted(batch.ids, batch.mask, labels=batch.labels).loss

    return Trainer(loss, params, [adapted])


def full_variant(base: nn.Module, batch: Batch, P: int) -> Trainer:
    model = private_copy(base).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    adapted = AdaptedModel(model, None)

    def loss():
        return adapted(batch.ids, batch.mask, labels=batch.labels).loss

    return Trainer(loss, list(model.parameters()), [adapted])


# name -> (label, builder). prefixlab variants go through AdaptedModel (the lab's glue and
# loss), PEFT variants through PEFT (its glue, transformers' loss).
VARIANTS: dict[str, tuple[str, Callable]] = {
    "prefix": ("prefixlab prefix", ours("prefix")),
    "peft-prefix": ("PEFT prefix", peft_variant("prefix")),
    "prefix+mlp": ("prefixlab prefix + MLP", ours("prefix+mlp")),
    "peft-prefix+mlp": ("PEFT prefix + MLP", peft_variant("prefix+mlp")),
    "prompt": ("prefixlab prompt", ours("prompt")),
    "peft-prompt": ("PEFT prompt", peft_variant("prompt")),
    "lora": (f"prefixlab LoRA r={LORA_RANK} (c_attn)", lora_variant),
    "peft-lora": (f"PEFT LoRA r={LORA_RANK} (c_attn)", peft_variant("lora")),
    "full": ("full fine-tuning", full_variant),
    "prefix-sdpa": ("prefixlab prefix, sdpa attention", ours("prefix", attn="sdpa")),
}


def build_trainers(names, base, batch, P) -> dict[str, Trainer]:
    """One Trainer per variant name."""
    return {name: VARIANTS[name][1](base, batch, P) for name in names}


# variant -> the variant it is compared with in the ratio tables (prefixlab -> PEFT)
PEERS = {
    "prefix": "peft-prefix",
    "prefix+mlp": "peft-prefix+mlp",
    "prompt": "peft-prompt",
    "lora": "peft-lora",
}


def training_memory(trainer: Trainer) -> dict[str, int]:
    """Bytes beyond the frozen weights for one training step.

    activations: tensors autograd saves for backward (`saved_tensor_bytes`, the weights and
    buffers of the trainer's modules excluded); state: gradient + AdamW exp_avg + exp_avg_sq
    = trainable parameters x 3 x element size.
    """
    weights = [t for module in trainer.modules for t in [*module.parameters(), *module.buffers()]]
    activations = saved_tensor_bytes(lambda: trainer.loss_fn().backward(), exclude=weights)
    trainer.opt.zero_grad(set_to_none=True)
    state = 3 * trainer.trainable * trainer.params[0].element_size()
    return {"activations": activations, "state": state, "total": activations + state}


def train_compare(names, base, batch, P, rounds, warmup, inner):
    """Interleaved training steps of the named variants: trainers, samples, memory."""
    trainers = build_trainers(names, base, batch, P)
    mem = {name: training_memory(t) for name, t in trainers.items()}
    calls = {name: t.step for name, t in trainers.items()}
    samples = interleave(calls, rounds=rounds, warmup=warmup, inner=inner)
    return trainers, samples, mem
