"""Cheap quality filters for any corpus, each returning the reason it drops a row (or None).

    too_short / too_long    word and character bounds on the text
    repetition              share of word n-grams that repeat an earlier one (Gopher-style)
    non_text                share of characters that are symbols or control characters
    output_repetition, output_non_text    the same two checks on the response, if the row has one
    blacklist:WORD          the text contains a listed word or phrase (whole words, any case)
    not_allowlisted         an allowlist is given and the text contains none of its words
    empty_output            the response field is empty or whitespace
    refusal_only            the response is a refusal and little else ("I'm sorry, but I can't ...")

The checks run in that order and the first that fires is the reason, so every removal has one.
`row_response` finds a row's response, `read_word_list` reads a black- or allowlist ('a,b' or @FILE).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from synth.errors import SynthError
from synth.parsing import collapse_whitespace

REFUSAL_OPENINGS = (
    "i'm sorry", "i am sorry", "sorry, but", "i apologize", "i apologise", "as an ai", "as a language model",
    "i can't", "i cannot", "i can not", "i won't", "i will not", "i'm not able to", "i am not able to",
    "i'm unable to", "i am unable to", "unfortunately, i can", "i must decline", "i'm afraid i can",
)
REFUSAL_MAX_WORDS = 40  # a longer answer that opens with an apology usually goes on to help
RESPONSE_FIELDS = ("output", "completion", "response", "answer", "chosen")


def repeated_ngram_ratio(text: str, n: int = 3) -> float:
    """Share of the word n-grams (lower-cased) that repeat one seen earlier in the text; 0 for
    texts of fewer than n + 1 words."""
    words = text.lower().split()
    grams = [tuple(words[k:k + n]) for k in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def non_text_ratio(text: str) -> float:
    """Share of the non-space characters that are symbols (Unicode S*) or control/format/private
    characters (C*): letters, marks, digits and punctuation count as text."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(unicodedata.category(c)[0] in "SC" for c in chars) / len(chars)


def is_refusal_only(text: str, max_words: int = REFUSAL_MAX_WORDS) -> bool:
    opening = collapse_whitespace(text.lower().replace("\u2019", "'"))
    return len(opening.split()) <= max_words and opening.startswith(REFUSAL_OPENINGS)


@dataclass(frozen=True)
class QualityFilter:
    min_words: int = 1
    max_words: int | None = None
    min_chars: int = 1
    max_chars: int | None = None
    ngram: int = 3
    max_repetition: float = 0.3
    max_non_text: float = 0.2
    blacklist: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()
    check_output: bool = True  # empty_output / refusal_only apply to the response, when there is one
    _patterns: dict = field(default_factory=dict, compare=False, repr=False)

    def _pattern(self, words: tuple[str, ...]) -> re.Pattern | None:
        if not words:
            return None
        if words not in self._patterns:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            self._patterns[words] = re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)
        return self._patterns[words]

    def reason(self, text: str, output: str | None = None) -> str | None:
        """Why the row is dropped, or None to keep it. `output` is the response, if the row has one."""
        words = len(text.split())
        if words < self.min_words or len(text) < self.min_chars:
            return "too_short"
        if (self.max_words is not None and words > self.max_words) or \
                (self.max_chars is not None and len(text) > self.max_chars):
            return "too_long"
        for prefix, value in (("", text), ("output_", output)):  # a looping or garbled response too
            if value is None:
                continue
            if repeated_ngram_ratio(value, self.ngram) > self.max_repetition:
                return prefix + "repetition"
            if non_text_ratio(value) > self.max_non_text:
                return prefix + "non_text"
        blacklist = self._pattern(self.blacklist)
        hit = blacklist.search(text) if blacklist else None
        if hit:
            return f"blacklist:{hit.group(1).lower()}"
        allowlist = self._pattern(self.allowlist)
        if allowlist and not allowlist.search(text):
            return "not_allowlisted"
        if self.check_output and output is not None:
            if not output.strip():
                return "empty_output"
            if is_refusal_only(output):
                return "refusal_only"
        return None


def row_response(row: dict, field: str | None) -> str | None:
    """The row's response: the named field, else the first of RESPONSE_FIELDS that is a string,
    else the last assistant turn of `messages`; None when the row has none."""
    if field:
        value = row.get(field)
        return value if isinstance(value, str) else None
    for name in RESPONSE_FIELDS:
        if isinstance(row.get(name), str):
            return row[name]
    messages = row.get("messages")
    if isinstance(messages, list):
        turns = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if turns and isinstance(turns[-1], str):
            return turns[-1]
    return None


def read_word_list(value: str | None) -> tuple[str, ...]:
    """Comma-separated words, or @FILE with one word or phrase per line (# comments)."""
    if not value:
        return ()
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise SynthError(f"{path}: no such word list file (give @FILE with one word or phrase per line)")
        lines = path.read_text(encoding="utf-8").splitlines()
        return tuple(w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#"))
    return tuple(w.strip() for w in value.split(",") if w.strip())
