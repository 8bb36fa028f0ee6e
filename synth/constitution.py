"""Constitutions: YAML files of principles that guide critique, revision and judging.

    name, version, description        what the constitution is (recorded in every row's meta)
    principles: [{id, critique, revision, comparison?, weight?, tags?}]
    examples:   [{prompt, response, critique, revision, principle?}]   few-shot, optional

Loading validates everything at once and reports every problem with its path and line in the
file (`principles[3].revision: missing (line 40)`), before any model is called.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.errors import SynthError
from synth.rows import read_text_utf8

TOP_KEYS = {"name": True, "version": True, "description": True, "principles": True, "examples": False}
PRINCIPLE_KEYS = {"id": True, "critique": True, "revision": True, "comparison": False, "weight": False, "tags": False}
EXAMPLE_KEYS = {"prompt": True, "response": True, "critique": True, "revision": True, "principle": False}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Principle:
    id: str
    critique: str
    revision: str
    comparison: str | None = None
    weight: float = 1.0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    critique: str
    revision: str
    principle: str | None = None


@dataclass(frozen=True)
class Constitution:
    name: str
    version: str
    description: str
    principles: tuple[Principle, ...]
    examples: tuple[Example, ...] = ()
    path: str = ""
    hash: str = field(default="", compare=False)

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "hash": self.hash}

    def principle(self, principle_id: str) -> Principle:
        return next(p for p in self.principles if p.id == principle_id)


def load_constitution(path: str | Path) -> Constitution:
    """Load and validate a constitution file; raise one SynthError listing every problem."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SynthError(f"{path}: no such constitution file (the shipped ones are in constitutions/)")
    text = read_text_utf8(path)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SynthError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    lines = _line_map(node) if node is not None else {}
    problems = validate(data)
    if problems:
        listed = "\n".join(f"  {where}: {what} (line {_line_for(where, lines)})" for where, what in problems)
        raise SynthError(f"{path}: {len(problems)} problem(s) in the constitution:\n{listed}")
    principles = tuple(
        Principle(p["id"], p["critique"].strip(), p["revision"].strip(),
                  p["comparison"].strip() if p.get("comparison") else None,
                  float(p.get("weight", 1.0)), tuple(p.get("tags") or ()))
        for p in data["principles"]
    )
    examples = tuple(Example(e["prompt"].strip(), e["response"].strip(), e["critique"].strip(),
                             e["revision"].strip(), e.get("principle")) for e in data.get("examples") or [])
    return Constitution(str(data["name"]), str(data["version"]), data["description"].strip(), principles, examples,
                        str(path), hashlib.sha256(text.encode("utf-8")).hexdigest()[:12])


def validate(data: Any) -> list[tuple[str, str]]:
    """Every problem as (path in the file, what is wrong)."""
    if not isinstance(data, dict):
        return [("(top)", "expected a mapping with name, version, description, principles")]
    problems = _check_keys(data, TOP_KEYS, "")
    for key in ("name", "description"):
        if key in data and not _text(data[key]):
            problems.append((key, "must be a non-empty string"))
    if "version" in data and not isinstance(data["version"], (int, float, str)):
        problems.append(("version", "must be a number or a string"))
    principles = data.get("principles")
    ids: dict[str, int] = {}
    if "principles" in data:
        if not isinstance(principles, list) or not principles:
            problems.append(("principles", "must be a non-empty list"))
            principles = []
        for k, p in enumerate(principles):
            where = f"principles[{k}]"
            problems += _check_entry(p, PRINCIPLE_KEYS, where, ("critique", "revision", "comparison"))
            if not isinstance(p, dict):
                continue
            if "id" in p:
                pid = p["id"]
                if not isinstance(pid, str):
                    problems.append((f"{where}.id", f"must be a string, YAML read {pid!r} (quote it: id: \"{pid}\")"))
                elif not ID_PATTERN.match(pid):
                    problems.append((f"{where}.id", "must be a short name of letters, digits, '-', '_' or '.'"))
                elif pid in ids:
                    problems.append((f"{where}.id", f"duplicate id '{pid}' (also principles[{ids[pid]}])"))
                else:
                    ids[pid] = k
            weight = p.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                problems.append((f"{where}.weight", "must be a positive number"))
            tags = p.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                problems.append((f"{where}.tags", "must be a list of strings"))
    examples = data.get("examples") or []
    if not isinstance(examples, list):
        problems.append(("examples", "must be a list"))
        examples = []
    for k, e in enumerate(examples):
        where = f"examples[{k}]"
        problems += _check_entry(e, EXAMPLE_KEYS, where, ("prompt", "response", "critique", "revision"))
        if not isinstance(e, dict):
            continue
        if e.get("principle") is not None and e["principle"] not in ids:
            problems.append((f"{where}.principle", f"no principle with id '{e['principle']}'"))
    return problems


def sample_principles(constitution: Constitution, rng: random.Random, n: int) -> list[Principle]:
    """`n` principles drawn with replacement, in proportion to their weights."""
    weights = [p.weight for p in constitution.principles]
    return rng.choices(constitution.principles, weights=weights, k=n)


def row_rng(seed: int, row_id: str) -> random.Random:
    """An RNG per row: the principles a row gets don't depend on the order rows are processed
    in, nor on which rows an earlier (resumed) invocation already finished."""
    return random.Random(f"{seed}:{row_id}")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_entry(entry: Any, known: dict[str, bool], where: str, text_keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """A principle or example: a mapping with the known keys, whose text fields are non-empty strings."""
    if not isinstance(entry, dict):
        required = ", ".join(k for k, needed in known.items() if needed)
        return [(where, f"must be a mapping with {required}")]
    problems = _check_keys(entry, known, where + ".")
    for key in text_keys:
        if key in entry and not _text(entry[key]):
            empty = isinstance(entry[key], str) or entry[key] is None
            problems.append((f"{where}.{key}", "empty text" if empty else "must be a string"))
    return problems


def _check_keys(mapping: dict, known: dict[str, bool], prefix: str) -> list[tuple[str, str]]:
    problems = [(prefix + key, "missing") for key, required in known.items() if required and key not in mapping]
    problems += [(prefix + str(key), f"unknown key (known: {', '.join(known)})") for key in mapping if key not in known]
    return problems


def _line_for(where: str, lines: dict[str, int]) -> int:
    """The line of `where`, or of its nearest parent (a missing key has no line of its own)."""
    while where and where not in lines:
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", where)
        where = "" if parent == where else parent
    return lines.get(where or "(top)", 1)


def _line_map(node, path: str = "") -> dict[str, int]:
    """Path in the file -> 1-based line, from the YAML node tree."""
    import yaml

    lines = {path or "(top)": node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            lines[child] = key.start_mark.line + 1
            lines.update({k: v for k, v in _line_map(value, child).items() if k != child})
    elif isinstance(node, yaml.SequenceNode):
        for k, value in enumerate(node.value):
            lines.update(_line_map(value, f"{path}[{k}]"))
    return lines
