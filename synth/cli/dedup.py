"""`synth dedup`: remove duplicate rows from any corpus, keeping one of each cluster, with lineage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from synth.cli.options import default_output


@click.command()
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL, Parquet, or a HF dataset folder (save_to_disk).")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder.  [default: outputs/dedup-<timestamp>]")
@click.option("--field", help="The text to compare.  [default: 'text', else 'instruction' + 'input', else 'prompt']")
@click.option("--template", help='Build the text from several fields, e.g. "{instruction} {input}".')
@click.option("--method", default="exact", show_default=True,
              help="Comma-separated, run cheapest first: exact, minhash, rouge, embedding.")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="The threshold of the one thresholded method chosen (minhash, rouge or embedding); "
                   "with several, use their own options below.")
@click.option("--minhash-threshold", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="minhash: remove a row whose word n-gram Jaccard with a kept row is at least this (verified exactly).")
@click.option("--ngram", type=click.IntRange(1, 10), default=3, show_default=True, help="minhash: words per shingle.")
@click.option("--rouge-threshold", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="rouge: remove a row whose ROUGE-L F-measure with a kept row is above this.")
@click.option("--embedding-threshold", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="embedding: remove a row whose cosine with a kept row is at least this.")
@click.option("--embedder", default="minilm", show_default=True,
              help="embedding: 'minilm' (the embedded all-MiniLM-L6-v2), 'static' (a model2vec model distilled "
                   "from it once, offline, and cached: several times faster, slightly less exact), or the path "
                   "of a local sentence-transformers or model2vec folder.")
@click.option("--index", "index_kind", type=click.Choice(["auto", "exact", "approximate"]), default="auto",
              show_default=True, help="embedding: faiss exact inner product, or HNSW; auto picks by corpus size.")
@click.option("--vector-cache", type=click.Path(path_type=Path),
              help="embedding: sqlite file of sentence vectors reused across runs.  [default: vectors.sqlite "
                   "in the user cache folder, $SYNTH_CACHE_DIR or ~/.cache/synth]")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: run the per-row work on Ray Data (the cluster in RAY_ADDRESS, else a local one); same result.")
@click.option("--keep-by", help="Keep the copy with the highest value of this numeric field (default: the first seen).")
@click.option("--keep-case", is_flag=True, help="exact: case matters.")
@click.option("--keep-punctuation", is_flag=True, help="exact: punctuation matters.")
def dedup(input_path, output, field, template, method, threshold, minhash_threshold, ngram, rouge_threshold,
          embedding_threshold, embedder, index_kind, vector_cache, engine, keep_by, keep_case, keep_punctuation):
    """Remove exact and near duplicates; every removed row goes to removed.jsonl with its lineage.

    \b
    Example:
      synth dedup --input corpus.jsonl --template "{instruction} {input}" --method exact,rouge
      synth dedup --input corpus.parquet --field prompt --method exact,minhash,embedding --embedder static

    One representative of each duplicate cluster is always kept: the first seen, or the best by
    --keep-by. Each line of removed.jsonl names the kept row (`duplicate_of`, its id), the method
    and the similarity. The kept rows are written in the input's form (rows.jsonl, rows.parquet
    or dataset/), in input order.
    """
    from synth.corpus import default_text_field, read_corpus, row_id, row_text, write_corpus
    from synth.errors import SynthError
    from synth.filters.dedup import METHODS, deduplicate
    from synth.runs.folder import write_json_atomic

    methods = [m.strip() for m in method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SynthError(f"--method {method}: unknown {', '.join(unknown) or 'empty'}; choose from {', '.join(METHODS)}")
    methods = sorted(set(methods), key=METHODS.index)  # cheapest first
    if threshold is not None:
        thresholded = [m for m in methods if m != "exact"]
        if len(thresholded) != 1:
            raise SynthError(f"--threshold applies to exactly one of minhash, rouge, embedding; --method {method} has "
                             f"{len(thresholded) or 'none'}: use --minhash-threshold, --rouge-threshold, --embedding-threshold")
        minhash_threshold, rouge_threshold, embedding_threshold = (
            threshold if m == thresholded[0] else old for m, old in
            (("minhash", minhash_threshold), ("rouge", rouge_threshold), ("embedding", embedding_threshold)))
    if "embedding" in methods:
        from synth.filters.embedders import check_embedder

        check_embedder(embedder)
    started = time.monotonic()
    rows, lines, form = read_corpus(input_path)
    field, template = default_text_field(rows[0], field, template)
    texts = [row_text(row, line, input_path, field, template).strip() for row, line in zip(rows, lines)]
    order = list(range(len(rows)))
    if keep_by:
        for row, line in zip(rows, lines):
            if not isinstance(row.get(keep_by), (int, float)) or isinstance(row.get(keep_by), bool):
                raise SynthError(f"{input_path} line {line}: --keep-by '{keep_by}' needs a number in every row")
        order.sort(key=lambda i: -rows[i][keep_by])  # stable: ties keep input order
    encoder = cache = None
    if "embedding" in methods:  # after the input is known good: the first use distils
        from synth.filters.embedders import load_encoder
        from synth.filters.embedding import open_vector_cache

        encoder = load_encoder(embedder, progress=True)
        cache = open_vector_cache(vector_cache)
    options = dict(rouge_threshold=rouge_threshold, minhash_threshold=minhash_threshold, ngram=ngram,
                   embedding_threshold=embedding_threshold, vector_cache=cache, index_kind=index_kind,
                   case=not keep_case, punctuation=not keep_punctuation)
    if engine == "ray":
        from synth.filters.ray_engine import ray_deduplicate

        removals = ray_deduplicate(texts, methods, order, encoder_spec=embedder, **options)
    else:
        removals = deduplicate(texts, methods, order, encoder=encoder, progress=sys.stderr.isatty(), **options)
    vectors = {"cache": str(cache.path), "encoded": cache.encoded, "reused": cache.reused} if cache else None
    if cache:
        cache.close()
    ids = [row_id(row, text) for row, text in zip(rows, texts)]
    output = output or default_output("dedup")
    output.mkdir(parents=True, exist_ok=True)
    removed_index = {r.index for r in removals}
    written = write_corpus([row for k, row in enumerate(rows) if k not in removed_index], output, form)
    with (output / "removed.jsonl").open("w", encoding="utf-8") as handle:
        for r in removals:
            handle.write(json.dumps({"id": ids[r.index], "duplicate_of": ids[r.duplicate_of], "method": r.method,
                                     "similarity": round(r.similarity, 6), "row": rows[r.index]},
                                    ensure_ascii=False, default=str) + "\n")
    by_method = {m: sum(r.method == m for r in removals) for m in methods}
    write_json_atomic(output / "manifest.json", {
        "command": "dedup", "input": str(input_path), "form": form, "methods": methods, "minhash_threshold": minhash_threshold,
        "ngram": ngram, "rouge_threshold": rouge_threshold,
        "embedding_threshold": embedding_threshold if encoder else None, "embedder": encoder.name if encoder else None,
        "index": index_kind if encoder else None, "vectors": vectors, "engine": engine,
        "field": field, "template": template, "keep_by": keep_by, "rows_in": len(rows),
        "rows_out": len(rows) - len(removals), "removed_by_method": by_method,
        "wall_seconds": round(time.monotonic() - started, 3)})
    click.echo(f"dedup: {len(rows)} rows -> {len(rows) - len(removals)} kept, {len(removals)} removed ("
               + ", ".join(f"{m}: {n}" for m, n in by_method.items()) + f") · {time.monotonic() - started:.1f} s"
               + (f"\n  vectors: {vectors['encoded']} encoded, {vectors['reused']} reused from {vectors['cache']}"
                  if vectors else "")
               + f"\n  -> {written}\n  removed: {output / 'removed.jsonl'}")
