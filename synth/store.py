"""A run folder: append-only rows, rejected rows with reasons, and a manifest. Nothing is lost.

    DIR/rows.jsonl       one JSON object per finished row, appended (and flushed) as it completes
    DIR/rejected.jsonl   rows a step dropped: {"id", "reason", "error"?, "input", ...}
    DIR/manifest.json    what ran, with what, and what it cost; rewritten atomically
    DIR/cache.sqlite     raw model responses (see synth.cache)

Re-running the same command into the same folder resumes it: rows already in rows.jsonl are
skipped. A crash can leave at most a torn last line, which is detected and cut off on open.
A different configuration into a folder that holds rows is refused unless `overwrite`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from synth import __version__
from synth.errors import SynthError
from synth.rows import stable_id

ROWS, REJECTED, MANIFEST = "rows.jsonl", "rejected.jsonl", "manifest.json"
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


def read_jsonl_repairing(path: Path, repair: bool = True) -> list[dict]:
    """Rows of an append-only file; a torn last line (from a crash) is ignored, and with `repair`
    also cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if good < len(data) and repair:
        with path.open("r+b") as handle:  # a partial last line: the crash happened mid-write
            handle.truncate(good)
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
class Run:
    """An open run folder. Create it with `Run.open`."""

    folder: Path
    command: str
    identity: dict  # what decides the output: a different identity can't resume this folder
    manifest: dict
    rows_name: str = ROWS  # the file whose ids mark a row done
    done: set[str] = field(default_factory=set)  # ids already in rows.jsonl
    rejected_before: dict[str, dict] = field(default_factory=dict)  # id -> its rejected.jsonl record
    counts: Counter = field(default_factory=Counter)
    _rows: Any = None
    _rejected: Any = None
    _started: float = 0.0
    _last_manifest: float = 0.0

    @classmethod
    def open(cls, folder: Path, command: str, identity: dict, config: dict, overwrite: bool = False,
             argv: list[str] | None = None, rows_name: str = ROWS) -> "Run":
        folder = Path(folder)
        fingerprint = stable_id(command, identity)
        manifest_path = folder / MANIFEST
        if overwrite and folder.exists():
            # The response cache stays: starting again re-judges paid-for responses for free.
            for name in (MANIFEST, "stats.json"):
                (folder / name).unlink(missing_ok=True)
            for path in folder.glob("*.jsonl"):  # rows, rejected and every derived view
                path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        manifest: dict = {}
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                manifest = {}
        has_rows = (folder / rows_name).exists() and (folder / rows_name).stat().st_size > 0
        if has_rows and manifest.get("fingerprint") != fingerprint:
            raise SynthError(
                f"{folder} holds rows of another run ({_difference(manifest, command, identity)}); "
                "use another --output folder, or --overwrite to discard them"
            )
        rows = read_jsonl_repairing(folder / rows_name)
        rejected = read_jsonl_repairing(folder / REJECTED)
        run = cls(folder, command, identity, manifest, rows_name=rows_name)
        run.done = {r["id"] for r in rows if "id" in r}
        run.rejected_before = {r["id"]: r for r in rejected if "id" in r}
        run.manifest = {
            "synth_version": __version__,
            "command": command,
            "fingerprint": fingerprint,
            "identity": identity,
            "config": config,
            "argv": redact_argv(argv or sys.argv),
            "versions": library_versions(),
            "status": "running",
            "started_at": manifest.get("started_at", _now()),
            "ended_at": None,
            "invocations": manifest.get("invocations", []),
            "tokens": manifest.get("tokens", {}),
            "cost_usd": manifest.get("cost_usd", 0.0),
        }
        return run

    # -- writing -------------------------------------------------------------------------------

    def begin(self, redo: set[str] | None = None) -> None:
        """Start writing. Rejected rows listed in `redo` are dropped from rejected.jsonl first:
        this invocation processes them again (from the cache, unless asked to re-request)."""
        redo = redo or set()
        if redo & set(self.rejected_before):
            kept = [r for i, r in self.rejected_before.items() if i not in redo]
            tmp = self.folder / (REJECTED + ".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.folder / REJECTED)
        self._rows = (self.folder / self.rows_name).open("a", encoding="utf-8")
        self._rejected = (self.folder / REJECTED).open("a", encoding="utf-8")
        self._started = time.monotonic()
        self.manifest["invocations"].append({"started_at": _now(), "argv": self.manifest["argv"]})
        self.save_manifest()

    def write_row(self, row: dict) -> None:
        self._rows.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._rows.flush()
        self.done.add(row["id"])
        self.counts["written"] += 1

    def reject(self, row_id: str, reason: str, input_row: dict, **extra: Any) -> None:
        record = {"id": row_id, "reason": reason, **extra, "input": input_row}
        self._rejected.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._rejected.flush()
        self.counts[f"rejected:{reason}"] += 1

    def add_tokens(self, model: str, prompt: int, completion: int, cost: float = 0.0, requests: int = 1) -> None:
        """Tokens actually spent on model calls (cache hits cost nothing and are not counted)."""
        entry = self.manifest["tokens"].setdefault(model, {"requests": 0, "prompt": 0, "completion": 0})
        entry["requests"] += requests
        entry["prompt"] += prompt
        entry["completion"] += completion
        self.manifest["cost_usd"] = round(self.manifest["cost_usd"] + cost, 8)

    def save_manifest(self, every: float = 0.0) -> None:
        """Rewrite manifest.json atomically (at most once per `every` seconds)."""
        now = time.monotonic()
        if every and now - self._last_manifest < every:
            return
        self._last_manifest = now
        invocation = self.manifest["invocations"][-1] if self.manifest["invocations"] else {}
        invocation.update(wall_seconds=round(now - self._started, 3), **{k: v for k, v in sorted(self.counts.items())})
        self.manifest["counts"] = self.totals()
        self.manifest["wall_seconds"] = round(sum(i.get("wall_seconds", 0) for i in self.manifest["invocations"]), 3)
        write_json_atomic(self.folder / MANIFEST, self.manifest)

    def flush(self) -> None:
        """Push what was written so far to the files (they are readable from disk after this)."""
        for handle in (self._rows, self._rejected):
            if handle is not None:
                handle.flush()

    def totals(self) -> dict:
        """Counts over the whole folder (all invocations), from the files themselves."""
        self.flush()
        by_reason = Counter(r.get("reason", "unknown") for r in read_jsonl_repairing(self.folder / REJECTED))
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
        for handle in (self._rows, self._rejected):
            if handle is not None:
                handle.close()


def _difference(manifest: dict, command: str, identity: dict) -> str:
    if not manifest:
        return "it has no manifest.json"
    if manifest.get("command") != command:
        return f"it was made by `synth {manifest.get('command')}`"
    before = manifest.get("identity", {})
    changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
    return "changed: " + ", ".join(f"{k} {before.get(k)!r} -> {identity.get(k)!r}" for k in changed[:4])
