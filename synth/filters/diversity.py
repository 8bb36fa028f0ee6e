"""Diverse subsets and diversity measures over normalised sentence vectors.

k-center greedy (Gonzalez 1985; the "core-set" selection of Sener & Savarese 2018) picks, again
and again, the row farthest (in cosine distance) from everything picked so far: a 2-approximation
of the subset whose worst-covered row is covered best. With clusters, k-means (faiss) first
splits the corpus and each cluster gets a share of N proportional to its size.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from synth.extras import require


def k_center_greedy(vectors: np.ndarray, n: int, first: int | None = None, chunk: int = 65536) -> list[int]:
    """Indices of n rows, in the order picked. Starts from `first`, else the row nearest the
    mean (a deterministic, central start); ties go to the lowest index."""
    total = len(vectors)
    n = min(n, total)
    if n <= 0:
        return []
    if first is None:
        centre = vectors.mean(axis=0)
        first = int(np.argmax(vectors @ centre))
    picked = [first]
    nearest = np.empty(total, dtype=np.float32)  # highest cosine to a picked row
    for lo in range(0, total, chunk):
        nearest[lo:lo + chunk] = vectors[lo:lo + chunk] @ vectors[first]
    nearest[first] = np.inf
    while len(picked) < n:
        row = int(np.argmin(nearest))  # the worst-covered row
        picked.append(row)
        for lo in range(0, total, chunk):
            np.maximum(nearest[lo:lo + chunk], vectors[lo:lo + chunk] @ vectors[row], out=nearest[lo:lo + chunk])
        nearest[row] = np.inf
    return picked


def kmeans_labels(vectors: np.ndarray, clusters: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Spherical k-means cluster id of each row (faiss, cosine), deterministic for a seed."""
    faiss = require("dedup", "faiss", what="k-means clustering (select, stats --diversity)")

    clusters = max(1, min(clusters, len(vectors)))
    if clusters == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    kmeans = faiss.Kmeans(vectors.shape[1], clusters, niter=iterations, seed=seed, spherical=True,
                          verbose=False, min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    kmeans.train(vectors)
    _, labels = kmeans.index.search(vectors, 1)
    return labels[:, 0].astype(np.int64)


def shares(sizes: Sequence[int], n: int) -> list[int]:
    """n split across clusters in proportion to their sizes (largest remainder), never more than a
    cluster holds; what a full cluster can't take goes to the others."""
    total = sum(sizes)
    n = min(n, total)
    exact = [n * s / total for s in sizes] if total else [0.0] * len(sizes)
    out = [min(math.floor(e), s) for e, s in zip(exact, sizes)]
    order = sorted(range(len(sizes)), key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    while sum(out) < n:
        for k in order:
            if sum(out) < n and out[k] < sizes[k]:
                out[k] += 1
    return out


def select_diverse(vectors: np.ndarray, n: int, labels: np.ndarray | None = None) -> list[int]:
    """n row indices by k-center greedy, over the whole corpus or within each cluster of `labels`."""
    if labels is None:
        return k_center_greedy(vectors, n)
    clusters = sorted(set(labels.tolist()))
    members = [np.flatnonzero(labels == c) for c in clusters]
    picked: list[int] = []
    for rows, take in zip(members, shares([len(m) for m in members], n)):
        picked += [int(rows[k]) for k in k_center_greedy(vectors[rows], take)]
    return picked


def nearest_neighbour_cosines(vectors: np.ndarray) -> np.ndarray:
    """Each row's highest cosine to another row (exact, faiss inner product)."""
    faiss = require("dedup", "faiss", what="nearest-neighbour search (stats --diversity, report)")

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, ids = index.search(vectors, 2)
    own = ids[:, 0] == np.arange(len(vectors))  # a duplicate vector may come back before the row itself
    return np.where(own, sims[:, 1], sims[:, 0]).astype(np.float32)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all n-grams in the corpus (Li et al. 2016), lower-cased."""
    grams: Counter = Counter()
    for text in texts:
        words = text.lower().split()
        grams.update(tuple(words[k:k + n]) for k in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


COSINE_BINS = [-1.0, 0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001]


def diversity_stats(texts: Sequence[str], vectors: np.ndarray, clusters: int | None = None) -> dict:
    """Nearest-neighbour cosine (mean and histogram), distinct-1/2, and k-means cluster sizes."""
    nn = nearest_neighbour_cosines(vectors)
    clusters = clusters or max(1, round(math.sqrt(len(texts) / 2)))
    labels = kmeans_labels(vectors, clusters) if len(texts) else np.zeros(0, dtype=np.int64)
    counts, _ = np.histogram(nn, bins=COSINE_BINS)
    labels_text = [f"{lo:g}-{min(hi, 1):g}" for lo, hi in zip(COSINE_BINS, COSINE_BINS[1:])]
    return {
        "rows": len(texts),
        "nearest_neighbour_cosine": {"mean": round(float(nn.mean()), 4) if len(nn) else None,
                                     "median": round(float(np.median(nn)), 4) if len(nn) else None,
                                     "histogram": dict(zip(labels_text, counts.tolist()))},
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
        "clusters": {"k": int(len(set(labels.tolist()))),
                     "sizes": sorted(Counter(labels.tolist()).values(), reverse=True)},
    }
