"""The studies the lab defines, by name: `get_study("prefix_vs_prompt")`, `study_names()`.

A new study is one `register(Study(...))` call below; `python -m prefixlab.studies list`
shows them all.
"""

from __future__ import annotations

from prefixlab._validate import did_you_mean
from prefixlab.studies.definition import Arm, Study

STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
    """Add `study` to the registry (its name must be new) and return it."""
    if not isinstance(study, Study):
        raise ValueError(f"register takes a Study, got {type(study).__name__}.")
    if study.name in STUDIES:
        raise ValueError(f"A study called {study.name!r} is already registered.")
    STUDIES[study.name] = study
    return study


def study_names() -> tuple[str, ...]:
    """The registered studies' names, in registration order."""
    return tuple(STUDIES)


def get_study(name) -> Study:
    """The registered study called `name` (a Study passes through unchanged).

    Raises:
        ValueError: for an unknown name, naming the closest one and the known studies.
    """
    if isinstance(name, Study):
        return name
    if name not in STUDIES:
        raise ValueError(
            f"Unknown study {name!r}.{did_you_mean(name, STUDIES)} Known studies: "
            f"{', '.join(STUDIES)}."
        )
    return STUDIES[name]


register(
    Study(
        name="prefix_vs_prompt",
        description="Prompt tuning, direct prefix tuning and prefix tuning through the MLP on "
        "the embedded tiny model and the synthetic E2E data, each at its own tuned rate, all "
        "started from real-token vectors (init='vocab', Lester et al.'s and Li & Liang's "
        "better initialization).",
        arms=("prompt", "prefix", "prefix+mlp"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab"},  # validation on 200 tables
        tuning_seeds=(100,),  # rates are chosen on a seed that is not among the reported ones
        pairs=(("prefix", "prompt"), ("prefix+mlp", "prompt"), ("prefix+mlp", "prefix")),
    )
)

register(
    Study(
        name="reference_points",
        description="The reference points around prefix_vs_prompt (notebook 02), under the same "
        "protocol and on the same tables: nothing trained, a soft prompt with as many "
        "parameters as the prefix (P=80), LoRA and full fine-tuning, each at its own tuned "
        "rate.",
        arms=(
            "none",
            Arm("prompt P=80", "prompt", {"prefix_length": 80, "init": "vocab"}),
            "lora",
            "full",
        ),
        preset="cpu",
        overrides={"n_val_mrs": 200},
        tuning_seeds=(100,),
        pairs=(("prompt P=80", "none"), ("lora", "none"), ("full", "lora")),
    )
)

register(
    Study(
        name="scale_axis",
        description="Prompt tuning against prefix tuning on the three embedded models (nano, "
        "tiny, mini: one recipe at about 0.2M, 1M and 4M parameters), each tuned at each "
        "size: does the gap between them shrink as the model grows, as Lester et al.'s "
        "Figure 1 has prompt tuning closing on model tuning?",
        arms=("prompt", "prefix"),
        preset="cpu",
        overrides={"init": "vocab"},
        axes={"model": ("nano", "tiny", "mini")},
        n_eval_tables=200,
        tuning_seeds=(100,),  # rates are chosen on a seed that is not among the reported ones
        pairs=(("prefix", "prompt"),),
    )
)

register(
    Study(
        name="prefix_length",
        description="Prompt tuning and prefix tuning at prefix lengths 1, 4, 10 and 40 on the "
        "embedded tiny model (notebook 05), each tuned at each length: where does each method's "
        "validation loss stop improving with P (Li & Liang: about 10 for table-to-text; Lester "
        "et al.: little gain past about 20)?",
        arms=("prompt", "prefix"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab"},
        axes={"prefix_length": (1, 4, 10, 40)},
        n_eval_tables=200,
        tuning_seeds=(100,),
        pairs=(("prefix", "prompt"),),
    )
)

register(
    Study(
        name="mlp_stability",
        description="Direct prefix against prefix through the MLP (notebook 03, issue #18), each "
        "on its own 7-rate grid from 1/30x to 30x its default, from three inits (random, zero, "
        "real-token 'vocab'), 500 steps: does the MLP make training less sensitive to the rate "
        "and the init, as Li & Liang report?",
        arms=("prefix", "prefix+mlp"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "steps": 500},
        axes={"init": ("random", "zero", "vocab")},
        n_rates=7,
        n_eval_tables=200,
        tuning_seeds=(100, 101, 102),  # three seeds at every rate: the spread is the question
        pairs=(("prefix+mlp", "prefix"),),
    )
)
