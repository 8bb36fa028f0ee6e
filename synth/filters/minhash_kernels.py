"""The per-shingle loops of MinHash dedup, compiled by numba and run on every core.

Each kernel is the plain loop one would write in C; numba caches the machine code in the user
cache folder (`$SYNTH_CACHE_DIR/numba`), so only the first run on a machine compiles (a few s).
"""

from __future__ import annotations

import os

import numpy as np

from synth.extras import require
from synth.resources import user_cache_dir

os.environ.setdefault("NUMBA_CACHE_DIR", str(user_cache_dir() / "numba"))

numba = require("dedup", "numba", what="MinHash dedup (--method minhash)")

M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@numba.njit(inline="always")
def _finalise(h):  # splitmix64's finaliser: every input bit affects every output bit
    h = (h ^ (h >> np.uint64(30))) * M1
    h = (h ^ (h >> np.uint64(27))) * M2
    return h ^ (h >> np.uint64(31))


@numba.njit(parallel=True, cache=True, nogil=True)
def signatures(values, offsets, a, b, out):
    """out[r, p] = min over row r's shingles x of (a[p] * low32(x) + b[p]) >> 32."""
    for r in numba.prange(offsets.shape[0] - 1):
        for k in range(offsets[r], offsets[r + 1]):
            x = values[k] & np.uint64(0xFFFFFFFF)
            for p in range(a.shape[0]):
                h = np.uint32((a[p] * x + b[p]) >> np.uint64(32))
                if h < out[r, p]:
                    out[r, p] = h


@numba.njit(parallel=True, cache=True, nogil=True)
def sort_rows(values, offsets):
    """Sort each row's shingles in place (sets compare by merging sorted runs)."""
    for r in numba.prange(offsets.shape[0] - 1):
        values[offsets[r]:offsets[r + 1]] = np.sort(values[offsets[r]:offsets[r + 1]])


@numba.njit(inline="always")
def _distinct(values, lo, hi):
    count = 0
    for k in range(lo, hi):
        if k == lo or values[k] != values[k - 1]:
            count += 1
    return count


@numba.njit(cache=True, nogil=True)
def group_pairs(ordered, same):
    """Pairs (earlier, later) of rows inside each run of equal keys. `ordered` is the rows sorted
    by key (stably, so in row order within a run); same[k] says ordered[k+1] has ordered[k]'s key."""
    total = 0
    run = 0
    for k in range(same.shape[0]):  # count first, to allocate once
        run = run + 1 if same[k] else 0
        total += run
    first = np.empty(total, dtype=np.int64)
    second = np.empty(total, dtype=np.int64)
    out, run_start = 0, 0
    for k in range(same.shape[0]):
        if not same[k]:
            run_start = k + 1
            continue
        for j in range(run_start, k + 1):
            first[out] = ordered[j]
            second[out] = ordered[k + 1]
            out += 1
    return first, second


@numba.njit(inline="always")
def _separator(byte):
    # what `normalise` turns into word breaks: ASCII whitespace as str.split() sees it, string.punctuation
    return 9 <= byte <= 13 or 28 <= byte <= 32 or 33 <= byte <= 47 or 58 <= byte <= 64 or 91 <= byte <= 96 or 123 <= byte <= 126


@numba.njit(parallel=True, cache=True, nogil=True)
def count_shingles(data, starts, n, out):
    """out[r] = how many word n-grams row r has (a row of 1..n-1 words has one, padded)."""
    for r in numba.prange(starts.shape[0] - 1):
        words, inside = 0, False
        for k in range(starts[r], starts[r + 1]):
            if _separator(data[k]):
                inside = False
            elif not inside:
                inside = True
                words += 1
        out[r] = words - n + 1 if words >= n else (1 if words > 0 else 0)


@numba.njit(parallel=True, cache=True, nogil=True)
def shingle_hashes(data, starts, n, mix, pad, offsets, out):
    """The word n-gram hashes of each row of `data` (lower-cased UTF-8, rows at `starts`): words are
    runs of non-separator bytes, hashed by FNV-1a and splitmix; windows mix n word hashes in order."""
    for r in numba.prange(starts.shape[0] - 1):
        if offsets[r + 1] == offsets[r]:
            continue
        ring = np.empty(n, dtype=np.uint64)
        words, written, inside = 0, offsets[r], False
        h = np.uint64(0)
        for k in range(starts[r], starts[r + 1] + 1):
            end = k == starts[r + 1] or _separator(data[k])
            if not end:
                if not inside:
                    inside, h = True, np.uint64(0xCBF29CE484222325)
                h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
                continue
            if not inside:
                continue
            inside = False
            ring[words % n] = _finalise(h)
            words += 1
            if words >= n:
                s = np.uint64(0)
                for j in range(n):
                    s = _finalise(s ^ (ring[(words - n + j) % n] * mix[j % mix.shape[0]]))
                out[written] = s
                written += 1
        if 0 < words < n:  # one shingle: the words, then the filler word
            s = np.uint64(0)
            for j in range(n):
                s = _finalise(s ^ ((ring[j] if j < words else pad) * mix[j % mix.shape[0]]))
            out[written] = s


@numba.njit(inline="always")
def _jaccard_sorted(values, offsets, x, y):
    alo, ahi, blo, bhi = offsets[x], offsets[x + 1], offsets[y], offsets[y + 1]
    a, b, common = alo, blo, 0
    while a < ahi and b < bhi:
        if values[a] < values[b]:
            a += 1
        elif values[a] > values[b]:
            b += 1
        else:
            common += 1
            v = values[a]
            while a < ahi and values[a] == v:
                a += 1
            while b < bhi and values[b] == v:
                b += 1
    union = _distinct(values, alo, ahi) + _distinct(values, blo, bhi) - common
    return common / union if union else 1.0


@numba.njit(cache=True, nogil=True)
def greedy_lsh(values, offsets, groups, group_count, threshold, kept_as, similarity):
    """The streaming LSH pass, in row order: each row is compared (exact Jaccard of its sorted
    shingles) with the *kept* rows sharing one of its band groups; if the best is >= threshold the
    row is removed as a copy of it (ties: the earliest row), else it joins its groups. Only kept
    rows are ever linked into a group, so memory stays linear and copies of a kept row cost one
    comparison each. kept_as[r] = the kept row r duplicates, or -1."""
    rows, bands = groups.shape
    head = np.full(group_count, -1, dtype=np.int64)  # the latest kept row of each group
    after = np.full((rows, bands), -1, dtype=np.int64)  # the next kept row in row r's group of band b
    seen = np.full(rows, -1, dtype=np.int64)
    for r in range(rows):
        kept_as[r] = -1
        if offsets[r + 1] == offsets[r]:
            continue  # no shingles: nothing to compare
        best, best_j = -1, -1.0
        for b in range(bands):
            c = head[groups[r, b]]
            while c != -1:
                if seen[c] != r:
                    seen[c] = r
                    j = _jaccard_sorted(values, offsets, r, c)
                    if j >= threshold and (j > best_j or (j == best_j and c < best)):
                        best, best_j = c, j
                c = after[c, b]
        if best >= 0:
            kept_as[r], similarity[r] = best, best_j
        else:
            for b in range(bands):
                g = groups[r, b]
                after[r, b] = head[g]
                head[g] = r


@numba.njit(parallel=True, cache=True, nogil=True)
def pair_jaccard(values, offsets, first, second, out):
    """out[i] = Jaccard of the shingle sets of rows first[i] and second[i] (rows sorted)."""
    for i in numba.prange(first.shape[0]):
        out[i] = _jaccard_sorted(values, offsets, first[i], second[i])
