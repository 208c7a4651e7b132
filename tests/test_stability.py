"""Stability measures on loss curves with known answers."""

from __future__ import annotations

import math

import pytest

from prefixlab.stability import (
    count_spikes,
    final_loss,
    final_loss_spread,
    loss_matrix,
    loss_rise,
    seed_spread,
)
from prefixlab.train import History


def test_count_spikes_known_answers():
    flat = [1.0] * 30
    assert count_spikes(flat) == 0
    assert count_spikes(flat[:25] + [2.0] + flat[:10]) == 1
    assert count_spikes(flat[:25] + [2.0, 2.5, 2.0] + flat[:10]) == 1  # one episode
    assert count_spikes(flat[:25] + [2.0] + flat[:5] + [3.0] + flat[:5]) == 2
    assert count_spikes(flat[:25] + [1.4] + flat[:5]) == 0  # below 1.5x the median
    assert count_spikes([3.0] + flat[:5], window=5) == 0  # the first window never spikes
    assert count_spikes([5.0 - 0.1 * i for i in range(40)]) == 0
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        count_spikes(flat, factor=1.0)


def _history(losses, val=None):
    return History(step=list(range(1, len(losses) + 1)), loss=list(losses),
                   val_step=[len(losses)] if val is not None else [],
                   val_loss=[val] if val is not None else [])  # fmt: skip


def test_seed_spread_and_final_spread_known_answers():
    runs = [_history([1.0, 2.0, 3.0], val=1.0), _history([3.0, 2.0], val=2.0)]
    spread = seed_spread(runs)
    assert spread["std"].tolist()[:2] == pytest.approx([math.sqrt(2), 0.0])
    assert math.isnan(spread["std"].iloc[2]) and spread["n"].tolist() == [2, 2, 1]
    assert spread["mean"].tolist() == pytest.approx([2.0, 2.0, 3.0])
    steps, values = loss_matrix(runs)
    assert steps.tolist() == [1, 2, 3] and values.shape == (2, 3) and math.isnan(values[1, 2])
    final = final_loss_spread(runs)
    assert final["n"] == 2 and final["mean"] == pytest.approx(1.5)
    assert final["std"] == pytest.approx(math.sqrt(0.5)) and final["range"] == pytest.approx(1.0)
    assert final_loss(_history([4.0] * 10 + [2.0] * 10), which="train", window=10) == 2.0
    with pytest.raises(ValueError, match="which must be"):
        final_loss(runs[0], which="best")
    with pytest.raises(ValueError, match="History objects"):
        seed_spread([])


def test_loss_rise_sees_an_early_blowup_that_spikes_cannot():
    early = [2.0, 2.5, 4.0, 6.0, 5.0] + [1.0] * 45  # blows up in the first steps, then recovers
    assert count_spikes(early) == 0  # inside the first window: spikes cannot see it
    assert loss_rise(early, window=1) == pytest.approx(3.0)
    assert loss_rise(early) > 1.5  # default window: a tenth of the curve (5 steps)
    assert loss_rise([3.0, 2.0, 1.0]) == 1.0
    assert loss_rise([3.0, float("nan")]) == float("inf")
    with pytest.raises(ValueError, match="window"):
        loss_rise(early, window=0)
