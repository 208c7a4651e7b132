"""The MLP question's measurements: prefix trajectories, effective step ratio, the MLP's
Jacobian spectrum, instability from step 1 and failure relative to the untrained model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import MAKERS

from prefixlab import PrefixTuning
from prefixlab.mechanism import (
    PrefixTrajectory,
    effective_step_ratio,
    embedding_jacobian_spectrum,
    outcome,
    rises_over_minimum,
)


class _Steps:
    def __init__(self, n):
        self.steps_done = n


def adam_steps(prefix, lr: float, steps: int = 5) -> PrefixTrajectory:
    """A few Adam steps on a fixed random objective, the trajectory recorded."""
    trajectory = PrefixTrajectory(prefix)
    params = [p for p in prefix.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    target = torch.randn_like(prefix.flat(), generator=torch.Generator().manual_seed(12345))
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        ((prefix.flat() - target) ** 2).mean().backward()
        optimizer.step()
        trajectory(_Steps(step))
    return trajectory


def test_direct_adam_step_moves_each_entry_by_the_rate():
    model = MAKERS["gpt2"]()
    prefix = PrefixTuning(model, 3, seed=0)
    start = prefix.flat().detach().clone()
    trajectory = adam_steps(prefix, lr=0.01, steps=1)
    # Adam's first step is lr * sign(gradient) on every entry: |delta| = lr * sqrt(n)
    n = start.numel()
    assert trajectory.relative_steps()[0] == pytest.approx(
        0.01 * math.sqrt(n) / start.norm().item(), rel=1e-3
    )
    assert len(trajectory.snapshots) == 2 and trajectory.steps == [0, 1]


def test_mlp_form_moves_the_prefix_more_per_step_at_the_same_rate():
    model = MAKERS["gpt2"]()
    direct = adam_steps(PrefixTuning(model, 3, seed=0), lr=1e-3)
    mlp = adam_steps(PrefixTuning(model, 3, reparam="mlp", mlp_hidden=64, seed=0), lr=1e-3)
    ratio = effective_step_ratio(mlp.relative_steps(), direct.relative_steps())
    assert ratio > 0 and math.isfinite(ratio)
    # the ratio is what it says: medians of the two step sequences
    expected = np.median(mlp.relative_steps()) / np.median(direct.relative_steps())
    assert ratio == pytest.approx(expected)
    assert mlp.total_movement() > 0
    with pytest.raises(ValueError, match="at least one step"):
        effective_step_ratio([], [0.1])
    with pytest.raises(ValueError, match="diverged"):
        effective_step_ratio([math.nan], [0.1])


def test_trajectory_keeps_every_nth_step_and_checks_its_adapter():
    prefix = PrefixTuning(MAKERS["gpt2"](), 2, seed=0)
    trajectory = PrefixTrajectory(prefix, every=2)
    for step in range(1, 6):
        trajectory(_Steps(step))
    assert trajectory.steps == [0, 2, 4]
    with pytest.raises(ValueError, match="needs a PrefixTuning"):
        PrefixTrajectory(object())
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        PrefixTrajectory(prefix, every=0)


def test_jacobian_spectrum_matches_a_finite_difference_and_bounds_the_rank():
    model = MAKERS["gpt2"]()
    prefix = PrefixTuning(model, 2, reparam="mlp", mlp_hidden=16, seed=0)
    spectrum = embedding_jacobian_spectrum(prefix)
    kv_dim = prefix.dims.kv_dim
    assert spectrum.shape == (2, kv_dim)
    assert (np.diff(spectrum, axis=1) <= 1e-6).all()  # largest first
    # hidden 16 < kv_dim 32: at most 16 directions
    assert (spectrum[:, 16:] < 1e-5).all() and (spectrum[:, :16] > 1e-6).all()
    # the largest singular value bounds how far a small embedding move can take the row
    with torch.no_grad():
        e = prefix.embedding[0].clone()
        d = torch.randn(kv_dim, generator=torch.Generator().manual_seed(1)) * 1e-3
        moved = (prefix.mlp(e + d) - prefix.mlp(e)).norm() / d.norm()
    assert moved <= spectrum[0, 0] * 1.01
    with pytest.raises(ValueError, match="reparam='mlp'"):
        embedding_jacobian_spectrum(PrefixTuning(model, 2))


@pytest.mark.parametrize(
    "losses, rises, worst, first",
    [
        ([3.0, 2.0, 1.0, 0.9], 0, 1.0, None),
        ([3.0, 5.0, 2.0], 1, 5 / 3, 2),  # a rise at step 2: no warm-up window hides it
        ([2.0, 1.0, 2.0, 2.5, 1.9], 1, 2.5, 3),  # consecutive steps above count once
        ([2.0, 1.0, 2.0, 2.5, 1.0, 1.8], 2, 2.5, 3),  # back below, then above again
        ([2.0, 1.0, 1.6, 0.5, 0.9], 2, 1.8, 3),
    ],
)
def test_rises_over_minimum(losses, rises, worst, first):
    out = rises_over_minimum(losses)
    assert out["rises"] == rises and out["worst"] == pytest.approx(worst) and out["first"] == first


def test_rises_over_minimum_counts_a_blow_up():
    out = rises_over_minimum([2.0, 1.0, math.nan])
    assert out["worst"] == math.inf and out["rises"] == 1 and out["first"] == 3
    with pytest.raises(ValueError, match="factor must be"):
        rises_over_minimum([1.0], factor=1.0)


def test_outcome_is_relative_to_the_untrained_model():
    assert outcome(1.2, 1.6) == "trained"
    assert outcome(4.9, 1.61) == "failed"  # far above the untrained model: not "converged"
    assert outcome(1.61, 1.61) == "failed"
    assert outcome(math.nan, 1.6) == "failed" and outcome(None, 1.6) == "failed"
    with pytest.raises(ValueError, match="untrained_val_loss"):
        outcome(1.0, 0)
