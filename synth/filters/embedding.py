"""Semantic dedup: a row is removed when its cosine with an earlier kept row is at least the threshold.

Rows are visited in order, a batch at a time. Each batch is searched against a faiss index of the
rows kept so far (nearest kept row only: k=1 is all the greedy rule needs), then the survivors are
compared with each other inside the batch; rows still standing join the index. The index is exact
inner product (IndexFlatIP) up to `EXACT_MAX_ROWS` rows and HNSW above, the crossover measured by
benchmarks/embedding_index.py. Vectors are cached on disk per (encoder, text), so a second run with another
threshold encodes nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from synth.extras import require
from synth.filters.types import Removal
from synth.filters.embedders import Encoder, load_encoder  # noqa: F401  (re-exported)

# Above this many rows HNSW beats the exact index on time. benchmarks/embedding_index.py, 2 cores,
# static 256-d vectors of real text: HNSW/exact time 2.2 at 10k-20k rows, 1.62 at 80k, 1.35 at 160k,
# 1.15 at 240k (the exact index only holds kept rows, and BLAS is fast), so the crossover is ~300k.
EXACT_MAX_ROWS = 300_000
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128
BATCH = 2048
TOLERANCE = 1e-6  # float32 cosine of identical texts can land a hair under 1.0


class VectorCache:
    """Sentence vectors in sqlite, keyed by (encoder name, blake2b of the text)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.encoded = self.reused = 0  # counts for the run's manifest
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (encoder TEXT, key BLOB, vector BLOB, "
                        "PRIMARY KEY (encoder, key)) WITHOUT ROWID")

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def get(self, encoder: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            query = f"SELECT key, vector FROM vectors WHERE encoder = ? AND key IN ({','.join('?' * len(part))})"
            for key, blob in self.db.execute(query, (encoder, *part)):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == dim:
                    found[key] = vector
        return found

    def put(self, encoder: str, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                                ((encoder, key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in items))

    def close(self) -> None:
        self.db.close()


def open_vector_cache(path: Path | None = None) -> VectorCache:
    """The vector cache at `path`, else the one shared by every run: vectors.sqlite in the user cache folder."""
    from synth.resources import user_cache_dir

    return VectorCache(path or user_cache_dir() / "vectors.sqlite")


def encode_cached(texts: Sequence[str], encoder: Encoder, cache: VectorCache | None = None,
                  progress: bool = False, encode=None) -> tuple[np.ndarray, int]:
    """(vectors, how many were encoded now); identical texts are encoded once. `encode` (texts ->
    vectors) replaces `encoder.encode`, e.g. to spread the encoding over a Ray cluster."""
    keys = [VectorCache.key(t) for t in texts]
    known = cache.get(encoder.name, keys, encoder.dim) if cache else {}
    todo = {}
    for key, text in zip(keys, texts):
        if key not in known and key not in todo:
            todo[key] = text
    if cache:
        cache.encoded += len(todo)
        cache.reused += len(keys) - sum(1 for k in keys if k in todo)
    if todo:
        fresh = encode(list(todo.values())) if encode else encoder.encode(list(todo.values()), progress=progress)
        known.update(zip(todo.keys(), fresh))
        if cache:
            cache.put(encoder.name, zip(todo.keys(), fresh))
    vectors = np.stack([known[k] for k in keys]) if keys else np.zeros((0, encoder.dim), dtype=np.float32)
    return np.ascontiguousarray(vectors, dtype=np.float32), len(todo)


def new_index(dim: int, rows: int, kind: str = "auto"):
    """An empty inner-product index: exact (flat) for small corpora, HNSW above the crossover."""
    faiss = require("dedup", "faiss", what="the embedding index (--method embedding)")

    if kind == "auto":
        kind = "exact" if rows <= EXACT_MAX_ROWS else "approximate"
    if kind == "exact":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def greedy_dedup(vectors: np.ndarray, threshold: float, index_kind: str = "auto", batch: int = BATCH,
                 progress: bool = False) -> list[tuple[int, int, float]]:
    """(removed position, kept position, cosine) over `vectors` in row order: each row is removed
    when its best cosine with an earlier kept row is >= threshold, else kept."""
    from tqdm import tqdm

    n, dim = vectors.shape
    index = new_index(dim, n, index_kind)
    kept_positions = np.zeros(0, dtype=np.int64)  # faiss id -> position
    removed = []
    bar = tqdm(total=n, desc="dedup", unit="row", disable=not progress, leave=False)
    for start in range(0, n, batch):
        block = vectors[start:start + batch]
        best_sim = np.full(len(block), -np.inf, dtype=np.float32)
        best_pos = np.full(len(block), -1, dtype=np.int64)
        if index.ntotal:
            sims, ids = index.search(block, 1)
            best_sim, best_pos = sims[:, 0].copy(), kept_positions[ids[:, 0]]
        within = block @ block.T  # survivors against each other, in order
        kept_here: list[int] = []
        for k in range(len(block)):
            if kept_here:
                sims_k = within[k, kept_here]
                j = int(np.argmax(sims_k))
                if sims_k[j] > best_sim[k]:
                    best_sim[k], best_pos[k] = sims_k[j], start + kept_here[j]
            if best_sim[k] >= threshold - TOLERANCE:
                removed.append((start + k, int(best_pos[k]), float(min(best_sim[k], 1.0))))
            else:
                kept_here.append(k)
        if kept_here:
            index.add(block[kept_here])
            kept_positions = np.concatenate([kept_positions, start + np.asarray(kept_here, dtype=np.int64)])
        bar.update(len(block))
    bar.close()
    return removed


def embedding_pass(texts: Sequence[str], order: Iterable[int], threshold: float, encoder: Encoder,
                   cache: VectorCache | None = None, index_kind: str = "auto",
                   progress: bool = False) -> list[Removal]:
    """Removals for rows (visited in `order`) whose cosine with an earlier kept row is >= threshold."""
    order = list(order)
    vectors, _ = encode_cached([texts[i] for i in order], encoder, cache, progress)
    return [Removal(order[r], order[k], "embedding", sim)
            for r, k, sim in greedy_dedup(vectors, threshold, index_kind, progress=progress)]
