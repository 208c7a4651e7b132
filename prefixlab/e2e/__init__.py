"""The E2E table-to-text format, one module per idea.

- mr.py         the MR syntax: SLOTS, parse_mr, format_mr, canonical_mr
- synthetic.py  this project's generator: realize, synthetic_e2e, the pretraining corpus
- dataset.py    E2EDataset: (mr, ref) pairs grouped by MR, low-data subsets; the split names
- load.py       load_e2e (synthetic data, a release CSV or folder, the hub), load_csv
- slots.py      slot errors: which facts of an MR a text misses or contradicts
- sentences.py  first_sentence, count_sentences (the one-sentence task)
- real.py       the real E2E dev split on this machine: find_devset, split_by_mr, write_release

Token batches for a model are in `prefixlab.batching`.
"""

from prefixlab.e2e.dataset import SPLITS, E2EDataset
from prefixlab.e2e.load import (
    E2E_HUB,
    MR_COLUMNS,
    REF_COLUMNS,
    RELEASE_FILES,
    dataset_from_rows,
    load_csv,
    load_e2e,
)
from prefixlab.e2e.mr import SLOTS, canonical_mr, format_mr, parse_mr
from prefixlab.e2e.real import TRANSFER_SHARES, find_devset, split_by_mr, write_release
from prefixlab.e2e.sentences import count_sentences, first_sentence
from prefixlab.e2e.slots import family_polarity, slot_error_rate, slot_errors
from prefixlab.e2e.synthetic import (
    FACT_KEYS,
    LANDMARKS,
    NAMES,
    SLOT_RATES,
    VALUES,
    fact_sheet,
    realize,
    sample_mr,
    split_of_mr,
    synthetic_e2e,
    synthetic_pretraining_corpus,
    synthetic_pretraining_pairs,
    synthetic_sentences,
)

__all__ = [
    "E2E_HUB",
    "FACT_KEYS",
    "LANDMARKS",
    "MR_COLUMNS",
    "NAMES",
    "REF_COLUMNS",
    "RELEASE_FILES",
    "SLOTS",
    "SLOT_RATES",
    "SPLITS",
    "TRANSFER_SHARES",
    "VALUES",
    "E2EDataset",
    "canonical_mr",
    "count_sentences",
    "dataset_from_rows",
    "fact_sheet",
    "family_polarity",
    "find_devset",
    "first_sentence",
    "format_mr",
    "load_csv",
    "load_e2e",
    "parse_mr",
    "realize",
    "sample_mr",
    "slot_error_rate",
    "slot_errors",
    "split_by_mr",
    "split_of_mr",
    "synthetic_e2e",
    "synthetic_pretraining_corpus",
    "synthetic_pretraining_pairs",
    "synthetic_sentences",
    "write_release",
]
