"""Deduplication passes, cheapest first, that always keep one representative of each cluster.

    exact   normalised text (case, whitespace, punctuation) hashed
    minhash word n-gram MinHash + LSH, every candidate verified by exact Jaccard >= threshold
    rouge   ROUGE-L F-measure above a threshold (the exact fast filter of synth.filters.rouge)
    embedding  cosine of sentence embeddings at or above a threshold (synth.filters.embedding)

Rows are visited in a given order (input order, or best first by a score), so the first of a
cluster is the one kept. Every removal names the kept row it duplicates, through any chain
(a row removed as a copy of a row that a later pass removes points at the final survivor).
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Iterable, Sequence

from synth.filters.types import Removal
from synth.parsing import collapse_whitespace

METHODS = ("exact", "minhash", "rouge", "embedding")  # cheapest first
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]+")


def normalise(text: str, case: bool = True, whitespace: bool = True, punctuation: bool = True) -> str:
    """The text `exact` compares: lower-cased, punctuation dropped, whitespace collapsed (each optional)."""
    if case:
        text = text.lower()
    if punctuation:
        text = _PUNCT.sub(" ", text)
    if whitespace:
        text = collapse_whitespace(text)
    return text


def exact_key(text: str, **normalisation: bool) -> bytes:
    """What `exact` compares: a 128-bit hash of the normalised text."""
    return hashlib.blake2b(normalise(text, **normalisation).encode("utf-8"), digest_size=16).digest()


def exact_pass(texts: Sequence[str], order: Iterable[int], **normalisation: bool) -> list[Removal]:
    first: dict[bytes, int] = {}
    removed = []
    for index in order:
        key = exact_key(texts[index], **normalisation)
        if key in first:
            removed.append(Removal(index, first[key], "exact", 1.0))
        else:
            first[key] = index
    return removed


def rouge_pass(texts: Sequence[str], order: Iterable[int], threshold: float) -> list[Removal]:
    from synth.filters.rouge import greedy_filter  # numpy: not on `synth --help`'s path

    order = list(order)
    kept: list[int] = []
    removed = []
    for index, match in zip(order, greedy_filter((texts[i] for i in order), threshold)):
        if match is None:
            kept.append(index)
        else:
            removed.append(Removal(index, kept[match.index], "rouge", match.score))
    return removed


def deduplicate(texts: Sequence[str], methods: Sequence[str], order: Sequence[int] | None = None,
                rouge_threshold: float = 0.7, minhash_threshold: float = 0.8, ngram: int = 3,
                embedding_threshold: float = 0.9, encoder=None, vector_cache=None, index_kind: str = "auto",
                progress: bool = False, **normalisation: bool) -> list[Removal]:
    """Removals from running `methods` in the order given, each over what the earlier ones kept.
    `embedding` needs an `encoder` (synth.filters.embedders.load_encoder)."""
    order = list(range(len(texts))) if order is None else list(order)
    removals: dict[int, Removal] = {}
    for method in methods:
        alive = [i for i in order if i not in removals]
        if method == "exact":
            found = exact_pass(texts, alive, **normalisation)
        elif method == "rouge":
            found = rouge_pass(texts, alive, rouge_threshold)
        elif method == "minhash":
            from synth.filters.minhash import minhash_pass  # numpy

            found = [Removal(i, kept, "minhash", j) for i, kept, j in   # it normalises as `exact` does
                     minhash_pass(texts, alive, minhash_threshold, ngram)]
        elif method == "embedding":
            from synth.filters.embedding import embedding_pass  # numpy

            if encoder is None:
                raise ValueError("the embedding method needs an encoder")
            found = embedding_pass(texts, alive, embedding_threshold, encoder, vector_cache, index_kind, progress)
        else:
            raise ValueError(f"unknown dedup method {method!r}; known: {', '.join(METHODS)}")
        removals.update((r.index, r) for r in found)
    return resolve_chains(removals)


def resolve_chains(removals: dict[int, Removal]) -> list[Removal]:
    """Point every removal at the row that survived every pass (a row removed as a copy of a row
    that a later pass removed names that row's survivor); sorted by row."""
    for removal in removals.values():
        seen = {removal.index}
        while removal.duplicate_of in removals and removal.duplicate_of not in seen:
            seen.add(removal.duplicate_of)
            removal.duplicate_of = removals[removal.duplicate_of].duplicate_of
    return sorted(removals.values(), key=lambda r: r.index)
