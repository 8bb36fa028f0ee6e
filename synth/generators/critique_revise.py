"""Constitutional AI, supervised stage (Bai et al., 2022): answer, critique, revise, repeat.

For each prompt: an initial answer; then `rounds` times: a principle drawn by weight (an RNG seeded
per row, so the draw doesn't depend on order or on resume), a critique of the current answer under
it (by the critic model), and a revision. Three views of each finished row share its id:

    sft.jsonl          {"messages": [user prompt, assistant final revision]}
    preference.jsonl   {"prompt", "chosen": final revision, "rejected": initial answer}
    trace.jsonl        every round's principle, critique and revision (the run's "done" file)

A row whose revision is empty, unchanged, a refusal to revise, unparseable or leaking (copies a
few-shot example or recites the principle) goes to rejected.jsonl with the trace so far.
Rows are processed in chunks through all stages; a crash replays the chunk from the cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from synth.backends.base import ChatRequest, Completion, Sampling
from synth.constitution import Constitution, Principle, row_rng, sample_principles
from synth.parsing import clean_model_text, is_refusal_to_revise
from synth.prompts import Template
from synth.rows import InputRow, row_messages, stable_id
from synth.runner import Job, ModelRun, Rejection
from synth.errors import SynthError
from synth.store import read_jsonl_repairing

GENERATOR = "critique-revise"
VIEWS = ("sft.jsonl", "preference.jsonl")


@dataclass
class CritiqueReviseConfig:
    model: str
    critic: str
    rounds: int = 1
    seed: int = 0
    system: str | None = None
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=512))
    critique_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=256))
    revision_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=512))
    chunk: int = 64


@dataclass
class RowState:
    id: str
    source: dict[str, Any]
    messages: list[dict[str, str]]
    principles: list[Principle]
    initial: str = ""
    current: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    failed: Rejection | None = None
    failed_text: str | None = None

    @property
    def prompt(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def prepare_rows(rows: list[InputRow], path, field_name: str | None, system: str | None) -> list[tuple[str, dict, list]]:
    """(id, source fields, messages) per input row; raises on the first bad row."""
    prepared = []
    for row in rows:
        messages = row_messages(row, path, field_name)
        if messages[-1]["role"] != "user":
            raise SynthError(f"{path} line {row.line}: the conversation must end with a user turn to answer")
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}] + messages
        prepared.append((stable_id(GENERATOR, messages), row.data, messages))
    return prepared


def critique_revise(session: ModelRun, prepared: list[tuple[str, dict, list]], constitution: Constitution,
                    templates: dict[str, Template], cfg: CritiqueReviseConfig) -> None:
    """Run every stage for the rows not yet done, chunk by chunk, writing rows as chunks finish."""
    _repair_views(session)
    todo = [p for p in prepared if p[0] not in session.run.done]
    bar = session.progress(len(prepared), initial=len(prepared) - len(todo))
    leak_check = LeakCheck(constitution)
    for start in range(0, len(todo), cfg.chunk):
        states = []
        for row_id, source, messages in todo[start:start + cfg.chunk]:
            principles = sample_principles(constitution, row_rng(cfg.seed, row_id), cfg.rounds)
            states.append(RowState(row_id, source, messages, principles))
        _answer(session, states, cfg)
        for round_index in range(cfg.rounds):
            _critique(session, [s for s in states if not s.failed], round_index, constitution, templates["critique"], cfg)
            _revise(session, [s for s in states if not s.failed], round_index, constitution, templates["revision"], cfg,
                    leak_check)
        for state in states:
            _write(session, state, constitution, templates, cfg)
            bar.update(1)
    bar.close()


def _usage(state: RowState, completion: Completion) -> None:
    state.usage["prompt_tokens"] += completion.prompt_tokens
    state.usage["completion_tokens"] += completion.completion_tokens


def _fail(state: RowState, reason: str, error: str | None = None, text: str | None = None) -> None:
    state.failed = Rejection(reason, error)
    state.failed_text = text


def _answer(session: ModelRun, states: list[RowState], cfg: CritiqueReviseConfig) -> None:
    by_id = {s.id: s for s in states}
    jobs = [Job(s.id, s.source, ChatRequest(s.messages, cfg.sampling)) for s in states]

    def on_result(job: Job, completion: Completion) -> None:
        state = by_id[job.id]
        _usage(state, completion)
        text = completion.text.strip()
        if completion.error:
            _fail(state, "error", completion.error)
        elif completion.finish_reason == "length" and not session.opts.keep_truncated:
            _fail(state, "truncated", "the initial answer hit the token limit", text)
        elif not text:
            _fail(state, "empty", "the initial answer is empty")
        state.initial = state.current = text

    session.forget_rejected(jobs, cfg.model)
    session.call(jobs, on_result, model=cfg.model)


def _critique(session: ModelRun, states: list[RowState], k: int, constitution: Constitution, template: Template,
              cfg: CritiqueReviseConfig) -> None:
    by_id = {s.id: s for s in states}
    examples = [e.__dict__ for e in constitution.examples]
    jobs = []
    for s in states:
        prompt = template.render(prompt=s.prompt, response=s.current, principle=s.principles[k], examples=examples)
        jobs.append(Job(s.id, s.source, ChatRequest([{"role": "user", "content": prompt}], cfg.critique_sampling)))

    def on_result(job: Job, completion: Completion) -> None:
        state = by_id[job.id]
        _usage(state, completion)
        critique = clean_model_text(completion.text)
        state.rounds.append({"round": k + 1, "principle": state.principles[k].id, "critique": critique,
                             "critique_finish_reason": completion.finish_reason})
        if completion.error:
            _fail(state, "error", completion.error)
        elif not completion.text.strip():
            _fail(state, "empty", f"round {k + 1}: the critique is empty")
        elif not critique:
            _fail(state, "unparseable", f"round {k + 1}: nothing left of the critique once labels are removed",
                  completion.text)

    session.forget_rejected(jobs, cfg.critic)
    session.call(jobs, on_result, model=cfg.critic)


def _revise(session: ModelRun, states: list[RowState], k: int, constitution: Constitution, template: Template,
            cfg: CritiqueReviseConfig, leak_check: "LeakCheck") -> None:
    by_id = {s.id: s for s in states}
    examples = [e.__dict__ for e in constitution.examples]
    jobs = []
    for s in states:
        prompt = template.render(prompt=s.prompt, response=s.current, critique=s.rounds[k]["critique"],
                                 principle=s.principles[k], examples=examples)
        jobs.append(Job(s.id, s.source, ChatRequest([{"role": "user", "content": prompt}], cfg.revision_sampling)))

    def on_result(job: Job, completion: Completion) -> None:
        state = by_id[job.id]
        _usage(state, completion)
        revision = clean_model_text(completion.text)
        state.rounds[k]["revision"] = revision
        where = f"round {k + 1}"
        if completion.error:
            _fail(state, "error", completion.error)
        elif completion.finish_reason == "length" and not session.opts.keep_truncated:
            _fail(state, "truncated", f"{where}: the revision hit the token limit", completion.text)
        elif not completion.text.strip():
            _fail(state, "empty", f"{where}: the revision is empty")
        elif not revision:
            _fail(state, "unparseable", f"{where}: nothing left of the revision once labels are removed", completion.text)
        elif revision.endswith(":"):
            _fail(state, "unparseable", f"{where}: an introduction with no answer after it", revision)
        elif is_refusal_to_revise(revision):
            _fail(state, "refusal_to_revise", f"{where}: the model declined to revise", revision)
        elif _normalise(revision) == _normalise(state.current):
            _fail(state, "unchanged", f"{where}: the revision repeats the answer it revises", revision)
        elif (leak := leak_check.leak(revision, state.principles[k], state.prompt)) is not None:
            _fail(state, "leaking", f"{where}: {leak}", revision)
        else:
            state.current = revision

    session.forget_rejected(jobs, cfg.model)
    session.call(jobs, on_result, model=cfg.model)


class LeakCheck:
    """A revision that copies a few-shot example, recites a principle, or parrots the request.

    Copying is measured on ROUGE-L tokens: the revision leaks when its ROUGE-L F-measure with the
    source passes `threshold`, or when most of it (`containment`) is a subsequence of the source,
    which catches a revision that copies part of a longer example.
    """

    def __init__(self, constitution: Constitution, threshold: float = 0.7, containment: float = 0.8):
        from synth.filters.rouge import rouge_tokenize

        self.threshold, self.containment = threshold, containment
        self.tokenize = rouge_tokenize
        self.sources = []
        for e in constitution.examples:
            self.sources += [("a few-shot example's request", rouge_tokenize(e.prompt)),
                             ("a few-shot example's revision", rouge_tokenize(e.revision)),
                             ("a few-shot example's answer", rouge_tokenize(e.response)),
                             ("a few-shot example's critique", rouge_tokenize(e.critique))]

    def copied(self, revision: list[str], source: list[str]) -> bool:
        from rapidfuzz.distance import LCSseq

        from synth.filters.rouge import rouge_l_f

        if not revision or not source:
            return False
        if rouge_l_f(source, revision) > self.threshold:
            return True
        return len(revision) >= 8 and LCSseq.similarity(revision, source) / len(revision) >= self.containment

    def leak(self, revision: str, principle: Principle, request: str = "") -> str | None:
        tokens = self.tokenize(revision)
        for label, source in self.sources:
            if self.copied(tokens, source):
                return f"copies {label}"
        if any(self.copied(tokens, self.tokenize(text)) for text in (principle.critique, principle.revision)):
            return f"recites the principle '{principle.id}' instead of answering"
        if request and self.copied(tokens, self.tokenize(request)):
            return "repeats the request instead of answering it"
        return None


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _meta(state: RowState, constitution: Constitution, templates: dict[str, Template], cfg: CritiqueReviseConfig) -> dict:
    return {
        "generator": GENERATOR, "model": cfg.model, "critic": cfg.critic,
        "constitution": constitution.provenance(), "principles": [p.id for p in state.principles],
        "sampling": {"answer": cfg.sampling.to_dict(), "critique": cfg.critique_sampling.to_dict(),
                     "revision": cfg.revision_sampling.to_dict()},
        "templates": {k: t.provenance() for k, t in templates.items()}, "rounds": cfg.rounds,
        "parent_ids": [state.source["id"]] if isinstance(state.source.get("id"), str) else [],
        "usage": dict(state.usage),
    }


def _write(session: ModelRun, state: RowState, constitution: Constitution, templates: dict[str, Template],
           cfg: CritiqueReviseConfig) -> None:
    trace = {"prompt": state.prompt, "initial": state.initial, "rounds": state.rounds}
    if state.failed:
        session.reject(state.id, state.failed, state.source, state.failed_text, trace=trace)
        return
    meta = _meta(state, constitution, templates, cfg)
    single_turn = [m["role"] for m in state.messages] in (["user"], ["system", "user"])
    if single_turn:
        preference = {"id": state.id, "prompt": state.prompt, "chosen": state.current, "rejected": state.initial}
    else:  # TRL's conversational preference format keeps the whole conversation
        preference = {"id": state.id, "prompt": state.messages,
                      "chosen": [{"role": "assistant", "content": state.current}],
                      "rejected": [{"role": "assistant", "content": state.initial}]}
    sft = {"id": state.id, "messages": state.messages + [{"role": "assistant", "content": state.current}]}
    folder = session.run.folder
    # The views first, the trace last: a row is done once its trace line is written.
    for name, row in (("sft.jsonl", sft), ("preference.jsonl", preference)):
        with (folder / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({**row, "meta": meta}, ensure_ascii=False) + "\n")
    session.run.write_row({"id": state.id, **{k: v for k, v in state.source.items() if k not in ("id", "meta")},
                           **trace, "final": state.current, "meta": meta})
    session.counts["written"] += 1


def _repair_views(session: ModelRun) -> None:
    """Drop view lines whose row never reached trace.jsonl (a crash between the two writes)."""
    for name in VIEWS:
        path = session.run.folder / name
        if not path.exists():
            continue
        rows = read_jsonl_repairing(path)
        seen, keep = set(), []
        for row in rows:
            if row.get("id") in session.run.done and row["id"] not in seen:
                seen.add(row["id"])
                keep.append(row)
        if len(keep) != len(rows):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")
