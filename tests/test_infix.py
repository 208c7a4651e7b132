"""Infix tuning: trainable key/values between the table and the text, checked against a by-hand
version (real tokens placed between them), on tiny random GPT-2 and Llama models."""

from __future__ import annotations

import pytest
import torch
from tiny_models import VOCAB, char_tokenizer

from prefixlab.adapted import AdaptedModel
from prefixlab.batching import encode_for_generation, encode_for_training
from prefixlab.infix import InfixTuning, separator_ids
from prefixlab.loading import model_dims, output_cache
from prefixlab.prefix import PrefixTuning

P = 3
SEP = [90, 91]  # the separator's ids in these hand-made rows


def row(table, text):
    return torch.tensor([*table, *SEP, *text])


def infix_of_tokens(model, table, tokens):
    """By hand: the key/values the model computes for `tokens` right after `table`, in PEFT's
    layout [P, L*2*kv_dim]: what an infix must hold to act exactly like those tokens."""
    ids = torch.tensor([[*table, *tokens]])
    cache = output_cache(model(input_ids=ids, use_cache=True))
    n = len(table)
    parts = []
    for layer in range(model_dims(model).n_layers):
        parts += [cache.layers[layer].keys[0, :, n:], cache.layers[layer].values[0, :, n:]]
    return torch.stack(parts).permute(2, 0, 1, 3).reshape(len(tokens), -1)  # [P, L*2*kv]


def test_infix_acts_like_real_tokens_between_table_and_text(tiny_model):
    table, tokens, text = [5, 17, 33, 8], [40, 41, 42], [60, 61, 62, 63]
    infix = InfixTuning(tiny_model, P, separator=SEP, init="zero")
    with torch.no_grad():
        infix.weight.copy_(infix_of_tokens(tiny_model, table, tokens))
    adapted = AdaptedModel(tiny_model, infix)
    ids = row(table, text).unsqueeze(0)
    mine = adapted(ids).logits[0]  # [T, V]
    by_hand = tiny_model(input_ids=torch.tensor([[*table, *tokens, *SEP, *text]])).logits[0]
    n = len(table)
    assert mine.shape == (ids.shape[1], VOCAB)
    torch.testing.assert_close(mine[:n], by_hand[:n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mine[n:], by_hand[n + P :], atol=1e-5, rtol=1e-4)


def test_only_the_text_side_reads_the_infix(tiny_model):
    adapted = AdaptedModel(tiny_model, InfixTuning(tiny_model, P, separator=SEP, seed=0))
    other = AdaptedModel(tiny_model, InfixTuning(tiny_model, P, separator=SEP, seed=1))
    prefix = AdaptedModel(tiny_model, PrefixTuning(tiny_model, P, seed=0))
    ids = row([5, 17, 33], [60, 61]).unsqueeze(0)
    a, b = adapted(ids).logits[0], other(ids).logits[0]
    torch.testing.assert_close(a[:3], b[:3])  # the table cannot see the infix
    torch.testing.assert_close(a[:3], tiny_model(input_ids=ids).logits[0, :3])
    assert (a[3:] - b[3:]).abs().max() > 1e-3  # separator and text do
    assert (prefix(ids).logits[0, :3] - a[:3]).abs().max() > 1e-3  # a prefix reaches the table


def test_padded_batch_equals_rows_alone(tiny_model):
    adapted = AdaptedModel(tiny_model, InfixTuning(tiny_model, P, separator=SEP, seed=2))
    rows = [row([5, 17, 33, 8], [60, 61]), row([7], [60, 61, 62, 63, 64]), row([9, 9], [70])]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):  # right padding, as in training
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    batch = adapted(ids, mask).logits
    for i, r in enumerate(rows):
        alone = adapted(r.unsqueeze(0)).logits[0]
        torch.testing.assert_close(batch[i, : len(r)], alone, atol=1e-5, rtol=1e-4)
        assert (batch[i, len(r) :] == 0).all()


def test_training_moves_only_the_infix(tiny_model):
    infix = InfixTuning(tiny_model, P, separator=SEP, seed=0)
    adapted = AdaptedModel(tiny_model, infix)
    assert [p is infix.weight for p in adapted.trainable_parameters()] == [True]
    ids = torch.stack([row([5, 17, 33], [60, 61, 62]), row([6, 18, 34], [63, 64, 65])])
    labels = ids.clone()
    labels[:, :5] = -100  # table and separator carry no loss
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=0.3)
    losses = []
    for _ in range(30):
        loss = adapted(ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses  # it learns the two texts
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[name]), name


def _manual_greedy(adapted, ids, mask, steps):
    for _ in range(steps):
        nxt = adapted(ids, mask).logits[:, -1].argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids


def test_generate_equals_manual_greedy_loop(tiny_model):
    adapted = AdaptedModel(tiny_model, InfixTuning(tiny_model, P, separator=SEP, seed=1))
    ids = torch.tensor([[5, 17, 33, *SEP], [0, 0, 8, *SEP]])  # left padding, as in generation
    mask = (torch.arange(5) >= torch.tensor([[0], [2]])).long()
    out = adapted.generate(ids, mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(out, _manual_greedy(adapted, ids, mask, 4))
    alone = adapted.generate(ids[1:, 2:], mask[1:, 2:], max_new_tokens=4, do_sample=False)
    assert torch.equal(alone[0], out[1, 2:]), "left padding changed the result"
    beams = adapted.generate(ids, mask, max_new_tokens=3, num_beams=2, do_sample=False)
    assert beams.shape == (2, 8) and torch.equal(beams[:, :5], ids)


def test_rows_without_the_separator_are_refused(tiny_model):
    adapted = AdaptedModel(tiny_model, InfixTuning(tiny_model, P, separator=SEP))
    with pytest.raises(ValueError, match="separator"):
        adapted(torch.tensor([[5, 6, 7, 8]]))
    with pytest.raises(ValueError, match="end with"):  # generation continues after it
        adapted.generate(torch.tensor([[5, *SEP, 60]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="separator must be"):
        InfixTuning(tiny_model, P, separator="||")
    with pytest.raises(ValueError, match="reparam"):
        InfixTuning(tiny_model, P, separator=SEP, reparam="mlp")
    with pytest.raises(ValueError, match="two passes"):
        adapted.model_inputs(torch.tensor([[5, *SEP]]))


def test_separator_ids_and_encoded_rows():
    tok = char_tokenizer()
    sep = separator_ids(tok)
    assert tok.decode(sep) == " ||"
    pairs = [("name[Aromi]", "Aromi is here."), ("name[Cotto], area[riverside]", "Cotto.")]
    encoded = encode_for_training(tok, pairs, max_length=64)
    from prefixlab.infix import split_rows

    starts, cuts, ends = split_rows(encoded["input_ids"], encoded["attention_mask"], sep)
    assert starts == [0, 0]
    assert [tok.decode(encoded["input_ids"][i, : cuts[i]]) for i in range(2)] == [
        "name[Aromi]",
        "name[Cotto], area[riverside]",
    ]
    gen = encode_for_generation(tok, [mr for mr, _ in pairs])
    _, cuts, ends = split_rows(gen["input_ids"], gen["attention_mask"], sep)
    assert all(
        e - c == len(sep) and e == gen["input_ids"].shape[1]
        for c, e in zip(cuts, ends, strict=True)
    )


def test_infix_run_trains_and_generates(tmp_path, monkeypatch):
    """The whole path of a run (build, train, validate, generate, score) on the embedded model."""
    monkeypatch.setenv("PREFIXLAB_CACHE", str(tmp_path))
    from prefixlab.config import FAST
    from prefixlab.runs import run_experiment

    config = FAST.with_(method="infix", steps=6, eval_every=3, n_val_mrs=4, eval_mrs=2,
                        max_new_tokens=12, prefix_length=4, init="vocab")  # fmt: skip
    row, history, adapted = run_experiment(config, cache=False, progress=False)
    assert isinstance(adapted.adapter, InfixTuning) and row["trainable_params"] > 0
    assert history.steps_done == 6 and row["final_val_loss"] < history.val_loss[0]
    assert len(history.generations) == 2 and all(g["text"] for g in history.generations)
