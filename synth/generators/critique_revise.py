"""Constitutional AI, supervised stage (Bai et al., 2022): answer, critique, revise, repeat.

For each prompt: an initial answer; then `rounds` times: a principle drawn by weight (an RNG seeded
per row, so the draw doesn't depend on order or on resume), a critique of the current answer under
it (by the critic model), and a revision. Three views of each finished row share its id:

    sft.jsonl          {"messages": [user prompt, assistant final revision]}
    preference.jsonl   {"prompt", "chosen": final revision, "rejected": initial answer}
    trace.jsonl        every round's principle, critique and revision (the run's "done" file)

A row whose revision is empty, unchanged, a refusal to revise, unparseable or leaking (copies a
few-shot example or recites the principle) goes to rejected.jsonl with the trace so far; one whose
request failed goes there with reason `error` (a re-run asks again). Each row moves to its next
stage as soon as its request lands and is written when its last one does. trace.jsonl is the
truth: the two views are rebuilt from it atomically when a run starts and ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synth.backends.base import ChatRequest, Completion, Sampling
from synth.constitution import Constitution, Principle, row_rng, sample_principles
from synth.parsing import clean_model_text, collapse_whitespace, is_refusal_to_revise
from synth.prompts import Template
from synth.rows import InputRow, row_messages, stable_id
from synth.runs.session import Job, Session, Rejection
from synth.errors import SynthError

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


def critique_revise(session: Session, prepared: list[tuple[str, dict, list]], constitution: Constitution,
                    templates: dict[str, Template], cfg: CritiqueReviseConfig) -> None:
    """Every stage for the rows not yet done, streamed: a row's next request goes out as soon as
    its last one lands, and the row is written when it is finished."""
    rebuild_views(session)
    todo = [p for p in prepared if p[0] not in session.done]
    bar = session.progress(len(prepared), initial=len(prepared) - len(todo))
    leak_check = LeakCheck(constitution)
    examples = [e.__dict__ for e in constitution.examples]
    states = {}
    for row_id, source, messages in todo:
        principles = sample_principles(constitution, row_rng(cfg.seed, row_id), cfg.rounds)
        states[row_id] = RowState(row_id, source, messages, principles)

    def job(state: RowState, stage: str, k: int = 0) -> Job:
        if stage == "answer":
            return Job(state.id, state.source, ChatRequest(state.messages, cfg.sampling), model=cfg.model, stage=(stage, k))
        if stage == "critique":
            prompt = templates["critique"].render(prompt=state.prompt, response=state.current,
                                                  principle=state.principles[k], examples=examples)
            return Job(state.id, state.source, ChatRequest([{"role": "user", "content": prompt}], cfg.critique_sampling),
                       model=cfg.critic, stage=(stage, k))
        prompt = templates["revision"].render(prompt=state.prompt, response=state.current,
                                              critique=state.rounds[k]["critique"], principle=state.principles[k],
                                              examples=examples)
        return Job(state.id, state.source, ChatRequest([{"role": "user", "content": prompt}], cfg.revision_sampling),
                   model=cfg.model, stage=(stage, k))

    def on_result(done: Job, completion: Completion) -> list[Job]:
        state = states[done.id]
        stage, k = done.stage
        _usage(state, completion)
        if stage == "answer":
            _answered(state, completion, session.opts.keep_truncated)
            following = job(state, "critique", 0)
        elif stage == "critique":
            _critiqued(state, completion, k)
            following = job(state, "revise", k) if not state.failed else None
        else:
            _revised(state, completion, k, session.opts.keep_truncated, leak_check)
            following = job(state, "critique", k + 1) if k + 1 < cfg.rounds else None
        if state.failed or following is None:
            _write(session, state, constitution, templates, cfg)
            bar.update(1)
            return []
        session.forget_rejected([following])  # --retry-rejected asks again at every stage
        return [following]

    first = [job(state, "answer") for state in states.values()]
    session.forget_rejected(first)  # --retry-rejected: ask again from the first stage
    try:
        session.stream(first, on_result)
    finally:
        rebuild_views(session)


def _usage(state: RowState, completion: Completion) -> None:
    state.usage["prompt_tokens"] += completion.prompt_tokens
    state.usage["completion_tokens"] += completion.completion_tokens


def _fail(state: RowState, reason: str, error: str | None = None, text: str | None = None) -> None:
    state.failed = Rejection(reason, error)
    state.failed_text = text


def _answered(state: RowState, completion: Completion, keep_truncated: bool) -> None:
    text = completion.text.strip()
    if completion.error:
        _fail(state, "error", completion.error)
    elif completion.finish_reason == "length" and not keep_truncated:
        _fail(state, "truncated", "the initial answer hit the token limit", text)
    elif not text:
        _fail(state, "empty", "the initial answer is empty")
    state.initial = state.current = text


def _critiqued(state: RowState, completion: Completion, k: int) -> None:
    critique = clean_model_text(completion.text)
    state.rounds.append({"round": k + 1, "principle": state.principles[k].id, "critique": critique,
                         "critique_finish_reason": completion.finish_reason})
    if completion.error:
        _fail(state, "error", f"round {k + 1} critique: {completion.error}")
    elif not completion.text.strip():
        _fail(state, "empty", f"round {k + 1}: the critique is empty")
    elif not critique:
        _fail(state, "unparseable", f"round {k + 1}: nothing left of the critique once labels are removed",
              completion.text)


def _revised(state: RowState, completion: Completion, k: int, keep_truncated: bool, leak_check: "LeakCheck") -> None:
    revision = clean_model_text(completion.text)
    state.rounds[k]["revision"] = revision
    where = f"round {k + 1}"
    if completion.error:
        _fail(state, "error", f"{where} revision: {completion.error}")
    elif completion.finish_reason == "length" and not keep_truncated:
        _fail(state, "truncated", f"{where}: the revision hit the token limit", completion.text)
    elif not completion.text.strip():
        _fail(state, "empty", f"{where}: the revision is empty")
    elif not revision:
        _fail(state, "unparseable", f"{where}: nothing left of the revision once labels are removed", completion.text)
    elif revision.endswith(":"):
        _fail(state, "unparseable", f"{where}: an introduction with no answer after it", revision)
    elif is_refusal_to_revise(revision):
        _fail(state, "refusal_to_revise", f"{where}: the model declined to revise", revision)
    elif collapse_whitespace(revision).lower() == collapse_whitespace(state.current).lower():
        _fail(state, "unchanged", f"{where}: the revision repeats the answer it revises", revision)
    elif (leak := leak_check.leak(revision, state.principles[k], state.prompt)) is not None:
        _fail(state, "leaking", f"{where}: {leak}", revision)
    else:
        state.current = revision


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


def _write(session: Session, state: RowState, constitution: Constitution, templates: dict[str, Template],
           cfg: CritiqueReviseConfig) -> None:
    trace = {"prompt": state.prompt, "initial": state.initial, "rounds": state.rounds}
    if state.failed:
        session.reject(state.id, state.failed, state.source, state.failed_text, trace=trace)
        return
    row = {"id": state.id, **{k: v for k, v in state.source.items() if k not in ("id", "meta", "messages")},
           **trace, "messages": state.messages, "final": state.current,
           "meta": _meta(state, constitution, templates, cfg)}
    session.write(row, views=dict(zip(VIEWS, views_of(row))))


def views_of(row: dict) -> tuple[dict, dict]:
    """(SFT row, preference row) of one finished trace row."""
    messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
    meta = row.get("meta", {})
    single_turn = [m["role"] for m in messages] in (["user"], ["system", "user"])
    if single_turn:
        preference = {"id": row["id"], "prompt": row["prompt"], "chosen": row["final"], "rejected": row["initial"]}
    else:  # TRL's conversational preference format keeps the whole conversation
        preference = {"id": row["id"], "prompt": messages,
                      "chosen": [{"role": "assistant", "content": row["final"]}],
                      "rejected": [{"role": "assistant", "content": row["initial"]}]}
    sft = {"id": row["id"], "messages": messages + [{"role": "assistant", "content": row["final"]}]}
    return {**sft, "meta": meta}, {**preference, "meta": meta}


def rebuild_views(session: Session) -> None:
    """sft.jsonl and preference.jsonl from trace.jsonl, each replaced atomically (temp + rename),
    so a crash at any point leaves whole files that match the trace."""
    views = [views_of(r) for r in session.read("trace.jsonl")]
    for k, name in enumerate(VIEWS):
        session.rewrite(name, [v[k] for v in views])
