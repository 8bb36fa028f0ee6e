"""Dedup at a million rows on one machine: rows/s and peak memory of exact, minhash and the
embedding index, each in a fresh process (run by `benchmarks/dedup.py --rows N` when N is larger
than the real corpus, or directly).

Texts: the Debian package descriptions of benchmarks/corpus.py resampled with small word edits
(`corpus.resampled`) up to --rows. Budgets (issue: "a million rows on one machine"): exact and
minhash within 8 GiB peak RSS; the embedding index (greedy kept-row search over the static
model's vectors, loaded from a file so the process holds nothing else) within the size of the
embeddings + 2 GiB above the process's base.

    python benchmarks/dedup_scale.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import cache_dir, debian_descriptions, resampled  # noqa: E402

GIB = 1024 ** 3
CONTENDERS = ("synth-exact", "synth-minhash", "synth-embedding-index")


def vm(field: str) -> int:
    """VmHWM (peak) or VmRSS (now) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def texts_for(rows: int, seed: int) -> list[str]:
    return [r["text"] for r in resampled(debian_descriptions(), rows, seed)]


def vectors_path(rows: int, seed: int) -> Path:
    return cache_dir() / f"scale-static-{rows}-{seed}.npy"


def contender(name: str, rows: int, seed: int) -> dict:
    from synth.filters.dedup import deduplicate

    out: dict = {"name": name}
    if name == "synth-embedding-index":
        from synth.filters.embedding import greedy_dedup

        path = vectors_path(rows, seed)
        if not path.exists():  # encode once (not timed here), in this process before its base is read
            from synth.filters.embedders import load_encoder

            texts = texts_for(rows, seed)
            started = time.perf_counter()
            np.save(path, load_encoder("static").encode(texts, progress=False))
            out["encode_s"] = time.perf_counter() - started
            del texts
            return {**out, "encoded_only": True}
        greedy_dedup(np.zeros((4, 8), dtype=np.float32), 0.9)  # import faiss before the base
        base = vm("VmRSS")
        vectors = np.load(path)
        started = time.perf_counter()
        removed = greedy_dedup(vectors, 0.9)
        out.update(seconds=time.perf_counter() - started, removed=len(removed), rows=len(vectors),
                   embeddings_bytes=vectors.nbytes, base=base, peak=vm("VmHWM"))
        return out
    texts = texts_for(rows, seed)
    method = name.removeprefix("synth-")
    deduplicate(texts[:200], [method])  # load compiled kernels outside the timing
    started = time.perf_counter()
    removed = deduplicate(texts, [method])
    out.update(seconds=time.perf_counter() - started, removed=len(removed), rows=len(texts), peak=vm("VmHWM"))
    return out


def run(name: str, rows: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--contender", name, "--rows", str(rows), "--seed", str(seed)]
    result = json.loads(subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout.splitlines()[-1])
    if result.get("encoded_only"):  # first call encoded the vectors; measure the index now
        print(f"  static vectors for {rows:,} rows encoded in {result['encode_s']:.0f} s", flush=True)
        result = json.loads(subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout.splitlines()[-1])
    return result


def main(rows: int = 1_000_000, seed: int = 0) -> None:
    started = time.perf_counter()
    texts = texts_for(rows, seed)
    print(f"{rows:,} rows resampled with small edits from the Debian descriptions in "
          f"{time.perf_counter() - started:.0f} s ({sum(map(len, texts)) / 2**20:,.0f} MiB of text)")
    del texts
    print(f"{'contender':<22} | {'rows/s':>8} | {'seconds':>8} | {'removed':>9} | {'peak GiB':>8} | budget")
    for name in CONTENDERS:
        r = run(name, rows, seed)
        if name == "synth-embedding-index":
            used, budget = r["peak"] - r["base"], r["embeddings_bytes"] + 2 * GIB
            verdict = f"{used / GIB:.2f} GiB above base <= embeddings {r['embeddings_bytes'] / GIB:.2f} + 2 GiB: " \
                      f"{'ok' if used <= budget else 'OVER'}"
        else:
            verdict = f"<= 8 GiB: {'ok' if r['peak'] <= 8 * GIB else 'OVER'}"
        print(f"{name:<22} | {r['rows'] / r['seconds']:8,.0f} | {r['seconds']:8.1f} | {r['removed']:9,} | "
              f"{r['peak'] / GIB:8.2f} | {verdict}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(contender(args.contender, args.rows, args.seed)))
    else:
        main(args.rows, args.seed)
