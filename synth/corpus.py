"""Reading and writing a corpus in the form it came in: JSONL, Parquet, or a HF `datasets` folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synth.errors import SynthError

CORPUS_FORMS = "JSONL (one JSON object per line), Parquet (.parquet) or a HF dataset folder"


def corpus_form(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "hf"
        raise SynthError(f"{path}: a folder, but not a HF dataset saved with save_to_disk (no dataset_info.json)")
    if path.suffix == ".parquet":
        return "parquet"
    with path.open("rb") as handle:
        if handle.read(4) == b"PAR1":  # Parquet under another name: read it as what it is
            return "parquet"
    return "jsonl"


def read_corpus(path: str | Path) -> tuple[list[dict[str, Any]], list[int], str]:
    """(rows, the line or row number of each for error messages, form)."""
    path = Path(path)
    if not path.exists():
        raise SynthError(f"{path}: no such file or folder")
    form = corpus_form(path)
    if form == "jsonl":
        from synth.rows import read_rows

        rows = read_rows(path, reads=CORPUS_FORMS)
        return [r.data for r in rows], [r.line for r in rows], form
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    if form == "parquet":
        data = datasets.Dataset.from_parquet(str(path))
    else:
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if len(data) != 1:
                raise SynthError(f"{path}: a dataset with splits {', '.join(data)}; give the folder of one split")
            data = next(iter(data.values()))
    rows = data.to_list()
    if not rows:
        raise SynthError(f"{path}: the dataset holds no rows")
    return rows, list(range(1, len(rows) + 1)), form


def write_corpus(rows: list[dict[str, Any]], folder: Path, form: str) -> Path:
    """Write `rows` into `folder` in `form`; returns the path written."""
    folder.mkdir(parents=True, exist_ok=True)
    if form == "jsonl":
        out = folder / "rows.jsonl"
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, out)
        return out
    import datasets

    data = datasets.Dataset.from_list(uniform_rows(rows))
    if form == "parquet":
        out = folder / "rows.parquet"
        data.to_parquet(str(out))
        return out
    out = folder / "dataset"
    data.save_to_disk(str(out))
    return out


def cannot_write(path: Path, exc: OSError, option: str) -> SynthError:
    """A write the file system refused (permission denied, a file where a folder should be,
    a read-only file system) as one line naming the path and the way out."""
    chosen = Path(path)
    failed = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else chosen
    # Name the path the user chose, unless what failed is a file inside it (e.g. the card in a folder).
    absolute = chosen.absolute()
    where = chosen if failed.absolute() == absolute or failed.absolute() in absolute.parents else failed
    blocker = next((p for p in (failed, *failed.parents) if p.exists()), None)
    if isinstance(exc, (NotADirectoryError, FileExistsError)) and blocker is not None and blocker.is_file() \
            and (blocker != failed or isinstance(exc, FileExistsError)):
        reason = f"{blocker} is a file, not a folder"
    else:
        reason = (exc.strerror or type(exc).__name__).lower()
    return SynthError(f"cannot write to {where}: {reason}; choose another {option}")


def uniform_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same keys in every row (missing ones None): `Dataset.from_list` takes its columns from
    the first row alone and would drop a key that only later rows have."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k) for k in keys} for row in rows]


def row_id(row: dict, text: str) -> str:
    """A row's own string id, else a stable one from its text (for lineage files)."""
    from synth.rows import stable_id

    return row["id"] if isinstance(row.get("id"), str) else stable_id(text)


def default_text_field(first: dict, field: str | None, template: str | None) -> tuple[str | None, str | None]:
    """(field, template) the text of a row is built from: as given, else decided once from the
    first row, so every row compares the same text: 'text', else instruction + input, else 'prompt'."""
    if field or template:
        return field, template
    if "text" in first:
        return "text", None
    if "instruction" in first:
        return None, "{instruction} {input}"
    return "prompt", None


def row_text(row: dict, line: int, path, field: str | None, template: str | None) -> str:
    if template:
        try:
            values = {k: "" if v is None else v for k, v in row.items()}
            if template == "{instruction} {input}":
                values.setdefault("input", "")  # an instruction corpus may leave 'input' out
            return template.format_map(values)
        except KeyError as exc:
            raise SynthError(f"{path} line {line}: --template names field {exc} that the row lacks "
                             f"(fields: {', '.join(sorted(row))})") from None
    value = row.get(field)
    if not isinstance(value, str):
        raise SynthError(f"{path} line {line}: no text field '{field}' (fields: {', '.join(sorted(row))}); "
                         "name one with --field or --template")
    return value
