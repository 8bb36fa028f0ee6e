"""MinHash + LSH near-duplicate detection, followed by exact Jaccard verification.

Everything per token runs in compiled loops (numba, synth.filters.minhash_kernels) over all cores,
a batch of rows at a time: the UTF-8 bytes of the lower-cased texts are split into words where
`normalise` would break them, each word is hashed (FNV-1a + splitmix64, stable across runs) and
word n-gram shingles are mixed from the word hashes.

Signatures are classic MinHash: 128 multiply-add-shift permutations of each shingle hash. Rows are
then visited in order, each compared with the kept rows that share one of its band keys by the
exact Jaccard similarity of the 64-bit shingle sets (sorted runs merged), so a reported duplicate
is always at or above the threshold (precision 1.0); bands are therefore tuned towards recall.
Only kept rows are linked into the band groups: memory stays linear in the corpus.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_PAD_HASH = np.uint64(0x5D0C6A1F3B27E94D)  # the filler word of texts shorter than n words
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
                 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25], dtype=np.uint64)


def _finalise(h: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: every input bit affects every output bit
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_arrays(texts: Sequence[str], n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets): the uint64 hashes of the word n-grams of each text, row r being
    values[offsets[r]:offsets[r + 1]]. Words are what `normalise` leaves (lower case, ASCII
    punctuation and whitespace as breaks); a text of fewer than n words is one shingle padded with
    a filler word, an empty text has none. The scan runs in numba over the UTF-8 bytes."""
    from synth.filters.minhash_kernels import count_shingles, shingle_hashes

    encoded = [(t.lower() if t.isascii() else " ".join(t.lower().split())).encode("utf-8") for t in texts]
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    starts = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=starts[1:])
    counts = np.empty(len(encoded), dtype=np.int64)
    count_shingles(data, starts, n, counts)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.uint64)
    shingle_hashes(data, starts, n, _MIX, _PAD_HASH, offsets, values)
    return values, offsets


def shingles(text: str, n: int = 3) -> set[int]:
    """The shingle set of one (normalised) text, as `minhash_pass` compares it."""
    values, _ = shingle_arrays([text], n)
    return set(values.tolist())


def jaccard(a: set[int], b: set[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def lsh_params(threshold: float, num_perm: int, recall: float = 0.995) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm: the fewest false candidates (area under the
    S-curve below the threshold) among the settings that make a pair exactly at the threshold a
    candidate with probability >= `recall`. Candidates are verified exactly afterwards, so false
    ones cost only a comparison, while a missed pair is a duplicate left in the data."""
    xs = np.linspace(0, threshold, 101)
    best, best_cost = None, float("inf")
    fallback, fallback_p = (1, 1), -1.0
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p_at_threshold = 1 - (1 - threshold ** rows) ** bands
            false_area = np.trapezoid(1 - (1 - xs ** rows) ** bands, xs)
            if p_at_threshold >= recall and false_area < best_cost:
                best, best_cost = (bands, rows), false_area
            if p_at_threshold > fallback_p:
                fallback, fallback_p = (bands, rows), p_at_threshold
    return best or fallback


class MinHasher:
    """`num_perm` hash functions h(x) = (a*x + b) >> 32 over uint64, a odd: the multiply-add-shift
    family, universal on the low 32 bits of each shingle hash."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signatures_of(self, values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(rows, num_perm) uint32 signatures; a row without shingles gets all-max (it matches nothing)."""
        from synth.filters.minhash_kernels import signatures

        out = np.full((len(offsets) - 1, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        signatures(np.ascontiguousarray(values, dtype=np.uint64), np.ascontiguousarray(offsets, dtype=np.int64),
                   self.a, self.b, out)
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


def shingle_band_keys(texts: Sequence[str], ngram: int, bands: int, rows: int,
                      num_perm: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shingle values, offsets, band keys) of a batch of texts: what both engines compute per row."""
    values, offsets = shingle_arrays(texts, ngram)
    return values, offsets, band_keys(MinHasher(num_perm).signatures_of(values, offsets), bands, rows)


def candidate_pairs(keys: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) row pairs that share a band key, each pair once, sorted by later row."""
    from synth.filters.minhash_kernels import group_pairs

    rows = np.flatnonzero(usable)
    found = []
    for band in range(keys.shape[1]):
        column = keys[rows, band]
        by_key = np.argsort(column, kind="stable")  # stable: each run of equal keys stays in row order
        first, second = group_pairs(rows[by_key], column[by_key][1:] == column[by_key][:-1])
        found.append(second * len(keys) + first)
    packed = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return packed % len(keys), packed // len(keys)


def minhash_pass(texts: Sequence[str] | dict[int, str], order: Iterable[int], threshold: float = 0.8, ngram: int = 3,
                 num_perm: int = 128, batch: int = 16384, params: tuple[int, int] | None = None,
                 ) -> list[tuple[int, int, float]]:
    """(removed index, kept index, exact Jaccard) for rows whose shingles have Jaccard >= threshold
    with an earlier kept row (in `order`). `params` = (bands, rows) overrides the LSH tuning."""
    from synth.filters.minhash_kernels import greedy_lsh, sort_rows

    order = list(order)
    if not order:
        return []
    bands, rows = params or lsh_params(threshold, num_perm)
    value_parts, offset_parts, key_parts, base = [], [], [], 0
    for start in range(0, len(order), batch):  # bounded temporaries; keys and shingles are kept
        values, offsets, keys = shingle_band_keys([texts[i] for i in order[start:start + batch]], ngram, bands, rows,
                                                  num_perm)
        key_parts.append(keys)
        value_parts.append(values)
        offset_parts.append(offsets[:-1] + base)
        base += len(values)
    values = np.concatenate(value_parts)
    offsets = np.concatenate(offset_parts + [[base]]).astype(np.int64)
    keys = np.concatenate(key_parts)
    del value_parts, key_parts
    groups = np.empty(keys.shape, dtype=np.int64)  # band key -> group id, distinct across bands
    group_count = 0
    for band in range(bands):
        distinct, groups[:, band] = np.unique(keys[:, band], return_inverse=True)
        groups[:, band] += group_count
        group_count += len(distinct)
    del keys
    sort_rows(values, offsets)
    kept_as = np.empty(len(order), dtype=np.int64)
    similarity = np.zeros(len(order), dtype=np.float64)
    greedy_lsh(values, offsets, groups, group_count, threshold, kept_as, similarity)
    return [(order[row], order[int(kept_as[row])], float(similarity[row])) for row in np.flatnonzero(kept_as >= 0)]


def greedy_from_pairs(earlier: np.ndarray, later: np.ndarray, similarity: np.ndarray,
                      threshold: float) -> list[tuple[int, int, float]]:
    """(removed row, kept row, similarity) by the greedy rule in row order: a row goes when an
    earlier *kept* row is similar enough, naming the most similar (ties: the earliest). Pairs come
    sorted by (later, earlier), so every earlier row's fate is known when it is consulted."""
    gone: set[int] = set()
    best_of: dict[int, tuple[int, float]] = {}
    current = -1
    for k in np.flatnonzero(similarity >= threshold).tolist():
        row, other, j = int(later[k]), int(earlier[k]), float(similarity[k])
        if row != current:
            if current in best_of:
                gone.add(current)
            current = row
        if other not in gone and (row not in best_of or j > best_of[row][1]):
            best_of[row] = (other, j)
    return [(row, other, j) for row, (other, j) in sorted(best_of.items())]
