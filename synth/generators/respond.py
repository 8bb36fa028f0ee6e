"""One response per prompt: the simplest generator, and the first step of most pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synth.backends.base import ChatRequest, Completion, Sampling
from synth.rows import InputRow, row_messages, stable_id
from synth.runs.session import Job, Rejection

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


def respond_candidates(session, prepared: list[tuple[str, InputRow, list]], variants: list[tuple[str, Sampling]],
                       n: int, min_candidates: int = 2) -> None:
    """K = n x len(variants) candidate responses per prompt, one row per prompt with `candidates`.

    A variant is (model spec, sampling); the n samples of a variant differ by sample index (part
    of the cache key and of the seed). A candidate cut off, empty or failed is left out; a prompt
    left with fewer than `min_candidates` goes to rejected.jsonl, and so does a prompt whose request
    failed (reason `error`: a re-run asks again). A row is written as soon as its last candidate lands.
    """
    todo = [p for p in prepared if p[0] not in session.done]
    bar = session.progress(len(prepared), initial=len(prepared) - len(todo))
    order = [m for m, _ in variants]
    rows = {row_id: (row, messages) for row_id, row, messages in todo}
    found: dict[str, list[dict]] = {row_id: [] for row_id in rows}
    dropped: dict[str, list[str]] = {row_id: [] for row_id in rows}
    failed: dict[str, list[str]] = {row_id: [] for row_id in rows}
    waiting = {row_id: len(variants) * n for row_id in rows}
    jobs = [Job(row_id, row.data, ChatRequest(messages, sampling, sample=k), model=model, stage=(model, sampling))
            for model, sampling in variants for row_id, (row, messages) in rows.items() for k in range(n)]

    def on_result(job: Job, completion: Completion) -> None:
        model, sampling = job.stage
        if completion.error:
            failed[job.id].append(f"{model} sample {job.request.sample}: {completion.error}")
        elif not completion.text.strip() or (completion.finish_reason == "length" and not session.opts.keep_truncated):
            why = "truncated" if completion.finish_reason == "length" else "empty"
            dropped[job.id].append(f"{model} sample {job.request.sample}: {why}")
        else:
            found[job.id].append({
                "text": completion.text.strip(), "model": model, "sampling": sampling.to_dict(),
                "sample": job.request.sample, "finish_reason": completion.finish_reason,
                "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
            })
        waiting[job.id] -= 1
        if waiting[job.id] == 0:
            _finish_row(job.id)
            bar.update(1)

    def _finish_row(row_id: str) -> None:
        row, messages = rows[row_id]
        candidates = sorted(found[row_id], key=lambda c: (order.index(c["model"]), c["sample"]))
        distinct = list({c["text"]: c for c in candidates}.values())
        if failed[row_id]:  # the samples that landed are cached: a re-run asks only for the failed ones
            session.reject(row_id, Rejection("error", "; ".join(failed[row_id])), row.data)
            return
        if len(distinct) < min_candidates:
            session.reject(row_id, Rejection("too_few_candidates", f"{len(distinct)} usable distinct candidates; "
                                                                   f"dropped: {dropped[row_id]}"), row.data)
            return
        out = {k: v for k, v in row.data.items() if k not in ("id", "meta", "candidates")}
        prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        meta = {"generator": "respond", "models": order, "n": n,
                "parent_ids": [row.data["id"]] if isinstance(row.data.get("id"), str) else []}
        session.write({"id": row_id, **out, "prompt": out.get("prompt", prompt), "messages": messages,
                           "candidates": distinct, "meta": meta})

    session.stream(jobs, on_result)
