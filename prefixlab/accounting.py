"""How many parameters each method trains, computed from the model's config.

Counts come from the shapes alone, so GPT-2 XL or a 7B Llama can be tabulated from a config
without downloading weights (the base model is built on PyTorch's "meta" device, which
allocates no memory).
"""

from __future__ import annotations

import pandas as pd
import torch

from prefixlab._validate import require_int
from prefixlab.loading import ModelDims, model_dims
from prefixlab.methods import METHOD_TABLE


def prefix_parameters(dims: ModelDims, prefix_length: int) -> int:
    """P x L x 2 x n_kv_heads x head_dim: one key and one value per layer and position."""
    return prefix_length * dims.n_layers * 2 * dims.kv_dim


def prefix_mlp_parameters(dims: ModelDims, prefix_length: int, mlp_hidden: int = 512) -> int:
    """Embedding [P, kv_dim] + Linear(kv_dim, hidden) + Linear(hidden, L*2*kv_dim), with biases."""
    out = dims.n_layers * 2 * dims.kv_dim
    return prefix_length * dims.kv_dim + (dims.kv_dim + 1) * mlp_hidden + (mlp_hidden + 1) * out


def prompt_parameters(dims: ModelDims, prefix_length: int) -> int:
    """P x d_model: one input embedding per soft token."""
    return prefix_length * dims.d_model


def lora_targets(dims: ModelDims) -> dict[str, tuple[int, int]]:
    """Attention projections LoRA adapts by default, as name -> (in_features, out_features).

    GPT-2 fuses query, key and value into one projection (c_attn, d -> 3d); Llama-style
    models have separate q_proj and v_proj (the pair Hu et al. adapt), with grouped-query
    value heads.
    """
    q_out = dims.n_heads * dims.head_dim
    if dims.model_type in ("gpt2",):
        return {"c_attn": (dims.d_model, q_out + 2 * dims.kv_dim)}
    return {"q_proj": (dims.d_model, q_out), "v_proj": (dims.d_model, dims.kv_dim)}


def lora_parameters(dims: ModelDims, rank: int = 8) -> int:
    """Per adapted projection r x (in + out) (A: [r, in], B: [out, r]), in every layer."""
    per_layer = sum(rank * (i + o) for i, o in lora_targets(dims).values())
    return dims.n_layers * per_layer


def base_parameters(model_or_config) -> int:
    """Number of parameters of the base model (from a model, or a config via the meta device)."""
    if isinstance(model_or_config, torch.nn.Module):
        return sum(p.numel() for p in model_or_config.parameters())
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_or_config)
    return sum(p.numel() for p in model.parameters())


def parameter_counts(
    model_or_config,
    prefix_length: int = 10,
    *,
    mlp_hidden: int = 512,
    lora_rank: int = 8,
) -> list[dict]:
    """Trainable parameters per method, as counts and as a share of the base model.

    Args:
        model_or_config: a loaded model or a transformers config (e.g. GPT2Config.from_dict).
    Returns:
        one dict per method: method, label, trainable, percent_of_base, stored (the number
        of values saved after training: the MLP is discarded, so prefix+mlp stores the
        direct prefix). prefix+lora trains and stores a direct prefix plus LoRA of rank
        lora_rank.
    """
    require_int("prefix_length", prefix_length, low=1, hint="Try 10.")
    require_int("lora_rank", lora_rank, low=1, hint="Try 8.")
    require_int("mlp_hidden", mlp_hidden, low=1, hint="512 in the paper.")
    dims = model_dims(model_or_config)
    base = base_parameters(model_or_config)
    prefix = prefix_parameters(dims, prefix_length)
    lora = lora_parameters(dims, lora_rank)
    counts = {
        "prefix": (prefix, prefix),
        "prefix+mlp": (prefix_mlp_parameters(dims, prefix_length, mlp_hidden), prefix),
        "prompt": (prompt_parameters(dims, prefix_length),) * 2,
        "lora": (lora, lora),
        "full": (base, base),
        "prefix+lora": (prefix + lora, prefix + lora),
    }
    return [
        {
            "method": row.name,
            "label": row.label,
            "trainable": counts[row.name][0],
            "percent_of_base": 100.0 * counts[row.name][0] / base,
            "stored": counts[row.name][1],
        }
        # the table's order; "none" (nothing to count) and "infix" (a prefix's count, placed
        # elsewhere; kept out of the series' accounting tables) left out
        for row in METHOD_TABLE
        if row.name in counts
    ]


def context_budget(model_or_config, prefix_length: int) -> dict:
    """How much of the model's context the P virtual positions use up.

    Both methods consume P position slots: real tokens are numbered after the prefix.
    """
    dims = model_dims(model_or_config)
    if not dims.n_positions:
        raise ValueError("The config does not state a context length (n_positions).")
    return {
        "context": dims.n_positions,
        "prefix_length": prefix_length,
        "left_for_tokens": dims.n_positions - prefix_length,
        "percent_used": 100.0 * prefix_length / dims.n_positions,
    }


def reference_configs() -> dict:
    """Configs (no weights) of well-known models, for tables that reach beyond the tiny model.

    Sizes are the published ones: GPT-2 small/medium/large/XL (Radford et al., 2019) and
    Llama 2 7B (Touvron et al., 2023).
    """
    from transformers import GPT2Config, LlamaConfig

    gpt2 = {
        "small": (12, 768, 12),
        "medium": (24, 1024, 16),
        "large": (36, 1280, 20),
        "xl": (48, 1600, 25),
    }
    configs = {
        f"gpt2-{name}": GPT2Config(
            n_layer=layers, n_embd=d, n_head=h, n_positions=1024, vocab_size=50257
        )
        for name, (layers, d, h) in gpt2.items()
    }
    configs["llama-7b"] = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        vocab_size=32000,
    )
    return configs


def accounting_table(models: dict, prefix_length: int = 10, **kwargs):
    """A tidy pandas table of `parameter_counts` for several models (name -> model or config)."""
    rows = []
    for name, model_or_config in models.items():
        for row in parameter_counts(model_or_config, prefix_length, **kwargs):
            rows.append({"model": name, **row})
    return pd.DataFrame(rows)
