"""A persistent response cache: raw model responses keyed by everything that decides them.

The key is a hash of (model spec, messages, sampling parameters with the seed, sample index), so
a repeated run makes no model call and reproduces its rows, while k samples of one prompt stay
distinct. Raw text is cached, never parsed results: a changed parser or filter re-runs over the
cache for free. Failed requests are never cached. One sqlite file (WAL) per run folder by
default, or a shared one (`--cache PATH`) for several runs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

from synth.backends.base import Backend, ChatRequest, Completion, OnComplete

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS logprobs (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def request_key(spec: str, request: ChatRequest, kind: str = "chat", extra: object = None) -> str:
    blob = json.dumps(
        [kind, spec, request.messages, request.sampling.to_dict(), request.sample, extra],
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Callbacks may run on an event-loop thread; one lock serialises the connection.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; fsync is costly
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return Completion(*row, cached=True) if row else None

    def put(self, key: str, completion: Completion) -> None:
        if not completion.ok:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (key, completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens),
            )

    def forget(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
            self._db.execute("DELETE FROM logprobs WHERE key = ?", (key,))

    def get_logprobs(self, key: str) -> dict[str, float] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM logprobs WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0], parse_constant=float) if row else None

    def put_logprobs(self, key: str, value: dict[str, float]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO logprobs VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Any backend behind the cache: hits are answered at once, misses go to the model."""

    def __init__(self, backend: Backend, cache: ResponseCache):
        self.backend = backend
        self.cache = cache
        self.spec = backend.spec
        self.hits = 0
        self.calls = 0

    def key(self, request: ChatRequest) -> str:
        return request_key(self.spec, request)

    def generate(self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        keys = [self.key(r) for r in requests]
        misses = []
        for index, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is None:
                misses.append(index)
                continue
            self.hits += 1
            results[index] = hit
            if on_complete is not None:
                on_complete(index, hit)
        if not misses:
            return results  # type: ignore[return-value]

        def landed(k: int, completion: Completion) -> None:
            index = misses[k]
            self.calls += 1
            self.cache.put(keys[index], completion)  # before the row is written: a crash loses nothing
            results[index] = completion
            if on_complete is not None:
                on_complete(index, completion)

        self.backend.generate([requests[i] for i in misses], on_complete=landed)
        return results  # type: ignore[return-value]

    def choice_logprobs(self, requests: Sequence[ChatRequest], choices: Sequence[str]) -> list[dict[str, float] | None]:
        keys = [request_key(self.spec, r, "logprobs", list(choices)) for r in requests]
        results = [self.cache.get_logprobs(k) for k in keys]
        misses = [i for i, value in enumerate(results) if value is None]
        self.hits += len(requests) - len(misses)
        if misses:
            fresh = self.backend.choice_logprobs([requests[i] for i in misses], choices)
            self.calls += len(misses)
            for i, value in zip(misses, fresh):
                results[i] = value
                if value is not None:
                    self.cache.put_logprobs(keys[i], value)
        return results

    def close(self) -> None:
        self.backend.close()
        self.cache.close()
