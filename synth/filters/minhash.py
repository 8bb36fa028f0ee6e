"""MinHash + LSH near-duplicate detection, followed by exact Jaccard verification.

Everything per token runs in C, a batch of rows at a time: pyarrow splits the (normalised) texts
into words and dictionary-encodes them, each distinct word is hashed once (xxh64, stable across
runs), word n-gram shingles are mixed from the word hashes with numpy, and the 128 permutations
are multiply-add-shift hashes over the whole batch, reduced per row with one `minimum.reduceat`.
LSH bands are tuned towards recall because every candidate pair is then verified by the exact
Jaccard similarity of the 64-bit shingle sets: a reported duplicate is always at or above the
threshold (precision 1.0).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_PAD = "\x00pad"  # fills texts shorter than n words up to one shingle
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
                 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25], dtype=np.uint64)


def _finalise(h: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: every input bit affects every output bit
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_arrays(texts: Sequence[str], n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets): the uint64 hashes of the word n-grams of each (normalised) text, row r
    being values[offsets[r]:offsets[r + 1]]; a text of fewer than n words is one padded shingle,
    an empty text has none."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import xxhash

    padded = [t if len(words) >= n or not words else " ".join(words + [_PAD] * (n - len(words)))
              for t, words in ((t, t.split()) for t in texts)] if n > 1 else list(texts)
    split = pc.utf8_split_whitespace(pa.array(padded, type=pa.large_string()))
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(pc.list_flatten(split))
    hashed = np.fromiter((xxhash.xxh64_intdigest(w.encode("utf-8")) for w in encoded.dictionary.to_pylist()), dtype=np.uint64,
                         count=len(encoded.dictionary))
    words = hashed[encoded.indices.to_numpy(zero_copy_only=False)] if len(hashed) else np.zeros(0, np.uint64)
    counts = np.maximum(lengths - n + 1, 0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not len(words) or not counts.sum():
        return np.zeros(0, dtype=np.uint64), offsets
    windows = len(words) - n + 1
    h = np.zeros(windows, dtype=np.uint64)
    for k in range(n):  # order-sensitive mix of the n word hashes of each window
        h = _finalise(h ^ (words[k:k + windows] * _MIX[k % len(_MIX)]))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = np.ones(windows, dtype=bool)  # drop windows that run across two rows
    position = np.arange(windows) - np.repeat(starts, lengths)[:windows]
    keep &= position <= np.repeat(lengths - n, lengths)[:windows]
    return h[keep], offsets


def shingles(text: str, n: int = 3) -> set[int]:
    """The shingle set of one (normalised) text, as `minhash_pass` compares it."""
    values, _ = shingle_arrays([text], n)
    return set(values.tolist())


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
    """128 (num_perm) hash functions h(x) = (a*x + b) >> 32 over uint64, a odd: the
    multiply-add-shift family, universal on the low 32 bits of each shingle hash."""

    def __init__(self, num_perm: int = 128, seed: int = 1, chunk: int = 1 << 15):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self.chunk = chunk  # shingles per numpy step: keeps the (chunk, num_perm) block in cache

    def signatures_of(self, values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(rows, num_perm) uint32 signatures; a row without shingles gets all-max (it matches nothing).
        Blocks of whole rows run on every core: numpy releases the GIL inside each ufunc."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        rows = len(offsets) - 1
        out = np.full((rows, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        low = values & np.uint64(0xFFFFFFFF)
        blocks, first = [], 0
        while first < rows:  # whole rows per block, so each reduceat segment lies inside one block
            last = int(np.searchsorted(offsets, offsets[first] + self.chunk, side="right")) - 1
            last = min(max(last, first + 1), rows)
            blocks.append((first, last))
            first = last

        def fill(block: tuple[int, int]) -> None:
            first, last = block
            lo, hi = offsets[first], offsets[last]
            if hi > lo:
                mins = ((low[lo:hi, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)).astype(np.uint32)
                nonempty = np.flatnonzero(offsets[first + 1:last + 1] > offsets[first:last])
                out[first + nonempty] = np.minimum.reduceat(mins, offsets[first:last][nonempty] - lo, axis=0)

        if len(blocks) > 1 and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(os.cpu_count()) as pool:
                list(pool.map(fill, blocks))
        else:
            for block in blocks:
                fill(block)
        return out

    def signatures(self, shingle_sets: Sequence[set[int]]) -> np.ndarray:
        sizes = [len(s) for s in shingle_sets]
        values = np.fromiter((h for s in shingle_sets for h in s), dtype=np.uint64, count=sum(sizes))
        return self.signatures_of(values, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: each band's `rows` minima folded into one hash (a dict key per band)."""
    keys = np.zeros((len(signatures), bands), dtype=np.uint64)
    for r in range(rows):
        keys = _finalise(keys ^ signatures[:, r::rows][:, :bands].astype(np.uint64) * _MIX[r % len(_MIX)])
    return keys


def minhash_pass(texts: Sequence[str] | dict[int, str], order: Iterable[int], threshold: float = 0.8, ngram: int = 3,
                 num_perm: int = 128, batch: int = 8192, params: tuple[int, int] | None = None,
                 ) -> list[tuple[int, int, float]]:
    """(removed index, kept index, exact Jaccard) for rows whose shingles have Jaccard >= threshold
    with an earlier kept row (in `order`). `params` = (bands, rows) overrides the LSH tuning."""
    order = list(order)
    bands, rows = params or lsh_params(threshold, num_perm)
    hasher = MinHasher(num_perm)
    tables: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    kept_shingles: dict[int, np.ndarray | set[int]] = {}  # made a set on first comparison
    removed = []

    def kept_set(index: int) -> set[int]:
        found = kept_shingles[index]
        if not isinstance(found, set):
            found = kept_shingles[index] = set(found.tolist())
        return found

    for start in range(0, len(order), batch):
        part = order[start:start + batch]
        values, offsets = shingle_arrays([texts[i] for i in part], ngram)
        keys = band_keys(hasher.signatures_of(values, offsets), bands, rows).tolist()
        for k, index in enumerate(part):
            lo, hi = offsets[k], offsets[k + 1]
            if lo == hi:  # no shingles: nothing to compare (exact dedup handles empty texts)
                continue
            own, best, best_j, seen = None, None, -1.0, set()
            for band, key in enumerate(keys[k]):
                for other in tables[band].get(key, ()):
                    if other in seen:
                        continue
                    seen.add(other)
                    own = own if own is not None else set(values[lo:hi].tolist())
                    j = jaccard(own, kept_set(other))
                    if j >= threshold and (j > best_j or (j == best_j and other < best)):
                        best, best_j = other, j
            if best is not None:
                removed.append((index, best, best_j))
                continue
            kept_shingles[index] = own if own is not None else values[lo:hi]
            for band, key in enumerate(keys[k]):
                tables[band].setdefault(key, []).append(index)
    return removed
