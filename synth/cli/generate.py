"""`synth generate` and `synth respond`: one response per prompt, or K candidates per prompt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from synth.backends import Sampling, parse_spec
from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options
from synth.generators.respond import GENERATOR, prepare_requests, respond_candidates, response_row
from synth.rows import read_rows
from synth.runs.plan import dry_run_estimate, prompt_tokens
from synth.runs.session import Job, Session, RunOptions, check_price, execute


@click.command(epilog=EXIT_CODES)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with a 'prompt' (string) or 'messages' (chat list) per row, or a .txt file, one prompt per line.")
@click.option("--field", help="Read the prompt from this field instead of 'messages'/'prompt'.")
@click.option("--system", help="A system message put before every prompt.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True, help="Most tokens per response.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (where the backend supports one).")
@run_options("generate")
def generate(input_path, field, system, temperature, top_p, max_tokens, seed, model, **kw):
    """One response per input row.

    \b
    Examples:
      synth generate --input prompts.jsonl --model local --output outputs/demo
      synth generate --input prompts.jsonl --model openai:gpt-4o-mini --max-cost-usd 2
      synth generate --input p.jsonl --model openai:qwen@http://127.0.0.1:8000/v1 --concurrency 64

    Each output row keeps the input's fields and adds `id` (a hash of the prompt), `response`
    and `meta` (model, sampling, token usage, finish reason). A response cut off by
    --max-tokens, an empty one, or a request that kept failing goes to rejected.jsonl with its
    reason. Re-running the same command resumes: finished rows are skipped and cached
    responses are reused, so nothing is paid for twice.
    """
    opts = make_run_options("generate", kw)
    # Everything a user can get wrong is checked before the model is loaded or called.
    parse_spec(model)
    rows = read_rows(input_path)
    sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    jobs = [Job(row_id, row.data, request) for row_id, row, request in
            prepare_requests(rows, input_path, sampling, field=field, system=system)]
    identity = {"input": str(Path(input_path).resolve()), "model": model, "sampling": sampling.to_dict(),
                "field": field, "system": system}
    config = {**identity, "keep_truncated": opts.keep_truncated, "limit": opts.limit,
              "concurrency": opts.concurrency, "max_cost_usd": opts.max_cost_usd}

    def build_row(job: Job, completion):
        return response_row(job.id, job.input, job.request, completion, model)

    outcome = execute(GENERATOR, identity, config, jobs, model, build_row, opts)
    print_outcome(outcome)


@click.command(epilog=EXIT_CODES)
@click.option("--prompts", "prompts_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with a 'prompt' or 'messages' per row (or a .txt file).")
@click.option("--model", "models", multiple=True, default=["local"], show_default=True,
              help="Model spec; repeat for several models (each gives --n samples per temperature).")
@click.option("--temperature", "temperatures", type=click.FloatRange(0, 2), multiple=True, default=[0.9], show_default=True,
              help="Sampling temperature; repeat for several.")
@click.option("--n", type=click.IntRange(1, 64), default=2, show_default=True, help="Samples per model and temperature.")
@click.option("--field", help="Read the prompt from this field instead of 'messages'/'prompt'.")
@click.option("--max-tokens", type=click.IntRange(1), default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@run_options("respond", model_option=False)
def respond(prompts_path, models, temperatures, n, field, max_tokens, seed, **kw):
    """K candidate responses per prompt, to be judged by `synth label`.

    \b
    Example:
      synth respond --prompts p.jsonl --model local --model openai:gpt-4o-mini --n 2 --output outputs/cands

    One row per prompt with `candidates`: distinct samples, each with its model, sampling
    parameters and sample index. Cut-off, empty or failed samples are left out; a prompt with
    fewer than two usable candidates goes to rejected.jsonl.
    """
    opts = make_run_options("respond", kw)
    for spec in models:
        parse_spec(spec)
    rows = read_rows(prompts_path)
    prepared = [(row_id, row, request.messages) for row_id, row, request in
                prepare_requests(rows, prompts_path, Sampling(), field=field)]
    prepared = list({p[0]: p for p in prepared}.values())
    prepared = prepared[: opts.limit] if opts.limit else prepared
    variants = [(m, Sampling(temperature=t, max_tokens=max_tokens, seed=seed)) for m in models for t in temperatures]
    identity = {"input": str(Path(prompts_path).resolve()), "models": list(models), "temperatures": list(temperatures),
                "n": n, "max_tokens": max_tokens, "seed": seed, "field": field}
    if opts.dry_run:
        click.echo(respond_dry_run(prepared, models, len(temperatures), n, max_tokens, opts))
        return
    session = Session("respond", identity, {**identity, "input_rows": len(rows)}, list(models), opts)
    session.skipped = sum(1 for p in prepared if p[0] in session.done)
    session.begin()
    with session.stopping():
        respond_candidates(session, prepared, variants, n)
    outcome = session.close()
    print_outcome(outcome)


def respond_dry_run(prepared: list, models: tuple[str, ...], temperatures: int, n: int, max_tokens: int,
                    opts: RunOptions) -> str:
    """Each --model is sent every prompt n times per temperature."""
    per_model = temperatures * n
    prompts = sum(prompt_tokens(messages) for _, _, messages in prepared)
    tokens = {spec: (prompts * per_model * times, len(prepared) * per_model * times * max_tokens)
              for spec, times in Counter(models).items()}
    requests = len(prepared) * len(models) * per_model
    work = f"{len(prepared)} prompts x {len(models) * temperatures} variants x {n} samples = {requests} requests"
    return dry_run_estimate("respond", work, tokens, {spec: check_price(spec, opts) for spec in tokens})
