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


JSONL_OR_TXT = "JSONL (one JSON object per line) or .txt (one prompt per line)"
# Files people hand to a JSONL command by mistake: recognised by suffix, or by their first bytes.
TABLE_SUFFIXES = {".parquet": "Parquet", ".arrow": "Arrow", ".feather": "Arrow", ".csv": "CSV", ".tsv": "TSV",
                  ".xlsx": "Excel", ".xls": "Excel"}
MAGIC = ((b"PAR1", "Parquet"), (b"ARROW1", "Arrow"), (b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "zip (or Excel)"))


def _convert_hint(path: Path, kind: str) -> str:
    """How to turn a table file into JSONL, as a command to copy."""
    out = path.with_suffix(".jsonl").name
    reader = {"Parquet": f"pd.read_parquet('{path}')", "Arrow": f"pd.read_feather('{path}')",
              "CSV": f"pd.read_csv('{path}')", "TSV": f"pd.read_csv('{path}', sep='\\t')",
              "Excel": f"pd.read_excel('{path}')"}.get(kind)
    if reader is None:
        return "convert it to JSONL first" + (f" (gunzip {path})" if kind.startswith("gzip") else "")
    return (f"convert it with: python -c \"import pandas as pd; {reader}.to_json('{out}', orient='records', "
            f"lines=True, force_ascii=False)\"")


def check_not_table(path: Path, reads: str = JSONL_OR_TXT) -> None:
    """A Parquet/CSV/binary file given where JSONL is read: one clear error instead of 'line 1: not valid JSON'."""
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        with path.open("rb") as handle:
            head = handle.read(4096)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text (Windows "Unicode"): NUL bytes, but not binary
            raise SynthError(f"{path}: UTF-16 text, but synth reads UTF-8; re-save it as UTF-8")
        kind = next((name for magic, name in MAGIC if head.startswith(magic)), None)
        if kind is None and b"\0" in head:
            kind = "binary"
    if kind is not None:
        raise SynthError(f"{path}: a{'n' if kind[0] in 'AEI' else ''} {kind} file, but this command reads {reads}; "
                         + _convert_hint(path, kind))


def read_text_utf8(path: Path) -> str:
    """A text file (a constitution, a recipe) as str; not UTF-8 is an error naming the line and byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SynthError(f"{path} line {line}: not valid UTF-8 (byte {column} of the line, 0x{data[exc.start]:02x}); "
                         "re-save it as UTF-8") from None


def read_rows(path: str | Path, reads: str = JSONL_OR_TXT) -> list[InputRow]:
    """Rows of a `.jsonl` file (one JSON object per line) or a `.txt` file (one prompt per line).
    `reads` is what the calling command accepts, for the error about a Parquet/CSV/binary file."""
    path = Path(path)
    if not path.is_file():
        raise SynthError(f"{path}: no such file")
    check_not_table(path, reads)
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
