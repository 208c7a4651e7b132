"""Prompt tuning (Lester et al., 2021): P trainable input embeddings, nothing deeper.

The soft prompt is a matrix [P, d_model] placed before the embedded input tokens. Every
layer above sees it only through what the frozen model computes from it; compare with
prefix.py, where every layer gets its own trainable keys and values.
"""

from __future__ import annotations

import torch
from torch import nn

from prefixlab._validate import require_choice
from prefixlab.loading import ModelDims, base_fingerprint
from prefixlab.methods import method
from prefixlab.prefix import check_prefix_length, dims_of, init_token_ids

PROMPT_INITS = method("prompt").inits  # random, vocab, text, mean


@torch.no_grad()
def initial_prompt(
    table: torch.Tensor | None,
    prefix_length: int,
    d_model: int,
    *,
    init: str,
    seed: int,
    tokenizer=None,
    init_text: str | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """The soft prompt an adapter starts from (`PromptTuning`, `seq2seq.Seq2SeqPromptTuning`).

    Args:
        table: the model's input embedding matrix [V, d_model], or None for an adapter built
            from dims alone (init "random" only: standard normal, to be overwritten by loading).
        init: "random" (normal with the table's std), "vocab" (rows of P random real tokens),
            "text" (rows of `init_text`'s tokens, repeated or cut to P) or "mean" (the mean row
            in every slot).
        scale: what the model multiplies an embedding row by before its first layer (BART's
            `embed_scale`); the prompt starts as the rows the model itself sees.
    Returns:
        [P, d_model], on the table's device and in its dtype.
    """
    g = torch.Generator().manual_seed(seed)
    if table is None:
        if init != "random":
            raise ValueError(f"init={init!r} reads the model's embeddings: pass the model.")
        return torch.randn(prefix_length, d_model, generator=g)
    table = table.detach()
    if init == "random":
        std = table.float().std().item() * scale
        soft = torch.randn(prefix_length, d_model, generator=g) * std
    elif init == "mean":
        soft = (table.float().mean(0, keepdim=True) * scale).expand(prefix_length, -1).clone()
    else:
        ids = init_token_ids(prefix_length, init=init, vocab_size=table.shape[0], generator=g,
                             tokenizer=tokenizer, init_text=init_text)  # fmt: skip
        soft = table[ids.to(table.device)].float() * scale
    return soft.to(device=table.device, dtype=table.dtype)


class PromptTuning(nn.Module):
    """A soft prompt of P trainable input embeddings.

    Args:
        model: the frozen model (or `ModelDims` with init "random" only, e.g. for loading).
        prefix_length: P, the number of soft tokens.
        init: "random" (normal with the std of the model's embedding matrix), "vocab"
            (embeddings of P random real tokens), "text" (embeddings of `init_text`, repeated
            or cut to P) or "mean" (the mean vocabulary embedding in every slot).
        init_text, tokenizer: needed by init="text".
        seed: makes the init reproducible.

    Shapes: `forward(B)` returns [B, P, d_model].
    """

    method = "prompt"
    reparam = "none"

    def __init__(
        self,
        model,
        prefix_length: int = 10,
        *,
        init: str = "random",
        init_text: str | None = None,
        tokenizer=None,
        seed: int = 0,
    ):
        super().__init__()
        self.dims = dims = dims_of(model)
        # which base model this prompt was built for (None from ModelDims); saved with it
        self.base_fingerprint = None if isinstance(model, ModelDims) else base_fingerprint(model)
        self.prefix_length = check_prefix_length(prefix_length, dims)
        require_choice("init", init, PROMPT_INITS)
        self.init = init
        self.init_text = init_text
        table = None if isinstance(model, ModelDims) else model.get_input_embeddings().weight
        soft = initial_prompt(table, self.prefix_length, dims.d_model, init=init, seed=seed,
                              tokenizer=tokenizer, init_text=init_text)  # fmt: skip
        self.weight = nn.Parameter(soft)  # [P, d_model]

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        """The soft prompt for a batch. Returns [batch_size, P, d_model]."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def flat(self) -> torch.Tensor:
        """The soft prompt as stored (and as PEFT saves it). Returns [P, d_model]."""
        return self.weight

    @torch.no_grad()
    def materialize(self) -> PromptTuning:
        """A detached copy (a soft prompt has no reparameterization to discard)."""
        copy = PromptTuning(self.dims, self.prefix_length, init="random", init_text=self.init_text)
        copy.init, copy.base_fingerprint = self.init, self.base_fingerprint
        copy.weight = nn.Parameter(self.weight.detach().clone())
        return copy

    def extra_repr(self) -> str:
        return f"P={self.prefix_length}, d_model={self.dims.d_model}, init={self.init!r}"
