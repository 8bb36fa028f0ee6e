"""A backend that replays scripted answers and records every request: for unit tests only.

Tests of our own logic assert on the prompts a generator sent as well as on what it wrote. This is
never a stand-in for a real model in an end-to-end test.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from synth.backends.base import ChatRequest, Completion, OnComplete

Reply = str | Completion
Responder = Callable[[ChatRequest], Reply]


def echo(request: ChatRequest) -> str:
    """Answer with the last user message, prefixed, so tests can see which prompt produced what."""
    last = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
    return f"echo: {last}"


class ScriptedBackend:
    """Answers from a list (in call order, cycling at the end) or from a function of the request."""

    def __init__(
        self,
        replies: Iterable[Reply] | Responder = echo,
        logprobs: Callable[[ChatRequest], dict[str, float] | None] | None = None,
        spec: str = "scripted:echo",
    ):
        self.spec = spec
        self._responder = replies if callable(replies) else None
        self._replies = None if callable(replies) else list(replies)
        self._logprobs = logprobs
        self.requests: list[ChatRequest] = []
        self.logprob_requests: list[ChatRequest] = []
        self.calls = 0  # generate() calls, i.e. batches

    def _reply(self, request: ChatRequest) -> Completion:
        if self._responder is not None:
            reply = self._responder(request)
        else:
            reply = self._replies[(len(self.requests) - 1) % len(self._replies)]
        if isinstance(reply, Completion):
            return reply
        return Completion(
            text=reply,
            finish_reason="stop",
            prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
            completion_tokens=len(reply.split()),
        )

    def generate(
        self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        self.calls += 1
        out = []
        for index, request in enumerate(requests):
            self.requests.append(request)
            completion = self._reply(request)
            out.append(completion)
            if on_complete is not None:
                on_complete(index, completion)
        return out

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | None]:
        self.logprob_requests.extend(requests)
        if self._logprobs is None:
            return [None for _ in requests]
        return [self._logprobs(r) for r in requests]

    def close(self) -> None:
        pass
