"""Prefix + LoRA hybrids, control prefixes and banks in one file (issue #22)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny_models import batch

from prefixlab import AdaptedModel, AdapterBank, PrefixTuning, PromptTuning
from prefixlab.artifacts import export_peft, load_bank, save_bank
from prefixlab.config import TrainConfig
from prefixlab.control import (
    ControlPrefix,
    attribute_ids,
    build_control_prefix,
    control_accuracy,
    length_attribute,
)
from prefixlab.hybrid import (
    build_hybrid,
    concat_histories,
    export_peft_hybrid,
    load_hybrid,
    save_hybrid,
    set_stage,
    train_hybrid,
)
from prefixlab.lora import lora_modules, remove_lora, trainable_lora_parameters
from prefixlab.train import train

P = 4


def trained_like(adapted):
    """Give LoRA's B (zero at init) and the prefix values that change the output."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for module in lora_modules(adapted.model).values():
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=g) * 0.2)
    return adapted


def encoded(n=8, length=6, seed=0):
    ids, mask = batch(n, length, seed=seed, pad_right=2)
    labels = ids.clone()
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# -- hybrid --------------------------------------------------------------------------------------


def test_hybrid_forward_equals_merged_lora_plus_prefix_cache(tiny_model):
    hybrid = trained_like(build_hybrid(tiny_model, P, rank=2, seed=3))
    ids, mask = batch(3, 7, pad_right=2)
    got = hybrid(ids, mask).logits
    # by hand: LoRA folded into the weights, then the prefix fed as the attention cache
    merged = remove_lora(copy.deepcopy(hybrid.model), merge=True)
    by_hand = AdaptedModel(merged, hybrid.adapter)(ids, mask).logits
    torch.testing.assert_close(got, by_hand, atol=1e-5, rtol=1e-4)
    # and both parts matter: without LoRA, or without the prefix, the output differs
    frozen_plus_prefix = AdaptedModel(tiny_model, hybrid.adapter)(ids, mask).logits
    lora_alone = AdaptedModel(hybrid.model, None)(ids, mask).logits
    assert (got - frozen_plus_prefix).abs().max() > 1e-3
    assert (got - lora_alone).abs().max() > 1e-3


def test_build_hybrid_leaves_base_alone_and_trains_both(tiny_model):
    hybrid = build_hybrid(tiny_model, P, rank=2)
    assert not lora_modules(tiny_model)
    trainable = {id(p) for p in hybrid.trainable_parameters()}
    assert {id(p) for p in hybrid.adapter.parameters()} <= trainable
    assert {id(p) for p in trainable_lora_parameters(hybrid.model)} <= trainable
    set_stage(hybrid, "lora")
    assert not any(p.requires_grad for p in hybrid.adapter.parameters())
    set_stage(hybrid, "prefix")
    assert not any(p.requires_grad for p in trainable_lora_parameters(hybrid.model))
    with pytest.raises(ValueError, match="stage"):
        set_stage(hybrid, "both")
    with pytest.raises(ValueError, match="hybrid"):
        set_stage(AdaptedModel(tiny_model, PrefixTuning(tiny_model, P)), "joint")


def test_joint_training_uses_two_rates(tiny_model):
    hybrid = build_hybrid(tiny_model, P, rank=2)
    rates = {}

    def spy(history):
        rates.update(history=history.lr[-1])

    config = TrainConfig(steps=3, batch_size=4, eval_every=None, warmup_steps=0,
                         schedule="constant", lr=0.02)  # fmt: skip
    before_b = [m.lora_B.clone() for m in lora_modules(hybrid.model).values()]
    before_prefix = hybrid.adapter.weight.detach().clone()
    history = train_hybrid(hybrid, encoded(), config, lora_lr=0.001, progress=False, callback=spy)
    assert history.lr == [0.02] * 3 and len(history) == 3
    # AdamW's first steps move each parameter by about its rate: 0.02 for the prefix,
    # 0.001 for LoRA's B (zero at init)
    prefix_move = (hybrid.adapter.weight - before_prefix).abs().max()
    b_move = max((m.lora_B - b).abs().max() for m, b in
                 zip(lora_modules(hybrid.model).values(), before_b, strict=True))  # fmt: skip
    assert 0.03 < prefix_move <= 0.061 and 0.0015 < b_move <= 0.0031


def test_prefix_then_lora_freezes_each_stage(tiny_model):
    hybrid = build_hybrid(tiny_model, P, rank=2)
    lora_before = [p.detach().clone() for p in trainable_lora_parameters(hybrid.model)]
    seen = []

    def watch(history):  # called after each step, inside the stage that took it
        seen.append(
            (
                history.step[-1],
                any(p.requires_grad for p in hybrid.adapter.parameters()),
                any(p.requires_grad for p in trainable_lora_parameters(hybrid.model)),
            )
        )

    config = TrainConfig(steps=4, batch_size=4, eval_every=2, warmup_steps=0)
    history = train_hybrid(
        hybrid, encoded(), config, schedule="prefix-then-lora", val_data=encoded(4, seed=1),
        progress=False, callback=watch,
    )  # fmt: skip
    assert [s for s, _, _ in seen] == [1, 2, 1, 2]  # each stage counts its own steps
    assert [(p, lo) for _, p, lo in seen] == [(True, False)] * 2 + [(False, True)] * 2
    assert history.step == [1, 2, 3, 4] and history.val_step == [0, 2, 4]
    assert len(history.config["stages"]) == 2
    assert all(p.requires_grad for p in hybrid.trainable_parameters())  # back to joint
    moved = [
        (p - b).abs().max() > 0
        for p, b in zip(trainable_lora_parameters(hybrid.model), lora_before, strict=True)
    ]
    assert any(moved)
    with pytest.raises(ValueError, match="schedule"):
        train_hybrid(hybrid, encoded(), config, schedule="lora-then-prefix")
    with pytest.raises(ValueError, match="prefix_share"):
        train_hybrid(hybrid, encoded(), config, schedule="prefix-then-lora", prefix_share=1.5)


def test_concat_histories_shifts_second_stage():
    from prefixlab.train import History

    a = History(step=[1, 2], loss=[3.0, 2.0], grad_norm=[1, 1], lr=[1, 1], time=[0.1, 0.2],
                val_step=[0, 2], val_loss=[3.0, 2.1])  # fmt: skip
    b = History(step=[1], loss=[1.5], grad_norm=[1], lr=[1], time=[0.1],
                val_step=[0, 1], val_loss=[2.1, 1.9], diverged_at=1)  # fmt: skip
    c = concat_histories(a, b)
    assert c.step == [1, 2, 3] and c.val_step == [0, 2, 3] and c.val_loss == [3.0, 2.1, 1.9]
    assert c.time == pytest.approx([0.1, 0.2, 0.3]) and c.diverged_at == 3


def test_hybrid_save_load_roundtrip(tiny_model, tmp_path):
    hybrid = trained_like(build_hybrid(tiny_model, P, rank=2, seed=1))
    save_hybrid(hybrid, tmp_path / "h", metadata={"steps": 1})
    info = json.loads((tmp_path / "h" / "lora.json").read_text())
    assert info["rank"] == 2 and info["modules"] == sorted(lora_modules(hybrid.model))
    loaded = load_hybrid(tmp_path / "h", tiny_model)
    ids, mask = batch(2, 5, pad_right=1)
    torch.testing.assert_close(loaded(ids, mask).logits, hybrid(ids, mask).logits)
    assert not lora_modules(tiny_model)
    with pytest.raises(FileNotFoundError, match="hybrid"):
        load_hybrid(tmp_path, tiny_model)


def test_peft_export_of_hybrid_is_two_folders_applied_in_sequence(tiny_model, tmp_path):
    from peft import PeftModel

    hybrid = trained_like(build_hybrid(tiny_model, P, rank=2, seed=2))
    paths = export_peft_hybrid(hybrid, tmp_path)
    merged = PeftModel.from_pretrained(copy.deepcopy(tiny_model), paths["lora"])
    merged = merged.merge_and_unload()
    served = PeftModel.from_pretrained(merged, paths["prefix"])
    ids = batch(2, 6)[0]
    got = served(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(got, hybrid(ids).logits, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="two adapters"):
        export_peft(hybrid, tmp_path / "one")


# -- control prefixes ------------------------------------------------------------------------


def make_control(model):
    task = PrefixTuning(model, 3, seed=0)
    return ControlPrefix(
        task,
        {
            "length": {
                "one": PrefixTuning(model, 2, seed=1),
                "full": PrefixTuning(model, 2, seed=2),
            },
            "order": [PrefixTuning(model, 1, seed=s) for s in (3, 4, 5)],
        },
    )


def test_control_rows_equal_separate_runs_with_composed_prefix(tiny_model):
    control = make_control(tiny_model)
    assert control.prefix_length == 3 + 2 + 1
    adapted = AdaptedModel(tiny_model, control)
    ids, mask = batch(4, 7, pad_right=3)
    rows = [{"length": "full", "order": 2}, {"length": "one", "order": 0},
            {"length": "one", "order": 2}, {"length": "full", "order": 1}]  # fmt: skip
    mixed = adapted(ids, mask, task_ids=rows)
    assert mixed.logits.shape == (4, 7, tiny_model.config.vocab_size)
    for i, row in enumerate(rows):
        composed = control.composed(row)
        real = int(mask[i].sum())  # the padded row alone and without its padding
        alone = AdaptedModel(tiny_model, composed)(ids[i : i + 1, :real]).logits
        torch.testing.assert_close(mixed.logits[i, :real], alone[0], atol=1e-5, rtol=0)
    # the composed prefix is task | length value | order value, along the key axis
    flat = control.composed(rows[0]).weight
    torch.testing.assert_close(flat[:3], control.task.weight)
    torch.testing.assert_close(flat[3:5], control.values[0][1].weight)
    torch.testing.assert_close(flat[5:], control.values[1][2].weight)
    # a tensor of value indices is the same request
    index = torch.tensor([[1, 2], [0, 0], [0, 2], [1, 1]])
    torch.testing.assert_close(adapted(ids, mask, task_ids=index).logits, mixed.logits)


def test_control_left_padded_generation_matches_single_rows(tiny_model):
    control = build_control_prefix(tiny_model, 3, attribute_length=2, seed=4)
    adapted = AdaptedModel(tiny_model, control)
    ids, mask = batch(3, 6, pad_left=2)
    wanted = ["several sentences", "one sentence", "several sentences"]
    out = adapted.generate(ids, mask, task_ids=wanted, max_new_tokens=3)
    for i, value in enumerate(wanted):
        single = AdaptedModel(tiny_model, control.composed(value))
        real = ids[i : i + 1, mask[i].bool()]
        alone = single.generate(real, max_new_tokens=3)
        assert torch.equal(out[i, -3:], alone[0, -3:])


def test_control_prefix_trains_jointly_with_per_row_values(tiny_model):
    control = build_control_prefix(tiny_model, 2, attribute_length=1)
    adapted = AdaptedModel(tiny_model, control)
    data = encoded(8)
    data["task_ids"] = torch.tensor([0, 1] * 4)
    before = [p.detach().clone() for p in control.parameters()]
    config = TrainConfig(steps=2, batch_size=4, eval_every=None, warmup_steps=0)
    history = train(adapted, data, config, val_data=data, progress=False)
    assert len(history) == 2 and history.val_loss
    moved = [(p - b).abs().max() > 0 for p, b in zip(control.parameters(), before, strict=True)]
    assert all(moved)  # the task prefix and both value prefixes got gradient
    with pytest.raises(ValueError, match="task_ids"):
        adapted(data["input_ids"], data["attention_mask"])
    with pytest.raises(ValueError, match="task_ids"):
        train(adapted, {**data, "task_ids": torch.zeros(3, dtype=torch.long)}, config)


def test_control_prefix_bad_requests(tiny_model):
    control = make_control(tiny_model)
    with pytest.raises(ValueError, match="no value 'long'"):
        control.value_index([{"length": "long", "order": 0}])
    with pytest.raises(ValueError, match="values 0..2"):
        control.value_index(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="dict"):
        control.value_index(["one"])
    with pytest.raises(ValueError, match="share one prefix_length"):
        ControlPrefix(
            PrefixTuning(tiny_model, 2),
            {"length": [PrefixTuning(tiny_model, 1), PrefixTuning(tiny_model, 2)]},
        )
    with pytest.raises(ValueError, match="at least two"):
        build_control_prefix(tiny_model, 2, {"length": ["one"]})


def test_length_attribute_and_control_accuracy():
    assert length_attribute("Aromi is a pub.") == "one sentence"
    assert length_attribute("Aromi is a pub. It is cheap.") == "several sentences"
    texts = ["A pub.", "A pub. Cheap.", "A pub. Cheap. Riverside."]
    assert control_accuracy(texts, ["one sentence"] * 3) == pytest.approx(1 / 3)
    ids = attribute_ids(texts, ["one sentence", "several sentences"])
    assert ids.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="wanted"):
        control_accuracy(texts, ["one sentence"])


# -- banks in one file -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_bank_save_load_roundtrip_one_file(tiny_model, kind, tmp_path):
    cls = PrefixTuning if kind == "prefix" else PromptTuning
    adapters = {f"user{k}": cls(tiny_model, P, seed=k) for k in range(5)}
    bank = AdapterBank(adapters)
    file = save_bank(bank, tmp_path / "bank.safetensors", model=tiny_model)
    assert [p.name for p in tmp_path.iterdir()] == ["bank.safetensors"]
    loaded = load_bank(file, tiny_model)
    assert loaded.names == bank.names and loaded.method == kind
    ids, mask = batch(4, 6, pad_right=2)
    users = ["user3", "user0", "user3", "user4"]
    torch.testing.assert_close(
        AdaptedModel(tiny_model, loaded)(ids, mask, task_ids=users).logits,
        AdaptedModel(tiny_model, bank)(ids, mask, task_ids=users).logits,
    )
    with pytest.raises(ValueError, match="folder"):
        save_bank(bank, tmp_path)
    with pytest.raises(ValueError, match="not a prefixlab bank"):
        from safetensors.torch import save_file

        save_file({"weights": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_bank(tmp_path / "other.safetensors", tiny_model)


def test_bank_flat_rows_stacks_only_used_adapters(tiny_model):
    bank = AdapterBank([PrefixTuning(tiny_model, P, seed=k) for k in range(6)])
    calls = []

    def counting(index, adapter):
        def flat():
            calls.append(index)
            return adapter.weight

        return flat

    for k, adapter in enumerate(bank.adapters):
        adapter.flat = counting(k, adapter)
    rows = bank.flat_rows([4, 1, 4])
    assert sorted(calls) == [1, 4]
    torch.testing.assert_close(rows[0], bank.adapters[4].weight)
    torch.testing.assert_close(rows[1], bank.adapters[1].weight)


def test_row_losses_pass_each_rows_values_to_a_control_prefix(tiny_model):
    from prefixlab.evaluate import row_losses, validation_loss

    adapted = AdaptedModel(tiny_model, build_control_prefix(tiny_model, 2, attribute_length=1))
    data = {**encoded(6), "task_ids": torch.tensor([0, 1, 1, 0, 1, 0])}
    sums, tokens = row_losses(adapted, data, batch_size=4)
    assert sums.sum() / tokens.sum() == pytest.approx(validation_loss(adapted, data, 4), rel=1e-6)
    flipped = row_losses(adapted, {**data, "task_ids": 1 - data["task_ids"]}, batch_size=4)[0]
    assert abs(flipped - sums).max() > 1e-6  # the values asked for change each row's loss
