"""The backend protocol: batch-first chat generation plus choice log-probabilities.

A local model wants batches and an API wants many requests in flight, so every backend takes a
list of requests at once. Per-request failures (a context-length error, a request that kept
failing after its retries) come back as a `Completion` with `error` set, so one bad row never
costs the rest of the batch; failures that doom the whole run (bad key, unknown model) raise
`BackendError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from collections import deque
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

Message = dict[str, str]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; part of every row's provenance and of the response-cache key."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    sampling: Sampling = field(default_factory=Sampling)
    sample: int = 0  # which of several samples of the same prompt: part of the cache key and seed
    # Set for a judge's one-token question: the answer is P(next token spells each choice), read
    # into `Completion.logprobs`, not generated text.
    choices: tuple[str, ...] | None = None

    @property
    def seed(self) -> int | None:
        """The seed to send: distinct per sample, so k samples of one prompt differ."""
        return None if self.sampling.seed is None else self.sampling.seed + self.sample


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop", "length" (cut off by max_tokens) or "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False  # served from the response cache: no model call, no spend
    # For a request with `choices`: log P(choice) per choice; None when the backend or server
    # gives no log-probabilities (callers then ask for a text answer; an `error` is not that).
    logprobs: dict[str, float] | None = None
    # A failed request the server may still have processed (it timed out rather than answered
    # with an error): its reserved cost stays on the books.
    maybe_billed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


OnComplete = Callable[[int, Completion], None]
# A streaming callback: (the request's tag, its completion) -> follow-up (tag, request) pairs to send.
OnLanded = Callable[[object, Completion], "Iterable[tuple[object, ChatRequest]] | None"]
# Called just before a request is sent (never for one that is not sent); raising StopRun sends no more.
Admit = Callable[[object, ChatRequest], None]


class StopRun(Exception):
    """Raised by an `on_complete` callback to stop a run cleanly (e.g. a cost limit was reached).

    A backend that sees it sends no new request, still delivers the requests already in flight
    (they are paid for) through `on_complete`, then re-raises it.
    """


@runtime_checkable
class Backend(Protocol):
    """What every model backend offers. `spec` is the string that selected it (no secrets)."""

    spec: str

    def generate(
        self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        """Completions in request order; `on_complete(index, completion)` fires as each finishes."""
        ...

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | None]:
        """For each request, the log-probability that the next token is each choice ("A", "B").

        A choice the model gives no probability to is -inf; None means this backend or server
        returned no log-probabilities for that request (callers fall back to parsing text).
        """
        ...

    def close(self) -> None: ...


def logsumexp(values: Sequence[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(sum(math.exp(v - top) for v in finite))


def match_choice_tokens(
    top: Sequence[tuple[str, float]], choices: Sequence[str]
) -> dict[str, float]:
    """Fold candidate next tokens ("A", " A", "(A") into the choice they spell.

    Tokenizers spell the same answer several ways; the probability of a choice is the sum over
    the spellings that decode to it once whitespace and an opening bracket are stripped.
    """
    found: dict[str, list[float]] = {c: [] for c in choices}
    for token, logprob in top:
        key = token.strip().lstrip("(").strip()
        if key in found:
            found[key].append(logprob)
    return {c: logsumexp(v) for c, v in found.items()}


def stream_in_batches(backend: Backend, items: Iterable[tuple[object, ChatRequest]], on_landed: OnLanded,
                      admit: Admit, batch_size: int = 1) -> None:
    """Stream requests through a batch backend (a local model): send up to `batch_size` at a time,
    feeding each completion's follow-ups back into the queue, so a row moves to its next stage as
    soon as its request is answered. A backend with its own `stream` (an API) does this natively."""
    queue = deque(items)
    while queue:
        batch: list[tuple[object, ChatRequest]] = []
        while queue and len(batch) < batch_size:
            tag, request = queue[0]
            if batch and (request.choices != batch[0][1].choices):
                break  # one kind of request per call: chat, or one set of choices
            try:
                admit(tag, request)
            except StopRun:
                if not batch:
                    raise  # nothing in flight would free budget: stop
                break  # send what was admitted; its cost settles below its reservation
            batch.append(queue.popleft())
        requests = [r for _, r in batch]
        if requests[0].choices is None:
            backend.generate(requests, on_complete=lambda i, c: queue.extend(on_landed(batch[i][0], c) or ()))
        else:
            values = backend.choice_logprobs(requests, requests[0].choices)
            for (tag, _), value in zip(batch, values):
                queue.extend(on_landed(tag, Completion("", "stop", logprobs=value)) or ())
