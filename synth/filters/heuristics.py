"""Self-Instruct's cheap instruction filters, each returning the reason it drops a text.

As in Wang et al. (2023): too short or too long; a keyword for something a text model can't do
(images, files, audio...); "Write a program" (the model over-produces it); starting with
punctuation or a non-ASCII character. Exact duplicates are caught by `InstructionFilter` in the
generator, which also applies the ROUGE-L novelty filter.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

PAPER_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
PAPER_BAD_STARTS = ("Write a program",)


@dataclass(frozen=True)
class InstructionHeuristics:
    min_words: int = 3  # keep when min_words < n <= max_words
    max_words: int = 150
    blacklist: tuple[str, ...] = PAPER_BLACKLIST
    bad_starts: tuple[str, ...] = PAPER_BAD_STARTS
    _patterns: dict = field(default_factory=dict, compare=False, repr=False)

    def reason(self, text: str) -> str | None:
        """Why `text` is dropped (e.g. "too_short", "blacklist:image"), or None to keep it."""
        words = len(text.split())
        if words <= self.min_words:
            return "too_short"
        if words > self.max_words:
            return "too_long"
        for word in self.blacklist:
            pattern = self._patterns.get(word)
            if pattern is None:
                pattern = self._patterns[word] = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
            if pattern.search(text):
                return f"blacklist:{word}"
        for start in self.bad_starts:
            if text.startswith(start):
                return "bad_start:" + start.lower().replace(" ", "_")
        if text[0] in string.punctuation:
            return "starts_with_punctuation"
        if not text[0].isascii():
            return "starts_with_non_ascii"
        return None
