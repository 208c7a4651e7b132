"""The studies the lab defines, by name: `get_study("prefix_vs_prompt")`, `study_names()`.

A new study is one `register(Study(...))` call below; `python -m prefixlab.studies list`
shows them all. `CPU_ESTIMATES` says how long each of notebook 07's studies (with
`prefix_length`, and `hybrid`, issue #22) takes on this lab's 2-core CPU, from runs x seconds
per run measured on one short run; `not_run_line(name)` is the line a notebook prints for a
study that has no results yet.
"""

from __future__ import annotations

from prefixlab._validate import did_you_mean
from prefixlab.methods import PROMPT_INITS
from prefixlab.studies.definition import Arm, Study

STUDIES: dict[str, Study] = {}
# prompt_init's task description for init="text" (the words notebook 01 has always used)
INIT_TEXT = "Describe the restaurant in one sentence:"


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
        name="prompt_init",
        description="Prompt tuning started from random vectors, from the embeddings of random "
        "vocabulary tokens, from the embeddings of a task description and from the mean "
        "embedding (notebook 01), each at its own tuned rate: does starting from real tokens "
        "beat random vectors at this scale, as Lester et al. found for small models?",
        arms=tuple(
            Arm(
                init,
                "prompt",
                {"init": init, "init_text": INIT_TEXT} if init == "text" else {"init": init},
            )
            for init in PROMPT_INITS
        ),
        preset="cpu",
        overrides={"n_val_mrs": 200},
        tuning_seeds=(100,),
        pairs=(("vocab", "random"), ("text", "random"), ("mean", "random"), ("text", "vocab")),
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
        "on its own 7-rate grid from 1/30x to 30x its default, grown until its best rate has "
        "three rates (a factor 30) on each side, from three inits (random, zero, real-token "
        "'vocab'), 500 steps: does the MLP make training less sensitive to the rate and the "
        "init, as Li & Liang report?",
        arms=("prefix", "prefix+mlp"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "steps": 500},
        axes={"init": ("random", "zero", "vocab")},
        n_rates=7,
        # both forms compared over the same span around each one's best (the direct form's
        # best sat two steps below the top of a grid centred on its default)
        edge_margin=3,
        max_extensions=4,
        n_eval_tables=200,
        tuning_seeds=(100, 101, 102),  # three seeds at every rate: the spread is the question
        pairs=(("prefix+mlp", "prefix"),),
    )
)

# -- notebook 07: the paper's claims as studies (issue #20) -----------------------------------

# Training-set sizes of the low-data studies, in training tables (MRs), up to the full synthetic
# training split (1000; n_train_mrs=1000 is all of it, written as a number so the axis reads
# back from the CSV). Each synthetic table has 4 texts: 13 tables are 52 (table, text) pairs,
# about Li & Liang's smallest Fig. 3 size (50 examples), and 50 tables are already 200 pairs.
LOW_DATA_SIZES = (13, 50, 100, 200, 500, 1000)
# The values held out of training by the extrapolation study: one food type, one area, one
# eatType (421 of the 1,000 synthetic training tables, 42%, use none of them).
HELD_OUT_VALUES = ("food=Japanese", "area=riverside", "eatType=pub")

register(
    Study(
        name="low_data",
        description="Prefix tuning, prompt tuning, LoRA and full fine-tuning on 13 (52 table-"
        "text pairs, about the paper's smallest size of 50 examples), 50, 100, 200, 500 and all "
        "1000 training tables of the synthetic data (4 texts each; a fresh subset per seed), "
        "each tuned at each size: does prefix tuning beat fine-tuning when data is scarce, as "
        "Li & Liang's Fig. 3 has it?",
        arms=("prefix", "prompt", "lora", "full"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab", "subsample_per_seed": True},
        axes={"n_train_mrs": LOW_DATA_SIZES},
        tuning_seeds=(100,),
        pairs=(("prefix", "full"), ("prefix", "lora"), ("prefix", "prompt")),
    )
)

register(
    Study(
        name="init_low_data",
        description="Direct prefix tuning started from random vectors, from the activations of "
        "real tokens (vocab) and from zeros, at 50 and 500 training tables (a fresh subset per "
        "seed), each tuned: does real-word initialization matter most with little data, and "
        "does random initialization spread more from seed to seed (Li & Liang, Fig. 5)?",
        arms=(
            Arm("prefix (random)", "prefix", {"init": "random"}),
            Arm("prefix (vocab)", "prefix", {"init": "vocab"}),
            Arm("prefix (zero)", "prefix", {"init": "zero"}),
        ),
        preset="cpu",
        overrides={"n_val_mrs": 200, "subsample_per_seed": True},
        axes={"n_train_mrs": (50, 500)},
        seeds=(0, 1, 2, 3, 4, 5, 6, 7),  # the spread across seeds is the quantity of interest
        tuning_seeds=(100,),
        pairs=(("prefix (vocab)", "prefix (random)"), ("prefix (zero)", "prefix (random)")),
    )
)

register(
    Study(
        name="extrapolation",
        description="Prefix tuning, prompt tuning and full fine-tuning trained on tables that "
        "never use food[Japanese], area[riverside] or eatType[pub] and tested on tables that "
        "use at least one, scored by their slot errors on those values: does prefix tuning "
        "extrapolate better to unseen values (Li & Liang's unseen WebNLG categories)?",
        arms=("prefix", "prompt", "full"),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab", "held_out": HELD_OUT_VALUES},
        tuning_seeds=(100,),
        pairs=(("prefix", "full"), ("prefix", "prompt")),
    )
)

register(
    Study(
        name="table5",
        description="Where the trainable vectors go (Li & Liang's Table 5): input embeddings "
        "only (prompt tuning at P=1, 10 and 20: EMB-1/10/20), key/values between the table "
        "and the text (infix, P=10) and key/values before everything (prefix, P=10), each at "
        "its own tuned rate, all started from real-token vectors.",
        arms=(
            Arm("EMB-1", "prompt", {"prefix_length": 1}),
            Arm("EMB-10", "prompt", {"prefix_length": 10}),
            Arm("EMB-20", "prompt", {"prefix_length": 20}),
            Arm("infix", "infix", {"prefix_length": 10}),
            Arm("prefix", "prefix", {"prefix_length": 10}),
        ),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab"},
        tuning_seeds=(100,),
        pairs=(
            ("prefix", "infix"),
            ("prefix", "EMB-10"),
            ("infix", "EMB-10"),
            ("EMB-10", "EMB-1"),
            ("EMB-20", "EMB-10"),
        ),  # fmt: skip
    )
)

# -- prefix + LoRA (issue #22) -------------------------------------------------------------------

register(
    Study(
        name="hybrid",
        description="A direct prefix and LoRA together (prefixlab.hybrid), trained jointly or "
        "the prefix first then LoRA with the prefix frozen (half the steps each), against "
        "each alone, all at the preset's 300 steps, each at its own tuned rate: does adding "
        "LoRA to a prefix (or a prefix to LoRA) help, and does the order matter? The "
        "hybrid's rate grid moves the prefix's rate, LoRA following at lora_lr_ratio (0.1) "
        "times it; it trains both parts' parameters (prefix + LoRA), so the step budget is "
        "equal, the parameter budget is not.",
        arms=(
            "prefix",
            "lora",
            Arm("prefix+lora: joint", "prefix+lora", {"hybrid_schedule": "joint"}),
            Arm(
                "prefix+lora: prefix then LoRA",
                "prefix+lora",
                {"hybrid_schedule": "prefix-then-lora"},
            ),
        ),
        preset="cpu",
        overrides={"n_val_mrs": 200, "init": "vocab"},
        tuning_seeds=(100,),
        pairs=(
            ("prefix+lora: joint", "prefix"),
            ("prefix+lora: joint", "lora"),
            ("prefix+lora: prefix then LoRA", "prefix+lora: joint"),
        ),
    )
)

# -- encoder-decoder prefixes (issue #21, notebook 08) ---------------------------------------------

# The labels of encdec_parts' arms, by the attentions that get a prefix.
ENCDEC_DUAL = "dual (encoder+decoder+cross)"
ENCDEC_TINY = "tiny decoder-only, P=15"

register(
    Study(
        name="encdec_parts",
        description="Prefix tuning through the MLP on the embedded encoder-decoder (tiny-bart), "
        "its prefix in the encoder self-attention only, the decoder self-attention only, the "
        "decoder self- and cross-attention, or all three (Li & Liang's dual prefix), against "
        "prompt tuning, nothing trained and the decoder-only tiny model's prefix with as many "
        "prefix parameters (P=15 x 4 layers = P=10 x 2 layers x 3 parts: 15,360 stored; "
        "their MLPs, discarded after training, make them train 989,952 and 593,280), each at its "
        "own tuned rate: does the dual prefix beat each part alone, and does the encoder-"
        "decoder beat the decoder-only model at equal prefix size? Init: every prefix starts "
        "from init='random' through the MLP. No start on tiny-bart is neutral: with nothing "
        "trained its validation loss is 1.25; a dual direct prefix from random vectors starts at "
        "1.87, from zeros at 1.69, through the MLP from random embeddings at 1.67 (the first "
        "validation of a run, 200 validation tables, seed 0). Zeros cannot be used for a direct prefix: its P positions get equal "
        "gradients and stay equal (one position repeated P times, measured after 30 steps); "
        "'vocab' and 'text' are decoder-only. Through the MLP the random start is the lowest "
        "and its rows differ, and it is Li & Liang's reparameterization for BART; the tiny "
        "arm starts the same way, so the two models differ in their model only.",
        arms=(
            Arm("encoder", "prefix+mlp", {"parts": "encoder"}),
            Arm("decoder", "prefix+mlp", {"parts": "decoder"}),
            Arm("decoder+cross", "prefix+mlp", {"parts": "decoder+cross"}),
            Arm(ENCDEC_DUAL, "prefix+mlp", {"parts": "encoder+decoder+cross"}),
            Arm("prompt", "prompt", {"init": "vocab"}),
            "none",
            Arm(ENCDEC_TINY, "prefix+mlp", {"model": "tiny", "prefix_length": 15}),
        ),
        preset="cpu",
        overrides={"model": "tiny-bart", "n_val_mrs": 200, "init": "random"},
        tuning_seeds=(100,),
        pairs=(
            (ENCDEC_DUAL, "encoder"),
            (ENCDEC_DUAL, "decoder"),
            (ENCDEC_DUAL, "decoder+cross"),
            (ENCDEC_DUAL, ENCDEC_TINY),
            (ENCDEC_DUAL, "prompt"),
            ("prompt", "none"),
        ),
    )
)

# -- CPU time of notebook 07's studies ------------------------------------------------------------

# Seconds per CPU-preset run on this machine (2 cores, one thread each, while other studies
# ran), first measured from one short run per method (30 and 60 steps, 200 validation
# tables): the cost per step times 300 steps, plus 7 validations and the table gain (9 passes
# over the 200 validation tables). A stage-2 run also generates for 250 tables: 20-table runs took 0 to
# 2.5 s longer than runs without generation, so GENERATION_SECONDS takes the larger, 0.125 s
# a table. Measured on the embedded tiny model; the load of other jobs moves them by tens of %.
# "prefix+lora" (the `hybrid` study): one 30-step run of each schedule next to one of
# "prefix", 200 validation tables, measured later under another load, so scaled to the prefix's
# 81 s: a joint step cost 1.04x a prefix step (0.263 s vs 0.253 s) and a validation pass 5.5 s,
# giving 83 s; "prefix-then-lora" validates once more (its second stage starts with a
# validation of the first stage's final weights), 86 s. One value per method: 85.
SECONDS_PER_RUN = {
    "prefix": 60, "prefix+mlp": 66, "prompt": 80, "infix": 78, "lora": 99, "full": 70,
    "prefix+lora": 85,
}  # fmt: skip
# Since validation runs its batches in length order (2026-12-03), the study journals' uncached
# 300-step tuning runs (whole run, two studies side by side, sometimes a third job) took, as
# medians: prefix 57 s (extrapolation), prompt 66 s at P=10 (extrapolation; 108 s in table5
# under more load), full fine-tuning 68 s, LoRA 97 s (3 runs), and at 500 steps prefix 116 s
# and prefix+mlp 110 s (mlp_stability, 145 runs; 70 and 66 s scaled to 300 steps). The values
# above round those; "infix" and "prefix+lora" are still the older one-run measurements.
# Time per run of the other embedded models relative to tiny (training, validation and
# generation together): the median uncached run of scale_axis on this machine, nano 35 s and
# tiny 88 s (run side by side), mini 313 s against tiny's 114 s in prefix_length next to it.
# tiny-bart: 31 s against tiny's 70 s, the mean run of each in encdec_parts (committed, same
# machine, same session).
MODEL_TIME_SCALE = {"nano": 0.4, "tiny": 1.0, "mini": 2.7, "tiny-bart": 0.45}
GENERATION_SECONDS = 31
MEASURED_STEPS = 300  # SECONDS_PER_RUN are runs of this many steps (the CPU preset's)
VALIDATION_SECONDS = 6  # one pass over 200 validation tables (measured 5.5 s, see above)


def cpu_estimate(study) -> dict:
    """How long a study takes on this machine: {"runs", "seconds_per_run", "hours"}.

    Runs: per axis point and arm, the rate grid on the tuning seeds plus the seeds at the
    best rate (grids that grow at an edge add up to `max_extensions` rates more, not counted
    here). The seconds are the embedded tiny model's, scaled by `MODEL_TIME_SCALE` for the
    other embedded models (scale_axis's "nano" and "mini", encdec_parts's "tiny-bart").
    """
    study = get_study(study)
    runs = seconds = 0
    base = study.base_config("cpu")
    step_scale = base.train.steps / MEASURED_STEPS  # training time ~ steps
    for point in study.points():
        for arm in study.arms:
            model = point.get("model") or arm.config.get("model") or base.model
            model_scale = MODEL_TIME_SCALE.get(model, 1.0)
            if not arm.tuned:  # nothing trains: one run that validates and generates
                runs += 1
                seconds += (VALIDATION_SECONDS + GENERATION_SECONDS) * model_scale
                continue
            tune = study.n_rates * len(study.tuning_seeds)
            per_run = SECONDS_PER_RUN.get(arm.method, max(SECONDS_PER_RUN.values())) * step_scale
            runs += tune + len(study.seeds)
            seconds += ((tune + len(study.seeds)) * per_run
                        + len(study.seeds) * GENERATION_SECONDS) * model_scale  # fmt: skip
    return {
        "runs": runs,
        "seconds_per_run": round(seconds / runs),
        "hours": round(seconds / 3600, 1),
    }


NOTEBOOK_07 = ("low_data", "init_low_data", "extrapolation", "table5")
CPU_ESTIMATES = {name: cpu_estimate(name) for name in STUDIES}


def not_run_line(name) -> str:
    """What a notebook prints for a study without committed results: the command that makes
    them and how long it takes here, e.g. "not run yet: `python -m prefixlab.studies run
    low_data` (about 6.7 CPU-hours on this lab's 2-core CPU, registry.CPU_ESTIMATES)"."""
    study = get_study(name)
    hours = (CPU_ESTIMATES.get(study.name) or cpu_estimate(study))["hours"]
    return (
        f"not run yet: `python -m prefixlab.studies run {study.name}` (about {hours:g} "
        f"CPU-hour{'' if hours == 1 else 's'} on this lab's 2-core CPU, registry.CPU_ESTIMATES)"
    )
