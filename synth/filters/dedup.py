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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

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


@dataclass
class DedupOptions:
    """What the passes need besides the texts; an engine's passes read the fields they use."""

    rouge_threshold: float = 0.7
    minhash_threshold: float = 0.8
    ngram: int = 3
    embedding_threshold: float = 0.9
    encoder: Any = None  # a loaded encoder (the local engine)
    encoder_spec: str | None = None  # or its spec, loaded by each Ray worker
    vector_cache: Any = None
    index_kind: str = "auto"
    progress: bool = False
    normalisation: dict = field(default_factory=dict)  # case, whitespace, punctuation for `exact`


# A pass: (texts, the rows still alive in visiting order, options) -> the removals it finds.
Pass = Callable[[Sequence[str], list[int], DedupOptions], list[Removal]]


def run_passes(texts: Sequence[str], methods: Sequence[str], passes: dict[str, Pass],
               order: Sequence[int] | None, options: DedupOptions) -> list[Removal]:
    """The one dispatch: each method's pass over what the earlier ones kept, chains resolved.
    An engine supplies its `passes` (local below; Ray in synth.filters.ray_engine)."""
    order = list(range(len(texts))) if order is None else list(order)
    removals: dict[int, Removal] = {}
    for method in methods:
        if method not in passes:
            raise ValueError(f"unknown dedup method {method!r}; known: {', '.join(METHODS)}")
        alive = [i for i in order if i not in removals]
        removals.update((r.index, r) for r in passes[method](texts, alive, options))
    return resolve_chains(removals)


def _minhash(texts: Sequence[str], alive: list[int], options: DedupOptions) -> list[Removal]:
    from synth.filters.minhash import minhash_pass  # numpy

    return [Removal(i, kept, "minhash", j) for i, kept, j in  # it normalises as `exact` does
            minhash_pass(texts, alive, options.minhash_threshold, options.ngram)]


def _embedding(texts: Sequence[str], alive: list[int], options: DedupOptions) -> list[Removal]:
    from synth.filters.embedding import embedding_pass  # numpy

    if options.encoder is None:
        raise ValueError("the embedding method needs an encoder")
    return embedding_pass(texts, alive, options.embedding_threshold, options.encoder, options.vector_cache,
                          options.index_kind, options.progress)


LOCAL_PASSES: dict[str, Pass] = {
    "exact": lambda texts, alive, o: exact_pass(texts, alive, **o.normalisation),
    "minhash": _minhash,
    "rouge": lambda texts, alive, o: rouge_pass(texts, alive, o.rouge_threshold),
    "embedding": _embedding,
}


def dedup_options(**kwargs: Any) -> DedupOptions:
    """Options from keyword arguments; the normalisation flags (case, ...) go to `normalisation`."""
    known = {f for f in DedupOptions.__dataclass_fields__ if f != "normalisation"}
    return DedupOptions(**{k: v for k, v in kwargs.items() if k in known},
                        normalisation={k: v for k, v in kwargs.items() if k not in known})


def deduplicate(texts: Sequence[str], methods: Sequence[str], order: Sequence[int] | None = None,
                **options: Any) -> list[Removal]:
    """Removals from running `methods` in the order given, each over what the earlier ones kept.
    Options: see DedupOptions (plus case/whitespace/punctuation for `exact`); `embedding` needs
    an `encoder` (synth.filters.embedders.load_encoder)."""
    return run_passes(texts, methods, LOCAL_PASSES, order, dedup_options(**options))


def resolve_chains(removals: dict[int, Removal]) -> list[Removal]:
    """Point every removal at the row that survived every pass (a row removed as a copy of a row
    that a later pass removed names that row's survivor); sorted by row."""
    for removal in removals.values():
        seen = {removal.index}
        while removal.duplicate_of in removals and removal.duplicate_of not in seen:
            seen.add(removal.duplicate_of)
            removal.duplicate_of = removals[removal.duplicate_of].duplicate_of
    return sorted(removals.values(), key=lambda r: r.index)
