"""Run model jobs into a run folder: skip what is done, cache every response, never lose a row.

Every model-calling command turns its input into `Job`s (a stable id, the input row, one chat
request) and a `build_row` function, and hands them to `execute`, which owns the run folder, the
response cache, progress, cost limits, resume and the summary. A generator stays a plain function
over rows; this module is the one place that knows about crashes and money.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import click

from synth.backends import load_backend, parse_spec
from synth.backends.base import ChatRequest, Completion, StopRun
from synth.errors import SynthError
from synth.store import ROWS, Run

EXIT_OK, EXIT_FAILED_ROWS, EXIT_COST_LIMIT, EXIT_INTERRUPTED = 0, 1, 4, 130


@dataclass
class Job:
    id: str
    input: dict[str, Any]
    request: ChatRequest


class Rejection(NamedTuple):
    """What `build_row` returns instead of a row when the response can't be used."""

    reason: str
    error: str | None = None


@dataclass
class RunOptions:
    output: Path
    overwrite: bool = False
    cache: Path | None = None
    dry_run: bool = False
    limit: int | None = None
    max_cost_usd: float | None = None
    keep_truncated: bool = False
    retry_rejected: bool = False
    concurrency: int | None = None
    api_key: str | None = None
    prices: Path | None = None
    max_retries: int = 5
    request_timeout: float = 120.0
    max_retry_wait: float = 60.0
    progress: bool = True
    argv: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    status: str  # complete, stopped (cost limit), interrupted, failed
    exit_code: int
    counts: Counter = field(default_factory=Counter)
    run: Run | None = None


BuildRow = Callable[[Job, Completion], "dict | Rejection"]


def execute(command: str, identity: dict, config: dict, jobs: list[Job], model: str,
            build_row: BuildRow, opts: RunOptions) -> Outcome:
    """Run `jobs` on `model` into `opts.output`, resuming whatever an earlier run left."""
    from synth.prices import load_prices, price_for

    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.id, job)  # the same inputs give the same row: do it once
    duplicates = len(jobs) - len(unique)
    jobs = list(unique.values())[: opts.limit] if opts.limit else list(unique.values())
    done_before = {r.get("id") for r in read_jsonl_repairing_readonly(opts.output / ROWS)} if not opts.overwrite else set()
    todo = [j for j in jobs if j.id not in done_before]

    price = price_for(model, load_prices(opts.prices))
    if opts.max_cost_usd is not None and price is None:
        raise SynthError(
            f"--max-cost-usd: no known price for '{model}'; add it to a price table "
            "(copy synth/prices.yaml) and pass --prices FILE"
        )
    if opts.dry_run:
        click.echo(dry_run_report(command, jobs, todo, model, price, duplicates))
        return Outcome("dry-run", EXIT_OK)

    config = {**config, "input_rows": len(jobs) + duplicates, "duplicate_inputs": duplicates}
    run = Run.open(opts.output, command, identity, config, overwrite=opts.overwrite, argv=opts.argv)
    from synth.cache import CachedBackend, ResponseCache

    cache = ResponseCache(opts.cache or opts.output / "cache.sqlite")
    backend = CachedBackend(
        load_backend(model, concurrency=opts.concurrency, api_key=opts.api_key,
                     max_attempts=opts.max_retries + 1, timeout=opts.request_timeout, max_wait=opts.max_retry_wait),
        cache,
    )
    run.manifest["models"] = {backend.spec: {"price_usd_per_million": price.__dict__ if price else None}}
    redo = {j.id for j in todo if j.id in run.rejected_before}
    if opts.retry_rejected:
        for job in todo:
            if job.id in redo:
                cache.forget(backend.key(job.request))
    run.begin(redo)
    counts: Counter = Counter()
    status, exit_code = "complete", EXIT_OK

    from tqdm import tqdm

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="row", desc=command, file=sys.stderr,
               dynamic_ncols=True, disable=not opts.progress, smoothing=0.1)

    def on_complete(index: int, completion: Completion) -> None:
        job = todo[index]
        if completion.cached:
            counts["cache_hits"] += 1
        else:
            cost = price.cost(completion.prompt_tokens, completion.completion_tokens) if price else 0.0
            run.add_tokens(backend.spec, completion.prompt_tokens, completion.completion_tokens, cost)
            counts["model_calls"] += 1
        outcome = _judge(job, completion, build_row, opts.keep_truncated)
        if isinstance(outcome, Rejection):
            extra = {"error": outcome.error} if outcome.error else {}
            if completion.text:
                extra["response"] = completion.text
            run.reject(job.id, outcome.reason, job.input, **extra)
            counts[f"rejected:{outcome.reason}"] += 1
        else:
            run.write_row(outcome)
            counts["written"] += 1
        bar.update(1)
        run.save_manifest(every=2.0)
        if opts.max_cost_usd is not None and counts["model_calls"]:
            spent = run.manifest["cost_usd"]
            if spent + spent / counts["model_calls"] > opts.max_cost_usd:
                raise StopRun()

    started = time.monotonic()
    try:
        backend.generate([j.request for j in todo], on_complete=on_complete)
    except StopRun:
        status, exit_code = "stopped", EXIT_COST_LIMIT
    except KeyboardInterrupt:
        status, exit_code = "interrupted", EXIT_INTERRUPTED
    except BaseException:
        bar.close()
        run.finish("failed")
        backend.close()
        raise
    bar.close()
    if status == "complete" and counts["rejected:error"]:
        exit_code = EXIT_FAILED_ROWS
    run.manifest["cache_hits"] = run.manifest.get("cache_hits", 0) + counts["cache_hits"]
    run.finish(status)
    backend.close()
    click.echo(summary(command, run, counts, len(jobs) - len(todo), duplicates, status, time.monotonic() - started))
    return Outcome(status, exit_code, counts, run)


def _judge(job: Job, completion: Completion, build_row: BuildRow, keep_truncated: bool) -> "dict | Rejection":
    """A usable row, or why not. Never a row with an empty or cut-off generated field unflagged."""
    if completion.error:
        return Rejection("error", completion.error)
    truncated = completion.finish_reason == "length"
    if truncated and not keep_truncated:
        return Rejection("truncated", "the response hit the token limit (raise --max-tokens, or --keep-truncated)")
    if not completion.text.strip():
        return Rejection("empty", "the model returned no text")
    row = build_row(job, completion)
    if isinstance(row, dict) and truncated:
        row.setdefault("meta", {})["truncated"] = True
    return row


def read_jsonl_repairing_readonly(path: Path) -> list[dict]:
    """Like read_jsonl_repairing, without touching the file (for --dry-run)."""
    if not path.exists():
        return []
    import json

    rows = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def dry_run_report(command: str, jobs: list[Job], todo: list[Job], model: str, price, duplicates: int) -> str:
    from synth.prices import estimate_prompt_tokens

    prompt = sum(estimate_prompt_tokens(j.request) for j in todo)
    completion = sum(j.request.sampling.max_tokens for j in todo)
    lines = [
        f"{command} (dry run, no model called): {len(jobs)} rows, {len(jobs) - len(todo)} already done, "
        f"{len(todo)} to do" + (f", {duplicates} duplicate inputs skipped" if duplicates else ""),
        f"  about {prompt:,} prompt tokens; at most {completion:,} completion tokens",
    ]
    if price is None:
        lines.append(f"  cost: unknown for '{model}' (add it to a price table and pass --prices FILE)")
    else:
        lines.append(f"  cost with {model}: about ${price.cost(prompt, 0):.4f} for prompts, "
                     f"at most ${price.cost(prompt, completion):.4f} in all")
    return "\n".join(lines)


def summary(command: str, run: Run, counts: Counter, skipped: int, duplicates: int, status: str, seconds: float) -> str:
    rejected = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("rejected:")}
    tokens = run.manifest["tokens"].get(next(iter(run.manifest.get("models", {})), ""), {})
    parts = [
        f"{command}: {counts['written']} rows written" + (f" ({skipped} already done)" if skipped else ""),
        f"{sum(rejected.values())} rejected" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) + ")" if rejected else ""),
        f"{counts['cache_hits']} cache hits, {counts['model_calls']} model calls",
        f"{tokens.get('prompt', 0):,} tokens in, {tokens.get('completion', 0):,} out in all",
        f"${run.manifest['cost_usd']:.4f}",
        f"{seconds:.1f} s",
    ]
    text = " · ".join(parts) + f"\n  -> {run.folder / ROWS}"
    if duplicates:
        text += f"\n  {duplicates} duplicate input rows were done once"
    if status == "stopped":
        text += "\n  stopped: --max-cost-usd reached; re-run the same command with a higher limit to resume"
    elif status == "interrupted":
        text += "\n  interrupted: every finished row is saved; re-run the same command to resume"
    elif rejected.get("error"):
        text += "\n  some requests failed after retries (see rejected.jsonl); re-run the same command to retry them"
    return text
