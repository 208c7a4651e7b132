"""Sentences of a description: the first one, and how many there are.

Used to make a second task from the same data (one-sentence descriptions, notebook 06). A
sentence ends at a full stop, ! or ? followed by a space or the end of the text, so "St."
ends one too: a rule simple enough to predict, not a sentence splitter.
"""

from __future__ import annotations

import re

_SENTENCE_END = r"[.!?](?=\s|$)"  # a full stop, ! or ? followed by a space or the end


def first_sentence(text: str) -> str:
    """The text up to and including its first sentence end (the whole text if it has none).

    >>> first_sentence("Aromi is a pub. It is cheap.")
    'Aromi is a pub.'
    """
    match = re.match(r".*?" + _SENTENCE_END, text)
    return match.group(0) if match else text


def count_sentences(text: str) -> int:
    """Sentence ends in a text (full stops, ! and ? followed by a space or the end)."""
    return len(re.findall(_SENTENCE_END, text))
