"""Parsers for model output: numbered lists, Input/Output instances, yes/no answers.

Models format lists in many ways ("1.", "2)", "Task 3:", "**4.**", blank lines between items,
a preamble, a closing remark). Parsers accept all of them and return plain strings; what they
can't read they report as empty, so the caller records an `unparseable` rejection, never a guess.
"""

from __future__ import annotations

import re

_ITEM = re.compile(r"^\s*(?:[*#>\-]\s*)*\**\s*(?:task\s*)?(\d{1,4})\s*\**\s*[.):\-]\**\s+(.*)$", re.IGNORECASE)
_NONE = {"", "none", "n/a", "na", "null", "<noinput>", "no input", "(none)", "-"}


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (any Unicode space, newlines, tabs) as one space, none at the ends."""
    return " ".join(text.split())


def parse_numbered_list(text: str) -> list[str]:
    """Items of a numbered list; continuation lines join their item, a blank line ends it."""
    items: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            if current:
                items.append(" ".join(current))
            current = [match.group(2).strip()]
        elif current is not None:
            if line.strip():
                current.append(line.strip())
            else:
                items.append(" ".join(current))
                current = None
    if current:
        items.append(" ".join(current))
    cleaned = (collapse_whitespace(item).strip("*").strip() for item in items)
    return [item for item in cleaned if item]


def _none_to_empty(value: str) -> str:
    value = value.strip()
    return "" if value.lower().strip(".") in _NONE else value


_INPUT_FIRST = re.compile(
    r"(?:^|\n)\s*Input\s*:\s*(?P<input>.*?)\s*\n\s*Output\s*:\s*(?P<output>.*?)"
    r"(?=\n\s*(?:Example\s*\d*\s*:?\s*\n|Input\s*:)|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_OUTPUT_ONLY = re.compile(r"(?:^|\n)\s*Output\s*:\s*(?P<output>.*?)(?=\n\s*Example\s*\d*\s*:?\s*\n|\Z)", re.I | re.S)
_OUTPUT_FIRST = re.compile(
    r"(?:^|\n)\s*Class\s*label\s*:\s*(?P<output>.*?)\s*\n\s*Input\s*:\s*(?P<input>.*?)"
    r"(?=\n\s*Class\s*label\s*:|\Z)",
    re.IGNORECASE | re.DOTALL,
)


def parse_instances(text: str, output_first: bool, limit: int = 5) -> list[dict[str, str]]:
    """(input, output) pairs from "Input: ... Output: ..." (or "Class label: ... Input: ...")."""
    text = "\n" + text.strip()
    pattern = _OUTPUT_FIRST if output_first else _INPUT_FIRST
    found = [(m.group("input"), m.group("output")) for m in pattern.finditer(text)]
    if not found and not output_first:
        found = [("", m.group("output")) for m in _OUTPUT_ONLY.finditer(text)]
        if not found and not re.search(r"(?im)^\s*(input|output)\s*:", text):
            # As the paper's prompt allows: a task that needs no input is answered directly.
            found = [("", text)]
    instances, seen = [], set()
    for raw_input, raw_output in found:
        input_text, output = _none_to_empty(raw_input), raw_output.strip()
        if not output or output == input_text or (input_text, output) in seen:
            continue
        seen.add((input_text, output))
        instances.append({"input": input_text, "output": output})
    return instances[:limit]


def parse_yes_no(text: str) -> bool | None:
    """True for an answer that starts with yes, False for no, None when it says neither."""
    match = re.match(r"\W*(yes|no)\b", text.strip(), re.IGNORECASE)
    return None if match is None else match.group(1).lower() == "yes"


# -- critiques and revisions ---------------------------------------------------------------

_LABEL_WORDS = (r"(?:revised|rewritten|new|improved|final)\s+(?:answer|response|version)|revision|critique|"
                r"answer|response|assistant")
_LEADING_LABEL = re.compile(rf"^\s*(?:\*\*|__)?\s*(?:{_LABEL_WORDS})\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*", re.IGNORECASE)
_PREAMBLE = re.compile(
    rf"^\s*(?:(?:sure|certainly|okay|ok|of course)[,!.]?\s*)?(?:here(?:'s| is)|below is)\s+(?:the\s+|a\s+|my\s+)?"
    rf"(?:{_LABEL_WORDS})[^:\n]{{0,40}}:\s*",
    re.IGNORECASE,
)
# A line where the template's own structure starts again: the model ran on past its answer.
_LEAK = re.compile(
    r"\n\s*(?:\[/?(?:REQUEST|ANSWER|CRITIQUE)\]|(?:critique|revision)\s+request\s*:|principle\s*:|"
    r"(?:\*\*)?(?:critique|revised answer|revision)(?:\*\*)?\s*:|example review\b|now (?:review|rewrite) this)",
    re.IGNORECASE,
)
_TAG = re.compile(r"^\[[A-Z][A-Z _-]{1,20}\]\s*")
_MARKERS = re.compile(r"\[/?(?:REQUEST|ANSWER|CRITIQUE|RESPONSE|REVISION)\]", re.IGNORECASE)
_QUOTES = [('"', '"'), ("“", "”"), ("'", "'")]


def clean_model_text(text: str) -> str:
    """A critique or revision without echoed labels, preambles, wrapping quotes or template leakage.

    "Revision: ..." -> "...", "Here is the revised answer: ..." -> "...", text after a line that
    restarts the template ("Critique:", "[REQUEST]", ...) is cut, markers are removed.
    """
    text = text.strip()
    for _ in range(3):  # labels can stack: "**Revised answer:** Revision: ..."
        before = text
        text = _PREAMBLE.sub("", text, count=1)
        text = _LEADING_LABEL.sub("", text, count=1).strip()
        if _MARKERS.match(text):
            text = _MARKERS.sub("", text, count=1).strip()
        text = _TAG.sub("", text, count=1).strip()  # "[SUGGESTION] ...", "[TIP] ..."
        if text == before:
            break
    leak = _LEAK.search("\n" + text)
    if leak:
        text = ("\n" + text)[: leak.start()].strip()
    text = _MARKERS.sub("", text).strip()
    for left, right in _QUOTES:
        inner = text[len(left):-len(right)] if len(text) > 1 else ""
        if text.startswith(left) and text.endswith(right) and left not in inner and right not in inner:
            text = inner.strip()
    return text


_REFUSAL_TO_REVISE = re.compile(
    r"^\s*(?:(?:no|there (?:is|are) no)\s+(?:revision|changes?|edits?)s?\s+(?:is |are )?(?:needed|necessary|required)"
    r"|the (?:original )?(?:answer|response) (?:is|was) (?:already|fine|good|appropriate|acceptable)"
    r"|i (?:cannot|can't|can not|won't|will not|am unable to) (?:revise|rewrite|improve|change)"
    r"|(?:the|this) (?:answer|response) (?:does not|doesn't) need (?:any )?(?:revision|changes?))",
    re.IGNORECASE,
)


def is_refusal_to_revise(text: str) -> bool:
    """A "revision" that declines to revise ("No revision needed", "The answer is already fine")."""
    return bool(_REFUSAL_TO_REVISE.match(text))
