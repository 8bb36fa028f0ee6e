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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import click

from synth.backends import load_backend
from synth.backends.base import ChatRequest, Completion, StopRun
from synth.errors import SynthError
from synth.store import ROWS, Run, read_jsonl_repairing

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


BuildRow = Callable[[Job, Completion], "dict | list[dict] | Rejection"]


class ModelRun:
    """An open run folder with its cached backend, spend and counts: what generators call through.

    `call` sends jobs and hands each (job, completion) to a callback as it lands; `record` is the
    standard way to turn one into a row or a rejection; `stopping` turns a cost stop, a ^C or a
    crash into the right run status; `close` writes the manifest and prints the summary.
    """

    def __init__(self, command: str, identity: dict, config: dict, model: str | list[str], opts: RunOptions,
                 rows_name: str = "rows.jsonl"):
        from synth.cache import CachedBackend, ResponseCache

        self.command, self.opts = command, opts
        models = list(dict.fromkeys([model] if isinstance(model, str) else model))
        self.prices = {m: check_price(m, opts) for m in models}
        self.run = Run.open(opts.output, command, identity, config, overwrite=opts.overwrite, argv=opts.argv,
                            rows_name=rows_name)
        self.cache = ResponseCache(opts.cache or opts.output / "cache.sqlite")
        # One cached backend per model spec (e.g. a generator and a separate critic), one cache.
        self.backends = {
            m: CachedBackend(load_backend(m, concurrency=opts.concurrency, api_key=opts.api_key,
                                          max_attempts=opts.max_retries + 1, timeout=opts.request_timeout,
                                          max_wait=opts.max_retry_wait), self.cache)
            for m in models
        }
        self.backend = self.backends[models[0]]
        self.run.manifest["models"] = {b.spec: {"price_usd_per_million": self.prices[m].__dict__ if self.prices[m] else None}
                                       for m, b in self.backends.items()}
        self.counts: Counter = Counter()
        self.status, self.exit_code = "complete", EXIT_OK
        self.skipped = 0
        self.notes: list[str] = []
        self._started = time.monotonic()

    def begin(self, jobs: list[Job] | None = None) -> None:
        """Start writing. Rejected rows among `jobs` (all of them when None: a generator that
        replays from the cache) are dropped from rejected.jsonl: this invocation does them again,
        from the cache, or fresh with --retry-rejected."""
        redo = set(self.run.rejected_before) if jobs is None else {j.id for j in jobs if j.id in self.run.rejected_before}
        if jobs is not None:
            self.forget_rejected(jobs)
        self.run.begin(redo)

    def forget_rejected(self, jobs: list[Job], model: str | None = None) -> None:
        """With --retry-rejected, ask the model again for jobs rejected by an earlier invocation."""
        if self.opts.retry_rejected:
            backend = self.backends[model] if model else self.backend
            for job in jobs:
                if job.id in self.run.rejected_before:
                    self.cache.forget(backend.key(job.request))

    def progress(self, total: int, initial: int = 0, unit: str = "row"):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=self.command, file=sys.stderr,
                    dynamic_ncols=True, disable=not self.opts.progress, smoothing=0.1)

    def call(self, jobs: list[Job], on_result: Callable[[Job, Completion], None], bar=None,
             model: str | None = None) -> None:
        """Send `jobs` to `model` (the first one by default); `on_result(job, completion)` runs as
        each lands. Raises StopRun when the cost limit is reached (in-flight requests land first)."""
        backend = self.backends[model] if model else self.backend
        price = self.prices[model] if model else next(iter(self.prices.values()))

        def on_complete(index: int, completion: Completion) -> None:
            job = jobs[index]
            if completion.cached:
                self.counts["cache_hits"] += 1
            else:
                cost = price.cost(completion.prompt_tokens, completion.completion_tokens) if price else 0.0
                self.run.add_tokens(backend.spec, completion.prompt_tokens, completion.completion_tokens, cost)
                self.counts["model_calls"] += 1
            on_result(job, completion)
            if bar is not None:
                bar.update(1)
            self.run.save_manifest(every=2.0)
            limit = self.opts.max_cost_usd
            if limit is not None and self.counts["model_calls"]:
                spent = self.run.manifest["cost_usd"]
                if spent + spent / self.counts["model_calls"] > limit:
                    raise StopRun()

        if jobs:
            backend.generate([j.request for j in jobs], on_complete=on_complete)

    def logprobs(self, requests: list[ChatRequest], choices: list[str], model: str | None = None) -> list[dict | None]:
        """Choice log-probabilities through the cache. Token use is estimated (backends don't
        report it for these one-token calls): prompt tokens as --dry-run estimates, 1 out."""
        from synth.prices import estimate_prompt_tokens

        backend = self.backends[model] if model else self.backend
        price = self.prices[model] if model else next(iter(self.prices.values()))
        calls_before = backend.calls
        results = backend.choice_logprobs(requests, choices) if requests else []
        fresh = backend.calls - calls_before
        self.counts["cache_hits"] += len(requests) - fresh
        self.counts["model_calls"] += fresh
        if fresh:
            prompt = sum(estimate_prompt_tokens(r) for r in requests) * fresh // max(1, len(requests))
            self.run.add_tokens(backend.spec, prompt, fresh, price.cost(prompt, fresh) if price else 0.0, requests=fresh)
            self.run.manifest["tokens_estimated_for_logprob_calls"] = True
        self.run.save_manifest(every=2.0)
        return results

    def record(self, job: Job, completion: Completion, build_row: "BuildRow", reads_truncated: bool = False) -> None:
        """Write the row(s) `build_row` makes, or the rejection (truncated, empty, error, ...).

        `reads_truncated`: build_row itself salvages the complete parts of a cut-off response
        (e.g. the whole instances before the cut), so truncation alone doesn't reject it."""
        outcome = _judge(job, completion, build_row, self.opts.keep_truncated, reads_truncated)
        if isinstance(outcome, Rejection):
            self.reject(job.id, outcome, job.input, completion.text)
            return
        for row in outcome if isinstance(outcome, list) else [outcome]:
            if row["id"] not in self.run.done:
                self.run.write_row(row)
                self.counts["written"] += 1

    def reject(self, row_id: str, rejection: Rejection, source: dict, response: str | None = None, **extra: Any) -> None:
        if rejection.error:
            extra["error"] = rejection.error
        if response:
            extra["response"] = response
        self.run.reject(row_id, rejection.reason, source, **extra)
        self.counts[f"rejected:{rejection.reason}"] += 1

    def _close_backends(self) -> None:
        for backend in self.backends.values():
            backend.backend.close()
        self.cache.close()

    @contextmanager
    def stopping(self):
        """Turn StopRun into 'stopped' and ^C into 'interrupted'; a crash marks the run failed."""
        try:
            yield
        except StopRun:
            self.status, self.exit_code = "stopped", EXIT_COST_LIMIT
        except KeyboardInterrupt:
            self.status, self.exit_code = "interrupted", EXIT_INTERRUPTED
        except BaseException:
            self.run.finish("failed")
            self._close_backends()
            raise

    def close(self, duplicates: int = 0) -> Outcome:
        if self.status == "complete" and self.counts["rejected:error"]:
            self.exit_code = EXIT_FAILED_ROWS
        self.run.manifest["cache_hits"] = self.run.manifest.get("cache_hits", 0) + self.counts["cache_hits"]
        self.run.finish(self.status)
        self._close_backends()
        text = summary(self.command, self.run, self.counts, self.skipped, duplicates, self.status,
                       time.monotonic() - self._started)
        click.echo("\n".join([text, *self.notes]))
        return Outcome(self.status, self.exit_code, self.counts, self.run)


def check_price(model: str, opts: RunOptions):
    """The model's price (None when unknown); refuse a cost limit we could not enforce."""
    from synth.prices import load_prices, price_for

    price = price_for(model, load_prices(opts.prices))
    if opts.max_cost_usd is not None and price is None:
        raise SynthError(
            f"--max-cost-usd: no known price for '{model}'; add it to a price table "
            "(copy synth/prices.yaml) and pass --prices FILE"
        )
    return price


def execute(command: str, identity: dict, config: dict, jobs: list[Job], model: str,
            build_row: BuildRow, opts: RunOptions) -> Outcome:
    """One model call per job into `opts.output`, resuming whatever an earlier run left."""
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.id, job)  # the same inputs give the same row: do it once
    duplicates = len(jobs) - len(unique)
    jobs = list(unique.values())[: opts.limit] if opts.limit else list(unique.values())
    done_before = set() if opts.overwrite else {r.get("id") for r in read_jsonl_repairing(opts.output / ROWS, repair=False)}
    todo = [j for j in jobs if j.id not in done_before]
    if opts.dry_run:
        click.echo(dry_run_report(command, jobs, todo, model, check_price(model, opts), duplicates))
        return Outcome("dry-run", EXIT_OK)

    config = {**config, "input_rows": len(jobs) + duplicates, "duplicate_inputs": duplicates}
    session = ModelRun(command, identity, config, model, opts)
    session.skipped = len(jobs) - len(todo)
    session.begin(todo)
    bar = session.progress(len(jobs), initial=session.skipped)
    with session.stopping():
        session.call(todo, lambda job, completion: session.record(job, completion, build_row), bar)
    bar.close()
    return session.close(duplicates)


def _judge(job: Job, completion: Completion, build_row: BuildRow, keep_truncated: bool,
           reads_truncated: bool = False) -> "dict | list[dict] | Rejection":
    """A usable row, or why not. Never a row with an empty or cut-off generated field unflagged."""
    if completion.error:
        return Rejection("error", completion.error)
    truncated = completion.finish_reason == "length"
    if truncated and not keep_truncated and not reads_truncated:
        return Rejection("truncated", "the response hit the token limit (raise --max-tokens, or --keep-truncated)")
    if not completion.text.strip():
        return Rejection("empty", "the model returned no text")
    row = build_row(job, completion)
    if truncated and not reads_truncated and not isinstance(row, Rejection):
        for one in row if isinstance(row, list) else [row]:
            one.setdefault("meta", {})["truncated"] = True
    return row


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
    tokens = {k: sum(t.get(k, 0) for t in run.manifest["tokens"].values()) for k in ("prompt", "completion")}
    parts = [
        f"{command}: {counts['written']} rows written" + (f" ({skipped} already done)" if skipped else ""),
        f"{sum(rejected.values())} rejected" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) + ")" if rejected else ""),
        f"{counts['cache_hits']} cache hits, {counts['model_calls']} model calls",
        f"{tokens.get('prompt', 0):,} tokens in, {tokens.get('completion', 0):,} out in all",
        f"${run.manifest['cost_usd']:.4f}",
        f"{seconds:.1f} s",
    ]
    text = " · ".join(parts) + f"\n  -> {run.folder / run.rows_name}"
    if duplicates:
        text += f"\n  {duplicates} duplicate input rows were done once"
    if status == "stopped":
        text += f"\n  stopped: --max-cost-usd reached; re-run the same command with --output {run.folder} and a higher limit to resume"
    elif status == "interrupted":
        text += f"\n  interrupted: every finished row is saved; re-run the same command with --output {run.folder} to resume"
    elif rejected.get("error"):
        text += f"\n  some requests failed after retries (see rejected.jsonl); re-run the same command with --output {run.folder} to retry them"
    return text
