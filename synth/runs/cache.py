"""A persistent response cache: raw model responses keyed by everything that decides them.

The key is a hash of (model spec, messages, sampling parameters with the seed, sample index), so
a repeated run makes no model call and reproduces its rows, while k samples of one prompt stay
distinct. Raw text is cached, never parsed results: a changed parser or filter re-runs over the
cache for free. Failed requests are never cached. One sqlite file (WAL) per run folder by
default, or a shared one (`--cache PATH`) for several runs.

The same file holds the spend ledger (see `RESERVED`): what each run folder spent, durable across
kills, so a cost cap holds across resumes and the manifest's totals can always be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from synth.backends.base import ChatRequest, Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS logprobs (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_run ON spend (run, state);
"""
BUSY_TIMEOUT_S = 120  # a shared cache: wait for another run's write rather than fail

# Ledger states. A reservation is written before its request is sent, at the request's worst-case
# cost; the response settles it (actual tokens and cost) in the same transaction that caches it; a
# request that failed releases it. A reservation never settled (the process was killed with the
# request in flight) stays counted at its worst case: the books never show less than was billed.
# A request that timed out may have been billed: it is kept at its worst case as "unanswered".
RESERVED, SPENT, RELEASED, UNANSWERED = "reserved", "spent", "released", "unanswered"


def request_key(spec: str, request: ChatRequest) -> str:
    if request.choices is not None:
        kind, extra = "logprobs", list(request.choices)
        request = ChatRequest(request.messages, request.sampling, request.sample)
    else:
        kind, extra = "chat", None
    blob = json.dumps(
        [kind, spec, request.messages, request.sampling.to_dict(), request.sample, extra],
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Cached responses and the spend ledger, in one sqlite file so that both change together."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Callbacks may run on an event-loop thread; one lock serialises the connection.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; fsync is costly
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    # -- responses -----------------------------------------------------------------------------

    def get(self, key: str, choices: bool = False) -> Completion | None:
        """The cached completion for `key` (a logprob answer when `choices`), or None."""
        with self._lock:
            if choices:
                row = self._db.execute("SELECT value FROM logprobs WHERE key = ?", (key,)).fetchone()
                if row is None:
                    return None
                return Completion("", "stop", logprobs=json.loads(row[0], parse_constant=float), cached=True)
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return Completion(*row, cached=True) if row else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
            self._db.execute("DELETE FROM logprobs WHERE key = ?", (key,))

    # -- the ledger ----------------------------------------------------------------------------

    def reserve(self, run: str, model: str, cost: float) -> int:
        """Record a request about to be sent, at its worst-case cost; its ledger id."""
        with self._lock:
            cursor = self._db.execute("INSERT INTO spend (run, model, state, cost) VALUES (?, ?, ?, ?)",
                                      (run, model, RESERVED, cost))
            return int(cursor.lastrowid)

    def settle(self, reservation: int, key: str, completion: Completion, cost: float, choices: bool = False) -> None:
        """The response and what it cost, in one transaction: cached and charged, or neither.
        A failed request releases its reservation (unless it timed out: the server may have billed
        it) and caches nothing (a re-run asks again)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if completion.ok:
                    if choices:  # "no log-probabilities" (None) is an answer too: cached as null
                        self._db.execute("INSERT OR REPLACE INTO logprobs VALUES (?, ?)",
                                         (key, json.dumps(completion.logprobs)))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                                         (key, completion.text, completion.finish_reason, completion.prompt_tokens,
                                          completion.completion_tokens))
                    self._db.execute("UPDATE spend SET state = ?, prompt_tokens = ?, completion_tokens = ?, cost = ? "
                                     "WHERE id = ?", (SPENT, completion.prompt_tokens, completion.completion_tokens,
                                                      cost, reservation))
                elif completion.maybe_billed:
                    self._db.execute("UPDATE spend SET state = ? WHERE id = ?", (UNANSWERED, reservation))
                else:
                    self._db.execute("UPDATE spend SET state = ?, cost = 0 WHERE id = ?", (RELEASED, reservation))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def spend(self, run: str) -> dict[str, dict]:
        """{model: {requests, prompt, completion, cost_usd, unsettled, unsettled_usd}} for one run
        folder: settled requests, plus reservations never settled, counted at their worst case."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, state, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                "FROM spend WHERE run = ? AND state != ? GROUP BY model, state", (run, RELEASED)).fetchall()
        out: dict[str, dict] = {}
        for model, state, count, prompt, completion, cost in rows:
            entry = out.setdefault(model, {"requests": 0, "prompt": 0, "completion": 0, "cost_usd": 0.0,
                                           "unsettled": 0, "unsettled_usd": 0.0})
            entry["cost_usd"] += cost or 0.0
            if state == SPENT:
                entry["requests"] += count
                entry["prompt"] += prompt or 0
                entry["completion"] += completion or 0
            else:
                entry["unsettled"] += count
                entry["unsettled_usd"] += cost or 0.0
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
