"""A run folder: append-only rows, rejected rows with reasons, and a manifest. Nothing is lost.

    DIR/rows.jsonl       one JSON object per finished row, appended (and flushed) as it completes
    DIR/rejected.jsonl   rows a step dropped: {"id", "reason", "error"?, "input", ...}
    DIR/manifest.json    what ran, with what, and what it cost; rewritten atomically
    DIR/cache.sqlite     raw model responses (see synth.runs.cache)

Re-running the same command into the same folder resumes it: rows already in rows.jsonl are
skipped. A crash can leave at most a torn last line, which the folder's writer cuts off on open;
readers (report, stats, export) never modify a run folder. One process writes a folder at a
time: `RunFolder.open` takes an OS lock on DIR/.lock that dies with its process, so a lock left by a
killed run is no obstacle. A different configuration into a folder that holds rows is refused
unless `overwrite`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from synth import __version__
from synth.corpus import cannot_write
from synth.errors import SynthError
from synth.rows import stable_id

ROWS, REJECTED, MANIFEST, LOCK = "rows.jsonl", "rejected.jsonl", "manifest.json", ".lock"
# Every file a model-calling command writes into its run folder: --overwrite removes these and
# nothing else (the response cache stays: starting again re-judges paid-for responses for free).
OWNED = (ROWS, REJECTED, MANIFEST, "stats.json", "trace.jsonl", "sft.jsonl", "preference.jsonl",
         "instructions.jsonl", "audit.json", "report.json")
LIBRARIES = ("openai", "transformers", "torch", "llama_cpp_python", "datasets", "sentence-transformers", "tenacity")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "synth": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of an append-only file. A torn last line (a crash mid-write, or a writer still
    writing) is ignored, never cut off: only the folder's writer repairs it (`cut_torn_tail`)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    rows = []
    for number, line in enumerate(data[:good].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise SynthError(
                f"{path} line {number}: not valid JSON, so the run folder is damaged; "
                "delete that line to resume, or use --overwrite to start again"
            ) from None
    return rows


def cut_torn_tail(path: Path) -> None:
    """Cut a partial last line (the crash happened mid-write). Only for the folder's lock holder."""
    if not path.exists():
        return
    with path.open("r+b") as handle:
        data = handle.read()
        good = data.rfind(b"\n") + 1
        if good < len(data):
            handle.truncate(good)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Replace a file with these rows all at once (a crash leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def file_sha256(path: str | Path) -> str | None:
    """The contents' hash: resuming from an input file that changed is another run."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_locked(folder: Path, option: str = "--output"):
    """Make the folder and take its writer lock (`lock_folder`); a folder that can't be written is
    one line naming the path and `option`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return lock_folder(folder)
    except OSError as exc:
        raise cannot_write(folder, exc, option) from None


def lock_folder(folder: Path):
    """Hold the folder's writer lock for as long as the returned file stays open; refuse at once
    (naming the holder's PID) when another process holds it."""
    handle = (folder / LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        holder = ""
        for _ in range(100):  # the holder writes its PID just after taking the lock
            handle.seek(0)
            holder = handle.read().strip()
            if holder:
                break
            time.sleep(0.01)
        handle.close()
        holder = holder or "unknown"
        raise SynthError(
            f"{folder} is being written by another synth process (PID {holder}); wait for it to finish "
            "(or stop it), or give another --output"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with secrets masked (an --api-key value never reaches the manifest)."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--api-key":
            out.append(arg)
            hide = True
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(arg)
    return out


@dataclass
class RunFolder:
    """An open run folder, locked for this process. Create it with `RunFolder.open`."""

    path: Path  # the run folder
    command: str
    identity: dict  # what decides the output: a different identity can't resume this folder
    manifest: dict
    rows_name: str = ROWS  # the file whose ids mark a row done
    done: set[str] = field(default_factory=set)  # ids already in rows.jsonl
    rejected_before: dict[str, dict] = field(default_factory=dict)  # id -> its rejected.jsonl record
    counts: Counter = field(default_factory=Counter)
    spend: Callable[[], dict] | None = None  # {model: totals} from the spend ledger (synth.runs.cache)
    _lock: Any = None
    _rows: Any = None
    _rejected: Any = None
    _started: float = 0.0
    _last_manifest: float = 0.0

    @classmethod
    def open(cls, folder: Path, command: str, identity: dict, config: dict, overwrite: bool = False,
             argv: list[str] | None = None, rows_name: str = ROWS) -> "RunFolder":
        folder = Path(folder)
        identity = with_input_hash(identity)
        fingerprint = stable_id(command, identity)
        manifest_path = folder / MANIFEST
        lock = open_locked(folder)
        try:
            if overwrite:
                _discard_owned(folder, identity)
            manifest: dict = {}
            if manifest_path.exists():
                try:
                    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    manifest = {}
            has_rows = (folder / rows_name).exists() and (folder / rows_name).stat().st_size > 0
            if has_rows and manifest.get("fingerprint") != fingerprint:
                raise SynthError(
                    f"{folder} holds rows of another run ({_difference(manifest, command, identity)}); "
                    "use another --output folder, or --overwrite to discard them"
                )
            for name in (rows_name, REJECTED):  # we hold the lock: a torn tail is a crash's, cut it
                cut_torn_tail(folder / name)
            rows = read_jsonl(folder / rows_name)
            rejected = read_jsonl(folder / REJECTED)
        except BaseException:
            lock.close()
            raise
        run = cls(folder, command, identity, manifest, rows_name=rows_name, _lock=lock)
        run.done = {r["id"] for r in rows if "id" in r}
        run.rejected_before = {r["id"]: r for r in rejected if "id" in r}
        run.manifest = {
            **manifest_head(command, config, argv, "running", manifest.get("started_at", _now())),
            "fingerprint": fingerprint,
            "identity": identity,
            "ended_at": None,
            "invocations": manifest.get("invocations", []),
        }
        return run

    # -- writing -------------------------------------------------------------------------------

    def begin(self, redo: set[str] | None = None) -> None:
        """Start writing. Rejected rows listed in `redo` are dropped from rejected.jsonl first:
        this invocation processes them again (from the cache, unless asked to re-request)."""
        redo = redo or set()
        if redo & set(self.rejected_before):
            write_jsonl_atomic(self.path / REJECTED, [r for i, r in self.rejected_before.items() if i not in redo])
        self._rows = (self.path / self.rows_name).open("a", encoding="utf-8")
        self._rejected = (self.path / REJECTED).open("a", encoding="utf-8")
        self._started = time.monotonic()
        self.manifest["invocations"].append({"started_at": _now(), "argv": self.manifest["argv"]})
        self.save_manifest()

    def write_row(self, row: dict, views: dict[str, dict] | None = None) -> bool:
        """Append a finished row, once: an id already written is never written again. `views`
        ({file name: row}) are appended first, so a row is never done without its views (a view
        line whose row never came is dropped when the views are rebuilt from the rows)."""
        if row["id"] in self.done:
            return False
        for name, view in (views or {}).items():
            self.append(name, view)
        self._rows.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._rows.flush()
        self.done.add(row["id"])
        self.counts["written"] += 1
        return True

    def append(self, name: str, row: dict) -> None:
        """Append one line to a side file of the folder (a view, Self-Instruct's instructions)."""
        with (self.path / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def read(self, name: str) -> list[dict]:
        self.flush()
        return read_jsonl(self.path / name)

    def write_json(self, name: str, value: Any) -> None:
        """A JSON side file of the folder (stats.json, report.json), replaced atomically."""
        write_json_atomic(self.path / name, value)

    def rewrite(self, name: str, rows: list[dict]) -> None:
        """Replace a side file atomically (temp file + rename)."""
        write_jsonl_atomic(self.path / name, rows)

    def keep_rows(self, keep: Callable[[dict], bool]) -> None:
        """Rewrite the rows file atomically with only the rows `keep` accepts (the writer only)."""
        self._rows.close()
        path = self.path / self.rows_name
        rows = [r for r in read_jsonl(path) if keep(r)]
        write_jsonl_atomic(path, rows)
        self.done = {r["id"] for r in rows if "id" in r}
        self._rows = path.open("a", encoding="utf-8")

    def reject(self, row_id: str, reason: str, input_row: dict, **extra: Any) -> None:
        record = {"id": row_id, "reason": reason, **extra, "input": input_row}
        self._rejected.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._rejected.flush()
        self.counts[f"rejected:{reason}"] += 1

    def save_manifest(self, every: float = 0.0) -> None:
        """Rewrite manifest.json atomically (at most once per `every` seconds). Tokens and cost come
        from the spend ledger, which is durable: a manifest a kill left stale is rebuilt from it."""
        now = time.monotonic()
        if every and now - self._last_manifest < every:
            return
        self._last_manifest = now
        invocation = self.manifest["invocations"][-1] if self.manifest["invocations"] else {}
        invocation.update(wall_seconds=round(now - self._started, 3), **{k: v for k, v in sorted(self.counts.items())})
        self.manifest["counts"] = self.totals()
        self.manifest["wall_seconds"] = round(sum(i.get("wall_seconds", 0) for i in self.manifest["invocations"]), 3)
        if self.spend is not None:
            spend = self.spend()
            self.manifest["tokens"] = {m: {k: e[k] for k in ("requests", "prompt", "completion")}
                                       for m, e in spend.items() if e["requests"]}
            self.manifest["cost_usd"] = round(sum(e["cost_usd"] for e in spend.values()), 8)
            unsettled = {m: {"requests": e["unsettled"], "worst_case_usd": round(e["unsettled_usd"], 8)}
                         for m, e in spend.items() if e["unsettled"]}
            if unsettled:  # sent, but never answered (in flight, or the process was killed)
                self.manifest["unsettled"] = unsettled
            else:
                self.manifest.pop("unsettled", None)
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def flush(self) -> None:
        """Push what was written so far to the files (they are readable from disk after this)."""
        for handle in (self._rows, self._rejected):
            if handle is not None:
                handle.flush()

    def totals(self) -> dict:
        """Counts over the whole folder (all invocations), from the files themselves."""
        self.flush()
        by_reason = Counter(r.get("reason", "unknown") for r in read_jsonl(self.path / REJECTED))
        return {
            "input": self.manifest.get("config", {}).get("input_rows"),
            "written": len(self.done),
            "rejected": sum(by_reason.values()),
            "rejected_by_reason": dict(sorted(by_reason.items())),
        }

    def finish(self, status: str) -> None:
        self.manifest["status"] = status
        self.manifest["ended_at"] = _now()
        if self.manifest["invocations"]:
            self.manifest["invocations"][-1]["ended_at"] = self.manifest["ended_at"]
            self.manifest["invocations"][-1]["status"] = status
        self.save_manifest()
        self.close()

    def close(self) -> None:
        for handle in (self._rows, self._rejected, self._lock):
            if handle is not None and not handle.closed:
                handle.close()


def with_input_hash(identity: dict) -> dict:
    """The identity plus a hash of the input file's contents, when it names one."""
    source = identity.get("input")
    digest = file_sha256(source) if isinstance(source, str) else None
    return {**identity, "input_sha256": digest} if digest else identity


def _discard_owned(folder: Path, identity: dict) -> None:
    """--overwrite: delete the files a run owns, and only in a folder a synth run made."""
    present = [folder / name for name in OWNED if (folder / name).exists()]
    if not (folder / MANIFEST).exists():
        foreign = [p.name for p in folder.iterdir() if p.name != LOCK and not p.name.startswith("cache.sqlite")]
        if foreign:
            raise SynthError(
                f"--overwrite: {folder} holds no synth manifest.json, so it is not a run folder; nothing was "
                f"deleted (it holds {', '.join(sorted(foreign)[:3])}{', ...' if len(foreign) > 3 else ''}). "
                "Give a new or empty --output folder"
            )
    source = identity.get("input")
    if isinstance(source, str) and any(p.resolve() == Path(source).resolve() for p in present):
        raise SynthError(f"--overwrite would delete the input file {source}; give another --output folder")
    for path in present:
        path.unlink()


def _difference(manifest: dict, command: str, identity: dict) -> str:
    if not manifest:
        return "it has no manifest.json"
    if manifest.get("command") != command:
        return f"it was made by `synth {manifest.get('command')}`"
    before = manifest.get("identity", {})
    changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
    return "changed: " + ", ".join(f"{k} {before.get(k)!r} -> {identity.get(k)!r}" for k in changed[:4])


def write_step_manifest(folder: Path, command: str, config: dict, rows_in: int, rows_out: int,
                        removed_by_reason: dict[str, int], wall_seconds: float, argv: list[str] | None = None,
                        **figures: Any) -> None:
    """manifest.json of a corpus step (dedup, filter, select): the same shape as a model run's
    (config, versions, status, counts, tokens, cost), plus the step's own `figures`."""
    now = _now()
    write_json_atomic(Path(folder) / MANIFEST, {
        **manifest_head(command, config, argv, "complete", now), "ended_at": now,
        "wall_seconds": round(wall_seconds, 3),
        "counts": {"input": rows_in, "written": rows_out, "rejected": rows_in - rows_out,
                   "rejected_by_reason": dict(sorted(removed_by_reason.items()))},
        **figures,
    })


def manifest_head(command: str, config: dict, argv: list[str] | None, status: str, started_at: str) -> dict:
    """What every manifest starts with, model run or corpus step: one shape for readers."""
    return {"synth_version": __version__, "command": command, "config": config, "argv": redact_argv(argv or sys.argv),
            "versions": library_versions(), "status": status, "started_at": started_at, "tokens": {}, "cost_usd": 0.0}
