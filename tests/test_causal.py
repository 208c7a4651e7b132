"""Causal measurements of the prefix: layer ablation's invariants, influence against a
hand computation, and the zero-prefix closed form against the recorder."""

from __future__ import annotations

import pytest
import torch
from tiny_models import MAKERS, batch

from prefixlab import AdaptedModel, PrefixTuning, PromptTuning
from prefixlab.causal import (
    layer_ablation,
    prefix_influence,
    prefix_only_in,
    rank_agreement,
    zero_prefix_share,
)

P = 3


def prefixed(model, seed: int = 1, **kwargs) -> AdaptedModel:
    return AdaptedModel(model, PrefixTuning(model, P, seed=seed, **kwargs))


def labels_for(ids, mask):
    return torch.where(mask.bool(), ids, torch.full_like(ids, -100))


def test_prefix_in_every_layer_changes_nothing_and_in_none_equals_the_frozen_model(tiny_model):
    adapted = prefixed(tiny_model)
    ids, mask = batch(3, 6, pad_left=2)
    with torch.no_grad():
        full = adapted(ids, mask).logits
        with prefix_only_in(adapted, [0, 1]):
            kept = adapted(ids, mask).logits
        with prefix_only_in(adapted, []):
            hidden = adapted(ids, mask).logits
        positions = adapted.model_inputs(ids, mask)["position_ids"]
        frozen = tiny_model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        from_zero = AdaptedModel(tiny_model)(ids, mask).logits
    real = mask.bool()
    assert torch.equal(full, kept)
    assert (hidden - frozen)[real].abs().max() < 1e-5  # same positions: the same model
    assert not torch.allclose(hidden, full, atol=1e-3)  # the prefix did something
    if tiny_model.config.model_type == "gpt2":  # absolute positions: numbering matters
        assert not torch.allclose(hidden[real], from_zero[real], atol=1e-4)


def test_one_layer_hidden_differs_from_both_ends_and_hooks_are_removed(tiny_model):
    adapted = prefixed(tiny_model)
    ids, mask = batch(2, 5, pad_left=1)
    with torch.no_grad():
        full = adapted(ids, mask).logits
        with prefix_only_in(adapted, 1):
            only_last = adapted(ids, mask).logits
        with prefix_only_in(adapted, []):
            none = adapted(ids, mask).logits
        after = adapted(ids, mask).logits
    assert not torch.allclose(only_last, full, atol=1e-4)
    assert not torch.allclose(only_last, none, atol=1e-4)
    assert torch.equal(after, full)


def test_layer_ablation_table_is_consistent(tiny_model):
    adapted = prefixed(tiny_model)
    ids, mask = batch(3, 6, pad_left=2)
    table = layer_ablation(adapted, ids, mask, labels_for(ids, mask))
    assert table["layer"].tolist() == [0, 1]
    full, none = table.attrs["loss_full"], table.attrs["loss_none"]
    adapted.train()  # layer_ablation measures in eval mode and gives every module its mode back
    modes = [m.training for m in adapted.modules()]
    with torch.no_grad():
        loss = adapted.eval()(ids, mask, labels=labels_for(ids, mask)).loss
    assert full == pytest.approx(float(loss))
    adapted.train()
    layer_ablation(adapted, ids, mask, labels_for(ids, mask))
    assert [m.training for m in adapted.modules()] == modes
    # two layers: removing layer 0 keeps only layer 1, and the other way round
    assert table.loc[0, "loss_without"] == pytest.approx(table.loc[1, "loss_only"])
    assert table.loc[0, "effect_removed"] == pytest.approx(table.loc[0, "loss_without"] - full)
    assert table.loc[1, "effect_alone"] == pytest.approx(none - table.loc[1, "loss_only"])
    assert table.attrs["loss_frozen"] != pytest.approx(full)


def test_ablation_refuses_what_it_cannot_do(tiny_model):
    ids, mask = batch(2, 4)
    with pytest.raises(ValueError, match="soft prompt is an input"):
        layer_ablation(AdaptedModel(tiny_model, PromptTuning(tiny_model, P)), ids, mask, ids)
    with pytest.raises(ValueError, match="has no adapter"):
        prefix_influence(AdaptedModel(tiny_model), ids, mask)
    with pytest.raises(ValueError, match="Expected an AdaptedModel"):
        layer_ablation(tiny_model, ids, mask, ids)
    with (
        pytest.raises(ValueError, match="the model has layers 0..1"),
        prefix_only_in(prefixed(tiny_model), [2]),
    ):
        pass


def test_influence_is_zero_for_zero_values_and_matches_a_hand_computation(tiny_model):
    ids, mask = batch(2, 5, pad_left=1)
    adapted = prefixed(tiny_model)
    out = prefix_influence(adapted, ids, mask)
    H = out["mass"].shape[1]
    assert out["influence"].shape == out["mass"].shape == (2, H)
    assert ((out["influence"] > 0) & (out["influence"] < 10)).all()
    # zero values, keys kept: the prefix still takes attention but contributes nothing
    with torch.no_grad():
        flat = adapted.adapter.weight.view(P, -1, 2, adapted.dims.kv_dim)  # [P, L, k/v, kv_dim]
        flat[:, :, 1] = 0.0
    silent = prefix_influence(adapted, ids, mask)
    assert torch.all(silent["influence"] == 0) and torch.all(silent["mass"] > 0)


def test_influence_against_a_direct_computation_on_gpt2():
    model = MAKERS["gpt2"]()
    adapted = prefixed(model, seed=3)
    ids, mask = batch(1, 4)
    out = prefix_influence(adapted, ids, mask)
    # layer 0 by hand: its input is the embedding output, so q, k, v come from c_attn directly
    module = model.transformer.h[0].attn
    with torch.no_grad():
        pos = adapted.model_inputs(ids, mask)["position_ids"]
        x = model.transformer.h[0].ln_1(model.transformer.wte(ids) + model.transformer.wpe(pos))
        q, k, v = module.c_attn(x).split(module.split_size, dim=2)
        H, D = module.num_heads, module.head_dim
        q, k, v = (t.view(1, 4, H, D).transpose(1, 2) for t in (q, k, v))
        pk, pv = adapted.adapter.key_values(1)[0]
        keys, values = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        scores = q @ keys.transpose(-1, -2) / D**0.5
        causal = torch.ones(4, 4).tril().bool()
        allowed = torch.cat([torch.ones(4, P, dtype=torch.bool), causal], 1)
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        part = (weights[..., :P] @ pv).norm(dim=-1)
        whole = (weights @ values).norm(dim=-1)
        expected = (part / whole).mean(dim=(0, 2))
    assert torch.allclose(out["influence"][0], expected, atol=1e-5)
    assert torch.allclose(out["mass"][0], weights[..., :P].sum(-1).mean(dim=(0, 2)), atol=1e-6)


def test_zero_prefix_closed_form_matches_the_recorder():
    model = MAKERS["gpt2"]()
    ids, mask = batch(3, 6, pad_left=2)
    out = zero_prefix_share(model, ids, mask, prefix_length=4)
    assert out["closed_form"].shape == out["recorded"].shape == (2, 3, 4, 6)
    assert out["max_difference"] < 1e-5
    assert out["recorded"].min() > 0  # a zero prefix still takes attention


def test_zero_prefix_closed_form_refuses_other_attention():
    with pytest.raises(ValueError, match="not GPT-2-style attention"):
        zero_prefix_share(MAKERS["llama"](), *batch(1, 4), prefix_length=2)
    with pytest.raises(ValueError, match="prefix_length must be an int >= 1"):
        zero_prefix_share(MAKERS["gpt2"](), *batch(1, 4), prefix_length=0)


def test_rank_agreement():
    table = rank_agreement(mass=[0.1, 0.2, 0.3, 0.4], influence=[4, 3, 2, 1], ablation=[1, 2, 3, 3])
    assert table.loc["mass", "influence"] == pytest.approx(-1.0)
    assert table.loc["mass", "mass"] == pytest.approx(1.0)
    assert 0.9 < table.loc["mass", "ablation"] < 1.0  # tie at the top
    with pytest.raises(ValueError, match="at least two"):
        rank_agreement(mass=[1, 2, 3])
    with pytest.raises(ValueError, match="need >= 3"):
        rank_agreement(mass=[1, 2], influence=[2, 1])
