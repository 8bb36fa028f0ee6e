"""One response per prompt: the simplest generator, and the first step of most pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synth.backends.base import ChatRequest, Completion, Sampling
from synth.rows import InputRow, row_messages, stable_id

GENERATOR = "generate"


def prepare_requests(
    rows: list[InputRow], path: str | Path, sampling: Sampling, field: str | None = None, system: str | None = None
) -> list[tuple[str, InputRow, ChatRequest]]:
    """(row id, input row, request) for every row; raises on the first bad row, before any call."""
    prepared = []
    for row in rows:
        messages = row_messages(row, path, field)
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}] + messages
        row_id = stable_id(GENERATOR, messages)
        prepared.append((row_id, row, ChatRequest(messages, sampling)))
    return prepared


def response_row(
    row_id: str, source: dict[str, Any], request: ChatRequest, completion: Completion, model_spec: str
) -> dict[str, Any]:
    """The output row: the input's fields, the response, and where it came from."""
    out = {k: v for k, v in source.items() if k not in ("id", "meta", "response")}
    out["id"] = row_id
    out["response"] = completion.text
    out["meta"] = {
        "generator": GENERATOR,
        "model": model_spec,
        "sampling": request.sampling.to_dict(),
        "parent_ids": [source["id"]] if isinstance(source.get("id"), str) else [],
        "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
        "finish_reason": completion.finish_reason,
    }
    return out
