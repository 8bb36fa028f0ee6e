"""`synth filter`: cheap quality filters over any corpus, each removal with its reason."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import click

from synth.cli.options import default_output
from synth.corpus import default_text_field, read_corpus, row_id, row_text, write_corpus
from synth.errors import SynthError
from synth.filters.quality import QualityFilter, read_word_list, row_response
from synth.runs.folder import write_step_manifest


@click.command(name="filter")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL, Parquet, or a HF dataset folder (save_to_disk).")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder.  [default: outputs/filter-<timestamp>]")
@click.option("--field", help="The text to check.  [default: 'text', else 'instruction' + 'input', else 'prompt']")
@click.option("--template", help='Build the text from several fields, e.g. "{instruction} {input}".')
@click.option("--output-field", help="The response to check for empty or refusal-only answers.  "
              "[default: output, completion, response, answer or chosen, else the last assistant message]")
@click.option("--min-words", type=click.IntRange(0), default=1, show_default=True)
@click.option("--max-words", type=click.IntRange(1), help="Drop longer texts.  [default: no bound]")
@click.option("--min-chars", type=click.IntRange(0), default=1, show_default=True)
@click.option("--max-chars", type=click.IntRange(1), help="Drop longer texts.  [default: no bound]")
@click.option("--max-repetition", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Drop a text (or response) whose share of repeated word n-grams is above this.")
@click.option("--ngram", type=click.IntRange(1, 10), default=3, show_default=True, help="Words per n-gram for --max-repetition.")
@click.option("--max-non-text", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Drop a text (or response) whose share of symbol and control characters is above this.")
@click.option("--blacklist", help="Drop texts containing any of these words or phrases: 'a,b,c' or @FILE (one per line).")
@click.option("--allowlist", help="Keep only texts containing at least one of these: 'a,b,c' or @FILE.")
@click.option("--keep-refusals", is_flag=True, help="Keep empty and refusal-only responses.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: check the rows on Ray Data (the cluster in RAY_ADDRESS, else a local one); same result.")
def filter_command(input_path, output, field, template, output_field, min_words, max_words, min_chars, max_chars,
                   max_repetition, ngram, max_non_text, blacklist, allowlist, keep_refusals, engine):
    """Drop rows that fail cheap quality checks; every removed row goes to removed.jsonl with its reason.

    \b
    Example:
      synth filter --input corpus.jsonl --max-words 400 --blacklist @banned.txt
      synth filter --input corpus.jsonl --output clean/ && synth dedup --input clean/rows.jsonl ...

    Checks, the first that fires being the reason: too_short / too_long (word and character
    bounds), repetition (share of word n-grams repeating an earlier one), non_text (share of
    symbol and control characters), the same two on the response (output_repetition,
    output_non_text), blacklist:WORD, not_allowlisted, empty_output and refusal_only (an answer
    that only apologises or declines). Kept rows are written in the input's form, in input order.
    """
    if max_words is not None and max_words < min_words:
        raise SynthError(f"--max-words {max_words} is below --min-words {min_words}")
    if max_chars is not None and max_chars < min_chars:
        raise SynthError(f"--max-chars {max_chars} is below --min-chars {min_chars}")
    quality = QualityFilter(min_words=min_words, max_words=max_words, min_chars=min_chars, max_chars=max_chars,
                            ngram=ngram, max_repetition=max_repetition, max_non_text=max_non_text,
                            blacklist=read_word_list(blacklist), allowlist=read_word_list(allowlist),
                            check_output=not keep_refusals)
    started = time.monotonic()
    rows, lines, form = read_corpus(input_path)
    field, template = default_text_field(rows[0], field, template)
    texts = [row_text(row, line, input_path, field, template).strip() for row, line in zip(rows, lines)]
    responses = [row_response(row, output_field) for row in rows]
    if engine == "ray":
        from synth.filters.ray_engine import ray_filter_reasons  # ray and numpy: only when asked for

        found = ray_filter_reasons(texts, responses, quality)
    else:
        found = [quality.reason(text, response) for text, response in zip(texts, responses)]
    kept, reasons = [], Counter()
    output = output or default_output("filter")
    output.mkdir(parents=True, exist_ok=True)
    with (output / "removed.jsonl").open("w", encoding="utf-8") as removed:
        for row, line, text, reason in zip(rows, lines, texts, found):
            if reason is None:
                kept.append(row)
                continue
            reasons[reason] += 1
            removed.write(json.dumps({"id": row_id(row, text), "reason": reason, "line": line, "row": row},
                                     ensure_ascii=False, default=str) + "\n")
    written = write_corpus(kept, output, form)
    config = {"input": str(input_path), "form": form, "field": field, "template": template,
              "output_field": output_field, "filters": {k: v for k, v in vars(quality).items() if not k.startswith("_")},
              "engine": engine}
    write_step_manifest(output, "filter", config, len(rows), len(kept), dict(reasons), time.monotonic() - started,
                        click.get_current_context().meta.get("synth.argv"), engine=engine)
    click.echo(f"filter: {len(rows)} rows -> {len(kept)} kept, {len(rows) - len(kept)} removed"
               + (" (" + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()) + ")" if reasons else "")
               + f"\n  -> {written}\n  removed: {output / 'removed.jsonl'}")
