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
from synth.constitution import Constitution, Principle
from synth.prompts import Template

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
    from synth.runner import Job

    orders = [0, 1] if cfg.swap else [0]
    verdicts: dict[int, list] = {k: [None] * len(orders) for k in range(len(comparisons))}
    letter = Sampling(temperature=0.0, max_tokens=1, seed=cfg.seed)

    def first_job(k: int, order: int) -> Job:
        c = comparisons[k]
        first, second = (c.i, c.j) if order == 0 else (c.j, c.i)
        cands = texts[c.row_id]
        messages = judge_messages(template, c.prompt, cands[first], cands[second], c.principle, cfg.cot, c.context)
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


def bias_report(comparisons: list[Comparison], texts: dict[str, list[str]],
                verdicts: dict[int, tuple[Verdict, Verdict | None]], human_first: list[int] | None = None) -> dict:
    """How often the judge prefers the response shown first and the longer one; its consistency.
    With `human_first` (index of the human's choice per comparison): agreement and calibration."""
    shown_first, longer, consistent, confident, total = [], [], [], [], 0
    agreement, bins = [], {}
    for k, c in enumerate(comparisons):
        if k not in verdicts or failed(verdicts[k]):
            continue  # a failed request is not a judgement: left out, and reported as failed
        first, second = verdicts[k]
        for verdict in (first, second):
            if verdict is not None and verdict.p_first is not None and verdict.p_first != 0.5:
                shown_first.append(verdict.p_first > 0.5)
        p, ok = pair_probability(first, second)
        if p is None:
            continue
        total += 1
        consistent.append(bool(ok))
        pick = None if p == 0.5 else c.i if p > 0.5 else c.j  # a tie picks nothing
        other = c.j if pick == c.i else c.i
        cands = texts[c.row_id]
        if pick is not None and len(cands[pick]) != len(cands[other]):
            longer.append(len(cands[pick]) > len(cands[other]))
        confidence = max(p, 1 - p)
        confident.append(confidence)
        if human_first is not None:
            agree = pick is not None and pick == human_first[k]
            agreement.append(agree)
            low = min(int(confidence * 10), 9) / 10
            label = f"{low:.1f}-{low + 0.1:.1f}"
            hit, n = bins.get(label, (0, 0))
            bins[label] = (hit + agree, n + 1)
    rate = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    report = {
        "pairs": len(comparisons), "judged": total,
        "failed": sum(1 for k in range(len(comparisons)) if k not in verdicts or failed(verdicts[k])),
        "position_consistency": rate(consistent),
        "prefers_first_shown": rate(shown_first),
        "prefers_longer": rate(longer),
        "mean_confidence": rate(confident),
    }
    if human_first is not None:
        human_longer = [len(texts[c.row_id][human_first[k]]) > len(texts[c.row_id][c.j if human_first[k] == c.i else c.i])
                        for k, c in enumerate(comparisons)
                        if len(texts[c.row_id][c.i]) != len(texts[c.row_id][c.j])]
        report.update({
            "agreement_with_human": rate(agreement),
            "human_prefers_longer": rate(human_longer),
            "human_prefers_first_shown": 0.5,  # both orders are shown, so a human label has no position
            "calibration": {label: {"pairs": n, "agreement": round(hit / n, 4)} for label, (hit, n) in sorted(bins.items())},
        })
    return report


def format_bias_report(report: dict) -> str:
    lines = [f"judged {report['judged']} of {report['pairs']} pairs in both orders"
             + (f" ({report['failed']} failed: see rejected.jsonl; re-run to retry them)" if report.get("failed") else ""),
             f"  position consistency: {report['position_consistency']}",
             f"  prefers the response shown first: {report['prefers_first_shown']} (unbiased: 0.5)",
             f"  prefers the longer response: {report['prefers_longer']}"
             + (f" (human labels: {report['human_prefers_longer']})" if "human_prefers_longer" in report else ""),
             f"  mean confidence: {report['mean_confidence']}"]
    if "agreement_with_human" in report:
        lines.append(f"  agreement with the human labels: {report['agreement_with_human']}")
        for label, cell in report["calibration"].items():
            lines.append(f"    confidence {label}: {cell['pairs']} pairs, agreement {cell['agreement']}")
    return "\n".join(lines)


# -- labeling -------------------------------------------------------------------------------

@dataclass
class LabelConfig(JudgeConfig):
    all_principles: bool = False
    min_margin: float = 0.0
    binarize: str | None = None  # None (all pairs) or "best-worst"
    keep_inconsistent: bool = False
    chunk: int = 32


@dataclass
class CandidateRow:
    id: str
    prompt: str  # the request the candidates answer (the last user turn)
    candidates: list[Candidate]
    source: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)  # the whole conversation, ending in `prompt`

    @property
    def context(self) -> list[dict[str, str]]:
        """The conversation before the request: the system prompt and earlier turns."""
        last = max((n for n, m in enumerate(self.messages) if m["role"] == "user"), default=0)
        return self.messages[:last]

    @property
    def single_turn(self) -> bool:
        return not self.context


def candidate_rows(rows, path) -> list[CandidateRow]:
    """Rows with `candidates` (from `synth respond`: texts or {"text": ...}), `responses`, or a
    TRL pair (`chosen`/`rejected`, e.g. a critique-revise preference file) as two candidates."""
    from synth.errors import SynthError
    from synth.rows import row_messages, stable_id

    out = []
    for row in rows:
        data = row.data
        where = f"{path} line {row.line}"
        raw = data.get("candidates", data.get("responses"))
        if raw is None and "chosen" in data and "rejected" in data:
            raw = [data["chosen"], data["rejected"]]
        if not isinstance(raw, list):
            raise SynthError(f"{where}: no 'candidates' list (nor 'responses', nor 'chosen'/'rejected'); "
                             "make candidates with `synth respond`")
        candidates = []
        for k, item in enumerate(raw):
            text = item.get("text") if isinstance(item, dict) else item
            if isinstance(text, list):  # conversational form: [{"role": "assistant", "content": ...}]
                text = text[-1].get("content") if text and isinstance(text[-1], dict) else None
            if not isinstance(text, str):
                raise SynthError(f"{where} field 'candidates'[{k}]: expected a string or an object with 'text'")
            candidates.append(Candidate(text, {k2: v for k2, v in item.items() if k2 != "text"} if isinstance(item, dict) else {}))
        messages = row_messages(row, path, "messages" if isinstance(data.get("messages"), list) else "prompt") \
            if ("prompt" in data or "messages" in data) else None
        if messages is None:
            raise SynthError(f"{where}: no 'prompt' to judge the candidates against")
        if messages[-1]["role"] != "user":
            raise SynthError(f"{where}: the conversation must end with the user turn the candidates answer")
        prompt = messages[-1]["content"]
        row_id = data["id"] if isinstance(data.get("id"), str) else stable_id("candidates", messages, [c.text for c in candidates])
        out.append(CandidateRow(row_id, prompt, candidates, data, messages))
    return out


def comparisons_for(row: CandidateRow, constitution: Constitution, cfg: LabelConfig) -> list[Comparison]:
    from synth.constitution import row_rng

    usable = principles_for(constitution)
    out = []
    for i, j in all_pairs(len(row.candidates)):
        if row.candidates[i].text.strip() == row.candidates[j].text.strip():
            continue
        if cfg.all_principles:
            chosen = usable
        else:
            rng = row_rng(cfg.seed, f"{row.id}:{i}:{j}")
            chosen = rng.choices(usable, weights=[p.weight for p in usable], k=1)
        out += [Comparison(row.id, row.prompt, i, j, p, tuple(row.context)) for p in chosen]
    return out


def label(session, rows: list[CandidateRow], constitution: Constitution, template: Template, cfg: LabelConfig,
          model_meta: dict) -> None:
    """Judge every pair of every row, streamed; a row's preference rows (or rejections) are
    written as soon as its last verdict lands. Resume replays verdicts from the cache (free);
    pairs already written are not written again."""
    bar = session.progress(len(rows))
    comparisons: list[Comparison] = []
    judged: dict[str, list] = {}
    wanted: dict[str, int] = {}
    for row in rows:
        mine = comparisons_for(row, constitution, cfg)
        comparisons += mine
        wanted[row.id] = len(mine)
        judged[row.id] = []
    by_id = {r.id: r for r in rows}
    texts = {r.id: [c.text for c in r.candidates] for r in rows}

    def finish(row: CandidateRow) -> None:
        _write_pairs(session, row, _pair_results(session, row, judged[row.id]), cfg, constitution, model_meta)
        bar.update(1)

    def on_judged(k: int, verdicts: tuple[Verdict, Verdict | None]) -> None:
        c = comparisons[k]
        judged[c.row_id].append((c, verdicts))
        if len(judged[c.row_id]) == wanted[c.row_id]:
            finish(by_id[c.row_id])

    for row in rows:
        if wanted[row.id] == 0:  # every candidate the same: nothing to compare
            finish(row)
    judge_stream(session, comparisons, texts, template, cfg, on_judged)


def _pair_results(session, row: CandidateRow, judged: list) -> dict:
    """{(i, j): the pair's combined score and its evidence}; failed or unreadable pairs rejected."""
    from synth.rows import stable_id
    from synth.runner import Rejection

    by_pair: dict[tuple[int, int], list] = {}
    for c, verdicts in judged:
        by_pair.setdefault((c.i, c.j), []).append((c, *pair_probability(*verdicts), *verdicts))
    results = {}
    for (i, j), evidence in sorted(by_pair.items()):
        pair_id = stable_id(GENERATOR, row.id, i, j)
        source = {"row_id": row.id, "pair": [i, j]}
        error = next((failed((x[3], x[4])) for x in evidence if failed((x[3], x[4]))), None)
        if error:  # never a weaker verdict: the pair waits for a re-run
            session.reject(pair_id, Rejection("error", error), source)
            continue
        readable = [x for x in evidence if x[1] is not None]
        if not readable:
            session.reject(pair_id, Rejection("unparseable", "the judge's verdict could not be read in either order"),
                           source, evidence[0][3].raw if evidence[0][3] else None)
            continue
        results[(i, j)] = {
            "p": sum(x[1] for x in readable) / len(readable),
            "consistent": all(x[2] is not False for x in readable),
            "by_principle": {x[0].principle.id: round(x[1], 6) for x in readable},
            "p_first_shown": [[x[3].p_first, x[4].p_first if x[4] else None] for x in readable],
            "source": sorted({x[3].source for x in readable}),
        }
    return results


def _write_pairs(session, row: CandidateRow, results: dict, cfg: LabelConfig, constitution: Constitution,
                 model_meta: dict) -> None:
    from synth.rows import stable_id
    from synth.runner import Rejection

    chosen_pairs = list(results)
    if cfg.binarize == "best-worst" and results:
        picked = binarize_best_worst(len(row.candidates), {k: v["p"] for k, v in results.items()})
        if picked is None:
            session.reject(stable_id(GENERATOR, row.id), Rejection("tie", "every candidate scored the same"),
                           {"row_id": row.id})
            return
        best, worst, _ = picked
        key = (min(best, worst), max(best, worst))
        chosen_pairs = [key] if key in results else []
    for i, j in chosen_pairs:
        result = results[(i, j)]
        p = result["p"]
        win, lose = (i, j) if p >= 0.5 else (j, i)
        score = max(p, 1 - p)
        margin = 2 * score - 1
        pair_id = stable_id(GENERATOR, row.id, i, j)
        source = {"row_id": row.id, "pair": [i, j]}
        if pair_id in session.run.done:
            continue
        if not result["consistent"] and cfg.swap and not cfg.keep_inconsistent:
            session.reject(pair_id, Rejection("position_inconsistent",
                                              f"the two orders disagree: P(first shown better) = {result['p_first_shown']}"), source)
            continue
        if p == 0.5:
            session.reject(pair_id, Rejection("tie", "the judge rated both the same"), source)
            continue
        if margin < cfg.min_margin:
            session.reject(pair_id, Rejection("low_margin", f"margin {margin:.3f} < --min-margin {cfg.min_margin}"), source)
            continue
        if row.single_turn:
            texts = {"prompt": row.prompt, "chosen": row.candidates[win].text, "rejected": row.candidates[lose].text}
        else:  # TRL's conversational preference format: the whole conversation, then each reply
            texts = {"prompt": row.messages,
                     "chosen": [{"role": "assistant", "content": row.candidates[win].text}],
                     "rejected": [{"role": "assistant", "content": row.candidates[lose].text}]}
        session.write_row({
            "id": pair_id, **texts,
            "score": round(score, 6), "margin": round(margin, 6),
            "scores_by_principle": {k: round(v if win == i else 1 - v, 6) for k, v in result["by_principle"].items()},
            "position_consistent": result["consistent"] if cfg.swap else None,
            "meta": {"generator": GENERATOR, "judge": cfg.judge, "cot": cfg.cot, "swapped": cfg.swap,
                     "constitution": constitution.provenance(), "principles": list(result["by_principle"]),
                     "p_first_shown": result["p_first_shown"], "read_from": result["source"],
                     "candidates": [row.candidates[win].info, row.candidates[lose].info],
                     "binarize": cfg.binarize, "parent_ids": [row.id], **model_meta},
        })
