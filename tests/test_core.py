"""Core behaviour of prefix tuning and prompt tuning, on tiny random GPT-2 and Llama models."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny_models import VOCAB, P, batch, make_adapter, make_gpt2

from prefixlab import (
    AdaptedModel,
    AdapterBank,
    PrefixTuning,
    PromptTuning,
    export_peft,
    import_peft,
    load_adapter,
    model_dims,
    save_adapter,
)


def labels_for(ids, mask):
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :2] = -100  # a "source" part with no loss
    return labels


# -- shapes --------------------------------------------------------------------------------


def test_prefix_shapes_follow_kv_heads(tiny_model, arch):
    dims = model_dims(tiny_model)
    prefix = PrefixTuning(tiny_model, P)
    pairs = prefix.key_values(batch_size=3)
    assert len(pairs) == dims.n_layers
    expected_heads = 2 if arch == "llama" else 4  # grouped-query: num_key_value_heads
    for k, v in pairs:
        assert k.shape == (3, expected_heads, P, dims.head_dim)
        assert v.shape == k.shape
    assert prefix.flat().shape == (P, dims.n_layers * 2 * expected_heads * dims.head_dim)


def test_explicit_head_dim_wins():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_hidden_layers=3,
    )
    dims = model_dims(config)
    assert dims.head_dim == 16 and dims.kv_dim == 32 and dims.n_layers == 3


def test_prompt_shapes(tiny_model):
    prompt = PromptTuning(tiny_model, P)
    assert prompt(5).shape == (5, P, model_dims(tiny_model).d_model)


def test_logits_same_shape_for_both_methods(tiny_model, method):
    ids, mask = batch(3, 7, pad_right=2)
    out = AdaptedModel(tiny_model, make_adapter(tiny_model, method))(
        ids, mask, labels_for(ids, mask)
    )
    assert out.logits.shape == (3, 7, VOCAB)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


# -- frozen base, gradients --------------------------------------------------------------------


def test_base_untouched_by_training(tiny_model, method):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    adapter = make_adapter(tiny_model, method)
    adapted = AdaptedModel(tiny_model, adapter)
    opt = torch.optim.AdamW(adapted.trainable_parameters(), lr=0.1)
    ids, mask = batch(3, 7)
    start = adapter.flat().detach().clone()
    for _ in range(3):
        loss = adapted(ids, mask, labels_for(ids, mask)).loss
        opt.zero_grad()
        loss.backward()
        for p in tiny_model.parameters():
            assert p.grad is None
        opt.step()
    assert not torch.equal(adapter.flat().detach(), start)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in tiny_model.parameters())


def test_only_adapter_parameters_are_trainable(tiny_model, method):
    adapter = make_adapter(tiny_model, method)
    adapted = AdaptedModel(tiny_model, adapter)
    assert {id(p) for p in adapted.trainable_parameters()} == {id(p) for p in adapter.parameters()}


def test_mlp_reparam_trains_only_the_mlp(tiny_model):
    prefix = PrefixTuning(tiny_model, P, reparam="mlp", mlp_hidden=16)
    names = {n for n, _ in prefix.named_parameters()}
    assert names == {"embedding", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    ids, mask = batch()
    AdaptedModel(tiny_model, prefix)(ids, mask, labels_for(ids, mask)).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prefix.parameters())


# -- PEFT parity ---------------------------------------------------------------------------------


def _peft_model(model, method, flat):
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    cls = PrefixTuningConfig if method == "prefix" else PromptTuningConfig
    peft_model = get_peft_model(
        copy.deepcopy(model), cls(task_type="CAUSAL_LM", num_virtual_tokens=P)
    )
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(flat)
    return peft_model.eval()


def _real(logits, method):
    return logits[:, P:] if method == "prompt" else logits


def test_logits_equal_peft(tiny_model, method):
    adapter = make_adapter(tiny_model, method, seed=3)
    ids, mask = batch(3, 7, pad_right=2)
    ours = AdaptedModel(tiny_model, adapter)(ids, mask).logits
    theirs = _real(
        _peft_model(tiny_model, method, adapter.flat())(input_ids=ids, attention_mask=mask).logits,
        method,
    )
    real = mask.bool()  # padded positions carry no meaning (PEFT numbers them differently)
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_loss_equals_peft_and_a_sliced_reference(tiny_model, method):
    """The loss shifts labels, not logits; it must equal the textbook slice-and-shift and PEFT."""
    from prefixlab.adapted import causal_lm_loss

    adapter = make_adapter(tiny_model, method, seed=3)
    ids, mask = batch(3, 7)
    labels = labels_for(ids, mask)
    out = AdaptedModel(tiny_model, adapter)(ids, mask, labels=labels)
    logits = out.logits
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, reference, atol=1e-6, rtol=1e-6)
    peft_out = _peft_model(tiny_model, method, adapter.flat())(
        input_ids=ids, attention_mask=mask, labels=labels
    )
    torch.testing.assert_close(out.loss, peft_out.loss, atol=1e-5, rtol=1e-5)  # PEFT pads labels
    with pytest.raises(ValueError, match="offset"):
        causal_lm_loss(logits, labels, offset=2)


def test_labels_of_the_wrong_shape_are_refused(tiny_model, method):
    adapted = AdaptedModel(tiny_model, make_adapter(tiny_model, method))
    ids, mask = batch(2, 6)
    with pytest.raises(ValueError, match="shape of input_ids"):
        adapted(ids, mask, labels=ids[:, :-1])


def test_prefix_gradient_reaches_every_layer(tiny_model):
    prefix = PrefixTuning(tiny_model, P, seed=2)
    ids, mask = batch(2, 6)
    AdaptedModel(tiny_model, prefix)(ids, mask, labels=ids).loss.backward()
    dims = model_dims(tiny_model)
    grad = prefix.weight.grad.view(P, dims.n_layers * 2, -1)  # per layer's keys and values
    assert (grad.abs().sum(dim=(0, 2)) > 0).all()


def test_peft_export_loads_in_peft(tiny_model, method, tmp_path):
    from peft import PeftModel

    adapter = make_adapter(tiny_model, method, seed=5)
    export_peft(adapter, tmp_path, model=tiny_model, base_model_name="tiny-random")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["num_virtual_tokens"] == P
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_model), tmp_path).eval()
    ids, mask = batch(2, 6)
    ours = AdaptedModel(tiny_model, adapter)(ids, mask).logits
    theirs = _real(peft_model(input_ids=ids, attention_mask=mask).logits, method)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    back = import_peft(tmp_path, tiny_model)
    assert back.method == method and torch.equal(back.flat(), adapter.flat().detach())


def test_import_of_a_peft_saved_adapter(tiny_model, method, tmp_path):
    adapter = make_adapter(tiny_model, method, seed=2)
    _peft_model(tiny_model, method, adapter.flat()).save_pretrained(tmp_path)
    back = import_peft(tmp_path, tiny_model)
    torch.testing.assert_close(back.flat(), adapter.flat().detach())


# -- materialize ------------------------------------------------------------------------------------


def test_materialize_gives_identical_outputs(tiny_model):
    prefix = PrefixTuning(tiny_model, P, reparam="mlp", mlp_hidden=16, seed=4)
    direct = prefix.materialize()
    assert direct.reparam == "none" and not hasattr(direct, "mlp")
    ids, mask = batch()
    a = AdaptedModel(tiny_model, prefix)(ids, mask).logits
    b = AdaptedModel(tiny_model, direct)(ids, mask).logits
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in direct.parameters()) < sum(p.numel() for p in prefix.parameters())


# -- inits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reparam", ["none", "mlp"])
def test_vocab_init_equals_real_token_key_values(tiny_model, reparam):
    from prefixlab.prefix import key_values_of_tokens

    prefix = PrefixTuning(tiny_model, P, reparam=reparam, init="vocab", mlp_hidden=32, seed=7)
    again = PrefixTuning(tiny_model, P, reparam=reparam, init="vocab", mlp_hidden=32, seed=7)
    torch.testing.assert_close(prefix.flat(), again.flat())
    # The prefix is what the model itself computes for some P real tokens: feeding it as a cache
    # gives the same logits as feeding those tokens.
    g = torch.Generator().manual_seed(7)
    from prefixlab.prefix import init_token_ids

    ids = init_token_ids(P, init="vocab", vocab_size=VOCAB, generator=g)
    target = key_values_of_tokens(tiny_model, ids)
    torch.testing.assert_close(prefix.flat().detach(), target, atol=1e-4, rtol=1e-4)


class CharTokenizer:
    """Enough tokenizer for init='text': one id per character."""

    all_special_ids = [0, 1, 2]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + (ord(c) % (VOCAB - 3)) for c in text]}


def test_text_init_cycles_and_truncates(tiny_model):
    tok = CharTokenizer()
    prompt = PromptTuning(tiny_model, 5, init="text", init_text="ab", tokenizer=tok)
    table = tiny_model.get_input_embeddings().weight
    a, b = tok("ab")["input_ids"]
    torch.testing.assert_close(prompt.weight.detach(), table[[a, b, a, b, a]])
    short = PromptTuning(tiny_model, 2, init="text", init_text="abcdef", tokenizer=tok)
    torch.testing.assert_close(short.weight.detach(), table[[a, b]])
    prefix = PrefixTuning(tiny_model, 3, init="text", init_text="abc", tokenizer=tok)
    assert prefix.flat().shape[0] == 3


def test_prompt_inits(tiny_model):
    table = tiny_model.get_input_embeddings().weight
    mean = PromptTuning(tiny_model, 3, init="mean").weight.detach()
    torch.testing.assert_close(mean, table.mean(0, keepdim=True).expand(3, -1))
    vocab = PromptTuning(tiny_model, 3, init="vocab", seed=1).weight.detach()
    assert all(any(torch.equal(row, t) for t in table) for row in vocab)
    r1 = PromptTuning(tiny_model, 3, seed=1).weight
    r2 = PromptTuning(tiny_model, 3, seed=1).weight
    assert torch.equal(r1, r2)


def test_zero_prefix_still_changes_the_output(tiny_model):
    """Zero keys score 0 against every query, so after softmax they still take attention mass."""
    prefix = PrefixTuning(tiny_model, P, init="zero")
    assert prefix.flat().abs().sum() == 0
    ids, mask = batch()
    with_prefix = AdaptedModel(tiny_model, prefix)(ids, mask).logits
    without = AdaptedModel(tiny_model, None)(ids, mask).logits
    assert (with_prefix - without).abs().max() > 1e-4


def test_zero_init_with_mlp_outputs_zero(tiny_model):
    prefix = PrefixTuning(tiny_model, P, init="zero", reparam="mlp", mlp_hidden=8)
    assert prefix.flat().abs().sum() == 0


# -- generation ------------------------------------------------------------------------------------


def _manual_greedy(adapted, ids, mask, steps):
    for _ in range(steps):
        nxt = adapted(ids, mask).logits[:, -1].argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids


def test_generate_equals_manual_greedy_loop(tiny_model, method):
    adapted = AdaptedModel(tiny_model, make_adapter(tiny_model, method, seed=1))
    ids, mask = batch(3, 6, pad_left=2)
    out = adapted.generate(ids, mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(out, _manual_greedy(adapted, ids, mask, 5))
    alone = adapted.generate(ids[-1:, 2:], mask[-1:, 2:], max_new_tokens=5, do_sample=False)
    assert torch.equal(alone[0], out[-1, 2:]), "left padding changed the result"


def test_generate_beam_and_sampling(tiny_model, method):
    adapted = AdaptedModel(tiny_model, make_adapter(tiny_model, method, seed=1))
    ids, mask = batch(2, 5, pad_left=1)
    beams = adapted.generate(ids, mask, max_new_tokens=4, num_beams=3, do_sample=False)
    assert beams.shape == (2, 9) and torch.equal(beams[:, :5], ids)
    torch.manual_seed(0)
    samples = adapted.generate(ids, mask, max_new_tokens=4, do_sample=True, num_return_sequences=2)
    assert samples.shape == (4, 9)


def test_generate_rejects_right_padding(tiny_model):
    adapted = AdaptedModel(tiny_model, PrefixTuning(tiny_model, P))
    ids, mask = batch(2, 5, pad_right=1)
    with pytest.raises(ValueError, match="left"):
        adapted.generate(ids, mask, max_new_tokens=2)


# -- mixed-task batches -------------------------------------------------------------------------------


def test_mixed_task_batch_equals_separate_runs(tiny_model, method):
    adapters = {name: make_adapter(tiny_model, method, seed=s) for s, name in enumerate("abc")}
    bank = AdaptedModel(tiny_model, AdapterBank(adapters))
    ids, mask = batch(4, 6, pad_right=1)
    tasks = ["b", "a", "c", "b"]
    mixed = bank(ids, mask, task_ids=tasks).logits
    for row, task in enumerate(tasks):
        alone = AdaptedModel(tiny_model, adapters[task])(
            ids[row : row + 1], mask[row : row + 1]
        ).logits
        torch.testing.assert_close(mixed[row], alone[0], atol=1e-5, rtol=0)
    gen_ids, gen_mask = batch(4, 6, pad_left=2)
    gen = bank.generate(gen_ids, gen_mask, task_ids=tasks, max_new_tokens=3, num_beams=2)
    for row, task in enumerate(tasks):
        alone = AdaptedModel(tiny_model, adapters[task]).generate(
            gen_ids[row : row + 1], gen_mask[row : row + 1], max_new_tokens=3, num_beams=2
        )
        assert torch.equal(gen[row], alone[0])


def test_bank_rejects_mixed_lengths(tiny_model):
    with pytest.raises(ValueError, match="prefix_length"):
        AdapterBank([PrefixTuning(tiny_model, 2), PrefixTuning(tiny_model, 3)])
    bank = AdaptedModel(tiny_model, AdapterBank([PrefixTuning(tiny_model, 2)]))
    ids, mask = batch(2, 4)
    with pytest.raises(ValueError, match="task_ids"):
        bank(ids, mask)
    with pytest.raises(ValueError, match="task_ids must lie"):
        bank(ids, mask, task_ids=[0, 5])


# -- artifacts -----------------------------------------------------------------------------------------


def test_save_load_roundtrip(tiny_model, method, tmp_path):
    kw = {"reparam": "mlp", "mlp_hidden": 8} if method == "prefix" else {}
    adapter = make_adapter(tiny_model, method, seed=9, **kw)
    save_adapter(adapter, tmp_path, model=tiny_model, metadata={"steps": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]
    info = json.loads((tmp_path / "adapter.json").read_text())
    assert info["method"] == method and info["prefix_length"] == P
    assert info["metadata"] == {"steps": 3} and info["dims"]["n_layers"] == 2
    loaded = load_adapter(tmp_path, tiny_model)
    ids, mask = batch()
    torch.testing.assert_close(
        AdaptedModel(tiny_model, loaded)(ids, mask).logits,
        AdaptedModel(tiny_model, adapter)(ids, mask).logits,
        atol=1e-6,
        rtol=0,
    )


def test_load_onto_wrong_model_names_the_mismatch(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    save_adapter(PrefixTuning(make_gpt2(), P), tmp_path)
    other = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4))
    with pytest.raises(ValueError, match="layers=2"):
        load_adapter(tmp_path, other)
    heads = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2))
    with pytest.raises(ValueError, match="heads"):
        load_adapter(tmp_path, heads)
    with pytest.raises(ValueError, match="prompt adapter but"):
        load_adapter(tmp_path, make_gpt2(), method="prompt")


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_bad_prefix_length(tiny_model, method, bad):
    with pytest.raises(ValueError, match="prefix_length"):
        make_adapter(tiny_model, method, bad)


def test_prefix_longer_than_context(tiny_model, method):
    with pytest.raises(ValueError, match="context"):
        make_adapter(tiny_model, method, 64)
    adapted = AdaptedModel(tiny_model, make_adapter(tiny_model, method, 40))
    ids, mask = batch(1, 30)
    with pytest.raises(ValueError, match="longer than the model's context"):
        adapted(ids, mask)


def test_bad_options(tiny_model):
    with pytest.raises(ValueError, match="reparam"):
        PrefixTuning(tiny_model, P, reparam="lstm")
    with pytest.raises(ValueError, match="init"):
        PrefixTuning(tiny_model, P, init="ones")
    with pytest.raises(ValueError, match="init_text"):
        PrefixTuning(tiny_model, P, init="text", tokenizer=CharTokenizer())
    with pytest.raises(ValueError, match="tokenizer"):
        PromptTuning(tiny_model, P, init="text", init_text="hello")
    with pytest.raises(ValueError, match="init"):
        PromptTuning(tiny_model, P, init="zero")


def test_encoder_decoder_is_refused():
    from transformers import T5Config

    with pytest.raises(ValueError, match="encoder-decoder"):
        model_dims(T5Config(d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=16))


def test_dtype_and_device_mismatch(tiny_model):
    adapter = PrefixTuning(tiny_model, P).to(torch.float64)
    with pytest.raises(ValueError, match="float64"):
        AdaptedModel(tiny_model, adapter)
    with pytest.raises(ValueError, match="adapter must be"):
        AdaptedModel(tiny_model, torch.nn.Linear(2, 2))
