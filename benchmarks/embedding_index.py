"""Where the exact faiss index stops paying: greedy semantic dedup with IndexFlatIP vs HNSW.

Vectors are real: the static model distilled from the embedded MiniLM (`--embedder static`,
256-d) and MiniLM itself (384-d, first `--minilm-rows` rows only: encoding is the slow part) over
the Debian package descriptions of benchmarks/corpus.py. Larger sizes repeat the corpus with
small noise added, so the index sees realistic clusters. For each size it times
`greedy_dedup(..., "exact")` and `greedy_dedup(..., "approximate")` and reports the approximate
index's recall of the exact removals. `synth.filters.embedding.EXACT_MAX_ROWS` is set from this.

    python benchmarks/embedding_index.py [--sizes 5000,10000,20000,40000,80000] [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import debian_descriptions  # noqa: E402

from synth.filters.embedders import load_encoder  # noqa: E402
from synth.filters.embedding import greedy_dedup  # noqa: E402


def grow(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, have = [vectors], len(vectors)
    while have < size:
        extra = vectors + rng.normal(scale=0.02, size=vectors.shape).astype(np.float32)
        parts.append(extra / np.linalg.norm(extra, axis=1, keepdims=True))
        have += len(extra)
    return np.ascontiguousarray(np.concatenate(parts)[:size], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000,40000,80000")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--minilm-rows", type=int, default=5000, help="0 to skip MiniLM")
    args = parser.parse_args()
    texts = [r["text"] for r in debian_descriptions()]
    sizes = [int(s) for s in args.sizes.split(",")]
    for name, rows in (("static", len(texts)), ("minilm", args.minilm_rows)):
        if not rows:
            continue
        encoder = load_encoder(name)
        started = time.perf_counter()
        base = encoder.encode(texts[:rows])
        print(f"\n{name}: {rows} rows encoded in {time.perf_counter() - started:.1f} s, dim {encoder.dim}")
        print(f"{'rows':>8} {'exact s':>9} {'hnsw s':>9} {'hnsw/exact':>11} {'removed':>8} {'hnsw recall':>12}")
        for size in sizes:
            vectors = grow(base, size)
            timings, found = {}, {}
            for kind in ("exact", "approximate"):
                started = time.perf_counter()
                found[kind] = {r for r, _, _ in greedy_dedup(vectors, args.threshold, kind)}
                timings[kind] = time.perf_counter() - started
            recall = len(found["exact"] & found["approximate"]) / max(len(found["exact"]), 1)
            print(f"{size:>8} {timings['exact']:>9.2f} {timings['approximate']:>9.2f} "
                  f"{timings['approximate'] / timings['exact']:>11.2f} {len(found['exact']):>8} {recall:>12.4f}")


if __name__ == "__main__":
    main()
