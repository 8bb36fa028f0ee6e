"""Deduplication: synth's MinHash and embedding passes side by side with their peers, in one run.

Corpus: the 63,956 English package descriptions of Debian bookworm main (benchmarks/corpus.py;
downloaded once, ~6 MB), real text full of templated near-copies.

1. MinHash, threshold 0.8 on word 3-gram shingles, 128 permutations, on the whole corpus:
   rensa (RMinHash + RMinHashLSH, 16 bands as in rensa's README LSH example), datasketch
   (MinHash + MinHashLSH) and synth (`deduplicate(texts, ["minhash"])`). The peers run the loop
   their READMEs show: per row build a sketch, query the LSH among earlier kept rows, any candidate
   -> duplicate, else insert; "rensa-jaccard" also drops candidates whose estimated Jaccard is
   below 0.8, as rensa's example does. Every contender sees the same text: synth's `normalise`
   (lower case, punctuation to spaces, whitespace collapsed), done inside the timed work.
   Quality, on a seeded 10,000-row sample: the exact truth is every pair with Jaccard >= 0.8 of
   `synth.filters.minhash.shingles` sets, all pairs scored; a "true duplicate row" has an earlier
   such row. Precision/recall of the flagged rows against it; on the whole corpus, how many flagged
   rows verify (J >= 0.8 with the row matched, or for a peer with any candidate it returned).
2. Embeddings, cosine threshold 0.9: semhash (`SemHash.from_records` + `self_deduplicate`) with
   the model2vec model distilled from synth's embedded MiniLM, against synth's `embedding_pass`
   with the same static model (whole corpus), and synth's MiniLM path on the first --embed-rows
   rows: its total time over `encoder.encode` alone, and how many MiniLM removals static also makes.

Each contender runs in a fresh process (this script with --contender NAME --json): rows/s counts
the dedup work only (corpus and model loading excluded; model load, with a warm-up encode of 64
rows for synth's encoders and a one-time distillation on a cold cache, shown apart); peak memory is
that process's peak RSS (VmHWM: on Linux ru_maxrss would also count the parent's memory at fork),
which includes the corpus it loaded ("base" = the peak before the timed work).
Targets: synth-minhash rows/s >= rensa's; synth static rows/s >= semhash's; MiniLM total <= 1.25x
encode alone.

    python benchmarks/dedup.py [--rows N] [--sample 10000] [--embed-rows 10000] [--skip NAME,...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import debian_descriptions, near_duplicate_pairs, sample_indices  # noqa: E402

from synth.filters.dedup import normalise  # noqa: E402

MINHASH = ("rensa", "rensa-jaccard", "datasketch", "synth-minhash")
EMBEDDING = ("semhash", "synth-embedding-static", "synth-embedding-minilm")
THRESHOLD, EMBED_THRESHOLD, NUM_PERM, NGRAM = 0.8, 0.9, 128, 3
RENSA_BANDS = 16  # rensa's README RMinHashLSH example (threshold 0.8, num_perm 128, seed 42)


def word_shingles(text: str) -> list[str]:
    """The space-joined word 3-grams of (normalised) text, as `synth.filters.minhash.shingles`
    hashes them: a text shorter than 3 words is one shingle."""
    words = text.split()
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[k:k + NGRAM]) for k in range(len(words) - NGRAM + 1)]


# ---- contenders: each gets the texts, returns ({row: [rows it matched]}, extra info) ----------

def run_rensa(texts: list[str], check: bool = False):
    """check: keep only candidates whose estimated Jaccard (sketch vs sketch) >= the threshold, as
    the README's LSH example does after querying (contender "rensa-jaccard")."""
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=RENSA_BANDS)
    flagged, kept = {}, {}
    for i, text in enumerate(texts):
        sh = word_shingles(normalise(text))
        if not sh:
            continue
        m = RMinHash(num_perm=NUM_PERM, seed=42)
        m.update(sh)
        candidates = lsh.query(m)
        if check:
            candidates = [c for c in candidates if m.jaccard(kept[c]) >= THRESHOLD]
        if candidates:
            flagged[i] = list(candidates)
        else:
            lsh.insert(i, m)
            if check:
                kept[i] = m
    return flagged, {}


def run_datasketch(texts: list[str]):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    flagged = {}
    for i, text in enumerate(texts):
        sh = word_shingles(normalise(text))
        if not sh:
            continue
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in sh])
        candidates = lsh.query(m)
        if candidates:
            flagged[i] = list(candidates)
        else:
            lsh.insert(i, m)
    return flagged, {"bands x rows": f"{lsh.b} x {lsh.r}"}


def run_synth_minhash(texts: list[str], timer):
    from synth.filters.dedup import deduplicate

    with timer("load"):  # import numba and load the compiled kernels (compiled once per machine)
        deduplicate(texts[:100], ["minhash"], minhash_threshold=THRESHOLD, ngram=NGRAM)
    with timer("work"):
        removals = deduplicate(texts, ["minhash"], minhash_threshold=THRESHOLD, ngram=NGRAM)
    return {r.index: [r.duplicate_of] for r in removals}, {}


def run_semhash(texts: list[str], timer):
    from semhash import SemHash

    from synth.filters.embedding import load_encoder

    with timer("load"):  # the model2vec StaticModel synth distils from its embedded MiniLM
        model = load_encoder("static").static_model
    with timer("work"):
        result = SemHash.from_records(records=texts, model=model).self_deduplicate(threshold=EMBED_THRESHOLD)
    return {}, {"removed": len(result.filtered), "exact copies": sum(d.exact for d in result.filtered)}


def run_synth_embedding(kind: str):
    def run(texts: list[str], timer):
        from synth.filters.embedding import embedding_pass, load_encoder

        with timer("load"):
            encoder = load_encoder(kind)
            encoder.encode(texts[:64])  # warm-up, so neither timing below pays first-call costs
        with timer("work"):
            removals = embedding_pass(texts, range(len(texts)), EMBED_THRESHOLD, encoder, cache=None)
        with timer("encode"):
            encoder.encode(texts)
        return {r.index: [r.duplicate_of] for r in removals}, {"removed": len(removals)}
    return run


CONTENDERS = {"rensa": run_rensa, "rensa-jaccard": lambda texts: run_rensa(texts, check=True), "datasketch": run_datasketch, "synth-minhash": run_synth_minhash,
              "semhash": run_semhash, "synth-embedding-static": run_synth_embedding("static"),
              "synth-embedding-minilm": run_synth_embedding("minilm")}


def subset_texts(args) -> list[str]:
    texts = [r["text"] for r in debian_descriptions(args.rows)]
    if args.subset == "sample":
        return [texts[i] for i in sample_indices(len(texts), args.sample, args.seed)]
    if args.subset == "head":
        return texts[:args.embed_rows]
    return texts


def peak_kib() -> int:
    """This process's peak RSS in KiB: VmHWM on Linux, since there ru_maxrss also counts what the
    parent had resident when it forked us (kept across exec); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def contender_main(args) -> None:
    """In a fresh process: load the texts, time one contender, print one JSON line."""
    texts = subset_texts(args)
    out = {"name": args.contender, "rows": len(texts)}
    base_kib = peak_kib()
    times: dict[str, float] = {}

    class timer:
        def __init__(self, key):
            self.key = key

        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            times[self.key] = times.get(self.key, 0.0) + time.perf_counter() - self.start

    run = CONTENDERS[args.contender]
    try:
        if args.contender in MINHASH and args.contender != "synth-minhash":
            with timer("work"):
                flagged, extra = run(texts)
        else:
            flagged, extra = run(texts, timer)
    except ImportError as error:
        out["error"] = f"not available: {error}"
        print(json.dumps(out))
        return
    out.update(seconds=times["work"], load_s=times.get("load"), encode_s=times.get("encode"),
               base_kib=base_kib, peak_kib=peak_kib(),
               flagged={str(k): v for k, v in flagged.items()}, extra=extra)
    print(json.dumps(out))


def spawn(name: str, subset: str, args) -> dict:
    command = [sys.executable, __file__, "--contender", name, "--json", "--subset", subset,
               "--sample", str(args.sample), "--seed", str(args.seed), "--embed-rows", str(args.embed_rows)]
    if args.rows:
        command += ["--rows", str(args.rows)]
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"name": name, "error": f"exit status {proc.returncode} (see its stderr above)"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "flagged" in result:
        result["flagged"] = {int(k): v for k, v in result.pop("flagged").items()}
        print(f"  {name} on {result['rows']:,} rows ({subset}): {result['seconds']:.1f} s", flush=True)
    else:
        print(f"  {name}: {result['error']}", flush=True)
    return result


def mib(kib) -> str:
    return f"{kib / 1024:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None,
                        help="use the first N rows of the corpus; past its size, the million-row scale run "
                             "(benchmarks/dedup_scale.py: exact, minhash and the embedding index on resampled rows)")
    parser.add_argument("--sample", type=int, default=10_000, help="rows in the ground-truth sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embed-rows", type=int, default=10_000, help="rows for the MiniLM comparison")
    parser.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(CONTENDERS)}")
    parser.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--subset", choices=["all", "sample", "head"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        return contender_main(args)
    if args.rows and args.rows > len(debian_descriptions()):  # past the real corpus: the scale run
        import dedup_scale

        return dedup_scale.main(args.rows, args.seed)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown --skip {', '.join(sorted(unknown))}; known: {', '.join(CONTENDERS)}")

    from synth.filters.minhash import jaccard, shingles

    start = time.perf_counter()
    texts = [r["text"] for r in debian_descriptions(args.rows)]
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"corpus: {len(texts):,} Debian bookworm package descriptions ({words:.1f} words on average), "
          f"loaded in {time.perf_counter() - start:.1f} s")
    sets: dict[int, set[int]] = {}

    def shingle_set(i: int) -> set[int]:
        if i not in sets:
            sets[i] = shingles(normalise(texts[i]), NGRAM)
        return sets[i]

    minhash = [n for n in MINHASH if n not in skip]
    if minhash:
        picked = sample_indices(len(texts), args.sample, args.seed)
        start = time.perf_counter()
        earlier = near_duplicate_pairs([shingle_set(i) for i in picked], THRESHOLD)
        truth = {i for i, e in enumerate(earlier) if e}
        greedy, kept = set(), set()  # what an exact greedy pass (compare to kept rows only) removes
        for i, e in enumerate(earlier):
            (greedy if kept.intersection(e) else kept).add(i)
        print(f"sample: {len(picked):,} rows (seed {args.seed}); exact truth over all "
              f"{len(picked) * (len(picked) - 1) // 2:,} pairs in {time.perf_counter() - start:.1f} s: "
              f"{sum(map(len, earlier)):,} pairs with J >= {THRESHOLD}, {len(truth):,} rows with an "
              f"earlier near-duplicate ({len(greedy):,} of them left after exact greedy dedup)")
        print("running the MinHash contenders, one process each ...")
        full = {n: spawn(n, "all", args) for n in minhash}
        sample = {n: spawn(n, "sample", args) for n in minhash}

        print(f"\nMinHash, whole corpus ({len(texts):,} rows), J >= {THRESHOLD}, 3-gram shingles, {NUM_PERM} perms")
        print(f"{'contender':<16} | {'rows/s':>9} | {'seconds':>7} | {'load s':>6} | {'peak RSS MiB':>12} | "
              f"{'base MiB':>8} | {'flagged':>7} | {'verified':>8} | {'unverified':>10}")
        for name, r in full.items():
            if "error" in r:
                print(f"{name:<16} | {r['error']}")
                continue
            ok = sum(any(jaccard(shingle_set(i), shingle_set(m)) >= THRESHOLD for m in ms)
                     for i, ms in r["flagged"].items())
            r["rps"] = r["rows"] / r["seconds"]
            print(f"{name:<16} | {r['rps']:9,.0f} | {r['seconds']:7.2f} | {r['load_s'] or 0:6.2f} | {mib(r['peak_kib']):>12} | "
                  f"{mib(r['base_kib']):>8} | {len(r['flagged']):7,} | {ok:8,} | {len(r['flagged']) - ok:10,}")

        print(f"\nMinHash quality, sample of {len(picked):,} rows vs the exact truth ({len(truth):,} true duplicate rows)")
        print(f"{'contender':<16} | {'seconds':>7} | {'flagged':>7} | {'verify: some earlier':>20} | "
              f"{'its match':>9} | {'precision':>9} | {'recall':>6} | {'recall vs exact greedy':>22}")
        print(f"{'exact greedy':<16} | {'-':>7} | {len(greedy):7,} | {len(greedy):20,} | {len(greedy):9,} | "
              f"{1:9.4f} | {len(greedy) / max(len(truth), 1):6.4f} | {1:22.4f}")
        for name, r in sample.items():
            if "error" in r:
                print(f"{name:<16} | {r['error']}")
                continue
            flagged = set(r["flagged"])
            some = len(flagged & truth)
            named = sum(any(m in earlier[i] for m in ms) for i, ms in r["flagged"].items())
            print(f"{name:<16} | {r['seconds']:7.2f} | {len(flagged):7,} | {some:20,} | {named:9,} | "
                  f"{some / max(len(flagged), 1):9.4f} | {some / max(len(truth), 1):6.4f} | "
                  f"{len(flagged & greedy) / max(len(greedy), 1):22.4f}")
        rps = {n: r.get("rps") for n, r in full.items()}
        if rps.get("synth-minhash"):
            for peer in ("rensa", "rensa-jaccard", "datasketch"):
                if rps.get(peer):
                    target = "   (target >= 1.0)" if peer == "rensa" else ""
                    print(f"synth-minhash rows/s / {peer} rows/s: {rps['synth-minhash'] / rps[peer]:.2f}{target}")

    if any(n not in skip for n in EMBEDDING):
        print(f"\nrunning the embedding contenders (cosine >= {EMBED_THRESHOLD}), one process each ...")
        runs = []
        if "semhash" not in skip:
            runs.append(("semhash", "all"))
        if "synth-embedding-static" not in skip:
            runs += [("synth-embedding-static", "all"), ("synth-embedding-static", "head")]
        if "synth-embedding-minilm" not in skip:
            runs.append(("synth-embedding-minilm", "head"))
        results = {(n, s): spawn(n, s, args) for n, s in runs}
        print(f"\nEmbedding dedup, cosine >= {EMBED_THRESHOLD}")
        print(f"{'contender':<22} | {'rows':>6} | {'load s':>6} | {'seconds':>7} | {'rows/s':>8} | "
              f"{'peak RSS MiB':>12} | {'removed':>7} | {'encode alone s':>14} | {'total / encode':>14}")
        for (name, _), r in results.items():
            if "error" in r:
                print(f"{name:<22} | {r['error']}")
                continue
            r["rps"] = r["rows"] / r["seconds"]
            enc = r.get("encode_s")
            alone, ratio = (f"{enc:.2f}", f"{r['seconds'] / enc:.2f}") if enc else ("-", "-")
            print(f"{name:<22} | {r['rows']:6,} | {r['load_s'] or 0:6.1f} | {r['seconds']:7.2f} | {r['rps']:8,.0f} | "
                  f"{mib(r['peak_kib']):>12} | {r['extra']['removed']:7,} | {alone:>14} | {ratio:>14}")
        sem, static = results.get(("semhash", "all"), {}), results.get(("synth-embedding-static", "all"), {})
        if sem.get("rps") and static.get("rps"):
            print(f"synth static rows/s / semhash rows/s: {static['rps'] / sem['rps']:.2f}   (target >= 1.0)")
        mini, head = results.get(("synth-embedding-minilm", "head"), {}), results.get(("synth-embedding-static", "head"), {})
        if mini.get("encode_s"):
            print(f"synth minilm total / encode alone: {mini['seconds'] / mini['encode_s']:.2f}   (target <= 1.25)")
        if mini.get("flagged") is not None and head.get("flagged") is not None:
            both = len(set(mini["flagged"]) & set(head["flagged"]))
            print(f"static recall vs minilm on the first {mini['rows']:,} rows: {both:,} of the "
                  f"{len(mini['flagged']):,} rows minilm removes = {both / max(len(mini['flagged']), 1):.4f}")


if __name__ == "__main__":
    main()
