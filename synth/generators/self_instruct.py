"""Self-Instruct (Wang et al., 2023): from a few seed tasks to many new instructions with instances.

The loop, as in the paper: each request shows 8 in-context instructions (6 seeds, 2 already
generated once there are some), asks for more, and parses the numbered list; every candidate goes
through the cheap heuristics, an exact-duplicate check and the ROUGE-L novelty filter against all
seed and kept instructions; survivors join the pool. Then, for each kept instruction, the model
decides whether it is a classification task and writes instances (output-first for
classification, input-first otherwise). Rows are SFT-ready: instruction, input, output, meta.

Resume is a replay: every request is built deterministically (seeded RNG, requests in fixed
rounds, responses processed in request order), so a re-run gets its responses from the cache and
rebuilds exactly the pool it had, without a model call, then goes on where it stopped. A failed
generation request stops the bootstrap there (the pool never grows past a hole a re-run would
fill differently); where the replay first meets a request the earlier run did not cache, both
files are trimmed back to the replayed pool, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.backends.base import ChatRequest, Completion, Sampling
from synth.errors import SynthError
from synth.filters.heuristics import InstructionHeuristics
from synth.parsing import collapse_whitespace, parse_instances, parse_numbered_list, parse_yes_no
from synth.prompts import Template
from synth.rows import read_rows, stable_id
from synth.runs.session import Job, Session, Rejection

GENERATOR = "self-instruct"
INSTRUCTIONS = "instructions.jsonl"


@dataclass
class Seed:
    instruction: str
    instances: list[dict[str, str]] = field(default_factory=list)
    is_classification: bool | None = None


@dataclass
class SelfInstructConfig:
    num: int = 100
    max_requests: int = 200
    seed_context: int = 6
    generated_context: int = 2
    per_request: int = 8
    batch: int = 8
    rouge_threshold: float = 0.7
    heuristics: InstructionHeuristics = field(default_factory=InstructionHeuristics)
    seed: int = 0
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, top_p=0.5, max_tokens=1024))
    instance_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=512))
    max_instances: int = 5


def load_seeds(path: str | Path) -> list[Seed]:
    """Seed tasks in Self-Instruct's format (instruction, instances, is_classification), or any
    JSONL with an 'instruction' (or 'prompt') per row, or a .txt file with one per line."""
    seeds = []
    for row in read_rows(path):
        data = row.data
        text = data.get("instruction", data.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise SynthError(f"{path} line {row.line}: each seed needs a non-empty 'instruction' string")
        instances = data.get("instances") or []
        if not isinstance(instances, list) or not all(isinstance(i, dict) and "output" in i for i in instances):
            raise SynthError(f"{path} line {row.line} field 'instances': expected a list of {{'input', 'output'}} objects")
        clf = data.get("is_classification")
        if clf is not None and not isinstance(clf, bool):
            raise SynthError(f"{path} line {row.line} field 'is_classification': expected true or false")
        seeds.append(Seed(collapse_whitespace(text),
                          [{"input": str(i.get("input") or ""), "output": str(i["output"])} for i in instances], clf))
    return seeds


def normalise(text: str) -> str:
    return collapse_whitespace(text).lower()


class InstructionFilter:
    """Heuristics, exact duplicates, then ROUGE-L novelty against every seed and kept instruction."""

    def __init__(self, pool: list[str], heuristics: InstructionHeuristics, threshold: float):
        from synth.filters.rouge import RougeLFilter

        self.heuristics = heuristics
        self.rouge = RougeLFilter(threshold, pool)
        self.seen = {normalise(t) for t in pool}

    def check(self, text: str) -> Rejection | None:
        reason = self.heuristics.reason(text)
        if reason:
            return Rejection(reason)
        if normalise(text) in self.seen:
            return Rejection("duplicate", "an identical instruction is already in the pool")
        match = self.rouge.find_similar(text)
        if match is not None:
            similar = self.rouge.texts[match.index]
            return Rejection("rouge_l", f"ROUGE-L {match.score:.3f} with: {similar}")
        return None

    def add(self, text: str) -> None:
        self.rouge.add(text)
        self.seen.add(normalise(text))


def clean_instruction(text: str) -> str:
    text = collapse_whitespace(text).rstrip(":").strip()
    # The paper's .capitalize() also lowercased the rest (losing "HTML", "Paris"); we only
    # upper-case the first letter.
    return text[:1].upper() + text[1:]


def context_instructions(rng: random.Random, seeds: list[Seed], generated: list[str], cfg: SelfInstructConfig) -> list[str]:
    machine = rng.sample(generated, min(cfg.generated_context, len(generated)))
    human = rng.sample([s.instruction for s in seeds], min(len(seeds), cfg.seed_context + cfg.generated_context - len(machine)))
    tasks = human + machine
    rng.shuffle(tasks)
    return tasks


def generate_instructions(session: Session, seeds: list[Seed], template: Template, cfg: SelfInstructConfig,
                          model: str) -> list[dict[str, Any]]:
    """Phase 1: the bootstrap loop. Returns the kept instruction records, in order."""
    rng = random.Random(cfg.seed)
    filt = InstructionFilter([s.instruction for s in seeds], cfg.heuristics, cfg.rouge_threshold)
    kept: list[dict[str, Any]] = []
    written = {r["id"] for r in session.read(INSTRUCTIONS)}
    bar = session.progress(cfg.num, unit="instruction")
    requests_made, live, failed_at = 0, False, None
    try:
        while len(kept) < cfg.num and requests_made < cfg.max_requests and failed_at is None:
            size = min(cfg.batch, cfg.max_requests - requests_made)
            jobs = []
            for k in range(size):
                tasks = context_instructions(rng, seeds, [r["instruction"] for r in kept], cfg)
                prompt = template.render(tasks=tasks, start=len(tasks) + 1, count=cfg.per_request)
                request = ChatRequest([{"role": "user", "content": prompt}], cfg.sampling, sample=requests_made + k)
                jobs.append(Job(f"request-{requests_made + k}", {"request": requests_made + k, "context": tasks}, request))
            if not live and not all(session.is_cached(j) for j in jobs):
                live = True  # the replay ends here: whatever the files hold past the pool is not ours
                written = _trim_to_pool(session, kept)
            results: dict[int, Completion] = {}
            session.stream(jobs, lambda job, completion: results.__setitem__(job.input["request"], completion))
            requests_made += size
            for job in jobs:  # request order, not arrival order: the replay must be exact
                completion = results[job.input["request"]]
                if completion.error:
                    session.reject(job.id, Rejection("error", completion.error), job.input)
                    failed_at = job.input["request"]
                    break
                for record in _new_instructions(session, job, completion, filt, cfg.num - len(kept), template, cfg,
                                                model):
                    kept.append(record)
                    bar.update(1)
                    if record["id"] not in written:
                        session.append(INSTRUCTIONS, record)
                        written.add(record["id"])
    finally:
        bar.close()
    figures = {"requests": requests_made, "kept": len(kept)}
    if failed_at is not None:
        figures["stopped_at_failed_request"] = failed_at
        session.notes.append(f"generation stopped at request {failed_at}, which failed (see rejected.jsonl); "
                             "re-run the same command to retry it and go on")
    session.note("self_instruct", figures)
    return kept


def _new_instructions(session: Session, job: Job, completion: Completion, filt: InstructionFilter, room: int,
                      template: Template, cfg: SelfInstructConfig, model: str) -> list[dict[str, Any]]:
    """The instructions of one response that pass every filter (at most `room`), each added to
    the filter's pool; the others are rejected with their reason."""
    candidates = [clean_instruction(t) for t in parse_numbered_list(completion.text)]
    if not candidates:
        session.reject(job.id, Rejection("unparseable", "no numbered list in the response"), job.input, completion.text)
        return []
    if completion.finish_reason == "length":  # the last item may be cut off mid-sentence
        cut = candidates.pop()
        session.reject(stable_id(GENERATOR, cut), Rejection("truncated"), {"instruction": cut, **job.input})
    records: list[dict[str, Any]] = []
    for text in candidates:
        if len(records) >= room:
            break
        row_id = stable_id(GENERATOR, normalise(text))
        rejection = filt.check(text)
        if rejection is not None:
            session.reject(row_id, rejection, {"instruction": text, "request": job.input["request"]})
            continue
        filt.add(text)
        records.append({"id": row_id, "instruction": text, "meta": {
            "generator": GENERATOR, "model": model, "request": job.input["request"],
            "sampling": cfg.sampling.to_dict(), "template": template.provenance(),
            "context": job.input["context"], "finish_reason": completion.finish_reason,
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}}})
    return records


def _trim_to_pool(session: Session, kept: list[dict]) -> set[str]:
    """Cut instructions.jsonl and rows.jsonl back to the pool replayed so far; the ids kept."""
    ids = {r["id"] for r in kept}
    before = session.read(INSTRUCTIONS)
    if len(before) != len(kept) or any(r.get("id") not in ids for r in before):
        session.rewrite(INSTRUCTIONS, [r for r in before if r.get("id") in ids])
    session.keep_rows(lambda row: (row.get("meta", {}).get("parent_ids") or [None])[0] in ids)
    return ids


def classify_job(record: dict, seeds: list[Seed], template: Template) -> Job:
    """Phase 2: is this kept instruction a classification task? (a model call, as in the paper)"""
    examples = [{"instruction": s.instruction, "is_classification": s.is_classification}
                for s in seeds if s.is_classification is not None][:12]
    prompt = template.render(examples=examples, instruction=record["instruction"])
    return Job(record["id"], record, ChatRequest([{"role": "user", "content": prompt}],
                                                 Sampling(temperature=0.0, max_tokens=3)), stage="classify")


def instance_job(record: dict, seeds: list[Seed], templates: dict[str, Template], cfg: SelfInstructConfig) -> Job:
    """Phase 3: few-shot instances from seeds of the same kind (classification or not). The
    examples are drawn by an RNG of this instruction's own, so arrival order changes nothing."""
    rng = random.Random(f"{cfg.seed + 1}:{record['id']}")
    clf = record["meta"]["is_classification"]
    same_kind = [s for s in seeds if s.instances and s.is_classification in (None, clf)]
    pool = same_kind or [s for s in seeds if s.instances]
    examples = [{"instruction": s.instruction, "instances": s.instances[:3]} for s in rng.sample(pool, min(3, len(pool)))]
    template = templates["output_first" if clf else "input_first"]
    prompt = template.render(examples=examples, instruction=record["instruction"])
    return Job(record["id"], {"instruction": record["instruction"]},
               ChatRequest([{"role": "user", "content": prompt}], cfg.instance_sampling), stage=("instances", template))


def instance_rows(record: dict, template: Template, completion: Completion, model: str,
                  cfg: SelfInstructConfig) -> list[dict] | Rejection:
    """SFT rows (instruction, input, output) from one instance response."""
    clf = record["meta"]["is_classification"]
    instances = parse_instances(completion.text, output_first=clf, limit=cfg.max_instances + 1)
    if completion.finish_reason == "length":
        instances = instances[:-1]  # the last one may be cut off mid-sentence; the rest are whole
    instances = instances[: cfg.max_instances]
    if not instances:
        return Rejection("unparseable", "no Input/Output instance could be read from the response")
    return [{
        "id": stable_id(GENERATOR, record["instruction"], instance["input"], instance["output"]),
        "instruction": record["instruction"],
        "input": instance["input"],
        "output": instance["output"],
        "meta": {
            "generator": GENERATOR, "model": model, "sampling": cfg.instance_sampling.to_dict(),
            "template": template.provenance(), "parent_ids": [record["id"]], "is_classification": clf,
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
            "finish_reason": completion.finish_reason,
        },
    } for instance in instances]


def self_instruct(session: Session, seeds: list[Seed], templates: dict[str, Template], cfg: SelfInstructConfig,
                  model: str) -> list[dict]:
    """All three phases into the session's run folder; returns the kept instruction records.
    Classification and instances stream: an instruction's instance request goes out as soon as
    it is classified, and its rows are written when the instances land."""
    kept = generate_instructions(session, seeds, templates["generate"], cfg, model)
    by_id = {r["id"]: r for r in kept}
    bar = session.progress(len(kept), unit="instruction")

    def on_result(job: Job, completion: Completion) -> list[Job]:
        record = by_id[job.id]
        if job.stage == "classify":
            if completion.error:  # never guessed: a re-run asks again
                session.reject(job.id, Rejection("error", f"classification request: {completion.error}"),
                               {"instruction": record["instruction"]})
                bar.update(1)
                return []
            answer = parse_yes_no(completion.text)
            # An unreadable answer means "not classification": input-first instances suit any task.
            record["meta"]["is_classification"] = bool(answer)
            record["meta"]["classification_answer"] = completion.text.strip()[:40]
            following = instance_job(record, seeds, templates, cfg)
            session.forget_rejected([following])
            return [following]
        template = job.stage[1]
        session.record(job, completion, lambda j, c: instance_rows(record, template, c, model, cfg), reads_truncated=True)
        bar.update(1)
        return []

    session.stream([classify_job(r, seeds, templates["classify"]) for r in kept], on_result)
    return kept
