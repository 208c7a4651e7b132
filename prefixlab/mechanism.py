"""Why would the MLP change how a prefix trains? Measurements for notebook 03 (issue #18).

Li & Liang report that optimizing the prefix directly is unstable and that producing it with
an MLP (discarded after training) fixes it. Under Adam every trainable number moves by about
the learning rate per step whatever its gradient's size, so the two forms differ in *what* a
step moves: the direct form moves each prefix entry by about lr; the MLP form moves its own
weights by about lr, and each prefix entry, a sum over the MLP's hidden units, moves by an
amount that depends on the MLP. This module measures that, and defines failure honestly:

- `PrefixTrajectory`: a `train(..., callback=...)` callback that keeps the *materialized*
  prefix after every step; `relative_steps()` is |prefix_t - prefix_{t-1}| / |prefix_{t-1}|.
- `effective_step_ratio(mlp, direct)`: how much larger the MLP form's relative steps are (the
  ratio of medians over the steps both ran), the number a rescaled-rate test starts from.
- `embedding_jacobian_spectrum(prefix)`: singular values of d prefix_p / d embedding_p for each
  position p (at init, or after training): the directions in which the embedding can move the
  prefix, and how strongly.
- `rises_over_minimum(losses)`: instability counted from step 1: a rise of the loss above its
  running minimum by more than `factor` (a spike needs no warm-up window).
- `outcome(final_val_loss, untrained_val_loss)`: "failed" when a run ends no better than the
  untrained model (or not finite), "trained" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from prefixlab._validate import require_int, require_number


class PrefixTrajectory:
    """Keeps the materialized prefix [P, width] after every training step (a `train` callback).

        trajectory = PrefixTrajectory(adapted.adapter)
        train(adapted, data, config, callback=trajectory)
        trajectory.relative_steps()        # [steps]

    Args:
        adapter: a `PrefixTuning` (direct or MLP form); its `flat()` is read after each step.
        every: keep one snapshot every `every` steps (the relative step is then per snapshot).
    """

    def __init__(self, adapter, every: int = 1):
        if not hasattr(adapter, "flat"):
            raise ValueError(
                f"PrefixTrajectory needs a PrefixTuning (something with flat()), got "
                f"{type(adapter).__name__}."
            )
        require_int("every", every, low=1, hint="1 keeps every step.")
        self.adapter, self.every = adapter, every
        self.steps: list[int] = [0]
        self.snapshots: list[torch.Tensor] = [self._flat()]

    @torch.no_grad()
    def _flat(self) -> torch.Tensor:
        return self.adapter.flat().detach().float().cpu().clone()

    def __call__(self, history) -> None:
        step = history.steps_done
        if step % self.every == 0:
            self.steps.append(step)
            self.snapshots.append(self._flat())

    def relative_steps(self) -> np.ndarray:
        """|prefix_t - prefix_(t-1)| / |prefix_(t-1)| (Frobenius norms), one per kept step."""
        out = []
        for before, after in zip(self.snapshots, self.snapshots[1:], strict=False):
            out.append(float((after - before).norm() / before.norm().clamp_min(1e-12)))
        return np.asarray(out)

    def total_movement(self) -> float:
        """|prefix_end - prefix_start| / |prefix_start|: how far training took the prefix."""
        start, end = self.snapshots[0], self.snapshots[-1]
        return float((end - start).norm() / start.norm().clamp_min(1e-12))


def effective_step_ratio(mlp_steps: Sequence[float], direct_steps: Sequence[float]) -> float:
    """Median relative step of the MLP form over that of the direct form, over the steps both
    have (> 1: at the same learning rate the MLP moves the prefix more per step)."""
    a = np.asarray(mlp_steps, dtype=float)
    b = np.asarray(direct_steps, dtype=float)
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("Both step sequences must hold at least one step (train first).")
    a, b = a[:n], b[:n]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(
            "A step sequence holds NaN or inf: the run diverged; compare runs that did not."
        )
    denominator = float(np.median(b))
    if denominator <= 0:
        raise ValueError("The direct form's median step is 0: it did not move.")
    return float(np.median(a)) / denominator


@torch.no_grad()
def embedding_jacobian_spectrum(prefix) -> np.ndarray:
    """Singular values of d flat[p] / d embedding[p] for each position p of an MLP prefix.

    Returns:
        [P, kv_dim] singular values, largest first: the MLP maps a kv_dim-dimensional
        embedding to a width-dimensional prefix row, so through the embedding a row can move
        in at most kv_dim directions; how the values fall off says how many really count.
    """
    if getattr(prefix, "reparam", None) != "mlp":
        raise ValueError(
            "embedding_jacobian_spectrum needs a PrefixTuning with reparam='mlp' (the direct "
            "form has no MLP: each entry moves on its own)."
        )
    mlp = prefix.mlp
    out = []
    for row in prefix.embedding.detach():
        with torch.enable_grad():
            jac = torch.autograd.functional.jacobian(mlp, row.clone())  # [width, kv_dim]
        out.append(torch.linalg.svdvals(jac.float()).cpu().numpy())
    return np.stack(out)


def rises_over_minimum(losses: Sequence[float], *, factor: float = 1.5) -> dict:
    """Instability from step 1: the loss rising above `factor` x its running minimum.

    Returns:
        dict with "rises" (how many times the curve went above factor x the lowest loss seen
        before; consecutive steps above count once), "worst" (the largest loss / running
        minimum, 1.0 when it never rose; inf for a non-finite loss) and "first" (the first
        step of a rise, or None).
    """
    require_number("factor", factor, above=1, hint="Try 1.5.")
    values = [float(v) for v in losses]
    rises, inside, worst, first = 0, False, 1.0, None
    running = math.inf
    for step, value in enumerate(values, start=1):
        if not math.isfinite(value):
            return {"rises": rises + (not inside), "worst": math.inf, "first": first or step}
        if math.isfinite(running) and running > 0:
            worst = max(worst, value / running)
            above = value > factor * running
            if above and not inside:
                rises += 1
                first = first or step
            inside = above
        running = min(running, value)
    return {"rises": rises, "worst": worst, "first": first}


def outcome(final_val_loss: float, untrained_val_loss: float) -> str:
    """ "failed" when the run ends no better than the untrained model's validation loss (or
    with a non-finite loss), else "trained"."""
    require_number("untrained_val_loss", untrained_val_loss, above=0,
                   hint="The validation loss of the model with its untrained adapter.")  # fmt: skip
    if final_val_loss is None or not math.isfinite(float(final_val_loss)):
        return "failed"
    return "failed" if float(final_val_loss) >= float(untrained_val_loss) else "trained"
