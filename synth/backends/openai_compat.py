"""The OpenAI API and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI).

Many requests in flight on one event loop, bounded by `concurrency`. Transient failures (429,
5xx, timeouts, dropped connections, malformed bodies) are retried with exponential backoff and
jitter, honouring `Retry-After`; errors that a retry can't fix fail at once: 401/403/404 stop the
run, a 400 (e.g. context length) fails just its request. The API key is never part of the spec,
a repr, a row or a log line.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx
import openai
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from synth.backends.base import Admit, ChatRequest, Completion, OnComplete, OnLanded, StopRun, match_choice_tokens
from synth.errors import BackendError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_NO_KEY = "sk-no-key-needed"  # local servers ignore the key but the SDK insists on one
TOP_LOGPROBS = 20  # the most the OpenAI API returns


class ServerDown(BackendError):
    """Many attempts in a row could not connect: stop the run (resumable) instead of walking every
    remaining row through its whole retry budget."""


class MalformedResponse(Exception):
    """A 200 response whose body is not a usable chat completion (retried like a 5xx)."""


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.RateLimitError, openai.InternalServerError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 425) or exc.status_code >= 500
    return isinstance(
        exc,
        (
            openai.APIConnectionError,  # includes APITimeoutError
            openai.APIResponseValidationError,
            MalformedResponse,
            json.JSONDecodeError,
            httpx.TransportError,
        ),
    )


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` as seconds or date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _WaitRetryAfterOrBackoff:
    """tenacity wait: the server's Retry-After when it gives one, else exponential jitter."""

    def __init__(self, initial: float, maximum: float):
        self.backoff = wait_exponential_jitter(initial=initial, max=maximum)
        self.maximum = maximum

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after_seconds(exc)
        if asked is not None:
            return min(asked, self.maximum)
        return self.backoff(retry_state)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class OpenAIBackend:
    """Chat completions against `base_url` with up to `concurrency` requests in flight."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        max_attempts: int = 6,
        timeout: float = 120.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        preflight: bool = True,
        max_connection_failures: int | None = None,
    ):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.spec = f"openai:{model}" + ("" if self.base_url == DEFAULT_BASE_URL else f"@{self.base_url}")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url == DEFAULT_BASE_URL:
            raise BackendError(
                f"no API key for {self.spec}: set OPENAI_API_KEY or pass --api-key "
                "(for a local server give its URL: openai:NAME@http://127.0.0.1:8000/v1)"
            )
        self._api_key = key or _NO_KEY
        self.concurrency = max(1, concurrency)
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self._wait = _WaitRetryAfterOrBackoff(backoff_initial, backoff_max)
        self._token_param = "max_tokens"
        # Attempts in a row that could not connect before the run stops: every request in flight
        # failing about three times over means the server is down, not busy.
        self.max_connection_failures = max_connection_failures or max(10, 3 * self.concurrency)
        self._connection_failures = 0
        self._sleep = asyncio.sleep  # tests swap this to record the waits
        if preflight:
            self.check()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.spec!r}, concurrency={self.concurrency})"

    # -- preflight -----------------------------------------------------------------------------

    def check(self) -> None:
        """Reach the server before any model call, so a wrong URL or key fails in one line."""
        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers={"Authorization": f"Bearer {self._api_key}"}, timeout=15)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach the model server at {self.base_url} ({type(exc).__name__}: {exc}); "
                "is it running, and is the URL right (it usually ends in /v1)?"
            ) from None
        if response.status_code in (401, 403):
            raise BackendError(
                f"the server at {self.base_url} refused the API key (HTTP {response.status_code}): "
                "set OPENAI_API_KEY or pass --api-key"
            )
        # Other answers (200, or 404 from servers without /models) mean the server is there.

    # -- generation ----------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        results: list[Any] = [None] * len(requests)

        def landed(index, completion: Completion):
            results[index] = completion
            if on_complete is not None:
                on_complete(index, completion)

        self.stream(list(enumerate(requests)), landed)
        return results

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | None]:
        asks = [ChatRequest(r.messages, r.sampling, r.sample, tuple(choices)) for r in requests]
        return [c.logprobs for c in self.generate(asks)]

    def stream(self, items: Sequence[tuple[object, ChatRequest]], on_landed: OnLanded,
               admit: Admit | None = None) -> None:
        """Keep up to `concurrency` requests in flight; each completion's follow-ups join the queue
        at once. `admit(tag, request)` runs just before a request is sent; a StopRun from it (or from
        `on_landed`) sends nothing new, lets what is in flight land, then is re-raised."""
        _run(self._stream(items, on_landed, admit))

    def close(self) -> None:
        pass

    async def _stream(self, items, on_landed, admit) -> None:
        state = _Stream(asyncio.Queue(), on_landed, admit)
        for item in items:
            state.queue.put_nowait(item)
        if state.queue.empty():
            return
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._connection_failures = 0
        async with openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,  # tenacity owns retries, so Retry-After and our budget apply
            timeout=self.timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
        ) as client:
            workers = [asyncio.ensure_future(self._worker(client, state)) for _ in range(self.concurrency)]
            try:
                await state.queue.join()
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        if state.failure:
            raise state.failure[0]

    async def _worker(self, client, state: "_Stream") -> None:
        """Take requests off the queue until cancelled; each completion's follow-ups go back on it."""
        while True:
            tag, request = await state.queue.get()
            try:
                if state.failure or not await state.admitted(tag, request):
                    continue
                state.in_flight += 1
                try:
                    completion = await self._one(client, request)
                    more = state.on_landed(tag, completion)
                except Exception as exc:  # BackendError, StopRun from a callback, a bug: stop sending
                    state.failure.append(exc)
                    continue
                finally:
                    state.in_flight -= 1
                    async with state.landed:
                        state.landed.notify_all()
                for follow_up in more or ():
                    state.queue.put_nowait(follow_up)
            finally:
                state.queue.task_done()

    async def _one(self, client, request: ChatRequest) -> Completion:
        if request.choices is not None:
            return await self._choice_logprobs_one(client, request, request.choices)
        return await self._complete(client, request)

    async def _call(self, client, **kwargs):
        """One chat completion with retries; raises the last error when the budget is spent."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts),
            sleep=lambda seconds: self._sleep(seconds),
        ):
            with attempt:
                try:
                    response = await client.chat.completions.create(**kwargs)
                except (openai.APIConnectionError, httpx.TransportError) as exc:
                    self._connection_failures += 1
                    if self._connection_failures >= self.max_connection_failures:
                        raise ServerDown(f"{self.spec}: {self._connection_failures} attempts in a row could not "
                                         f"reach {self.base_url} (last: {_describe(exc)}); the server seems down. "
                                         "Every finished row is saved: re-run the same command to resume "
                                         "once it is back") from None
                    raise
                self._connection_failures = 0
                choices = getattr(response, "choices", None)
                if not choices or getattr(choices[0], "message", None) is None:
                    raise MalformedResponse(f"no choices in the response body: {str(response)[:200]!r}")
                return response

    def _params(self, request: ChatRequest) -> dict:
        s = request.sampling
        params: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            self._token_param: s.max_tokens,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        return params

    async def _request(self, client, params: dict) -> tuple[Any, Completion | None]:
        """(response, None) or (None, the failed Completion of this request); fatal errors raise."""
        try:
            return await self._call(client, **params), None
        except RetryError as exc:  # stop reached while the last error was retryable
            return None, self._gave_up(exc.last_attempt.exception())
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise BackendError(
                f"{self.spec}: the server refused the API key ({_describe(exc)}); "
                "set OPENAI_API_KEY or pass --api-key"
            ) from None
        except openai.NotFoundError as exc:
            raise BackendError(
                f"{self.spec}: not found ({_describe(exc)}); check the model name "
                f"(GET {self.base_url}/models lists them) and that the URL ends in /v1"
            ) from None
        except ServerDown:
            raise
        except openai.BadRequestError as exc:
            if "max_completion_tokens" in str(exc) and "max_tokens" in params:
                # Newer OpenAI models reject max_tokens; switch for the rest of the run. Requests
                # already in flight with max_tokens land here too and are sent again the new way.
                self._token_param = "max_completion_tokens"
                params = {("max_completion_tokens" if k == "max_tokens" else k): v for k, v in params.items()}
                return await self._request(client, params)
            return None, Completion("", "error", error=_describe(exc))
        except Exception as exc:  # retryable errors re-raised on the final attempt
            if _is_retryable(exc):
                return None, self._gave_up(exc)
            if isinstance(exc, openai.APIStatusError):
                return None, Completion("", "error", error=_describe(exc))
            raise

    def _gave_up(self, last: BaseException | None) -> Completion:
        # A request that timed out may still have been processed (and billed) by the server.
        return Completion("", "error", error=f"gave up after {self.max_attempts} attempts: {_describe(last)}",
                          maybe_billed=isinstance(last, openai.APITimeoutError))

    async def _complete(self, client, request: ChatRequest) -> Completion:
        response, failed = await self._request(client, self._params(request))
        if failed is not None:
            return failed
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        text = choice.message.content or ""
        return Completion(
            text=text,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    async def _choice_logprobs_one(self, client, request: ChatRequest, choices) -> Completion:
        params = self._params(request)
        params.update(temperature=0.0, top_p=1.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
        params[self._token_param] = 1
        response, failed = await self._request(client, params)
        if failed is not None:
            return failed
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        out = Completion(choice.message.content or "", choice.finish_reason or "stop",
                         getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:  # a server without log-probabilities leaves them None: the caller asks for text
            first = content[0]
            top = [(t.token, t.logprob) for t in (first.top_logprobs or [])] or [(first.token, first.logprob)]
            out.logprobs = match_choice_tokens(top, choices)
        return out


@dataclass
class _Stream:
    """One `stream` call's shared state: the queue, the first failure, requests in flight."""

    queue: asyncio.Queue
    on_landed: OnLanded
    admit: Admit | None
    failure: list[BaseException] = field(default_factory=list)  # the first StopRun or fatal error: nothing new after it
    in_flight: int = 0
    landed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def admitted(self, tag, request: ChatRequest) -> bool:
        """Reserve this request's budget; while others are in flight, wait for them to land
        (their actual cost is usually below their reservation) before giving up."""
        while True:
            try:
                if self.admit is not None:
                    self.admit(tag, request)
                return True
            except StopRun as exc:
                if self.in_flight == 0 or self.failure:
                    self.failure.append(exc)
                    return False
            async with self.landed:
                await self.landed.wait()


def _run(coroutine):
    """Run a coroutine to completion, also from inside a running loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
