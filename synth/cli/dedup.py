"""`synth dedup`: remove duplicate rows from any corpus, keeping one of each cluster, with lineage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from synth.cli.options import default_output
from synth.corpus import default_text_field, read_corpus, row_id, row_text, write_corpus
from synth.errors import SynthError
from synth.extras import check
from synth.filters.dedup import METHODS, deduplicate
from synth.filters.types import Removal
from synth.runs.folder import write_step_manifest


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
    methods, thresholds = parse_methods(method, threshold, {"minhash": minhash_threshold, "rouge": rouge_threshold,
                                                           "embedding": embedding_threshold})
    if "minhash" in methods:  # refuse before any input is read
        check("dedup", "numba", what="`--method minhash`")
    if "embedding" in methods:
        from synth.filters.embedders import check_embedder  # numpy: not on `synth --help`'s path

        check_embedder(embedder)
    started = time.monotonic()
    rows, lines, form = read_corpus(input_path)
    field, template = default_text_field(rows[0], field, template)
    texts = [row_text(row, line, input_path, field, template).strip() for row, line in zip(rows, lines)]
    order = visit_order(rows, lines, keep_by, input_path)
    encoder, cache = open_encoder(embedder, vector_cache) if "embedding" in methods else (None, None)
    options = dict(rouge_threshold=thresholds["rouge"], minhash_threshold=thresholds["minhash"], ngram=ngram,
                   embedding_threshold=thresholds["embedding"], vector_cache=cache, index_kind=index_kind,
                   case=not keep_case, punctuation=not keep_punctuation)
    if engine == "ray":
        from synth.filters.ray_engine import ray_deduplicate  # ray and numpy: only when asked for

        removals = ray_deduplicate(texts, methods, order, encoder_spec=embedder, **options)
    else:
        removals = deduplicate(texts, methods, order, encoder=encoder, progress=sys.stderr.isatty(), **options)
    vectors = {"cache": str(cache.path), "encoded": cache.encoded, "reused": cache.reused} if cache else None
    if cache:
        cache.close()
    output = output or default_output("dedup")
    written = write_kept_and_removed(output, rows, texts, removals, form)
    by_method = {m: sum(r.method == m for r in removals) for m in methods}
    config = {"input": str(input_path), "form": form, "methods": methods, "minhash_threshold": thresholds["minhash"],
              "ngram": ngram, "rouge_threshold": thresholds["rouge"],
              "embedding_threshold": thresholds["embedding"] if encoder else None,
              "embedder": encoder.name if encoder else None, "index": index_kind if encoder else None,
              "engine": engine, "field": field, "template": template, "keep_by": keep_by}
    write_step_manifest(output, "dedup", config, len(rows), len(rows) - len(removals), by_method,
                        time.monotonic() - started, click.get_current_context().meta.get("synth.argv"),
                        engine=engine, removed_by_method=by_method, vectors=vectors)
    click.echo(f"dedup: {len(rows)} rows -> {len(rows) - len(removals)} kept, {len(removals)} removed ("
               + ", ".join(f"{m}: {n}" for m, n in by_method.items()) + f") · {time.monotonic() - started:.1f} s"
               + (f"\n  vectors: {vectors['encoded']} encoded, {vectors['reused']} reused from {vectors['cache']}"
                  if vectors else "")
               + f"\n  -> {written}\n  removed: {output / 'removed.jsonl'}")


def parse_methods(method: str, threshold: float | None, thresholds: dict[str, float]) -> tuple[list[str], dict[str, float]]:
    """(--method's methods, cheapest first; each thresholded method's threshold, --threshold
    standing for the one thresholded method chosen)."""
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
        thresholds = {**thresholds, thresholded[0]: threshold}
    return methods, thresholds


def visit_order(rows: list[dict], lines: list[int], keep_by: str | None, input_path: Path) -> list[int]:
    """The order rows are visited in, so the first of a cluster is kept: input order, or the
    highest --keep-by first (ties in input order)."""
    order = list(range(len(rows)))
    if keep_by:
        for row, line in zip(rows, lines):
            if not isinstance(row.get(keep_by), (int, float)) or isinstance(row.get(keep_by), bool):
                raise SynthError(f"{input_path} line {line}: --keep-by '{keep_by}' needs a number in every row")
        order.sort(key=lambda i: -rows[i][keep_by])  # stable: ties keep input order
    return order


def open_encoder(embedder: str, vector_cache: Path | None):
    """(the sentence encoder, the vector cache) for --method embedding; called once the input is
    known good, since the first use of 'static' distils it."""
    from synth.filters.embedders import load_encoder  # numpy, and the encoder's own libraries
    from synth.filters.embedding import open_vector_cache

    return load_encoder(embedder, progress=True), open_vector_cache(vector_cache)


def write_kept_and_removed(output: Path, rows: list[dict], texts: list[str], removals: list[Removal], form: str) -> Path:
    """The kept rows in the input's form, and removed.jsonl naming each removed row's kept copy."""
    ids = [row_id(row, text) for row, text in zip(rows, texts)]
    output.mkdir(parents=True, exist_ok=True)
    removed_index = {r.index for r in removals}
    written = write_corpus([row for k, row in enumerate(rows) if k not in removed_index], output, form)
    with (output / "removed.jsonl").open("w", encoding="utf-8") as handle:
        for r in removals:
            handle.write(json.dumps({"id": ids[r.index], "duplicate_of": ids[r.duplicate_of], "method": r.method,
                                     "similarity": round(r.similarity, 6), "row": rows[r.index]},
                                    ensure_ascii=False, default=str) + "\n")
    return written
