"""Encoder-decoder prefixes and prompts on tiny random BART and T5 models, exact against PEFT."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from prefixlab.seq2seq import (
    PARTS,
    Seq2SeqPrefixTuning,
    Seq2SeqPromptTuning,
    load_seq2seq,
    seq2seq_dims,
)
from prefixlab.seq2seq_adapted import Seq2SeqAdaptedModel, seq2seq_attention_modules
from prefixlab.seq2seq_artifacts import (
    export_peft_seq2seq,
    import_peft_seq2seq,
    load_seq2seq_adapter,
    peft_layer_slot,
    save_seq2seq_adapter,
)

VOCAB, P = 97, 3


def _freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def make_bart(layers: int = 2, seed: int = 0):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, forced_eos_token_id=None,
        scale_embedding=True, init_std=0.2, attn_implementation="eager",
    )  # fmt: skip
    return _freeze(BartForConditionalGeneration(config))


def make_t5(layers: int = 2, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, num_layers=layers, d_ff=64,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=2,
        decoder_start_token_id=0, attn_implementation="eager",
    )  # fmt: skip
    return _freeze(T5ForConditionalGeneration(config))


MAKERS = {"bart": make_bart, "t5": make_t5}


@pytest.fixture(params=["bart", "t5"])
def s2s_arch(request) -> str:
    return request.param


@pytest.fixture
def s2s_model(s2s_arch):
    return MAKERS[s2s_arch]()


def pair_batch(batch_size=3, source=7, target=5, seed=0):
    """Source and target ids with padding in both: the last row's source is left-short (right
    padded by 2), its target right-padded by 2 (labels -100 there)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch_size, source), generator=g)
    mask = torch.ones_like(ids)
    ids[-1, -2:], mask[-1, -2:] = 0, 0
    labels = torch.randint(3, VOCAB, (batch_size, target), generator=g)
    dec_mask = torch.ones_like(labels)
    labels[-1, -2:], dec_mask[-1, -2:] = -100, 0
    return ids, mask, labels, dec_mask


def decoder_inputs(model, labels):
    return model.prepare_decoder_input_ids_from_labels(labels=labels)


# -- shapes and validation ---------------------------------------------------------------------


def test_dims_of_bart_and_t5():
    bart, t5 = seq2seq_dims(make_bart(3)), seq2seq_dims(make_t5(1))
    assert (bart.n_encoder_layers, bart.n_decoder_layers, bart.encoder_head_dim) == (3, 3, 8)
    assert bart.n_positions == 64 and t5.n_positions == 0  # T5: relative positions, no table
    from transformers import T5Config

    odd = seq2seq_dims(
        T5Config(d_model=32, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=3)
    )
    assert odd.kv_dim("encoder") == 64 and odd.n_layers("cross") == 3  # d_kv is read, not derived


def test_prefix_shapes_per_part(s2s_model):
    prefix = Seq2SeqPrefixTuning(s2s_model, P)
    assert prefix.parts == PARTS
    for part in PARTS:
        pairs = prefix.key_values(part, batch_size=2)
        assert len(pairs) == 2 and pairs[0][0].shape == (2, 4, P, 8)
        assert prefix.flat(part).shape == (P, 2 * 2 * 32)
    only = Seq2SeqPrefixTuning(s2s_model, P, parts=["cross", "encoder"])
    assert only.parts == ("encoder", "cross")
    with pytest.raises(ValueError, match="no 'decoder' part"):
        only.flat("decoder")


def test_refusals_say_what_to_use():
    from transformers import GPT2Config

    from prefixlab import model_dims

    with pytest.raises(ValueError, match="load_model"):
        seq2seq_dims(GPT2Config(n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(ValueError, match="load_seq2seq"):
        model_dims(make_t5(1).config)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"parts": "decoder"}, "tuple"),
        ({"parts": ()}, "at least one"),
        ({"parts": ("decoder", "decoder")}, "at most once"),
        ({"parts": ("decodr",)}, "Did you mean 'decoder'"),
        ({"init": "vocab"}, "decoder-only"),
        ({"reparam": "lstm"}, "reparam"),
        ({"mlp_hidden": 0}, "mlp_hidden"),
        ({"prefix_length": 64}, "no room"),
        ({"prefix_length": True}, "prefix_length"),
    ],
)
def test_bad_prefix_options(kwargs, match):
    model = make_bart(1)
    length = kwargs.pop("prefix_length", P)
    with pytest.raises(ValueError, match=match):
        Seq2SeqPrefixTuning(model, length, **kwargs)


def test_bad_model_inputs(s2s_model):
    adapted = Seq2SeqAdaptedModel(s2s_model, Seq2SeqPrefixTuning(s2s_model, P))
    ids, mask, labels, dec_mask = pair_batch()
    with pytest.raises(ValueError, match="decoder_input_ids or labels"):
        adapted(ids, mask)
    with pytest.raises(ValueError, match="shape of decoder_input_ids"):
        adapted(
            ids, mask, decoder_input_ids=decoder_inputs(s2s_model, labels), labels=labels[:, 1:]
        )
    with pytest.raises(ValueError, match="attention_mask"):
        adapted(ids, mask[:, 1:], labels=labels)
    with pytest.raises(ValueError, match="Seq2SeqPrefixTuning"):
        Seq2SeqAdaptedModel(s2s_model, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="n_encoder_layers"):
        Seq2SeqAdaptedModel(
            s2s_model, Seq2SeqPrefixTuning(MAKERS[s2s_model.config.model_type](3), P)
        )
    with pytest.raises(ValueError, match="max_new_tokens"):
        adapted.generate(ids, mask, max_new_tokens=0)


def test_bart_position_budget():
    model = make_bart(1)
    adapted = Seq2SeqAdaptedModel(model, Seq2SeqPrefixTuning(model, 10, parts=("decoder",)))
    ids, mask, _, _ = pair_batch()
    with pytest.raises(ValueError, match="positions"):
        adapted(ids, mask, decoder_input_ids=torch.ones(3, 60, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        adapted.generate(ids, mask, max_new_tokens=60)


# -- each part reaches its attention, exactly -----------------------------------------------------


def _kv(attention, hidden, n_heads=4):
    """Keys and values an attention module computes for hidden [P, d]: each [1, H, P, D]."""
    k_proj = getattr(attention, "k_proj", None) or attention.k
    v_proj = getattr(attention, "v_proj", None) or attention.v
    shape = (1, hidden.shape[0], n_heads, -1)
    return k_proj(hidden).view(shape).transpose(1, 2), v_proj(hidden).view(shape).transpose(1, 2)


def _prefix_from_pairs(model, part, pairs):
    prefix = Seq2SeqPrefixTuning(model, P, parts=(part,), init="zero")
    flat = torch.cat([torch.stack([k[0], v[0]]) for k, v in pairs])  # (L*2, H, P, D)
    prefix.weights[part] = torch.nn.Parameter(flat.permute(2, 0, 1, 3).reshape(P, -1))
    return prefix


@torch.no_grad()
def test_cross_prefix_equals_extra_encoder_positions(s2s_model):
    """A cross prefix made of the keys/values of P extra encoder outputs is those outputs."""
    ids, mask, labels, dec_mask = pair_batch()
    extra = torch.randn(P, 32, generator=torch.Generator().manual_seed(1))  # [P, d]
    pairs = [_kv(m, extra) for m in seq2seq_attention_modules(s2s_model)["cross"]]
    adapted = Seq2SeqAdaptedModel(s2s_model, _prefix_from_pairs(s2s_model, "cross", pairs))
    ours = adapted(ids, mask, labels=labels, decoder_attention_mask=dec_mask).logits
    encoded = s2s_model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    B = ids.shape[0]
    reference = s2s_model(
        encoder_outputs=(torch.cat([extra.expand(B, -1, -1), encoded], 1),),
        attention_mask=torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1),
        decoder_input_ids=decoder_inputs(s2s_model, labels),
        decoder_attention_mask=dec_mask,
    ).logits
    real = dec_mask.bool()
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=0)
    assert (
        ours - Seq2SeqAdaptedModel(s2s_model)(ids, mask, labels=labels).logits
    ).abs().max() > 1e-3


@torch.no_grad()
def test_encoder_prefix_equals_extra_source_positions(s2s_arch):
    """One encoder layer: a prefix made of the keys/values of P extra input vectors gives the
    source tokens the outputs they get with those vectors in front (T5: at positions 0..P-1;
    BART: its learned positions of the source stay where they were)."""
    model = MAKERS[s2s_arch](layers=1)
    encoder = model.get_encoder()
    ids, mask, _, _ = pair_batch()
    B, S = ids.shape
    extra = torch.randn(P, 32, generator=torch.Generator().manual_seed(2))
    embeds = model.get_input_embeddings()(ids)  # scaled for BART
    attention = seq2seq_attention_modules(model)["encoder"][0]
    if s2s_arch == "t5":
        hidden = encoder.block[0].layer[0].layer_norm(extra)
        reference_embeds = embeds
    else:
        table = encoder.embed_positions.weight[2:]  # BART's learned positions start at row 2
        hidden = encoder.layernorm_embedding(extra + table[:P])
        reference_embeds = embeds + table[:S] - table[P : P + S]  # undo the shift by P
    adapted = Seq2SeqAdaptedModel(
        model, _prefix_from_pairs(model, "encoder", [_kv(attention, hidden)])
    )
    with adapted.attached():
        ours = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    reference = encoder(
        inputs_embeds=torch.cat([extra.expand(B, -1, -1), reference_embeds], 1),
        attention_mask=torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1),
    ).last_hidden_state[:, P:]
    real = mask.bool()
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=0)
    plain = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - plain).abs().max() > 1e-3


# -- PEFT parity ---------------------------------------------------------------------------------


def _peft(model, method, seed=0):
    """A PEFT SEQ_2_SEQ_LM model with random (not zero) adapter weights."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    cls = PrefixTuningConfig if method == "prefix" else PromptTuningConfig
    peft_model = get_peft_model(
        copy.deepcopy(model), cls(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P)
    )
    weight = peft_model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)))
    return peft_model.eval()


def _peft_out(peft_model, ids, mask, labels, dec_mask):
    return peft_model(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=decoder_inputs(peft_model.get_base_model(), labels),
        decoder_attention_mask=dec_mask,
        labels=labels,
    )


@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_peft_adapter_imports_with_equal_logits(s2s_arch, layers, method, tmp_path):
    model = MAKERS[s2s_arch](layers)
    peft_model = _peft(model, method, seed=layers)
    peft_model.save_pretrained(tmp_path)
    adapter = import_peft_seq2seq(tmp_path, model)
    assert adapter.method == method
    if method == "prefix":
        assert adapter.parts == ("decoder",)
    ids, mask, labels, dec_mask = pair_batch()
    with torch.no_grad():
        theirs = _peft_out(peft_model, ids, mask, labels, dec_mask)
        ours = Seq2SeqAdaptedModel(model, adapter)(
            ids, mask, labels=labels, decoder_attention_mask=dec_mask
        )
        plain = Seq2SeqAdaptedModel(model)(
            ids, mask, labels=labels, decoder_attention_mask=dec_mask
        )
    real = dec_mask.bool()
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    assert (ours.logits - plain.logits).abs().max() > 1e-3  # the adapter does something


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_export_loads_in_peft_with_equal_logits(s2s_arch, method, tmp_path):
    from peft import PeftModel

    model = MAKERS[s2s_arch](3)  # odd L: PEFT's layer slots are a permutation (see below)
    if method == "prefix":
        adapter = Seq2SeqPrefixTuning(
            model, P, parts=("decoder",), reparam="mlp", mlp_hidden=8, seed=4
        )
    else:
        adapter = Seq2SeqPromptTuning(model, P, seed=4)
    export_peft_seq2seq(adapter, tmp_path, model=model, base_model_name="tiny-random")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_2_SEQ_LM" and config["num_virtual_tokens"] == P
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), tmp_path).eval()
    ids, mask, labels, dec_mask = pair_batch(seed=1)
    with torch.no_grad():
        theirs = _peft_out(peft_model, ids, mask, labels, dec_mask).logits
        ours = Seq2SeqAdaptedModel(model, adapter)(
            ids, mask, labels=labels, decoder_attention_mask=dec_mask
        ).logits
    real = dec_mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)
    back = import_peft_seq2seq(tmp_path, model)
    torch.testing.assert_close(back.flat("decoder") if method == "prefix" else back.flat(),
                               adapter.materialize().flat("decoder") if method == "prefix"
                               else adapter.flat(), atol=0, rtol=0)  # fmt: skip


def test_peft_layer_slots():
    assert [peft_layer_slot(layer, 3) for layer in range(3)] == [0, 2, 1]  # a permutation
    assert [peft_layer_slot(layer, 6) for layer in range(6)] == [0, 2, 4, 0, 2, 4]  # shared


def test_export_refuses_what_peft_cannot_hold(s2s_model, tmp_path):
    every_part = Seq2SeqPrefixTuning(s2s_model, P)
    with pytest.raises(ValueError, match="decoder self-attention only"):
        export_peft_seq2seq(every_part, tmp_path)
    untied = Seq2SeqPrefixTuning(s2s_model, P, parts=("decoder",))  # 2 layers, both differ
    with pytest.raises(ValueError, match="layers 0 and 1"):
        export_peft_seq2seq(untied, tmp_path)
    _peft(s2s_model, "prefix").save_pretrained(tmp_path / "peft")
    tied = import_peft_seq2seq(tmp_path / "peft", s2s_model)  # PEFT's own: layers agree
    export_peft_seq2seq(tied, tmp_path / "again")
    again = import_peft_seq2seq(tmp_path / "again", s2s_model)
    assert torch.equal(again.flat("decoder"), tied.flat("decoder"))


# -- training, materialize, artifacts ----------------------------------------------------------------


@pytest.mark.parametrize("reparam", ["none", "mlp"])
def test_training_moves_only_the_adapter(s2s_model, reparam):
    before = {k: v.clone() for k, v in s2s_model.state_dict().items()}
    prefix = Seq2SeqPrefixTuning(s2s_model, P, reparam=reparam, mlp_hidden=16, seed=1)
    adapted = Seq2SeqAdaptedModel(s2s_model, prefix)
    assert {id(p) for p in adapted.trainable_parameters()} == {id(p) for p in prefix.parameters()}
    ids, mask, labels, dec_mask = pair_batch()
    opt = torch.optim.Adam(adapted.trainable_parameters(), lr=3e-2)
    losses = []
    for _ in range(8):
        loss = adapted(ids, mask, labels=labels, decoder_attention_mask=dec_mask).loss
        opt.zero_grad()
        loss.backward()
        if not losses:  # every part and every layer gets a gradient
            for part in PARTS:
                grad = (prefix.weights[part] if reparam == "none" else prefix.embeddings[part]).grad
                assert grad is not None and grad.abs().sum() > 0, part
            if reparam == "none":
                for part in PARTS:
                    per_layer = prefix.weights[part].grad.view(P, 2 * 2, -1).abs().sum((0, 2))
                    assert (per_layer > 0).all(), part
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    for k, v in s2s_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_materialize_gives_identical_outputs(s2s_model):
    prefix = Seq2SeqPrefixTuning(s2s_model, P, reparam="mlp", mlp_hidden=16, seed=4)
    direct = prefix.materialize()
    assert direct.reparam == "none" and not hasattr(direct, "mlps")
    ids, mask, labels, _ = pair_batch()
    a = Seq2SeqAdaptedModel(s2s_model, prefix)(ids, mask, labels=labels).logits
    b = Seq2SeqAdaptedModel(s2s_model, direct)(ids, mask, labels=labels).logits
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_save_load_roundtrip(s2s_model, method, tmp_path):
    if method == "prefix":
        adapter = Seq2SeqPrefixTuning(
            s2s_model, P, parts=("encoder", "cross"), reparam="mlp", mlp_hidden=8
        )
    else:
        adapter = Seq2SeqPromptTuning(s2s_model, P, init="vocab", seed=2)
    save_seq2seq_adapter(adapter, tmp_path, model=s2s_model, metadata={"steps": 3})
    info = json.loads((tmp_path / "adapter.json").read_text())
    assert info["architecture"] == "encoder-decoder" and info["metadata"] == {"steps": 3}
    loaded = load_seq2seq_adapter(tmp_path, s2s_model)
    assert loaded.parts == adapter.parts and loaded.prefix_length == P
    ids, mask, labels, _ = pair_batch()
    torch.testing.assert_close(
        Seq2SeqAdaptedModel(s2s_model, loaded)(ids, mask, labels=labels).logits,
        Seq2SeqAdaptedModel(s2s_model, adapter)(ids, mask, labels=labels).logits,
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ValueError, match="n_encoder_layers=2"):
        load_seq2seq_adapter(tmp_path, MAKERS[s2s_model.config.model_type](3))
    with pytest.raises(ValueError, match="holds a"):
        load_seq2seq_adapter(
            tmp_path, s2s_model, method="prompt" if method == "prefix" else "prefix"
        )


# -- generation ------------------------------------------------------------------------------------


def _manual_greedy(adapted, ids, mask, steps):
    start = adapted.model.config.decoder_start_token_id
    out = torch.full((ids.shape[0], 1), start, dtype=torch.long)
    for _ in range(steps):
        nxt = adapted(ids, mask, decoder_input_ids=out).logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], 1)
    return out


@pytest.mark.parametrize("parts", [PARTS, ("encoder",), ("cross",), "prompt"])
def test_generate_equals_manual_greedy_loop(s2s_model, parts):
    if parts == "prompt":
        adapter = Seq2SeqPromptTuning(s2s_model, P, seed=1)
    else:
        adapter = Seq2SeqPrefixTuning(s2s_model, P, parts=parts, seed=1)
    adapted = Seq2SeqAdaptedModel(s2s_model, adapter)
    ids, mask, _, _ = pair_batch()
    kw = {"max_new_tokens": 5, "min_new_tokens": 5, "do_sample": False}
    out = adapted.generate(ids, mask, **kw)
    with torch.no_grad():
        assert torch.equal(out, _manual_greedy(adapted, ids, mask, 5))
    alone = adapted.generate(ids[-1:, :-2], mask[-1:, :-2], **kw)
    assert torch.equal(alone[0], out[-1]), "padding changed the result"
    beams = adapted.generate(ids, mask, max_new_tokens=4, min_new_tokens=4, num_beams=3)
    assert beams.shape == (3, 5)


def test_hooks_are_removed(s2s_model):
    adapted = Seq2SeqAdaptedModel(s2s_model, Seq2SeqPrefixTuning(s2s_model, P))
    ids, mask, labels, _ = pair_batch()
    adapted(ids, mask, labels=labels)
    modules = seq2seq_attention_modules(s2s_model)
    assert all(not m._forward_pre_hooks for part in PARTS for m in modules[part])


# -- loading ----------------------------------------------------------------------------------------


def test_load_seq2seq_from_a_folder(tmp_path):
    from tiny_models import char_tokenizer

    make_bart(1).save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    model, tokenizer = load_seq2seq(str(tmp_path))
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert seq2seq_dims(model).n_encoder_layers == 1 and tokenizer.pad_token_id == 0
    with pytest.raises(ValueError, match="attn_implementation"):
        load_seq2seq(str(tmp_path), attn_implementation="flash")
    with pytest.raises(ValueError, match="dtype"):
        load_seq2seq(str(tmp_path), dtype="float33")
    with pytest.raises(ValueError, match="name_or_path"):
        load_seq2seq(3)
    with pytest.raises(OSError, match="local folder"):
        load_seq2seq(str(tmp_path / "missing"))


def test_load_seq2seq_refuses_a_causal_lm(tmp_path):
    from tiny_models import make_gpt2

    make_gpt2().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="load_model"):
        load_seq2seq(str(tmp_path))


# -- attention recorder -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_recorder_equals_output_attentions(s2s_model, method):
    from prefixlab.seq2seq_hooks import record_seq2seq_attention, seq2seq_hook_name

    if method == "prefix":
        adapter = Seq2SeqPrefixTuning(s2s_model, P, seed=2)
    else:
        adapter = Seq2SeqPromptTuning(s2s_model, P, seed=2)
    adapted = Seq2SeqAdaptedModel(s2s_model, adapter)
    ids, mask, labels, dec_mask = pair_batch()
    with torch.no_grad(), record_seq2seq_attention(adapted) as cache:
        out = adapted(
            ids, mask, labels=labels, decoder_attention_mask=dec_mask, output_attentions=True
        )
    assert cache.hook_names() == [
        "encoder.blocks.0.attn.hook_pattern",
        "encoder.blocks.1.attn.hook_pattern",
        "decoder.blocks.0.attn.hook_pattern",
        "decoder.blocks.1.attn.hook_pattern",
        "decoder.blocks.0.cross_attn.hook_pattern",
        "decoder.blocks.1.cross_attn.hook_pattern",
    ]
    S, T = ids.shape[1], labels.shape[1]
    P_dec = P if method == "prefix" else 0
    queries = {"encoder": S + (P - P_dec), "decoder": T, "cross": T}
    keys = {"encoder": P + S, "decoder": P_dec + T, "cross": P + S}
    returned = {
        "encoder": out.encoder_attentions,
        "decoder": out.decoder_attentions,
        "cross": out.cross_attentions,
    }
    for part in PARTS:
        assert cache.prefix_keys(part) == keys[part] - (S if part != "decoder" else T)
        for layer in range(2):
            pattern = cache[seq2seq_hook_name(part, layer)]
            assert pattern.shape == (3, 4, queries[part], keys[part]), part
            torch.testing.assert_close(pattern, returned[part][layer], atol=0, rtol=0)
    prefix_mass = cache.pattern("cross", 1)[..., :P].sum(-1)  # [B, H, T]
    assert (prefix_mass > 0).all() and (prefix_mass < 1).all()
    modules = seq2seq_attention_modules(s2s_model)
    hooks = [h for part in PARTS for m in modules[part] for h in m._forward_hooks.values()]
    assert not [h for h in hooks if h.__module__ == "prefixlab.seq2seq_hooks"]  # ours removed


# -- parameter counts -------------------------------------------------------------------------------


def test_parameter_counts_of_published_models():
    from prefixlab.seq2seq_accounting import seq2seq_accounting_table

    table = seq2seq_accounting_table(prefix_length=10).set_index(["model", "method"])
    full = table.xs("full", level="method")["trainable"]
    # the published sizes: BART-base 140M, BART-large 406M, T5-small 60M, T5-base 220M
    assert 139e6 < full["bart-base"] < 141e6 and 405e6 < full["bart-large"] < 407e6
    assert 60e6 < full["t5-small"] < 61e6 and 222e6 < full["t5-base"] < 224e6
    assert table.loc[("bart-base", "prefix:encoder"), "trainable"] == 10 * 6 * 2 * 768
    assert table.loc[("bart-base", "prefix"), "trainable"] == 3 * 10 * 6 * 2 * 768
    assert table.loc[("t5-small", "prompt"), "trainable"] == 10 * 512
    mlp = table.loc[("t5-small", "prefix+mlp")]
    assert mlp["stored"] == table.loc[("t5-small", "prefix"), "trainable"] < mlp["trainable"]


def test_parameter_counts_match_a_built_adapter(s2s_model):
    from prefixlab.seq2seq_accounting import seq2seq_parameter_counts

    rows = {r["method"]: r for r in seq2seq_parameter_counts(s2s_model, P, mlp_hidden=16)}
    direct = Seq2SeqPrefixTuning(s2s_model, P)
    mlp = Seq2SeqPrefixTuning(s2s_model, P, reparam="mlp", mlp_hidden=16)
    assert rows["prefix"]["trainable"] == sum(p.numel() for p in direct.parameters())
    assert rows["prefix+mlp"]["trainable"] == sum(p.numel() for p in mlp.parameters())
    prompt = Seq2SeqPromptTuning(s2s_model, P)
    assert rows["prompt"]["trainable"] == prompt.weight.numel()


def test_generic_artifact_functions_hand_over(s2s_model, tmp_path):
    from prefixlab import export_peft, import_peft, load_adapter, save_adapter

    prefix = Seq2SeqPrefixTuning(s2s_model, P, parts=("cross",), seed=6)
    save_adapter(prefix, tmp_path / "ours", model=s2s_model)
    assert torch.equal(
        load_adapter(tmp_path / "ours", s2s_model).flat("cross"), prefix.flat("cross")
    )
    prompt = Seq2SeqPromptTuning(s2s_model, P, seed=6)
    export_peft(prompt, tmp_path / "peft")
    assert torch.equal(import_peft(tmp_path / "peft", s2s_model).flat(), prompt.flat())


@pytest.mark.parametrize("parts", [PARTS, ("cross",)])
def test_prefix_mass_per_part_reads_the_recorded_patterns(s2s_model, parts):
    """seq2seq_prefix_mass: per part, layer and head, the mean over real queries of the
    attention on the first P keys; zero for an attention without prefix."""
    from prefixlab.seq2seq_hooks import record_seq2seq_attention, seq2seq_prefix_mass

    adapted = Seq2SeqAdaptedModel(s2s_model, Seq2SeqPrefixTuning(s2s_model, P, parts=parts, seed=3))
    ids, mask, labels, dec_mask = pair_batch()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels,
             "decoder_attention_mask": dec_mask}  # fmt: skip
    mass = seq2seq_prefix_mass(adapted, batch)
    with torch.no_grad(), record_seq2seq_attention(adapted) as cache:
        adapted(**batch)
    queries = {"encoder": mask, "decoder": dec_mask, "cross": dec_mask}
    for part in PARTS:
        assert mass[part].shape == (2, 4)
        if part not in parts:
            assert (mass[part] == 0).all()
            continue
        for layer in range(2):
            on_prefix = cache.pattern(part, layer)[..., :P].sum(-1)  # [B, H, Q]
            real = queries[part].bool()  # [B, Q]
            expected = torch.stack([on_prefix[:, h][real].mean() for h in range(4)])
            torch.testing.assert_close(mass[part][layer], expected)
        assert (mass[part] > 0).all() and (mass[part] < 1).all()
    with pytest.raises(ValueError, match="encode_seq2seq"):
        seq2seq_prefix_mass(adapted, {"input_ids": ids})
