"""LoRA (Hu et al., 2021), small and written out: a reference baseline next to the prefixes.

Each adapted projection y = W x keeps its frozen W and gains a trainable low-rank update,

    y = W x + (alpha / r) * B (A x),    A: [r, in], B: [out, r]

with A random and B zero, so the model's output is unchanged before training. By default the
attention projections are adapted: GPT-2's fused query/key/value `c_attn` (a transformers
`Conv1D`, whose weight is stored [in, out]) and the `q_proj`/`v_proj` pair of Llama-style models
(the choice of Hu et al.), matching `prefixlab.accounting.lora_targets`.

`add_lora` changes the model in place (it swaps modules); pass a copy when the same base
model is shared with prefixes or prompts: `add_lora(copy.deepcopy(model), rank=8)`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prefixlab._validate import require_int, require_number
from prefixlab.accounting import lora_targets
from prefixlab.loading import model_dims


def _in_out(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a transformers Conv1D."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    weight = getattr(base, "weight", None)
    if type(base).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return weight.shape[0], weight.shape[1]  # Conv1D stores [in, out]
    raise ValueError(
        f"LoRA can wrap nn.Linear or transformers' Conv1D, not {type(base).__name__}; "
        "choose targets that name linear projections."
    )


class LoRALinear(nn.Module):
    """A frozen projection plus a trainable low-rank update.

    Args:
        base: nn.Linear or transformers Conv1D (left frozen).
        rank: r, the rank of the update.
        alpha: scale numerator; the update is multiplied by alpha / r.
        generator: seeds A's init (B starts at zero).

    Shapes: input [..., in] -> output [..., out], as the wrapped projection.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        in_features, out_features = _in_out(base)
        weight = base.weight
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        a = torch.empty(rank, in_features)
        # nn.Linear's default init (kaiming uniform with a=sqrt(5)): bound 1/sqrt(in).
        bound = 1.0 / math.sqrt(in_features)
        a.uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))  # [r, in]
        self.lora_B = nn.Parameter(
            torch.zeros(out_features, rank, device=weight.device, dtype=weight.dtype)
        )  # [out, r]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x @ self.lora_A.T) @ self.lora_B.T  # [..., in] -> [..., r] -> [..., out]
        return self.base(x) + self.scaling * update

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + scale * B A in the base's storage layout ([out, in] Linear, [in, out] Conv1D)."""
        delta = self.scaling * (self.lora_B @ self.lora_A)  # [out, in]
        if isinstance(self.base, nn.Linear):
            return self.base.weight + delta
        return self.base.weight + delta.T

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def default_targets(model: nn.Module) -> list[str]:
    """Module names LoRA adapts by default: ["c_attn"] for GPT-2, ["q_proj", "v_proj"] else."""
    return list(lora_targets(model_dims(model)))


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float | None = None,
    targets: list[str] | tuple[str, ...] | None = None,
    *,
    seed: int = 0,
) -> list[nn.Parameter]:
    """Wrap every projection whose name ends with one of `targets` in a `LoRALinear`.

    The base model's own parameters are set to requires_grad=False; only the LoRA matrices
    train. The model is changed in place.

    Args:
        model: a transformers causal LM.
        rank: r >= 1.
        alpha: scale numerator (update scaled by alpha / r); None = 2 * rank.
        targets: last components of module names, e.g. ["c_attn"] or ["q_proj", "v_proj"];
            None = `default_targets(model)`.
        seed: seeds the A matrices.

    Returns:
        The trainable LoRA parameters (A then B of each wrapped module, in module order).

    Raises:
        ValueError: for a bad rank or alpha, a model that already has LoRA, or targets that
            match no module (the message lists the projection names the model has).
    """
    require_int("rank", rank, low=1, hint="Try 8.")
    require_number("alpha", alpha, above=0, allow_none=True, hint="Try 2 * rank (None).")
    alpha = 2.0 * rank if alpha is None else alpha
    if isinstance(targets, str):
        targets = [targets]
    targets = default_targets(model) if targets is None else list(targets)
    if not targets:
        raise ValueError("targets is empty; name at least one projection, e.g. ['c_attn'].")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError(
            "This model already has LoRA modules; call remove_lora(model) first, or add LoRA "
            "to a fresh copy."
        )
    chosen = [
        (name, module)
        for name, module in model.named_modules()
        if name and name.rsplit(".", 1)[-1] in targets
    ]
    if not chosen:
        linear = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, m in model.named_modules()
                if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"
            }
        )
        raise ValueError(
            f"No module of {type(model).__name__} is named {targets}; projections it has: "
            f"{linear}. Pass targets=[...] from that list."
        )
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    params: list[nn.Parameter] = []
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = LoRALinear(module, rank, float(alpha), generator)
        setattr(parent, child, wrapped)
        params += [wrapped.lora_A, wrapped.lora_B]
    return params


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} of every wrapped projection."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA matrices of a model (A and B of each wrapped projection), as a list.

    (`prefixlab.accounting.lora_parameters` is the count predicted from the shapes alone.)
    """
    return [p for m in lora_modules(model).values() for p in (m.lora_A, m.lora_B)]


def lora_parameter_count(model: nn.Module) -> int:
    """Number of LoRA parameters: sum over wrapped projections of r * (in + out)."""
    return sum(p.numel() for p in trainable_lora_parameters(model))


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


@torch.no_grad()
def remove_lora(model: nn.Module, *, merge: bool = False) -> nn.Module:
    """Put the original projections back; with merge=True, fold B A into their weights first.

    Returns the model (changed in place).
    """
    for name, module in list(lora_modules(model).items()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = module.base
        if merge:
            base.weight.copy_(module.merged_weight())
        setattr(parent, child, base)
    return model
