"""Reading input rows and naming them: JSONL (or a plain text list) in, dicts with line numbers out.

Every problem is reported with the file, the line and the field, before any model is called.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth.errors import SynthError

ROLES = ("system", "user", "assistant")


@dataclass
class InputRow:
    line: int  # 1-based line in the source file
    data: dict[str, Any]


def read_rows(path: str | Path) -> list[InputRow]:
    """Rows of a `.jsonl` file (one JSON object per line) or a `.txt` file (one prompt per line)."""
    path = Path(path)
    if not path.is_file():
        raise SynthError(f"{path}: no such file")
    rows: list[InputRow] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SynthError(
                    f"{path} line {number}: not valid UTF-8 (byte {exc.start + 1}); re-save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            if path.suffix == ".txt":
                rows.append(InputRow(number, {"prompt": line.rstrip("\r\n")}))
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SynthError(
                    f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(value, dict):
                raise SynthError(f"{path} line {number}: expected a JSON object, got {type(value).__name__}")
            rows.append(InputRow(number, value))
    if not rows:
        raise SynthError(f"{path}: the file holds no rows")
    return rows


def row_messages(row: InputRow, path: str | Path, field: str | None = None) -> list[dict[str, str]]:
    """The chat messages a row asks for: its `messages`, or its `prompt` (or `field`) as a user turn."""
    if field is None:
        field = "messages" if "messages" in row.data else "prompt"
    if field not in row.data:
        keys = ", ".join(sorted(row.data)) or "none"
        raise SynthError(
            f"{path} line {row.line}: no field '{field}' (fields: {keys}); "
            "give each row a 'prompt' or 'messages', or name the field with --field"
        )
    value = row.data[field]
    where = f"{path} line {row.line} field '{field}'"
    if isinstance(value, str):
        if not value.strip():
            raise SynthError(f"{where}: empty prompt")
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value:
        for k, message in enumerate(value):
            if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
                raise SynthError(
                    f"{where}[{k}]: each message needs a 'role' ({'/'.join(ROLES)}) and a string 'content'"
                )
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise SynthError(f"{where}: expected a non-empty string or a list of chat messages")


def stable_id(*parts: Any) -> str:
    """A short hash of the inputs that define a row: the same inputs always give the same id."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
