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
        if init != "random" and isinstance(model, ModelDims):
            raise ValueError(f"init={init!r} reads the model's embeddings: pass the model.")
        self.init = init
        self.init_text = init_text
        P = self.prefix_length
        g = torch.Generator().manual_seed(seed)
        if isinstance(model, ModelDims):
            soft = torch.randn(P, dims.d_model, generator=g)
        else:
            table = model.get_input_embeddings().weight.detach()  # [V, d_model]
            if init == "random":
                soft = torch.randn(P, dims.d_model, generator=g) * table.float().std().item()
            elif init == "mean":
                soft = table.float().mean(0, keepdim=True).expand(P, -1).clone()
            else:
                ids = init_token_ids(
                    P,
                    init=init,
                    vocab_size=table.shape[0],
                    generator=g,
                    tokenizer=tokenizer,
                    init_text=init_text,
                )
                soft = table[ids.to(table.device)].float()
            soft = soft.to(device=table.device, dtype=table.dtype)
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
