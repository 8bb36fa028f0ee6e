"""`synth label`: preference rows from candidate responses, judged pairwise under a constitution.

Orchestration only: the judging maths and the streamed judge live in `synth.generators.pairwise`.
A row's pairs are written (or rejected with their reason) as soon as its last verdict lands; a
conversation with a system prompt or earlier turns is shown to the judge and kept in the output
(TRL's conversational preference format).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synth.constitution import Constitution
from synth.generators.pairwise import (GENERATOR, Candidate, Comparison, JudgeConfig, Verdict, all_pairs,
                                       binarize_best_worst, draw_principle, failed, judge_stream, pair_probability,
                                       principles_for)
from synth.errors import SynthError
from synth.prompts import Template
from synth.rows import row_messages, stable_id
from synth.runs.session import Rejection


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
    out = []
    for i, j in all_pairs(len(row.candidates)):
        if row.candidates[i].text.strip() == row.candidates[j].text.strip():
            continue
        chosen = (principles_for(constitution) if cfg.all_principles
                  else [draw_principle(constitution, cfg.seed, f"{row.id}:{i}:{j}")])
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
        if pair_id in session.done:
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
        session.write({
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
