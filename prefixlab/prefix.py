"""Prefix tuning (Li & Liang, 2021): P trainable key/value vectors in every attention layer.

The frozen model attends to P extra positions in every layer, whose keys and values are
trainable. Nothing is added to the input: the prefix lives inside attention, which is what
makes it "deep", unlike prompt tuning (see prompt.py), which only adds input embeddings.

Storage follows PEFT's layout, so export is a plain copy: one matrix

    flat: [P, L * 2 * n_kv_heads * head_dim]

where, for layer l, row block 2l holds keys and 2l+1 values. `key_values()` reshapes it into
one (key, value) pair per layer, each [batch, n_kv_heads, P, head_dim] — the shape of an
attention cache, which is how the prefix is fed to a Hugging Face model.

With reparam="mlp" the matrix is produced by a small network instead of stored directly
(embedding [P, kv_dim] -> Linear -> Tanh -> Linear), which the paper found easier to
optimise. After training, `materialize()` runs the network once and keeps only its output.
"""

from __future__ import annotations

import torch
from torch import nn

from prefixlab._validate import require_choice, require_int, require_number
from prefixlab.loading import ModelDims, base_fingerprint, model_dims, output_cache
from prefixlab.methods import method

PREFIX_INITS = method("prefix").inits  # random, zero, vocab, text
REPARAMS = ("none", "mlp")


def dims_of(model) -> ModelDims:
    """The `ModelDims` of a model, or `model` itself when it already is a ModelDims."""
    return model if isinstance(model, ModelDims) else model_dims(model)


def check_prefix_length(prefix_length, dims: ModelDims) -> int:
    """Validate P: an int >= 1 that leaves room in the context for real tokens."""
    require_int("prefix_length", prefix_length, low=1, hint="Try 10.")
    if dims.n_positions and prefix_length >= dims.n_positions:
        raise ValueError(
            f"prefix_length={prefix_length} leaves no room for real tokens: the model's context "
            f"holds {dims.n_positions} positions and the prefix uses P of them. Choose P < "
            f"{dims.n_positions}."
        )
    return prefix_length


def init_token_ids(
    prefix_length: int,
    *,
    init: str,
    vocab_size: int,
    generator: torch.Generator,
    tokenizer=None,
    init_text: str | None = None,
) -> torch.Tensor:
    """Token ids that "vocab" and "text" initialisations start from. Returns [P] (long).

    "vocab": P ids drawn uniformly from the first `vocab_size` ids, skipping special tokens.
    "text": the tokens of `init_text`, repeated or cut to exactly P.
    """
    if init == "text":
        if not init_text or not isinstance(init_text, str):
            raise ValueError(
                "init='text' needs init_text, a non-empty string such as "
                "'Describe the restaurant:'; or use init='vocab'."
            )
        if tokenizer is None:
            raise ValueError("init='text' needs the tokenizer: pass tokenizer=tokenizer.")
        ids = tokenizer(init_text, add_special_tokens=False)["input_ids"]
        if len(ids) == 0:
            raise ValueError(f"init_text={init_text!r} tokenizes to nothing; use longer text.")
        repeats = -(-prefix_length // len(ids))
        return torch.tensor((ids * repeats)[:prefix_length], dtype=torch.long)
    special = set(getattr(tokenizer, "all_special_ids", []) or []) if tokenizer else set()
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special], dtype=torch.long)
    picks = torch.randint(len(allowed), (prefix_length,), generator=generator)
    return allowed[picks]


class PrefixTuning(nn.Module):
    """Trainable keys and values for every attention layer of a frozen causal LM.

    Args:
        model: the frozen model (a transformers causal LM), or a `ModelDims` when only the
            shapes are needed (inits "random" and "zero"; also used when loading artifacts).
        prefix_length: P, the number of virtual key/value positions per layer.
        reparam: "none" (optimise the key/values directly) or "mlp" (produce them with an MLP
            that `materialize()` discards after training).
        mlp_hidden: hidden width of the MLP (512 in Li & Liang).
        init: "random" (normal, std `init_std`), "zero", "vocab" (key/values the frozen model
            computes for P random real tokens) or "text" (for the tokens of `init_text`).
        init_text, tokenizer: needed by init="text" (the tokenizer also lets "vocab" skip
            special tokens).
        init_std: standard deviation of the "random" init (1.0, as PEFT's embedding).
        seed: makes the init reproducible.

    Shapes: `key_values(B)` returns L pairs of [B, n_kv_heads, P, head_dim].
    """

    method = "prefix"

    def __init__(
        self,
        model,
        prefix_length: int = 10,
        *,
        reparam: str = "none",
        mlp_hidden: int = 512,
        init: str = "random",
        init_text: str | None = None,
        tokenizer=None,
        init_std: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        self.dims = dims = dims_of(model)
        # which base model this prefix was built for (None from ModelDims); saved with it
        self.base_fingerprint = None if isinstance(model, ModelDims) else base_fingerprint(model)
        self.prefix_length = check_prefix_length(prefix_length, dims)
        require_choice("reparam", reparam, REPARAMS, "The MLP of Li & Liang is reparam='mlp'.")
        require_choice("init", init, PREFIX_INITS)
        require_int("mlp_hidden", mlp_hidden, low=1, hint="512 in the paper.")
        if init in ("vocab", "text") and isinstance(model, ModelDims):
            raise ValueError(f"init={init!r} runs the frozen model: pass the model, not ModelDims.")
        require_number("init_std", init_std, above=0, hint="Try 1.0.")
        self.reparam = reparam
        self.mlp_hidden = mlp_hidden
        self.init = init
        self.init_text = init_text

        P, width = self.prefix_length, dims.n_layers * 2 * dims.kv_dim
        param_kw = {}
        if not isinstance(model, ModelDims):
            first = next(model.parameters())
            param_kw = {"device": first.device, "dtype": first.dtype}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(seed)
            target = None
            if init in ("vocab", "text"):
                ids = init_token_ids(
                    P,
                    init=init,
                    vocab_size=dims.vocab_size,
                    generator=g,
                    tokenizer=tokenizer,
                    init_text=init_text,
                )
                target = key_values_of_tokens(model, ids, dims)  # [P, width]
            if reparam == "none":
                if target is not None:
                    flat = target.clone()
                elif init == "zero":
                    flat = torch.zeros(P, width)
                else:
                    flat = torch.randn(P, width, generator=g) * init_std
                self.weight = nn.Parameter(flat.to(**param_kw))
            else:
                # [P, kv_dim] -> [P, hidden] -> [P, L*2*kv_dim], as PEFT's prefix_projection.
                self.embedding = nn.Parameter(
                    torch.randn(P, dims.kv_dim, generator=g).to(**param_kw)
                )
                self.mlp = nn.Sequential(
                    nn.Linear(dims.kv_dim, mlp_hidden),
                    nn.Tanh(),
                    nn.Linear(mlp_hidden, width),
                ).to(**param_kw)
                if init == "zero":
                    nn.init.zeros_(self.mlp[2].weight)
                    nn.init.zeros_(self.mlp[2].bias)
                elif target is not None:
                    self._fit_mlp_output(target.to(**param_kw))

    @torch.no_grad()
    def _fit_mlp_output(self, target: torch.Tensor) -> None:
        """Set the MLP's last layer so that its output equals `target` [P, width].

        The hidden activations h [P, hidden] are fixed by the embedding and first layer; with
        P <= hidden the least-squares solution W = pinv(h) @ target reproduces target exactly.
        """
        hidden = self.mlp[1](self.mlp[0](self.embedding)).float()
        solution = torch.linalg.pinv(hidden) @ target.float()  # [hidden, width]
        self.mlp[2].weight.copy_(solution.T)
        self.mlp[2].bias.zero_()

    def flat(self) -> torch.Tensor:
        """The prefix as one matrix in PEFT's layout. Returns [P, L * 2 * kv_dim]."""
        if self.reparam == "none":
            return self.weight
        return self.mlp(self.embedding)

    def key_values(self, batch_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One (key, value) pair per layer, each [batch_size, n_kv_heads, P, head_dim]."""
        return split_key_values(self.flat(), self.dims, batch_size)

    def forward(self, batch_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.key_values(batch_size)

    @torch.no_grad()
    def materialize(self) -> PrefixTuning:
        """The direct form: same key/values, MLP discarded. What is saved and served."""
        direct = PrefixTuning(
            self.dims, self.prefix_length, reparam="none", init="zero", init_text=self.init_text
        )
        direct.init, direct.base_fingerprint = self.init, self.base_fingerprint
        direct.weight = nn.Parameter(self.flat().detach().clone())
        return direct

    def extra_repr(self) -> str:
        return f"P={self.prefix_length}, layers={self.dims.n_layers}, kv_dim={self.dims.kv_dim}, reparam={self.reparam!r}, init={self.init!r}"


def split_key_values(
    flat: torch.Tensor, dims: ModelDims, batch_size: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[P, L*2*kv_dim] (or per row [B, P, L*2*kv_dim]) -> L pairs of [B, n_kv_heads, P, head_dim]."""
    if flat.dim() == 2:
        flat = flat.unsqueeze(0).expand(batch_size, -1, -1)
    B, P, _ = flat.shape
    kv = flat.view(B, P, dims.n_layers * 2, dims.n_kv_heads, dims.head_dim)
    # One unbind, not 2L indexing ops: each `kv[i]` would get a backward node that allocates
    # a zero gradient of the whole (L*2, B, ...) tensor; unbind's backward is a single stack.
    parts = kv.permute(2, 0, 3, 1, 4).unbind(0)  # L*2 x (B, n_kv_heads, P, head_dim)
    return [(parts[2 * layer], parts[2 * layer + 1]) for layer in range(dims.n_layers)]


@torch.no_grad()
def key_values_of_tokens(model, token_ids: torch.Tensor, dims: ModelDims | None = None):
    """Keys and values the frozen model computes for a token sequence, in PEFT's layout.

    Args:
        token_ids: [P] (long).
        dims: the model's `ModelDims`, when the caller has them already.
    Returns:
        [P, L * 2 * kv_dim]: for each position, every layer's key then value, flattened.
    """
    dims = model_dims(model) if dims is None else dims
    device = next(model.parameters()).device
    out = model(input_ids=token_ids.view(1, -1).to(device), use_cache=True)
    cache = output_cache(out)
    pairs = []
    for layer in range(dims.n_layers):
        k, v = cache.layers[layer].keys, cache.layers[layer].values  # [1, n_kv, P, head_dim]
        pairs += [k[0], v[0]]
    stacked = torch.stack(pairs)  # (L*2, n_kv, P, head_dim)
    P = token_ids.numel()
    return stacked.permute(2, 0, 1, 3).reshape(P, -1)
