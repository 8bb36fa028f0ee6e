"""Pairwise AI feedback (Bai et al. 2022, RL stage; Lee et al. 2023, RLAIF): soft, debiased labels.

A judge model answers a multiple-choice question built from a principle's `comparison` text:
which of two responses, shown as A and B between clear markers, is better. The soft label is
P(A) / (P(A) + P(B)) read from the judge's next-token log-probabilities where the backend gives
them, else the judge's own text answer is parsed (never the candidates' text). Every pair is
judged in both orders and the two probabilities averaged, which cancels a judge's preference for
a position; whether both orders agreed is recorded.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from synth.backends.base import ChatRequest, Sampling
from synth.constitution import Constitution, Principle, row_rng
from synth.prompts import Template
from synth.runs.plan import prompt_tokens
from synth.runs.session import Job

GENERATOR = "label"
CHOICES = ("A", "B")
FOLLOW_UP = "So, which response is better? Answer with a single letter: A or B."


@dataclass
class Candidate:
    text: str
    info: dict[str, Any] = field(default_factory=dict)  # model, sampling... as the input gave them


@dataclass
class Comparison:
    """One pair of candidates (i < j) of one prompt under one principle."""

    row_id: str
    prompt: str  # the request the candidates answer (the last user turn)
    i: int
    j: int
    principle: Principle
    context: tuple = ()  # the conversation before that request: system prompt, earlier turns


@dataclass
class Verdict:
    """P(first shown is better) for one order, and how it was read."""

    p_first: float | None
    source: str  # "logprobs", "text", "none" (the judge said neither) or "error" (a request failed)
    raw: str = ""
    error: str | None = None


def p_first_from_logprobs(logprobs: dict[str, float] | None) -> float | None:
    """P(A) / (P(A) + P(B)), or None when the judge gave neither letter any probability."""
    if not logprobs:
        return None
    a, b = logprobs.get("A", -math.inf), logprobs.get("B", -math.inf)
    if a == -math.inf and b == -math.inf:
        return None
    top = max(a, b)
    ea, eb = math.exp(a - top), math.exp(b - top)
    return ea / (ea + eb)


_FINAL = re.compile(r"final\s+answer\s*(?:is)?\s*[:\-]?\s*\**\s*\(?\s*(?:response\s+)?([AB])\b", re.IGNORECASE)
_LEADING = re.compile(r"^\W*(?:(?:response|answer|option)\s+)?\(?([AB])\)?(?:\W|$)", re.IGNORECASE)
_NAMED = re.compile(r"\b(?:response|answer|option)\s+\(?([AB])\)?\s+is\s+(?:better|preferable|the better)", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """The judge's own choice from its text: "Final answer: B", a leading "A", or "Response B is
    better"; None when it says neither or names both ways. Only the judge's output is read."""
    finals = {m.upper() for m in _FINAL.findall(text)}
    if len(finals) == 1:
        return finals.pop()
    if finals:
        return None
    lead = _LEADING.match(text.strip())
    if lead:
        return lead.group(1).upper()
    named = {m.upper() for m in _NAMED.findall(text)}
    return named.pop() if len(named) == 1 else None


def defang(text: str) -> str:
    """Candidate text can't forge the judge prompt's markers ("<<<END RESPONSE A>>>")."""
    return text.replace("<<<", "‹‹‹").replace(">>>", "›››")


def judge_messages(template: Template, prompt: str, first: str, second: str, principle: Principle,
                   cot: bool, context: Sequence[dict] = ()) -> list[dict[str, str]]:
    question = principle.comparison or f"Which response better follows this principle: {principle.revision}"
    shown = [{"role": m["role"], "content": defang(m["content"])} for m in context]
    return [{"role": "user", "content": template.render(prompt=defang(prompt), first=defang(first),
                                                         second=defang(second), question=question, cot=cot,
                                                         context=shown)}]


def follow_up(messages: list[dict[str, str]], reasoning: str) -> list[dict[str, str]]:
    """After chain-of-thought, ask for the letter so its probability can be read."""
    return messages + [{"role": "assistant", "content": reasoning}, {"role": "user", "content": FOLLOW_UP}]


def all_pairs(k: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(k), 2))


def combine(p_order1: float, p_order2_swapped: float) -> tuple[float, bool]:
    """(P(i better than j), whether both orders agree). Order 1 shows i first, order 2 shows j
    first, so P(i better) in order 2 is P(B) = 1 - P(A)."""
    p2 = 1.0 - p_order2_swapped
    return (p_order1 + p2) / 2, (p_order1 > 0.5) == (p2 > 0.5) and p_order1 != 0.5


def binarize_best_worst(k: int, pair_scores: dict[tuple[int, int], float]) -> tuple[int, int, list[float]] | None:
    """UltraFeedback-style: the candidate with the highest mean win probability against the
    lowest. None when every candidate ties."""
    wins = [[] for _ in range(k)]
    for (i, j), p in pair_scores.items():
        wins[i].append(p)
        wins[j].append(1 - p)
    means = [sum(w) / len(w) if w else 0.5 for w in wins]
    best = max(range(k), key=lambda c: (means[c], -c))
    worst = min(range(k), key=lambda c: (means[c], c))
    if best == worst or means[best] == means[worst]:
        return None
    return best, worst, means


def judge_sampling(cot: bool, seed: int) -> Sampling:
    return Sampling(temperature=0.0, top_p=1.0, max_tokens=384 if cot else 8, seed=seed)


def principles_for(constitution: Constitution) -> list[Principle]:
    """Principles that can judge a pair: those with a comparison question (all, if none has one)."""
    with_question = [p for p in constitution.principles if p.comparison]
    return with_question or list(constitution.principles)


def draw_principle(constitution: Constitution, seed: int, key: str) -> Principle:
    """The one principle a pair is judged under: drawn by weight from `principles_for`, seeded by
    `key` (the pair's or row's id), so the draw doesn't depend on the order pairs are judged in."""
    usable = principles_for(constitution)
    return row_rng(seed, key).choices(usable, weights=[p.weight for p in usable], k=1)[0]


# -- judging through a run ------------------------------------------------------------------

@dataclass
class JudgeConfig:
    judge: str
    cot: bool = False
    seed: int = 0
    swap: bool = True  # judge both orders (position debiasing)


def judge_stream(session, comparisons: list[Comparison], texts: dict[str, list[str]], template: Template,
                 cfg: JudgeConfig, on_judged: Callable[[int, tuple[Verdict, Verdict | None]], None]) -> None:
    """Judge each comparison in both orders (one with --no-swap), streamed: each order moves from
    reasoning (CoT) to the letter's log-probabilities to, where there are none, a text answer as
    soon as its request lands; `on_judged(k, (i first, j first))` runs once both orders are in.
    A failed request gives a Verdict with source "error": never a text fallback, never a guess."""
    orders = [0, 1] if cfg.swap else [0]
    verdicts: dict[int, list] = {k: [None] * len(orders) for k in range(len(comparisons))}
    letter = Sampling(temperature=0.0, max_tokens=1, seed=cfg.seed)

    def first_job(k: int, order: int) -> Job:
        c = comparisons[k]
        messages = order_messages(template, c, texts, order, cfg.cot)
        if cfg.cot:
            return Job(c.row_id, {}, ChatRequest(messages, judge_sampling(True, cfg.seed)), model=cfg.judge,
                       stage=(k, order, "reason", messages, ""))
        return Job(c.row_id, {}, ChatRequest(messages, letter, choices=CHOICES), model=cfg.judge,
                   stage=(k, order, "letter", messages, ""))

    def on_result(job: Job, completion) -> list:
        k, order, step, messages, reasoning = job.stage
        verdict = None
        following = None
        if completion.error:
            verdict = Verdict(None, "error", reasoning, error=f"{step}: {completion.error}")
        elif step == "reason":
            reasoning = completion.text
            asks = follow_up(messages, reasoning) if reasoning else messages
            following = Job(job.id, {}, ChatRequest(asks, letter, choices=CHOICES), model=cfg.judge,
                            stage=(k, order, "letter", asks, reasoning))
        elif step == "letter":
            p = p_first_from_logprobs(completion.logprobs)
            if p is not None:
                verdict = Verdict(p, "logprobs", reasoning)
            elif cfg.cot and (choice := parse_verdict(reasoning)):
                verdict = Verdict(1.0 if choice == "A" else 0.0, "text", reasoning)
            else:  # no log-probabilities: ask for the letter and read the judge's own answer
                following = Job(job.id, {}, ChatRequest(messages, judge_sampling(False, cfg.seed)), model=cfg.judge,
                                stage=(k, order, "answer", messages, reasoning))
        else:
            choice = parse_verdict(completion.text)
            verdict = Verdict(None if choice is None else (1.0 if choice == "A" else 0.0),
                              "text" if choice else "none", completion.text)
        if following is not None:
            return [following]
        verdicts[k][order] = verdict
        if all(v is not None for v in verdicts[k]):
            on_judged(k, (verdicts[k][0], verdicts[k][1] if cfg.swap else None))
        return []

    session.stream([first_job(k, order) for k in range(len(comparisons)) for order in orders], on_result)


def order_messages(template: Template, c: Comparison, texts: dict[str, list[str]], order: int,
                   cot: bool) -> list[dict[str, str]]:
    """The judge's prompt for one order of a comparison: i shown first (order 0) or j first (1)."""
    first, second = (c.i, c.j) if order == 0 else (c.j, c.i)
    cands = texts[c.row_id]
    return judge_messages(template, c.prompt, cands[first], cands[second], c.principle, cot, c.context)


def judge_estimate(comparisons: list[Comparison], texts: dict[str, list[str]], template: Template,
                   cfg: JudgeConfig) -> tuple[int, int, int]:
    """(requests, prompt tokens, most completion tokens) judging `comparisons` takes: per order, a
    request for the letter (one token), after one for the reasoning with CoT, which the letter
    request then repeats. A backend without log-probabilities adds a short text answer per order."""
    reasoning = judge_sampling(True, cfg.seed).max_tokens
    requests = prompt = completion = 0
    for c in comparisons:
        for order in [0, 1] if cfg.swap else [0]:
            messages = order_messages(template, c, texts, order, cfg.cot)
            if cfg.cot:  # the reasoning, then the letter after the (at most `reasoning` tokens) reasoning
                requests, completion = requests + 2, completion + reasoning + 1
                prompt += prompt_tokens(messages) + prompt_tokens(follow_up(messages, "")) + reasoning
            else:
                requests, prompt, completion = requests + 1, prompt + prompt_tokens(messages), completion + 1
    return requests, prompt, completion


def judge_comparisons(session, comparisons: list[Comparison], texts: dict[str, list[str]], template: Template,
                      cfg: JudgeConfig) -> dict[int, tuple[Verdict, Verdict | None]]:
    """For each comparison (by index): the verdict with i shown first, and with j first."""
    out: dict[int, tuple[Verdict, Verdict | None]] = {}
    bar = session.progress(len(comparisons), unit="pair")

    def judged(k: int, verdicts: tuple[Verdict, Verdict | None]) -> None:
        out[k] = verdicts
        bar.update(1)

    judge_stream(session, comparisons, texts, template, cfg, judged)
    return out


def failed(verdicts: tuple[Verdict, Verdict | None]) -> str | None:
    """The error of a comparison whose request failed in either order, else None."""
    return next((v.error for v in verdicts if v is not None and v.error), None)


def pair_probability(first: Verdict, second: Verdict | None) -> tuple[float | None, bool | None]:
    """(P(i better than j), consistent) from both orders; (None, None) when unreadable."""
    if first is None or first.p_first is None:
        return None, None
    if second is None:
        return first.p_first, None
    if second.p_first is None:
        return None, None
    return combine(first.p_first, second.p_first)
