"""The README.md dataset card written with every export: Hub YAML front matter and a plain body.

The card carries MARKER, so a later export knows which README.md (and, through the card's
data_files, which data files) it may replace: synth export never replaces a file it did not write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# An HTML comment: invisible where the Hub renders the card, and what marks the file as ours.
MARKER = "<!-- written by synth export: a later synth export may replace this file -->"
# Cards written before MARKER existed: recognised by the line every card has had.
LEGACY_LINE = "Generated with synth and exported as **"

TAGS = {"sft-messages": ["sft"], "sft-prompt-completion": ["sft"], "alpaca": ["sft", "alpaca"],
        "sharegpt": ["sft", "sharegpt"], "openai-chat": ["sft"], "dpo": ["dpo", "preference"],
        "kto": ["kto", "preference"], "reward": ["reward-modeling", "preference"]}


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "n>10M"


def run_manifest(source: Path) -> dict:
    """The manifest of the run the rows came from (a run folder, or the folder of a rows file)."""
    for folder in ((source,) if source.is_dir() else (source.parent,)):
        path = folder / "manifest.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                return {}
    return {}


def _constitution(manifest: dict) -> str | None:
    config = manifest.get("config", {})
    identity = manifest.get("identity", {})
    name = manifest.get("constitution") or config.get("constitution") or identity.get("constitution")
    digest = None
    if isinstance(name, dict):
        name, digest = name.get("name"), name.get("hash") or name.get("sha256")
    if not name:
        return None
    return f"{name}" + (f" (hash {str(digest)[:16]})" if digest else "")


def synth_card(path: Path) -> dict | None:
    """The front matter of a card an earlier synth export wrote at `path` (so it may be
    replaced); None when there is no such file or it is not ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if MARKER not in text and not (text.startswith("---\n") and LEGACY_LINE in text):
        return None
    try:
        front = yaml.safe_load(text.split("---\n", 2)[1])
    except (yaml.YAMLError, IndexError):
        return {}
    return front if isinstance(front, dict) else {}


def card_data_files(front: dict | None) -> set[str]:
    """The data files (names relative to the card's folder) a card's front matter lists."""
    files = set()
    for config in (front or {}).get("configs") or []:
        for entry in (config.get("data_files") if isinstance(config, dict) else None) or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                files.add(entry["path"])
    return files


def render_card(name: str, fmt: str, conversational: bool, splits: dict[str, int], data_files: dict[str, str] | None,
                columns: list[str], source: Path, manifest: dict, license_id: str, dropped: str,
                empty_rows: int = 0) -> str:
    front: dict[str, Any] = {
        "license": license_id,
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["synthetic", "synth", *TAGS.get(fmt, [])],
        "size_categories": [size_category(sum(splits.values()))],
        "pretty_name": name,
    }
    if data_files:
        front["configs"] = [{"config_name": "default",
                             "data_files": [{"split": split, "path": path} for split, path in data_files.items()]}]
    models = manifest.get("models") or {}
    model_lines = [f"- `{spec}`" + (f" ({info.get('role')})" if isinstance(info, dict) and info.get("role") else "")
                   for spec, info in (models.items() if isinstance(models, dict) else [])]
    counts = {k: v for k, v in (manifest.get("counts") or {}).items() if not isinstance(v, dict)} or \
        {k: manifest[k] for k in ("rows_in", "rows_out") if k in manifest}
    filters = {k: v for k, v in {**manifest, **(manifest.get("counts") or {})}.items()
               if k in ("removed_by_method", "removed_by_reason", "rejected_by_reason") and v}
    body = [MARKER, "", f"# {name}", "",
            f"Generated with synth and exported as **{fmt}**"
            + (" (conversational)" if conversational else "") + ".", "",
            "## Provenance", "",
            f"- Source: `{source}`",
            f"- Generator: `{manifest.get('command', 'unknown')}`"]
    constitution = _constitution(manifest)
    if constitution:
        body.append(f"- Constitution: {constitution}")
    if model_lines:
        body += ["- Models:", *[f"  {line}" for line in model_lines]]
    if counts:
        body.append("- Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for key, value in filters.items():
        body.append(f"- {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
    if manifest.get("cost_usd") is not None:
        body.append(f"- Estimated cost: ${manifest['cost_usd']}")
    if empty_rows:
        body.append(f"- Dropped on export: {empty_rows} row{'s' if empty_rows != 1 else ''} with an empty prompt or reply")
    body += ["", "## Splits", "", *[f"- {split}: {n} rows" for split, n in splits.items()],
             "", "## Columns", "", *[f"- `{c}`" for c in columns]]
    if dropped:
        body += ["", "## Not carried over", "", dropped]
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body) + "\n"
