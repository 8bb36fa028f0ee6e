"""The `synth` command line: parse options, build objects, call one function, print a summary.

Heavy libraries (torch, transformers, llama.cpp, openai) are imported only inside the commands
that need them, so `synth --help` answers at once.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from synth import __version__
from synth.backends import SPEC_HELP

MODEL_HELP = f"Model spec. {SPEC_HELP}."


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synth")
def main() -> None:
    """Synthetic feedback and training data for aligning language models.

    Every command that calls a model writes one run folder (rows.jsonl, rejected.jsonl).
    The default model, `local`, is SmolLM2-135M-Instruct embedded in the install: it runs
    offline on a CPU.
    """


def default_output(command: str) -> Path:
    return Path("outputs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


@main.command()
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with a 'prompt' (string) or 'messages' (chat list) per row, or a .txt file, one prompt per line.")
@click.option("--model", default="local", show_default=True, help=MODEL_HELP)
@click.option("--output", type=click.Path(path_type=Path), help="Run folder.  [default: outputs/generate-<timestamp>]")
@click.option("--field", help="Read the prompt from this field instead of 'messages'/'prompt'.")
@click.option("--system", help="A system message put before every prompt.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True, help="Most tokens per response.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (where the backend supports one).")
@click.option("--concurrency", type=click.IntRange(1), help="Requests in flight (API models) or batch size (local models).  [default: 16 / 8]")
@click.option("--api-key", help="API key for openai: models.  [default: $OPENAI_API_KEY]; never written anywhere.")
def generate(input_path, model, output, field, system, temperature, top_p, max_tokens, seed, concurrency, api_key):
    """One response per input row.

    \b
    Example:
      synth generate --input prompts.jsonl --model local --output outputs/demo
      synth generate --input prompts.jsonl --model openai:gpt-4o-mini --concurrency 32
      synth generate --input p.jsonl --model openai:qwen@http://127.0.0.1:8000/v1

    Each output row keeps the input's fields and adds `id`, `response` and `meta` (model,
    sampling, token usage, finish reason). A response cut off by --max-tokens, or a request that
    failed, goes to rejected.jsonl with its reason instead.
    """
    from synth.backends import Sampling, load_backend, parse_spec
    from synth.generators.respond import prepare_requests, response_row
    from synth.rows import read_rows

    # Everything a user can get wrong is checked before the model is loaded or called.
    parse_spec(model)
    rows = read_rows(input_path)
    sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    prepared = prepare_requests(rows, input_path, sampling, field=field, system=system)
    output = output or default_output("generate")
    output.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    backend = load_backend(model, concurrency=concurrency, api_key=api_key)
    totals = {"rows": 0, "rejected": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0}
    from tqdm import tqdm

    with (output / "rows.jsonl").open("a", encoding="utf-8") as rows_file, \
            (output / "rejected.jsonl").open("a", encoding="utf-8") as rejected_file, \
            tqdm(total=len(prepared), unit="row", desc="generate", file=sys.stderr, dynamic_ncols=True) as bar:

        def on_complete(index: int, completion) -> None:
            row_id, row, request = prepared[index]
            totals["prompt_tokens"] += completion.prompt_tokens
            totals["completion_tokens"] += completion.completion_tokens
            if completion.error or completion.finish_reason == "length" or not completion.text.strip():
                reason = "error" if completion.error else "truncated" if completion.finish_reason == "length" else "empty"
                totals["rejected"] += 1
                totals["errors"] += reason == "error"
                record = {"id": row_id, "reason": reason, "error": completion.error, "input": row.data,
                          "response": completion.text}
                rejected_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                rejected_file.flush()
            else:
                out = response_row(row_id, row, request, completion, backend.spec)
                rows_file.write(json.dumps(out, ensure_ascii=False) + "\n")
                rows_file.flush()
                totals["rows"] += 1
            bar.update(1)

        backend.generate([request for _, _, request in prepared], on_complete=on_complete)
    backend.close()
    seconds = time.monotonic() - started
    click.echo(
        f"generate: {totals['rows']} rows -> {output / 'rows.jsonl'}, {totals['rejected']} rejected · "
        f"{totals['prompt_tokens']} tokens in, {totals['completion_tokens']} out · {seconds:.1f} s"
    )
    if totals["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
