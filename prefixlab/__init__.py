"""prefixlab: prefix tuning vs prompt tuning on a frozen causal LM, in a lab you can run.

The pieces, one module per idea:

- loading.py    load_model (frozen), model_dims
- prefix.py     PrefixTuning: trainable keys/values in every layer (direct or via an MLP)
- prompt.py     PromptTuning: trainable input embeddings
- adapted.py    AdaptedModel: feeds either to the frozen model (forward, generate), AdapterBank
- artifacts.py  save/load (safetensors + JSON), PEFT export/import
- control.py    ControlPrefix: a task prefix plus one attribute prefix per row (Clive et al.)
- hybrid.py     prefix + LoRA in one AdaptedModel: build, joint or staged training, save, export
- accounting.py parameter counts and context budget
- methods.py    the table of methods: labels, colour, adapter, default learning rate, inits
- hooks.py      record_attention: attention probabilities per layer and head, TransformerLens names
- attention.py  pure analysis: attention mass on the prefix, attention sink, entropy

Training and experiments: config.py (RunConfig, presets), train.py (the loop), runs.py
(whole runs and grids), run_cache.py (the on-disk cache), stability.py (loss measures),
distributed.py (the same training on Hugging Face Accelerate, behind `prefixlab train`),
recipes.py (published settings by name: `prefixlab train --recipe li-liang-e2e`).
"""

from prefixlab._version import __version__
from prefixlab.accounting import context_budget, parameter_counts
from prefixlab.adapted import AdaptedModel, AdapterBank
from prefixlab.artifacts import (
    export_peft,
    import_peft,
    load_adapter,
    load_bank,
    save_adapter,
    save_bank,
)
from prefixlab.control import ControlPrefix
from prefixlab.hooks import attention_report, record_attention
from prefixlab.loading import ModelDims, load_model, model_dims
from prefixlab.prefix import PrefixTuning
from prefixlab.prompt import PromptTuning

__all__ = [
    "AdaptedModel",
    "AdapterBank",
    "ControlPrefix",
    "ModelDims",
    "PrefixTuning",
    "PromptTuning",
    "attention_report",
    "record_attention",
    "__version__",
    "context_budget",
    "export_peft",
    "import_peft",
    "load_adapter",
    "load_bank",
    "load_model",
    "model_dims",
    "parameter_counts",
    "save_adapter",
    "save_bank",
]
