"""MinHash + LSH near-duplicate detection, followed by exact Jaccard verification.

Word n-gram shingles of the normalised text are hashed once (xxh64, stable across runs);
signatures are computed for a whole batch at a time with numpy (one reduceat per batch, not a
Python loop per row); LSH bands propose candidates, tuned towards recall because every candidate
is then verified by the exact Jaccard similarity of the shingle sets: a reported duplicate is
always at or above the threshold (precision 1.0).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_PRIME = np.uint64(4294967311)  # the smallest prime above 2**32
_MASK32 = np.uint64(0xFFFFFFFF)


def shingles(text: str, n: int = 3) -> set[int]:
    """Hashes of the word n-grams of `text` (already normalised); short texts are one shingle."""
    import xxhash

    words = text.split()
    if len(words) < n:
        return {xxhash.xxh64_intdigest(" ".join(words).encode("utf-8"))} if words else set()
    return {xxhash.xxh64_intdigest(" ".join(words[k:k + n]).encode("utf-8")) for k in range(len(words) - n + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.3, fn_weight: float = 0.7) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising weighted false positive and false
    negative probability mass (as datasketch does); weighted towards recall, since verification
    removes false positives afterwards."""
    xs = np.linspace(0, 1, 201)

    def area(fn, lo, hi):
        mask = (xs >= lo) & (xs <= hi)
        return np.trapezoid(fn(xs[mask]), xs[mask]) if mask.sum() > 1 else 0.0

    best, best_cost = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = area(lambda s: 1 - (1 - s ** rows) ** bands, 0, threshold)
            fn = area(lambda s: (1 - s ** rows) ** bands, threshold, 1)
            cost = fp_weight * fp + fn_weight * fn
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


class MinHasher:
    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, 2**32 - 1, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 2**32 - 1, size=num_perm, dtype=np.uint64)

    def signatures(self, shingle_sets: Sequence[set[int]]) -> np.ndarray:
        """(rows, num_perm) uint64 signatures; an empty set gets all-max (it matches nothing)."""
        sizes = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
        out = np.full((len(shingle_sets), self.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
        if sizes.sum() == 0:
            return out
        values = np.fromiter((h for s in shingle_sets for h in s), dtype=np.uint64, count=int(sizes.sum())) & _MASK32
        # (a*h mod p + b) mod p, in uint64 without overflow: a, h < 2**32, so a*h < 2**64.
        permuted = ((values[:, None] * self.a[None, :]) % _PRIME + self.b[None, :]) % _PRIME
        nonempty = np.flatnonzero(sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[nonempty]
        out[nonempty] = np.minimum.reduceat(permuted, starts, axis=0)
        return out


def minhash_pass(texts: Sequence[str] | dict[int, str], order: Iterable[int], threshold: float = 0.8, ngram: int = 3,
                 num_perm: int = 128, batch: int = 4096, params: tuple[int, int] | None = None,
                 ) -> list[tuple[int, int, float]]:
    """(removed index, kept index, exact Jaccard) for rows whose shingles have Jaccard >= threshold
    with an earlier kept row (in `order`). `params` = (bands, rows) overrides the LSH tuning."""
    order = list(order)
    bands, rows = params or lsh_params(threshold, num_perm)
    hasher = MinHasher(num_perm)
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    kept_sets: dict[int, set[int]] = {}
    removed = []
    for start in range(0, len(order), batch):
        part = order[start:start + batch]
        sets = [shingles(texts[i], ngram) for i in part]
        sigs = hasher.signatures(sets)
        for k, index in enumerate(part):
            keys = [sigs[k, band * rows:(band + 1) * rows].tobytes() for band in range(bands)]
            best, best_j = None, -1.0
            if sets[k]:
                seen = set()
                for band, key in enumerate(keys):
                    for other in tables[band].get(key, ()):
                        if other in seen:
                            continue
                        seen.add(other)
                        j = jaccard(sets[k], kept_sets[other])
                        if j >= threshold and (j > best_j or (j == best_j and other < best)):
                            best, best_j = other, j
            if best is not None:
                removed.append((index, best, best_j))
                continue
            kept_sets[index] = sets[k]
            if sets[k]:
                for band, key in enumerate(keys):
                    tables[band].setdefault(key, []).append(index)
    return removed
