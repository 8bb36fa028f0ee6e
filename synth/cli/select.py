"""`synth select` (the most diverse N rows) and `synth stats` (dataset statistics, diversity before/after)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from synth.analysis.stats import diversity_table, format_stats, instruction_stats
from synth.cli.options import default_output
from synth.corpus import default_text_field, read_corpus, row_text, write_corpus
from synth.generators.self_instruct import load_seeds
from synth.runs.folder import read_jsonl, write_step_manifest


def embedding_options(command):
    """--field/--template/--embedder/--vector-cache, shared by the commands that embed rows."""
    for option in reversed([
        click.option("--field", help="The text to embed.  [default: 'text', else 'instruction' + 'input', else 'prompt']"),
        click.option("--template", help='Build the text from several fields, e.g. "{instruction} {input}".'),
        click.option("--embedder", default="minilm", show_default=True,
                     help="'minilm' (embedded all-MiniLM-L6-v2), 'static' (model2vec distilled from it, faster), "
                          "or a local sentence-transformers / model2vec folder."),
        click.option("--vector-cache", type=click.Path(path_type=Path),
                     help="sqlite file of sentence vectors reused across runs.  [default: vectors.sqlite in the "
                          "user cache folder]"),
    ]):
        command = option(command)
    return command


def corpus_vectors(path: Path, field, template, embedder, vector_cache):
    """(rows, texts, vectors, form): read a corpus, build each row's text, embed it (cached)."""
    from synth.filters.embedders import check_embedder, load_encoder  # numpy: not on `synth --help`'s path
    from synth.filters.embedding import encode_cached, open_vector_cache

    check_embedder(embedder)
    rows, lines, form = read_corpus(path)
    field, template = default_text_field(rows[0], field, template)
    texts = [row_text(row, line, path, field, template).strip() for row, line in zip(rows, lines)]
    encoder = load_encoder(embedder, progress=True)
    cache = open_vector_cache(vector_cache)
    vectors, _ = encode_cached(texts, encoder, cache, progress=sys.stderr.isatty())
    cache.close()
    return rows, texts, vectors, form


@click.command()
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL, Parquet, or a HF dataset folder (save_to_disk).")
@click.option("--n", "n", required=True, type=click.IntRange(1), help="How many rows to keep.")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder.  [default: outputs/select-<timestamp>]")
@click.option("--per-cluster", is_flag=True,
              help="Split the corpus with k-means first and pick within each cluster, in proportion to its size.")
@click.option("--clusters", type=click.IntRange(1), help="k-means clusters.  [default: sqrt(rows / 2)]")
@click.option("--seed", type=int, default=0, show_default=True, help="k-means seed.")
@embedding_options
def select(input_path, n, output, per_cluster, clusters, seed, field, template, embedder, vector_cache):
    """Keep the N most diverse rows (k-center greedy on sentence embeddings).

    \b
    Example:
      synth select --input deduped/rows.jsonl --n 5000 --per-cluster --embedder static

    k-center greedy picks, again and again, the row least similar to everything picked so far,
    so the subset covers the corpus evenly. Every kept row carries `cluster` (its k-means cluster)
    and `selection_rank` (the order it was picked in; cluster by cluster with --per-cluster).
    Kept rows are written in the input's form, in input order.
    """
    import numpy as np

    from synth.filters.diversity import kmeans_labels, select_diverse

    started = time.monotonic()
    rows, texts, vectors, form = corpus_vectors(input_path, field, template, embedder, vector_cache)
    clusters = clusters or max(1, round((len(rows) / 2) ** 0.5))
    labels = kmeans_labels(vectors, clusters, seed=seed)
    picked = select_diverse(vectors, n, labels if per_cluster else None)
    rank = {index: k for k, index in enumerate(picked)}
    kept = [{**rows[i], "cluster": int(labels[i]), "selection_rank": rank[i]} for i in sorted(picked)]
    output = output or default_output("select")
    output.mkdir(parents=True, exist_ok=True)
    written = write_corpus(kept, output, form)
    sizes = np.bincount(labels, minlength=clusters)
    config = {"input": str(input_path), "form": form, "n": n, "per_cluster": per_cluster, "clusters": int(clusters),
              "seed": seed, "embedder": embedder}
    write_step_manifest(output, "select", config, len(rows), len(kept), {"not_selected": len(rows) - len(kept)},
                        time.monotonic() - started, click.get_current_context().meta.get("synth.argv"),
                        cluster_sizes=sizes.tolist(),
                        kept_per_cluster=np.bincount(labels[picked], minlength=clusters).tolist())
    click.echo(f"select: {len(rows)} rows -> {len(kept)} most diverse ({clusters} k-means clusters"
               + (", picked within each" if per_cluster else "") + f") · {time.monotonic() - started:.1f} s"
               + f"\n  -> {written}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--seeds", "seeds_path", type=click.Path(exists=True, path_type=Path),
              help="Seed tasks to measure ROUGE-L against.  [default: a run folder's own seeds]")
@click.option("--diversity", is_flag=True,
              help="Add embedding diversity: nearest-neighbour cosine, distinct-1/2, k-means cluster sizes.")
@click.option("--clusters", type=click.IntRange(1), help="--diversity: k-means clusters.  [default: sqrt(rows / 2)]")
@embedding_options
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(paths, seeds_path, diversity, clusters, field, template, embedder, vector_cache, as_json):
    """Statistics of a dataset (a JSONL/Parquet/HF file or a run folder); give two to compare.

    \b
    Examples:
      synth stats outputs/self-instruct-1
      synth stats corpus.jsonl deduped/rows.jsonl --diversity --embedder static

    Counts kept and rejected rows (by reason), each instruction's highest ROUGE-L to the seed
    tasks, the most common leading words and the lengths. With --diversity: each row's cosine to
    its nearest neighbour (mean and histogram: lower is more diverse), distinct-1/2 (share of
    distinct word uni- and bigrams) and the sizes of k-means clusters; with two paths, side by side.
    """
    results = []
    for path in paths:
        result = dataset_stats(path, seeds_path)
        if diversity:
            from synth.filters.diversity import diversity_stats

            data_path = path / "rows.jsonl" if path.is_dir() and (path / "rows.jsonl").exists() else path
            _, texts, vectors, _ = corpus_vectors(data_path, field, template, embedder, vector_cache)
            result["diversity"] = diversity_stats(texts, vectors, clusters)
        results.append(result)
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else {str(p): r for p, r in zip(paths, results)},
                              indent=2))
        return
    for path, result in zip(paths, results):
        click.echo(f"== {path}\n{format_stats(result)}")
    if diversity:
        click.echo(diversity_table([str(p) for p in paths], [r["diversity"] for r in results]))


def dataset_stats(path: Path, seeds_path: Path | None) -> dict:
    rejected, kept = [], None
    if path.is_dir() and (path / "rows.jsonl").exists():  # a run folder
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        seeds_path = seeds_path or manifest.get("config", {}).get("seeds_path")
        rejected = read_jsonl(path / "rejected.jsonl")
        if (path / "instructions.jsonl").exists():
            kept = [r["instruction"] for r in read_jsonl(path / "instructions.jsonl")]
        rows = read_jsonl(path / "rows.jsonl")
    else:
        rows = read_corpus(path)[0]
    seeds = [s.instruction for s in load_seeds(seeds_path)] if seeds_path and Path(seeds_path).exists() else None
    return instruction_stats(rows, seeds, rejected, instructions=kept)
