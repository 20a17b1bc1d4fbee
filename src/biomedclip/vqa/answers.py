"""Answer normalisation and the answer vocabulary of the VQA classifier.

Two forms of an answer:

* :func:`published_answer` is the published Med-VQA normalisation: METER / ViLT's
  ``normalize_word`` applied to ``str(answer).lower()``, as M3AE builds its VQA-RAD and SLAKE
  answer vocabularies. Punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted where
  it touches a space (or anywhere when the answer holds a digit-comma-digit number) and becomes a
  space elsewhere; a period not followed by a digit is deleted; number words ``none``, ``zero`` ..
  ``ten`` become digits; the articles ``a``, ``an``, ``the`` are dropped; remaining commas are
  deleted. Apostrophes, ``%``, ``~``, ``:`` are kept. Not applied: the VQA v2 contraction table
  (``dont`` -> ``don't``): no answer of VQA-RAD or SLAKE holds such a word, and both sides of a
  comparison are normalised alike. This is the form the vocabulary stores (the classifier's
  classes, the training targets) and the form of *exact match*, the headline score: prediction
  and gold answer are both normalised and compared, so a model that always answers the gold
  answer's vocabulary entry scores 100 %.
* :func:`lenient_answer` (:func:`normalize_answer` of the published form) is lenient: also
  NFKC / unicode quotes and dashes folded, ``'s`` joined, number words up to twelve, and the
  yes/no variants ("yeah", "Y", "true") reduced to ``yes`` / ``no``. The *lenient* score
  (:mod:`biomedclip.vqa.metrics`) compares these forms, reported beside exact match and labelled
  as such; answers equal in the published form are equal here too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_write_json

NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}
YES = {"yes", "y", "yeah", "yep", "true"}
NO = {"no", "n", "nope", "false"}
ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"(?<!\d)\.|\.(?!\d)|[^\w\s.]")
_SPACES = re.compile(r"\s+")

# METER / ViLT normalize_word (vilt/utils/glossary.py, meter/utils/glossary.py): the facts
PUBLISHED_NUMBERS = {"none": "0", **{w: d for w, d in NUMBER_WORDS.items() if int(d) <= 10}}
PUBLISHED_PUNCT = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD = re.compile(r"\.(?!\d)")  # a period not followed by a digit


def normalize_answer(answer: object) -> str:
    """The canonical form of an answer (also of numbers stored as ints in VQA-RAD)."""
    text = unicodedata.normalize("NFKC", str(answer)).lower().strip()
    text = text.replace("\u2019", "'").replace("\u2013", "-").replace("\u2014", "-")
    text = text.replace("'s", "s").replace("_", " ")
    text = _PUNCT.sub(" ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    out = _SPACES.sub(" ", " ".join(words)).strip()
    if out in YES:
        return "yes"
    if out in NO:
        return "no"
    return out


def published_answer(answer: object) -> str:
    """The published normalisation (METER / ViLT ``normalize_word`` of ``str(answer).lower()``):
    the vocabulary's form and the form exact match compares (see the module doc)."""
    original = str(answer).lower()
    glue = _DIGIT_COMMA_DIGIT.search(original) is not None
    text = original
    for ch in PUBLISHED_PUNCT:
        if ch in text:
            touches = glue or f"{ch} " in original or f" {ch}" in original
            text = text.replace(ch, "" if touches else " ")
    text = _PERIOD.sub("", text)
    words = [PUBLISHED_NUMBERS.get(w, w) for w in text.split()]
    return " ".join(w for w in words if w not in ARTICLES).replace(",", "")


def lenient_answer(answer: object) -> str:
    """The lenient score's form: :func:`normalize_answer` of the :func:`published_answer` form,
    so answers equal in the published form are equal here too (lenient >= exact)."""
    return normalize_answer(published_answer(answer))


def answer_tokens(answer: str) -> list[str]:
    """Whitespace tokens of a normalised answer (for token-level F1)."""
    return answer.split()


@dataclass
class AnswerVocab:
    """The classifier's answers (:func:`published_answer` forms), most frequent first;
    ``source`` says how it was built."""

    answers: list[str]
    source: str = "train"  # "train" (training answers only) or "closed-world" (train+val+test)

    def __post_init__(self) -> None:
        if not self.answers:
            raise ConfigError("the answer vocabulary is empty (no training answers?)")
        self._index = {a: i for i, a in enumerate(self.answers)}
        if len(self._index) != len(self.answers):
            raise ConfigError("the answer vocabulary has duplicates")

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer: str) -> bool:
        return answer in self._index

    def index(self, answer: str) -> int:
        """The class of a normalised answer, or -1 when it is out of the vocabulary."""
        return self._index.get(answer, -1)

    @classmethod
    def build(
        cls, answers: Iterable[str], source: str = "train", min_count: int = 1
    ) -> AnswerVocab:
        """From :func:`published_answer` forms: every answer seen ``min_count`` times, most
        frequent first."""
        counts = Counter(a for a in answers if a)
        kept = sorted(
            (a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a)
        )
        return cls(kept, source)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"source": self.source, "answers": self.answers})

    @classmethod
    def load(cls, path: str | Path) -> AnswerVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(list(data["answers"]), data.get("source", "train"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not an answer vocabulary ({e})") from e
