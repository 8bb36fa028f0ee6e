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
from typing import Callable, Protocol, Sequence, runtime_checkable

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

    @property
    def ok(self) -> bool:
        return self.error is None


OnComplete = Callable[[int, Completion], None]


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
