"""Does attention to the prefix matter? Causal measurements on a model with a trained prefix.

Attention mass (`prefixlab.attention`) says where each query looks, not what it takes from
there. Three measurements that can tell the two apart, each on one batch:

    with prefix_only_in(adapted, layers=[2]):      # the prefix visible in layer 2 alone
        adapted(input_ids, attention_mask)
    layer_ablation(adapted, input_ids, attention_mask, labels)   # loss, layer by layer
    prefix_influence(adapted, input_ids, attention_mask)         # [L, H] share of each head's output
    zero_prefix_share(model, input_ids, attention_mask, P)       # closed form vs the recorder

**Removing the prefix from a layer** masks its P key positions in that layer's attention (an
additive -inf on the eager mask), so the layer attends to the real tokens only while every
other layer still sees the prefix. The real tokens keep their positions P, P+1, ... (the
prefix is still "there" for numbering), so the prefix removed from every layer equals the
frozen model run on those same position ids, not the frozen model numbered from 0; both
baselines are reported.

**Influence** of the prefix on a head is the size of what the head reads from the prefix's
values, sum_p a[q, p] v_p, over the size of the head's whole output sum_j a[q, j] v_j (both
before the output projection), averaged over real queries: mass weighs positions, influence
weighs what they carry. A prefix whose values are zero receives mass and has no influence.

**The zero-prefix closed form**: a zero key scores exactly 0 against every query, so each of
the P slots gets weight exp(0) = 1 in the softmax and the prefix's share for a query is
P / (P + sum_j exp(q . k_j / sqrt(d))), with the sum over the real keys that query may see.
`zero_prefix_share` computes it from the model's own queries and keys (GPT-2-style attention)
and returns it next to what the recorder measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

from prefixlab._validate import require_int
from prefixlab.adapted import AdaptedModel
from prefixlab.attention import mean_over_real_queries, real_query_mask
from prefixlab.hooks import attention_modules, eager_attention, record_attention

_OUTPUT_PROJECTIONS = ("c_proj", "o_proj", "out_proj", "dense")


def _check_prefix_model(adapted) -> int:
    """P of an AdaptedModel with a prefix adapter (the only kind a layer can drop)."""
    if not isinstance(adapted, AdaptedModel):
        raise ValueError(
            f"Expected an AdaptedModel with a prefix, got {type(adapted).__name__}; wrap the "
            "model: AdaptedModel(model, PrefixTuning(model, P))."
        )
    adapter = adapted.adapter
    if adapter is None or getattr(adapter, "method", None) != "prefix":
        what = "no adapter" if adapter is None else f"a {adapter.method} adapter"
        raise ValueError(
            f"The model has {what}. Layer ablation and influence need prefix tuning: a soft "
            "prompt is an input, so it cannot be removed from one layer alone."
        )
    return adapted.prefix_length


def _layer_list(layers, n_layers: int, name: str = "layers") -> list[int]:
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, Iterable) or isinstance(layers, (str, bytes)):
        raise ValueError(f"{name} must be a layer index or a list of them, got {layers!r}.")
    out = []
    for layer in layers:
        require_int(f"each of {name}", layer, low=0)
        if layer >= n_layers:
            raise ValueError(f"{name} holds {layer}, but the model has layers 0..{n_layers - 1}.")
        out.append(int(layer))
    return sorted(set(out))


@contextmanager
def prefix_only_in(adapted: AdaptedModel, layers) -> Iterator[None]:
    """Inside the block, the prefix is visible to the listed layers only (others mask its P
    key positions). `layers=[]` hides it everywhere; all layers change nothing."""
    P = _check_prefix_model(adapted)
    modules = attention_modules(adapted.model)
    keep = set(_layer_list(layers, len(modules)))

    def hide(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 4 or not mask.is_floating_point():
            raise RuntimeError(
                "Hiding the prefix from a layer needs the eager additive attention mask "
                f"[batch, 1, query, key]; got {None if mask is None else tuple(mask.shape)}."
            )
        mask = mask.clone()
        mask[..., :P] = torch.finfo(mask.dtype).min
        return args, {**kwargs, "attention_mask": mask}

    handles = []
    with eager_attention(adapted, stacklevel=5):
        try:
            for layer, module in enumerate(modules):
                if layer not in keep:
                    handles.append(module.register_forward_pre_hook(hide, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block; every submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
def layer_ablation(adapted: AdaptedModel, input_ids, attention_mask, labels) -> pd.DataFrame:
    """The loss on `labels` with the prefix in every layer, in none, without it in one layer at
    a time, and with it in one layer alone.

    Returns:
        DataFrame, one row per layer: `loss_without` (the prefix removed from that layer),
        `loss_only` (kept in that layer alone), `effect_removed` = loss_without - loss_full
        (how much that layer's prefix is needed) and `effect_alone` = loss_none - loss_only
        (how much it does on its own). `attrs` holds loss_full, loss_none (removed
        everywhere, same positions) and loss_frozen (the frozen model numbered from 0).
    """
    _check_prefix_model(adapted)
    n_layers = len(attention_modules(adapted.model))
    with _evaluating(adapted):

        def loss(layers) -> float:
            with prefix_only_in(adapted, layers):
                return float(adapted(input_ids, attention_mask, labels=labels).loss)

        full, none = loss(range(n_layers)), loss([])
        rows = []
        for layer in range(n_layers):
            without = loss([x for x in range(n_layers) if x != layer])
            only = loss([layer])
            rows.append({"layer": layer, "loss_without": without, "loss_only": only,
                         "effect_removed": without - full, "effect_alone": none - only})  # fmt: skip
        frozen = float(AdaptedModel(adapted.model)(input_ids, attention_mask, labels=labels).loss)
    table = pd.DataFrame(rows)
    table.attrs.update(loss_full=full, loss_none=none, loss_frozen=frozen)
    return table


def _recorded_run(adapted: AdaptedModel, input_ids, attention_mask, handles):
    """One eval-mode forward with attention recorded; `handles` (hooks the caller registered
    to catch other tensors) are removed afterwards, also on error. Returns the cache."""
    try:
        with _evaluating(adapted), record_attention(adapted) as cache:
            adapted(input_ids, attention_mask)
    finally:
        for handle in handles:
            handle.remove()
    return cache


def _output_projection(module: nn.Module) -> nn.Module:
    for name in _OUTPUT_PROJECTIONS:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module):
            return child
    raise ValueError(
        f"{type(module).__name__} has no output projection named one of {_OUTPUT_PROJECTIONS}; "
        "prefix_influence needs the heads' merged output before it."
    )


@torch.no_grad()
def prefix_influence(adapted: AdaptedModel, input_ids, attention_mask=None) -> dict:
    """Per layer and head, how much of the head's output comes from the prefix, next to how
    much attention the prefix receives.

    Returns:
        dict with "influence" [L, H] (|sum_p a v_p| / |sum_j a v_j|, mean over real queries)
        and "mass" [L, H] (the prefix's share of the attention, mean over real queries).
    """
    P = _check_prefix_model(adapted)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    dims = adapted.dims
    modules = attention_modules(adapted.model)
    heads_out: dict[int, torch.Tensor] = {}

    def keep_input(layer):
        def hook(module, args):
            heads_out[layer] = args[0].detach()  # [B, T, H * head_dim], heads merged

        return hook

    handles = [_output_projection(m).register_forward_pre_hook(keep_input(layer))
               for layer, m in enumerate(modules)]  # fmt: skip
    cache = _recorded_run(adapted, input_ids, attention_mask, handles)
    values = [v for _, v in adapted.adapter.key_values(input_ids.shape[0])]  # [B, kv, P, D]
    query_mask = real_query_mask(attention_mask, input_ids.shape[1])
    influence, mass = [], []
    for layer in range(len(modules)):
        pattern = cache["pattern", layer]  # [B, H, T, P + T]
        B, H, T, _ = pattern.shape
        v = values[layer].to(pattern.dtype)
        v = v.repeat_interleave(H // v.shape[1], dim=1)  # grouped-query heads share values
        from_prefix = torch.einsum("bhqp,bhpd->bhqd", pattern[..., :P], v)
        whole = heads_out[layer].view(B, T, H, dims.head_dim).transpose(1, 2).to(pattern.dtype)
        ratio = from_prefix.norm(dim=-1) / whole.norm(dim=-1).clamp_min(1e-12)  # [B, H, T]
        influence.append(_mean_real(ratio, query_mask))
        mass.append(_mean_real(pattern[..., :P].sum(-1), query_mask))
    return {"influence": torch.stack(influence), "mass": torch.stack(mass)}


def _mean_real(values: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    """[B, H, T] -> [H]: mean over real queries (`attention.mean_over_real_queries`)."""
    return mean_over_real_queries(values, query_mask)


def rank_agreement(**per_layer) -> pd.DataFrame:
    """Spearman rank correlations between per-layer measurements (e.g. mass=..., influence=...,
    ablation=...), each a sequence with one value per layer. Ties get their mean rank."""
    if len(per_layer) < 2:
        raise ValueError("Give at least two per-layer measurements, e.g. mass=..., influence=....")
    frame = pd.DataFrame({k: np.asarray(v, dtype=float).ravel() for k, v in per_layer.items()})
    if len(frame) < 3:
        raise ValueError(f"A rank correlation over {len(frame)} layers says nothing; need >= 3.")
    return frame.rank().corr()


@torch.no_grad()
def zero_prefix_share(model, input_ids, attention_mask=None, prefix_length: int = 10) -> dict:
    """The share of attention an all-zero prefix of length P receives, two ways.

    Returns:
        dict with "closed_form" and "recorded", each [L, B, H, T]: P / (P + sum_j exp(q.k_j /
        sqrt(d))) from the layer's own queries and keys (GPT-2-style attention), and the
        prefix's share as `record_attention` measures it; "max_difference" over real queries.
    """
    from prefixlab.prefix import PrefixTuning

    base = model.model if isinstance(model, AdaptedModel) else model
    require_int("prefix_length", prefix_length, low=1, hint="e.g. 10.")
    modules = attention_modules(base)
    if not all(hasattr(m, "c_attn") for m in modules):
        raise ValueError(
            f"zero_prefix_share computes queries and keys the GPT-2 way (c_attn); "
            f"{type(modules[0]).__name__} is not GPT-2-style attention."
        )
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    adapted = AdaptedModel(base, PrefixTuning(base, prefix_length, init="zero"))
    hidden: dict[int, torch.Tensor] = {}

    def keep_hidden(layer):
        def hook(module, args, kwargs):
            states = args[0] if args else kwargs["hidden_states"]
            hidden[layer] = states.detach()

        return hook

    handles = [m.register_forward_pre_hook(keep_hidden(layer), with_kwargs=True)
               for layer, m in enumerate(modules)]  # fmt: skip
    cache = _recorded_run(adapted, input_ids, attention_mask, handles)
    P, (B, T) = prefix_length, input_ids.shape
    allowed = torch.ones(T, T, dtype=torch.bool).tril() & attention_mask.bool()[:, None, :]
    closed, recorded = [], []
    for layer, module in enumerate(modules):
        H = module.num_heads
        q, k, _ = module.c_attn(hidden[layer]).split(module.split_size, dim=2)
        q = q.view(B, T, H, -1).transpose(1, 2)
        k = k.view(B, T, H, -1).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # [B, H, T, T]
        if module.scale_attn_weights:
            scores = scores / k.shape[-1] ** 0.5
        if module.scale_attn_by_inverse_layer_idx:
            scores = scores / float(layer + 1)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        log_real = torch.logsumexp(scores, dim=-1)  # log sum_j exp(s_j); -inf when none
        log_p = torch.log(torch.tensor(float(P)))
        closed.append(torch.exp(log_p - torch.logaddexp(log_p, log_real)))
        recorded.append(cache["pattern", layer][..., :P].sum(-1))
    closed, recorded = torch.stack(closed), torch.stack(recorded)
    real = attention_mask.bool()[None, :, None, :].expand_as(closed)
    difference = (closed - recorded).abs()[real].max().item()
    return {"closed_form": closed, "recorded": recorded, "max_difference": difference}
