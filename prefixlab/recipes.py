"""Recipes: published training settings by name, for `prefixlab train --recipe NAME`.

A recipe is a set of RunConfig / TrainConfig fields plus a number of epochs; every option the
caller gives overrides the recipe's value. The numbers and their sources are written out in
docs/recipes.md. No recipe claims a result: they say how the paper trained, and the metrics a
run writes are what was measured here.

This module imports nothing heavy, so the command line can list recipes quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefixlab._validate import did_you_mean


@dataclass(frozen=True)
class Recipe:
    """A named set of settings; options given by the caller override each of them."""

    name: str
    source: str  # where the numbers come from (docs/recipes.md has the details)
    run: dict = field(default_factory=dict)  # RunConfig / TrainConfig fields
    epochs: float | None = None  # passes over the training rows (steps follow from the data)
    eval_mrs: int | str = 0  # MRs to generate for after training; "all" = the whole split


RECIPES: dict[str, Recipe] = {
    # Li & Liang (2021), "Prefix-Tuning: Optimizing Continuous Prompts for Generation" (ACL):
    # table-to-text on E2E with GPT-2 Medium, prefix tuning through the MLP (hidden 512), the
    # tuned E2E row of their hyperparameter table (5 epochs, batch 10, rate 8e-5, prefix
    # length 5), AdamW with a linear schedule, beam search of width 5 on the test set.
    "li-liang-e2e": Recipe(
        name="li-liang-e2e",
        source="Li & Liang 2021, ACL, Section 5 and Appendix A (docs/recipes.md)",
        run={
            "model": "gpt2-medium",
            "data": "e2e",
            "method": "prefix+mlp",
            "prefix_length": 5,
            "mlp_hidden": 512,
            "lr": 8e-5,
            "batch_size": 10,
            "schedule": "linear",
            "warmup_steps": 0,  # the Hugging Face default the paper says it follows
            "weight_decay": 0.0,
            "num_beams": 5,
            "eval_split": "test",
            # Not settings of the paper: room for the longest E2E rows and texts with
            # GPT-2's tokenizer (nothing is skipped or cut), and validation on the whole
            # devset at the end only.
            "max_length": 256,
            "max_new_tokens": 100,
            "n_val_mrs": None,
            "eval_every": None,
        },
        epochs=5,
        eval_mrs="all",
    ),
}


def recipe(name: str) -> Recipe:
    """The recipe called `name` (one of RECIPES)."""
    if name not in RECIPES:
        raise ValueError(
            f"Unknown recipe {name!r}.{did_you_mean(name, RECIPES)} Choose one of {tuple(RECIPES)}."
        )
    return RECIPES[name]


__all__ = ["RECIPES", "Recipe", "recipe"]
