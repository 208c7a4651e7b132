"""LoRA: output unchanged at init, only the low-rank matrices train, counts match accounting."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import batch

from prefixlab.accounting import lora_parameters
from prefixlab.adapted import AdaptedModel
from prefixlab.loading import model_dims
from prefixlab.lora import (
    LoRALinear,
    add_lora,
    default_targets,
    has_lora,
    lora_modules,
    lora_parameter_count,
    remove_lora,
    trainable_lora_parameters,
)


def test_output_unchanged_at_init(tiny_model):
    ids, mask = batch(pad_right=2)
    before = tiny_model(input_ids=ids, attention_mask=mask).logits
    adapted = copy.deepcopy(tiny_model)
    add_lora(adapted, rank=4)
    after = adapted(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(after, before)


def test_default_targets_and_count_match_accounting(tiny_model, arch):
    model = copy.deepcopy(tiny_model)
    expected = ["c_attn"] if arch == "gpt2" else ["q_proj", "v_proj"]
    assert default_targets(model) == expected
    params = add_lora(model, rank=3)
    n_layers = model_dims(model).n_layers
    assert len(lora_modules(model)) == n_layers * len(expected)
    assert len(params) == 2 * n_layers * len(expected)
    assert lora_parameter_count(model) == lora_parameters(model_dims(model), rank=3)


def test_only_lora_trains_and_base_is_untouched(tiny_model):
    model = copy.deepcopy(tiny_model)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = add_lora(model, rank=2, seed=1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in params}
    assert [id(p) for p in trainable_lora_parameters(model)] == [id(p) for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ids, mask = batch()
    loss = AdaptedModel(model)(ids, mask, labels=ids).loss
    loss.backward()
    optimizer.step()
    for name, module in lora_modules(model).items():
        assert module.lora_B.abs().sum() > 0, name  # B left zero-init
    remove_lora(model)  # unmerged: the original projections come back unchanged
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, base_before[name], msg=name)


def test_merge_gives_same_output(tiny_model):
    model = copy.deepcopy(tiny_model)
    add_lora(model, rank=2, alpha=4.0)
    with torch.no_grad():
        for module in lora_modules(model).values():
            module.lora_B.normal_(std=0.1)
    ids, mask = batch()
    with_lora = model(input_ids=ids, attention_mask=mask).logits
    remove_lora(model, merge=True)
    assert not has_lora(model)
    merged = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(merged, with_lora, atol=1e-5, rtol=1e-4)


def test_seed_makes_init_reproducible(tiny_model):
    a, b = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    pa, pb = add_lora(a, rank=2, seed=5), add_lora(b, rank=2, seed=5)
    for x, y in zip(pa, pb, strict=True):
        torch.testing.assert_close(x, y)


def test_scaling_is_alpha_over_rank(tiny_model):
    model = copy.deepcopy(tiny_model)
    add_lora(model, rank=4)  # alpha defaults to 2 * rank
    module = next(iter(lora_modules(model).values()))
    assert isinstance(module, LoRALinear)
    assert module.scaling == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank must be an int >= 1"),
        ({"rank": 2.5}, "rank must be an int >= 1"),
        ({"rank": 2, "alpha": -1}, "alpha must be a positive number"),
        ({"rank": 2, "targets": []}, "targets is empty"),
        ({"rank": 2, "targets": ["nope"]}, "projections it has"),
    ],
)
def test_bad_options(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_lora(copy.deepcopy(tiny_model), **kwargs)


def test_adding_twice_is_refused(tiny_model):
    model = copy.deepcopy(tiny_model)
    add_lora(model, rank=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, rank=2)
