"""Run model jobs into a run folder: skip what is done, cache every response, never lose a row.

Every model call goes through `Session.stream`: it answers what the response cache holds, and for
each request it sends, reserves the request's worst-case cost in the spend ledger before sending
(refusing one that could pass --max-cost-usd) and settles it in the same sqlite transaction that
caches the response. A generator is a plain function that turns rows into `Job`s and, as each
completion lands, into a row, a rejection, or the row's next request: rows are written as soon
as their last request lands, with no batch barrier. This module is the one place that knows
about crashes and money.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from synth.backends import load_backend
from synth.backends.base import ChatRequest, Completion, StopRun, stream_in_batches
from synth.runs.cache import ResponseCache, request_key
from synth.errors import BackendError, SynthError
from synth.runs.plan import dry_run_estimate
from synth.runs.prices import estimate_prompt_tokens, load_prices, price_for, worst_case_tokens
from synth.runs.progress import Progress
from synth.runs.summary import summary
from synth.runs.folder import ROWS, RunFolder, read_jsonl

EXIT_OK, EXIT_FAILED_ROWS, EXIT_BACKEND, EXIT_COST_LIMIT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 3, 4, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like ^C: finished rows are kept, the run is marked interrupted."""


def handle_sigterm() -> None:
    """Make SIGTERM stop a run the way ^C does (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)


@dataclass(eq=False)
class Job:
    id: str
    input: dict[str, Any]
    request: ChatRequest
    model: str | None = None  # which of the run's models answers it (the first one when None)
    stage: Any = None  # the generator's own note of what this request is for


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
    # How a model spec becomes a backend: the seam where tests put a scripted model.
    backend_factory: Callable[..., Any] = load_backend


@dataclass
class Outcome:
    status: str  # complete, stopped (cost limit), interrupted, backend_error, dry-run
    exit_code: int
    counts: Counter = field(default_factory=Counter)
    folder: RunFolder | None = None
    summary: str = ""  # what the CLI prints on stdout
    error: str = ""  # why the backend stopped the run, for stderr


BuildRow = Callable[[Job, Completion], "dict | list[dict] | Rejection"]
OnResult = Callable[[Job, Completion], "Iterable[Job] | None"]


class Session:
    """An open, locked run folder with its backends, response cache and spend ledger.

    `stream` sends jobs and hands each (job, completion) to a callback as it lands, which may
    return the row's next jobs; `record` turns a completion into a row or a rejection;
    `stopping` turns a cost stop, a ^C/SIGTERM, a dead server or a crash into the right run
    status; `close` writes the manifest and returns the outcome with its summary (the CLI prints it).
    """

    def __init__(self, command: str, identity: dict, config: dict, model: str | list[str], opts: RunOptions,
                 rows_name: str = ROWS):
        self.command, self.opts = command, opts
        models = list(dict.fromkeys([model] if isinstance(model, str) else model))
        self.default_model = models[0]
        self.prices = {m: check_price(m, opts) for m in models}
        self.folder = RunFolder.open(opts.output, command, identity, config, overwrite=opts.overwrite, argv=opts.argv,
                            rows_name=rows_name)
        try:
            cache_path = opts.cache or opts.output / "cache.sqlite"
            try:
                self.cache = ResponseCache(cache_path)
            except (OSError, sqlite3.Error) as exc:
                raise SynthError(f"cannot open the response cache {cache_path}: {getattr(exc, 'strerror', None) or exc}; "
                                 "give a --cache path you can write to") from None
            self.ledger = str(self.folder.path.resolve())  # the ledger's name for this run folder
            self.folder.spend = lambda: self.cache.spend(self.ledger)
            # One backend per model spec (e.g. a generator and a separate critic), one cache.
            self.backends = {m: opts.backend_factory(m, concurrency=opts.concurrency, api_key=opts.api_key,
                                             max_attempts=opts.max_retries + 1, timeout=opts.request_timeout,
                                             max_wait=opts.max_retry_wait) for m in models}
        except BaseException:
            self.folder.close()
            raise
        self.folder.manifest["models"] = {b.spec: {"price_usd_per_million": self.prices[m].__dict__ if self.prices[m] else None}
                                       for m, b in self.backends.items()}
        # Spend so far (settled, plus reservations a killed run never settled), what the cap counts.
        self._committed = sum(e["cost_usd"] for e in self.cache.spend(self.ledger).values())
        self._reservations: dict[int, tuple[int, float]] = {}  # id(job) -> (ledger id, worst-case cost)
        self._money = threading.Lock()
        self.stop_note = ""
        self.error = ""  # why the backend stopped the run, for stderr
        self.counts: Counter = self.folder.counts  # one counter: rows, rejections, cache hits, model calls
        self.status, self.exit_code = "complete", EXIT_OK
        self.skipped = 0
        self.notes: list[str] = []
        self._bars: list[Progress] = []
        self._started = time.monotonic()

    def begin(self, jobs: list[Job] | None = None) -> None:
        """Start writing. Rejected rows among `jobs` (all of them when None: a generator that
        replays from the cache) are dropped from rejected.jsonl: this invocation does them again,
        from the cache, or fresh with --retry-rejected."""
        redo = set(self.folder.rejected_before) if jobs is None else {j.id for j in jobs if j.id in self.folder.rejected_before}
        if jobs is not None:
            self.forget_rejected(jobs)
        self.folder.begin(redo)

    def forget_rejected(self, jobs: list[Job]) -> None:
        """With --retry-rejected, ask the model again for jobs rejected by an earlier invocation."""
        if self.opts.retry_rejected:
            for job in jobs:
                if job.id in self.folder.rejected_before:
                    self.cache.forget(request_key(self.spec(job), job.request))

    @property
    def committed_usd(self) -> float:
        """Spent so far, counting requests in flight (and any a killed run left) at their worst case."""
        return self._committed

    def spec(self, job: Job) -> str:
        return self.backends[job.model or self.default_model].spec

    def is_cached(self, job: Job) -> bool:
        return self.cache.get(request_key(self.spec(job), job.request), job.request.choices is not None) is not None

    def progress(self, total: int, initial: int = 0, unit: str = "row") -> "Progress":
        bar = Progress(self, total, initial, unit)
        self._bars.append(bar)
        return bar

    # -- the one path to a model ---------------------------------------------------------------

    def stream(self, jobs: Iterable[Job], on_result: OnResult) -> None:
        """Answer `jobs` (from the cache, else from their model); `on_result(job, completion)` runs
        as each lands and may return the row's next jobs, which are sent at once. Raises StopRun
        when the next request could pass --max-cost-usd (what is in flight lands first)."""
        pending = list(jobs)
        while pending:
            # Jobs of one model stream together; a follow-up for another model (a separate critic)
            # waits for the next pass.
            model = pending[0].model or self.default_model
            lane = [j for j in pending if (j.model or self.default_model) == model]
            later = [j for j in pending if (j.model or self.default_model) != model]
            self._stream_lane(model, lane, on_result, later)
            pending = later

    def _stream_lane(self, model: str, jobs: list[Job], on_result: OnResult, later: list[Job]) -> None:
        backend = self.backends[model]

        def route(more) -> list[Job]:
            mine = []
            for job in more or ():
                (mine if (job.model or self.default_model) == model else later).append(job)
            return mine

        def from_cache(items: Iterable[Job]) -> list[Job]:
            """Deliver what the cache holds (and the follow-ups it leads to); the rest must be sent."""
            misses, queue = [], deque(items)
            while queue:
                job = queue.popleft()
                hit = self.cache.get(request_key(backend.spec, job.request), job.request.choices is not None)
                if hit is None:
                    misses.append(job)
                    continue
                self.counts["cache_hits"] += 1
                queue.extend(route(on_result(job, hit)))
            return misses

        def landed(job: Job, completion: Completion):
            self._settle(model, job, completion)
            self.counts["model_calls"] += 1
            more = from_cache(route(on_result(job, completion)))
            self.folder.save_manifest(every=2.0)
            return [(j, j.request) for j in more]

        misses = from_cache(jobs)
        if not misses:
            return
        items = [(j, j.request) for j in misses]
        admit = lambda job, request: self._admit(model, job)  # noqa: E731
        if hasattr(backend, "stream"):
            backend.stream(items, landed, admit)
        else:
            stream_in_batches(backend, items, landed, admit, getattr(backend, "batch_size", 1))

    def _admit(self, model: str, job: Job) -> None:
        """Reserve the request's worst-case cost in the ledger before it is sent, or refuse it."""
        price = self.prices[model]
        prompt, completion = worst_case_tokens(job.request)
        worst = price.cost(prompt, completion) if price else 0.0
        with self._money:
            limit = self.opts.max_cost_usd
            if limit is not None and self._committed + worst > limit + 1e-12:
                self.stop_note = (f"${self._committed:.4f} spent or in flight, and the next request could cost up to "
                                  f"${worst:.4f}, which would pass --max-cost-usd {limit:g}")
                raise StopRun()
            self._committed += worst
            self._reservations[id(job)] = (self.cache.reserve(self.ledger, self.backends[model].spec, worst), worst)

    def _settle(self, model: str, job: Job, completion: Completion) -> None:
        price = self.prices[model]
        cost = price.cost(completion.prompt_tokens, completion.completion_tokens) if price and completion.ok else 0.0
        with self._money:
            reservation, worst = self._reservations.pop(id(job))
            if not completion.maybe_billed or completion.ok:
                self._committed += cost - worst
            self.cache.settle(reservation, request_key(self.backends[model].spec, job.request), completion, cost,
                              choices=job.request.choices is not None)

    # -- rows ----------------------------------------------------------------------------------

    @property
    def done(self) -> set[str]:
        """Ids of the rows already written (by this or an earlier invocation)."""
        return self.folder.done

    def note(self, key: str, value: Any) -> None:
        """Record a generator's own figures in the manifest."""
        self.folder.manifest[key] = value

    def write(self, row: dict, views: dict[str, dict] | None = None) -> None:
        """Write a finished row (once), with its views; the only way a generator writes rows."""
        self.folder.write_row(row, views)

    def append(self, name: str, row: dict) -> None:
        self.folder.append(name, row)

    def read(self, name: str) -> list[dict]:
        return self.folder.read(name)

    def rewrite(self, name: str, rows: list[dict]) -> None:
        self.folder.rewrite(name, rows)

    def write_json(self, name: str, value: Any) -> None:
        self.folder.write_json(name, value)

    def keep_rows(self, keep: Callable[[dict], bool]) -> None:
        self.folder.keep_rows(keep)

    def record(self, job: Job, completion: Completion, build_row: "BuildRow", reads_truncated: bool = False) -> None:
        """Write the row(s) `build_row` makes, or the rejection (truncated, empty, error, ...).

        `reads_truncated`: build_row itself salvages the complete parts of a cut-off response
        (e.g. the whole instances before the cut), so truncation alone doesn't reject it."""
        outcome = row_or_rejection(job, completion, build_row, self.opts.keep_truncated, reads_truncated)
        if isinstance(outcome, Rejection):
            self.reject(job.id, outcome, job.input, completion.text)
            return
        for row in outcome if isinstance(outcome, list) else [outcome]:
            self.write(row)

    def reject(self, row_id: str, rejection: Rejection, source: dict, response: str | None = None, **extra: Any) -> None:
        if rejection.error:
            extra["error"] = rejection.error
        if response:
            extra["response"] = response
        self.folder.reject(row_id, rejection.reason, source, **extra)

    def _close_backends(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.cache.close()

    @contextmanager
    def stopping(self):
        """Turn StopRun into 'stopped', ^C and SIGTERM into 'interrupted', a server that went away
        into 'backend_error' (each resumable, with a summary); a crash marks the run failed."""
        try:
            yield
        except StopRun:
            self.status, self.exit_code = "stopped", EXIT_COST_LIMIT
        except KeyboardInterrupt as exc:
            self.status = "interrupted"
            self.exit_code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        except BackendError as exc:
            self.status, self.exit_code = "backend_error", EXIT_BACKEND
            self.error = exc.message
        except BaseException:
            self.folder.finish("failed")
            self._close_backends()
            raise

    def close(self, duplicates: int = 0) -> Outcome:
        for bar in self._bars:
            bar.close()
        if self.status == "complete" and self.counts["rejected:error"]:
            self.exit_code = EXIT_FAILED_ROWS
        self.folder.manifest["cache_hits"] = self.folder.manifest.get("cache_hits", 0) + self.counts["cache_hits"]
        self.folder.finish(self.status)
        self._close_backends()
        text = summary(self.command, self.folder, self.counts, self.skipped, duplicates, self.status,
                       time.monotonic() - self._started, self.stop_note)
        return Outcome(self.status, self.exit_code, self.counts, self.folder, "\n".join([text, *self.notes]), self.error)


def check_price(model: str, opts: RunOptions):
    """The model's price (None when unknown); refuse a cost limit we could not enforce."""
    price = price_for(model, load_prices(opts.prices))
    if opts.max_cost_usd is not None and price is None:
        raise SynthError(
            f"--max-cost-usd: no known price for '{model}'; add it to a price table "
            "(copy synth/runs/prices.yaml) and pass --prices FILE"
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
    done_before = set() if opts.overwrite else {r.get("id") for r in read_jsonl(opts.output / ROWS)}
    todo = [j for j in jobs if j.id not in done_before]
    if opts.dry_run:
        return Outcome("dry-run", EXIT_OK, summary=dry_run_report(command, jobs, todo, model, check_price(model, opts),
                                                                 duplicates))

    config = {**config, "input_rows": len(jobs) + duplicates, "duplicate_inputs": duplicates}
    session = Session(command, identity, config, model, opts)
    session.skipped = len(jobs) - len(todo)
    session.begin(todo)
    bar = session.progress(len(jobs), initial=session.skipped)

    def on_result(job: Job, completion: Completion) -> None:
        session.record(job, completion, build_row)
        bar.update(1)

    with session.stopping():
        session.stream(todo, on_result)
    return session.close(duplicates)


def row_or_rejection(job: Job, completion: Completion, build_row: BuildRow, keep_truncated: bool,
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
    prompt = sum(estimate_prompt_tokens(j.request) for j in todo)
    completion = sum(j.request.sampling.max_tokens for j in todo)
    work = f"{len(jobs)} rows, {len(jobs) - len(todo)} already done, {len(todo)} to do" + (
        f", {duplicates} duplicate inputs skipped" if duplicates else "")
    return dry_run_estimate(command, work, {model: (prompt, completion)}, {model: price})
