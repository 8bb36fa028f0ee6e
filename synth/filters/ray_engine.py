"""`--engine ray`: the per-row work of `synth filter` and `synth dedup` on Ray Data, same results.

The driver reads the corpus (with the usual line-numbered errors) and keeps the decisions that
depend on order; Ray Data does the work that grows with the corpus, a block of rows per task:

    filter     each row's reason, computed in parallel
    exact      normalised-text hashes in parallel; the first row of each hash is kept
    minhash    shingles, signatures and LSH band keys in parallel; candidate pairs from equal band
               keys on the driver; every pair's exact Jaccard in parallel; then the greedy rule in
               order on the driver, as the local pass applies it
    embedding  encoding in parallel (one encoder per worker), then the kept-row index on the driver
    rouge      on the driver: its greedy order is inherently sequential

`ray.init()` connects to the cluster named by RAY_ADDRESS, or starts a local one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from synth.extras import require
from synth.filters.dedup import LOCAL_PASSES, DedupOptions, dedup_options, exact_key, run_passes
from synth.filters.types import Removal

BLOCK_ROWS = 4096


def start_ray(num_cpus: int | None = None):
    ray, _ = require("ray", "ray", "ray.data", what="`--engine ray`")
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _dataset(columns: dict[str, Sequence]):
    import pyarrow as pa

    ray = start_ray()
    table = pa.table({k: pa.array(list(v)) for k, v in columns.items()})
    blocks = max(1, -(-table.num_rows // BLOCK_ROWS))
    return ray.data.from_arrow(table).repartition(blocks)


_ENCODERS: dict[str, object] = {}  # per worker process: loaded once, reused by later batches
_FETCHED: dict[str, object] = {}  # per worker process: a broadcast object is fetched once


def _fetch(ref):
    import ray

    key = ref.hex()
    if key not in _FETCHED:
        _FETCHED.clear()
        _FETCHED[key] = ray.get(ref)
    return _FETCHED[key]


def _collect(dataset, columns: Sequence[str]) -> dict[str, np.ndarray]:
    parts = {c: [] for c in columns}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for c in columns:
            parts[c].append(batch[c])
    return {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}


def ray_filter_reasons(texts: Sequence[str], outputs: Sequence[str | None], quality) -> list[str | None]:
    def reasons(batch):
        found = [quality.reason(t, o if has else None)
                 for t, o, has in zip(batch["text"], batch["output"], batch["has_output"])]
        return {"pos": batch["pos"], "reason": np.array(["" if r is None else r for r in found], dtype=object)}

    data = _dataset({"pos": range(len(texts)), "text": texts, "output": ["" if o is None else o for o in outputs],
                     "has_output": [o is not None for o in outputs]})
    result = _collect(data.map_batches(reasons, batch_format="numpy"), ["pos", "reason"])
    out: list[str | None] = [None] * len(texts)
    for pos, reason in zip(result["pos"], result["reason"]):
        out[int(pos)] = reason or None
    return out


def _exact(texts: Sequence[str], order: list[int], normalisation: dict) -> list[Removal]:
    def hashes(batch):
        keys = [exact_key(t, **normalisation).hex() for t in batch["text"]]
        return {"rank": batch["rank"], "key": np.array(keys, dtype=object)}

    data = _dataset({"rank": range(len(order)), "text": [texts[i] for i in order]})
    result = _collect(data.map_batches(hashes, batch_format="numpy"), ["rank", "key"])
    keys = [None] * len(order)
    for rank, key in zip(result["rank"], result["key"]):
        keys[int(rank)] = key
    first: dict[str, int] = {}
    removed = []
    for rank, key in enumerate(keys):
        if key in first:
            removed.append(Removal(order[rank], order[first[key]], "exact", 1.0))
        else:
            first[key] = rank
    return removed


def _minhash(texts: Sequence[str], order: list[int], threshold: float, ngram: int,
             num_perm: int = 128) -> list[Removal]:
    from synth.filters.minhash import candidate_pairs, greedy_from_pairs, lsh_params, shingle_arrays, shingle_band_keys
    from synth.filters.minhash_kernels import pair_jaccard, sort_rows

    ray = start_ray()
    bands, rows = lsh_params(threshold, num_perm)
    ordered = [texts[i] for i in order]

    def keys_of(batch):
        _, offsets, keys = shingle_band_keys(list(batch["text"]), ngram, bands, rows, num_perm)
        return {"rank": batch["rank"], "keys": keys, "empty": offsets[1:] == offsets[:-1]}

    result = _collect(_dataset({"rank": range(len(order)), "text": ordered}).map_batches(keys_of, batch_format="numpy"),
                      ["rank", "keys", "empty"])
    ranks = result["rank"].astype(np.int64)
    keys = np.zeros((len(order), bands), dtype=np.uint64)
    keys[ranks] = result["keys"]
    usable = np.ones(len(order), dtype=bool)
    usable[ranks] = ~result["empty"].astype(bool)
    earlier, later = candidate_pairs(keys, usable)
    if not len(earlier):
        return []
    shared = ray.put(ordered)

    def verify(batch):  # exact Jaccard of each candidate pair, shingling only the rows it names
        corpus = _fetch(shared)
        needed = np.unique(np.concatenate([batch["a"], batch["b"]]))
        values, offsets = shingle_arrays([corpus[int(r)] for r in needed], ngram)
        sort_rows(values, offsets)
        local = {int(r): k for k, r in enumerate(needed)}
        first = np.array([local[int(r)] for r in batch["a"]], dtype=np.int64)
        second = np.array([local[int(r)] for r in batch["b"]], dtype=np.int64)
        scores = np.empty(len(first), dtype=np.float64)
        pair_jaccard(values, offsets, first, second, scores)
        return {"a": batch["a"], "b": batch["b"], "j": scores}

    verified = _collect(_dataset({"a": earlier, "b": later}).map_batches(verify, batch_format="numpy"), ["a", "b", "j"])
    by_pair = np.lexsort((verified["a"], verified["b"]))  # back in (later, earlier) order
    found = greedy_from_pairs(verified["a"][by_pair], verified["b"][by_pair], verified["j"][by_pair], threshold)
    return [Removal(order[row], order[other], "minhash", j) for row, other, j in found]


def _embedding_vectors(texts: Sequence[str], encoder_spec: str, cache) -> np.ndarray:
    from synth.filters.embedders import load_encoder
    from synth.filters.embedding import encode_cached

    def encode_batch(batch):
        loaded = _ENCODERS.get(encoder_spec) or _ENCODERS.setdefault(encoder_spec, load_encoder(encoder_spec))
        return {"pos": batch["pos"], "vector": loaded.encode(list(batch["text"]))}

    def encode_on_ray(todo: list[str]) -> np.ndarray:
        result = _collect(_dataset({"pos": range(len(todo)), "text": todo}).map_batches(encode_batch, batch_format="numpy"),
                          ["pos", "vector"])
        return result["vector"][np.argsort(result["pos"])]

    vectors, _ = encode_cached(texts, load_encoder(encoder_spec), cache, encode=encode_on_ray)
    return vectors


def _ray_embedding(texts: Sequence[str], alive: list[int], options: DedupOptions) -> list[Removal]:
    from synth.filters.embedding import greedy_dedup

    vectors = _embedding_vectors([texts[i] for i in alive], options.encoder_spec, options.vector_cache)
    return [Removal(alive[r], alive[k], "embedding", s)
            for r, k, s in greedy_dedup(vectors, options.embedding_threshold, options.index_kind)]


# The per-row work on Ray; ROUGE-L's greedy pass is sequential by nature and stays local.
RAY_PASSES = {
    "exact": lambda texts, alive, o: _exact(texts, alive, o.normalisation),
    "minhash": lambda texts, alive, o: _minhash(texts, alive, o.minhash_threshold, o.ngram),
    "rouge": LOCAL_PASSES["rouge"],
    "embedding": _ray_embedding,
}


def ray_deduplicate(texts: Sequence[str], methods: Sequence[str], order: Sequence[int] | None = None,
                    **options) -> list[Removal]:
    """`synth.filters.dedup.deduplicate` with the per-row work on Ray; the same removals."""
    return run_passes(texts, methods, RAY_PASSES, order, dedup_options(**options))
