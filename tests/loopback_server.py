"""A loopback OpenAI-compatible server that answers at once and injects faults on demand.

Used by the retry and fault-tolerance tests and by the benchmarks. It answers
`POST /v1/chat/completions` with "echo: <last user message>" (cut to `max_tokens` words, with
finish_reason "length", when longer), `GET /v1/models`, and `GET /stats`.

Faults, chosen per request:
- `script`: a list of behaviours for the first requests, in arrival order, then normal answers;
- `fail_rate` + `fail_kinds` + `seed`: a seeded random share of requests fails;
- `fail_prompts`: prompts that fail on every request (to exhaust the retry budget), with
  `fail_prompts_with` (default "500");
- `fail_matching`: requests whose last user message contains this text fail the same way;
- `hold_matching`: requests whose last user message contains this text (every request: "") wait
  until `server.release()`, so a test can look at the client while they are in flight;
- `wants_max_completion_tokens`: like newer OpenAI models, a body with `max_tokens` gets a 400
  naming `max_completion_tokens`.
A behaviour is "ok", "429", "429:SECONDS" (with Retry-After), "500", "503", "400", "401", "404",
"timeout" (sleep past the client's timeout), "drop" (close the socket), "garbage" (200, not JSON),
"empty" (200, JSON without choices).

Run it standalone (for benchmarks, in its own process): python tests/loopback_server.py --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Faults:
    script: list[str] = field(default_factory=list)
    fail_rate: float = 0.0
    fail_kinds: tuple[str, ...] = ("429", "500", "503", "timeout", "garbage", "drop")
    fail_prompts: tuple[str, ...] = ()
    fail_prompts_with: str = "500"
    fail_matching: str | None = None
    hold_matching: str | None = None
    wants_max_completion_tokens: bool = False
    seed: int = 0
    timeout_sleep: float = 5.0
    delay: float = 0.0


class LoopbackServer:
    def __init__(self, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0):
        self.faults = faults or Faults()
        self.host, self.port = host, port
        self.requests: list[dict] = []  # chat request bodies, in arrival order
        self.behaviours: list[str] = []  # what each request got
        self.in_flight = 0
        self.max_in_flight = 0
        self._random = random.Random(self.faults.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._released: asyncio.Event | None = None
        self.held = 0  # requests waiting for release()
        self.billed: list[tuple[int, int]] = []  # (prompt, completion) tokens of every answer sent
        self._writers: set = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "LoopbackServer":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._released = asyncio.Event()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def kill(self) -> None:
        """The server goes down: the port refuses connections and open ones are cut."""
        done = threading.Event()

        def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            done.set()

        self._loop.call_soon_threadsafe(close)
        done.wait(10)

    def release(self) -> None:
        """Let held requests (and every later one) through."""
        self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self._route(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _send(self, writer, status: int, payload, extra: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        headers = {"content-type": "application/json", "content-length": str(len(data))} | (extra or {})
        head = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + data)
        await writer.drain()

    def _behaviour(self, body: dict) -> str:
        index = len(self.requests) - 1
        if index < len(self.faults.script):
            return self.faults.script[index]
        prompt = next((m.get("content") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        if prompt in self.faults.fail_prompts:
            return self.faults.fail_prompts_with
        if self.faults.fail_matching is not None and self.faults.fail_matching in str(prompt):
            return self.faults.fail_prompts_with
        if self.faults.wants_max_completion_tokens and "max_tokens" in body:
            return "400:max_completion_tokens"
        if self.faults.fail_rate and self._random.random() < self.faults.fail_rate:
            return self._random.choice(self.faults.fail_kinds)
        return "ok"

    async def _route(self, method: str, path: str, raw: bytes, writer) -> bool:
        if method == "GET" and path.endswith("/models"):
            await self._send(writer, 200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]})
            return True
        if method == "GET" and path.endswith("/stats"):
            await self._send(writer, 200, {"requests": len(self.requests), "behaviours": self.behaviours})
            return True
        if not (method == "POST" and path.endswith("/chat/completions")):
            await self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            await self._send(writer, 400, {"error": {"message": "body is not JSON"}})
            return True
        self.requests.append(body)
        behaviour = self._behaviour(body)
        self.behaviours.append(behaviour)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            hold = self.faults.hold_matching
            if hold is not None and not self._released.is_set():
                prompt = next((m.get("content") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
                if hold in str(prompt):
                    self.held += 1
                    try:
                        await self._released.wait()
                    finally:
                        self.held -= 1
            return await self._answer(behaviour, body, writer)
        finally:
            self.in_flight -= 1

    async def _answer(self, behaviour: str, body: dict, writer) -> bool:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        kind, _, arg = behaviour.partition(":")
        if kind == "ok":
            answer = completion_body(body)
            self.billed.append((answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]))
            await self._send(writer, 200, answer)
        elif kind == "429":
            await self._send(writer, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                             {"retry-after": arg} if arg else None)
        elif kind == "400" and arg == "max_completion_tokens":
            await self._send(writer, 400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported "
                                                                "with this model. Use 'max_completion_tokens' instead."}})
        elif kind in ("400", "401", "404", "500", "503"):
            message = {"400": "This model's maximum context length is 8 tokens (context_length_exceeded)",
                       "401": "invalid api key", "404": "model not found"}.get(kind, "server error")
            await self._send(writer, int(kind), {"error": {"message": message}})
        elif kind == "timeout":
            await asyncio.sleep(self.faults.timeout_sleep)
            return False
        elif kind == "drop":
            return False
        elif kind == "garbage":
            await self._send(writer, 200, None, raw=b"<html>502 bad gateway</html>")
        elif kind == "empty":
            await self._send(writer, 200, {"id": "x", "object": "chat.completion", "choices": []})
        return True


def completion_body(body: dict) -> dict:
    """An echo answer: "echo: <last user message>", cut to max_tokens words ("length")."""
    prompt = next((m.get("content", "") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    words = f"echo: {prompt}".split()
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or 10_000
    finish = "length" if len(words) > limit else "stop"
    words = words[:limit]
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": finish}
    if body.get("logprobs"):
        # The judge's next token: "A" when the prompt mentions "prefer A", else "B".
        first, second = ("A", "B") if "prefer A" in prompt else ("B", "A")
        choice["logprobs"] = {"content": [{"token": first, "logprob": -0.2, "top_logprobs": [
            {"token": first, "logprob": -0.2}, {"token": second, "logprob": -1.8}, {"token": "The", "logprob": -4.0}]}]}
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words), "total_tokens": prompt_tokens + len(words)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = LoopbackServer(Faults(delay=args.delay), port=args.port).start()
    print(server.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
