"""Pure attention helpers, on hand-made probability tensors whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from prefixlab.attention import (
    attention_entropy,
    mean_over_real_queries,
    prefix_attention_mass,
    prefix_mass_per_token,
    prefix_slot_mass,
    real_query_mask,
    sink_attention_mass,
    top_prefix_slot,
)


def hand_pattern() -> torch.Tensor:
    """[batch=1, head=2, query=2, key=4]; keys 0-1 are the prefix (P=2)."""
    return torch.tensor(
        [
            [
                [[0.50, 0.25, 0.25, 0.00], [0.10, 0.10, 0.40, 0.40]],  # head 0
                [[0.25, 0.25, 0.25, 0.25], [0.00, 0.50, 0.50, 0.00]],  # head 1
            ]
        ]
    )


def test_prefix_mass_by_hand():
    mass = prefix_attention_mass(hand_pattern(), 2)
    # head 0: rows put 0.75 and 0.2 on the prefix; head 1: 0.5 and 0.5
    assert torch.allclose(mass, torch.tensor([0.475, 0.5]))


def test_stacked_input_keeps_the_layer_axis():
    pattern = hand_pattern()
    stacked = torch.stack([pattern, pattern.flip(-1)])  # [L=2, B, H, Q, K]
    mass = prefix_attention_mass(stacked, 2)
    assert mass.shape == (2, 2)
    assert torch.allclose(mass[0], prefix_attention_mass(pattern, 2))
    assert torch.allclose(mass[1], 1 - mass[0]), "flipping swaps prefix and tokens"


def test_prefix_mass_plus_the_rest_is_one_per_row():
    torch.manual_seed(0)
    pattern = torch.randn(2, 3, 4, 5, 9).softmax(-1)  # [L, B, H, Q, K]
    prefix = prefix_mass_per_token(pattern, 3)  # [L, B, H, Q]
    rest = pattern[..., 3:].sum(-1)
    assert prefix.shape == (2, 3, 4, 5)
    assert torch.allclose(prefix + rest, torch.ones_like(prefix))


def test_padding_rows_are_excluded():
    pattern = hand_pattern()
    query_mask = torch.tensor([[1, 0]])  # the second query row is padding
    garbage = pattern.clone()
    garbage[:, :, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # whatever a padding row holds
    for p in (pattern, garbage):
        assert torch.allclose(prefix_attention_mass(p, 2, query_mask), torch.tensor([0.75, 0.5]))
    per_token = prefix_mass_per_token(pattern, 2, query_mask)
    assert torch.isnan(per_token[0, :, 1]).all() and not torch.isnan(per_token[0, :, 0]).any()
    assert torch.allclose(torch.nanmean(per_token, dim=(0, 2)), torch.tensor([0.75, 0.5]))


def test_masked_mean_weights_every_real_row_equally():
    values = torch.tensor([[[1.0, 2.0, 3.0]], [[10.0, 20.0, 30.0]]])  # [B=2, H=1, Q=3]
    mask = torch.tensor([[0, 1, 1], [0, 0, 1]])
    assert torch.allclose(mean_over_real_queries(values, mask), torch.tensor([35 / 3]))
    assert torch.allclose(mean_over_real_queries(values, None), torch.tensor([11.0]))
    with pytest.raises(ValueError, match="no query"):
        mean_over_real_queries(values, torch.zeros(2, 3))


def test_no_prefix_gives_zero_mass_and_no_slot():
    pattern = hand_pattern()
    assert torch.equal(prefix_attention_mass(pattern, 0), torch.zeros(2))
    assert torch.equal(prefix_mass_per_token(pattern, 0), torch.zeros(1, 2, 2))
    assert prefix_slot_mass(pattern, 0).shape == (2, 0)
    assert torch.equal(top_prefix_slot(pattern, 0), torch.tensor([-1, -1]))


def test_slot_mass_and_top_slot():
    pattern = hand_pattern()
    slots = prefix_slot_mass(pattern, 2)  # [H, P]
    assert torch.allclose(slots, torch.tensor([[0.30, 0.175], [0.125, 0.375]]))
    assert torch.allclose(slots.sum(-1), prefix_attention_mass(pattern, 2))
    top = top_prefix_slot(pattern, 2)
    assert top.dtype == torch.long and top.tolist() == [0, 1]
    # Only the first query is real: head 1 then spreads evenly, and argmax picks the first.
    assert top_prefix_slot(pattern, 2, torch.tensor([[1, 0]])).tolist() == [0, 0]


def test_sink_finds_the_first_real_token_after_left_padding():
    P, T = 1, 3
    pattern = torch.zeros(2, 1, T, P + T)  # [B, H, Q, K]
    pattern[0, 0, :, 1] = 0.6  # row 0, no padding: first real key is P + 0 = 1
    pattern[0, 0, :, 0] = 0.4
    pattern[1, 0, :, 2] = 0.9  # row 1, one left pad: first real key is P + 1 = 2
    pattern[1, 0, :, 3] = 0.1
    attention_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    query_mask = real_query_mask(attention_mask, T)
    sink = sink_attention_mass(pattern, P, attention_mask, query_mask)
    assert torch.allclose(sink, torch.tensor([(0.6 * 3 + 0.9 * 2) / 5]))
    # Without the mask the first token is taken to sit right after the prefix.
    assert torch.allclose(sink_attention_mass(pattern, P), torch.tensor([0.6 / 2]))


def test_entropy_uniform_and_one_hot():
    uniform = torch.full((1, 1, 1, 8), 1 / 8)
    one_hot = torch.zeros(1, 1, 1, 8)
    one_hot[..., 3] = 1.0
    assert torch.allclose(attention_entropy(uniform), torch.tensor([math.log(8)]))
    assert torch.equal(attention_entropy(one_hot), torch.zeros(1))
    both = torch.cat([uniform, one_hot], dim=2)  # two query rows
    assert torch.allclose(attention_entropy(both, torch.tensor([[0, 1]])), torch.zeros(1))


def test_real_query_mask_for_both_layouts():
    attention_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    assert torch.equal(real_query_mask(attention_mask, 3), attention_mask)  # prefix tuning
    prompt = real_query_mask(attention_mask, 5)  # prompt tuning, P=2 soft rows first
    assert prompt.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="query rows"):
        real_query_mask(attention_mask, 2)


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="stacked"):
        prefix_attention_mass(torch.zeros(2, 3, 4), 1)
    with pytest.raises(ValueError, match="prefix_length"):
        prefix_attention_mass(hand_pattern(), 5)
    with pytest.raises(ValueError, match="real_query_mask"):
        prefix_attention_mass(hand_pattern(), 2, torch.ones(1, 3))
    with pytest.raises(ValueError, match="attention_mask"):
        sink_attention_mass(hand_pattern(), 2, torch.ones(2, 2))
