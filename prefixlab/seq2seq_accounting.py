"""How many parameters the encoder-decoder adapters train, from a config alone.

The reference configs hold the published dimensions of BART-base/large and T5-small/base,
written out so that the table needs no network (the base model is built on the "meta"
device, which allocates nothing).
"""

from __future__ import annotations

import pandas as pd
import torch

from prefixlab._validate import require_int
from prefixlab.seq2seq import PARTS, Seq2SeqDims, check_parts, seq2seq_dims


def seq2seq_prefix_parameters(dims: Seq2SeqDims, prefix_length: int, parts=PARTS) -> int:
    """P x sum over parts of L x 2 x heads x head_dim."""
    return prefix_length * sum(dims.width(part) for part in check_parts(parts))


def seq2seq_prefix_mlp_parameters(
    dims: Seq2SeqDims, prefix_length: int, parts=PARTS, mlp_hidden: int = 512
) -> int:
    """Per part: embedding [P, kv_dim] + Linear(kv_dim, hidden) + Linear(hidden, width)."""
    total = 0
    for part in check_parts(parts):
        kv = dims.kv_dim(part)
        total += prefix_length * kv + (kv + 1) * mlp_hidden + (mlp_hidden + 1) * dims.width(part)
    return total


def seq2seq_base_parameters(model_or_config) -> int:
    """Parameters of the base model (shared embeddings counted once)."""
    if isinstance(model_or_config, torch.nn.Module):
        return sum(p.numel() for p in model_or_config.parameters())
    from transformers import AutoModelForSeq2SeqLM

    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(model_or_config)
    return sum(p.numel() for p in model.parameters())


def seq2seq_parameter_counts(
    model_or_config, prefix_length: int = 10, *, mlp_hidden: int = 512
) -> list[dict]:
    """Trainable parameters per method on an encoder-decoder model.

    Returns:
        one dict per method: method, trainable, percent_of_base, stored (after training;
        the MLP is discarded). Methods: prefix (all three parts), prefix+mlp, one row per
        single part ("prefix:encoder", ...), prompt (soft tokens before the encoder), full.
    """
    require_int("prefix_length", prefix_length, low=1, hint="Try 10.")
    require_int("mlp_hidden", mlp_hidden, low=1, hint="512 in the paper.")
    dims = seq2seq_dims(model_or_config)
    base = seq2seq_base_parameters(model_or_config)
    prefix = seq2seq_prefix_parameters(dims, prefix_length)
    counts = {
        "prefix": (prefix, prefix),
        "prefix+mlp": (
            seq2seq_prefix_mlp_parameters(dims, prefix_length, PARTS, mlp_hidden),
            prefix,
        ),
        **{
            f"prefix:{part}": (seq2seq_prefix_parameters(dims, prefix_length, (part,)),) * 2
            for part in PARTS
        },
        "prompt": (prefix_length * dims.d_model,) * 2,
        "full": (base, base),
    }
    return [
        {
            "method": name,
            "trainable": trainable,
            "percent_of_base": 100.0 * trainable / base,
            "stored": stored,
        }
        for name, (trainable, stored) in counts.items()
    ]


def seq2seq_reference_configs() -> dict:
    """Configs (no weights) of BART-base/large and T5-small/base with their published sizes.

    Dimensions as in the configs published with the checkpoints (facebook/bart-base,
    facebook/bart-large: Lewis et al., 2020; t5-small, t5-base: Raffel et al., 2020).
    """
    from transformers import BartConfig, T5Config

    bart = {"base": (6, 768, 12, 3072), "large": (12, 1024, 16, 4096)}  # layers, d, heads, ffn
    configs = {
        f"bart-{name}": BartConfig(
            vocab_size=50265,
            max_position_embeddings=1024,
            d_model=d,
            encoder_layers=layers,
            decoder_layers=layers,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn,
        )  # fmt: skip
        for name, (layers, d, heads, ffn) in bart.items()
    }
    t5 = {"small": (6, 512, 8, 2048), "base": (12, 768, 12, 3072)}  # layers, d, heads, d_ff
    for name, (layers, d, heads, d_ff) in t5.items():
        configs[f"t5-{name}"] = T5Config(
            vocab_size=32128, d_model=d, d_kv=64, num_heads=heads, num_layers=layers, d_ff=d_ff
        )
    return configs


def seq2seq_accounting_table(models: dict | None = None, prefix_length: int = 10, **kwargs):
    """A tidy table of `seq2seq_parameter_counts` (default: the reference configs)."""
    models = seq2seq_reference_configs() if models is None else models
    rows = []
    for name, model_or_config in models.items():
        for row in seq2seq_parameter_counts(model_or_config, prefix_length, **kwargs):
            rows.append({"model": name, **row})
    return pd.DataFrame(rows)
