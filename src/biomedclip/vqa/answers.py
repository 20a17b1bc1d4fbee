"""Answer normalisation and the answer vocabulary of the VQA classifier.

:func:`normalize_answer` maps the spellings of one answer to one string: lower case, unicode
quotes and dashes folded, punctuation dropped (a decimal point between digits is kept), articles
dropped, number words ("two") written as digits, and the yes/no variants ("Yes.", "yeah", "Y",
"true") reduced to ``yes`` / ``no``. Questions are compared on the normalised form everywhere
(vocabulary, training targets, accuracy, F1).

Scoring uses two forms (:mod:`biomedclip.vqa.metrics`): the headline *exact match* compares
:func:`exact_answer` forms (lower case, punctuation and whitespace only: the part of METER /
M3AE's answer normalisation, ``normalize_word(str(answer).lower())``, that changes spelling but no
word), and the *lenient* score compares :func:`normalize_answer` forms (also number words ->
digits, articles dropped, yes/no variants folded), reported beside it and labelled as such.
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


def exact_answer(answer: object) -> str:
    """The minimal normalisation of exact-match scoring: NFKC, lower case, punctuation dropped (a
    decimal point between digits kept), whitespace collapsed; words are left as they are."""
    text = unicodedata.normalize("NFKC", str(answer)).lower().strip()
    text = text.replace("\u2019", "'").replace("\u2013", "-").replace("\u2014", "-")
    return _SPACES.sub(" ", _PUNCT.sub(" ", text)).strip()


def answer_tokens(answer: str) -> list[str]:
    """Whitespace tokens of a normalised answer (for token-level F1)."""
    return answer.split()


@dataclass
class AnswerVocab:
    """The classifier's answers (normalised), most frequent first; ``source`` says how it was built."""

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
        """From normalised answers: every answer seen ``min_count`` times, most frequent first."""
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
