"""How far to trust a judge: its verdicts on pairs, measured for biases and against human labels.

`synth eval-judge` reads human-labeled pairs (`human_pairs`: TRL prompt/chosen/rejected rows or
HH-RLHF transcripts), draws each pair's principle as `synth label` does (`eval_comparisons`) and
judges them in both orders; `judge_report` then records failed requests, writes the report
(`bias_report`: position consistency, preference for the response shown first and for the
longer one, confidence; with human labels, agreement and calibration) and adds its text to the
run's notes. `synth label --audit` makes the same report on its own pairs, without human labels.
"""

from __future__ import annotations

from pathlib import Path

from synth.constitution import Constitution, Principle
from synth.errors import SynthError
from synth.generators.label import CandidateRow
from synth.generators.pairwise import (Candidate, Comparison, JudgeConfig, Verdict, draw_principle, failed,
                                       judge_comparisons, pair_probability)
from synth.prompts import Template
from synth.rows import read_rows, stable_id
from synth.runs.session import Session, Rejection

GENERAL = Constitution("general", "1", "one general question", (Principle(
    "overall", "Is the response unhelpful, dishonest or harmful?", "Make it better.",
    "Which response is more helpful, honest and harmless?"),))
HUMAN = 0  # the candidate the human chose: human_pairs puts it first


def human_pairs(path: Path) -> list[CandidateRow]:
    """CandidateRows with [chosen, rejected] from TRL-style prompt/chosen/rejected rows or HH-RLHF
    transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."); the human's choice is candidate HUMAN."""
    out = []
    for row in read_rows(path):
        data = row.data
        chosen, rejected = data.get("chosen"), data.get("rejected")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise SynthError(f"{path} line {row.line}: need string 'chosen' and 'rejected' (TRL or HH-RLHF style)")
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            prompt, chosen, rejected = split_transcripts(chosen, rejected)
            if prompt is None:
                raise SynthError(f"{path} line {row.line}: no 'prompt', and 'chosen' is not a Human/Assistant transcript")
        row_id = stable_id("eval-judge", prompt, chosen, rejected)
        out.append(CandidateRow(row_id, prompt, [Candidate(chosen), Candidate(rejected)], data))
    return out


def split_transcripts(chosen: str, rejected: str) -> tuple[str | None, str, str]:
    """HH-RLHF: both sides share the conversation up to the last "\\n\\nAssistant:"."""
    marker = "\n\nAssistant:"
    cut = chosen.rfind(marker)
    if cut < 0:
        return None, chosen, rejected
    prefix = chosen[: cut + len(marker)]
    if not rejected.startswith(prefix):
        cut_r = rejected.rfind(marker)
        prefix_r = rejected[: cut_r + len(marker)] if cut_r >= 0 else ""
        if prefix_r != prefix:
            return None, chosen, rejected
    prompt = prefix[: -len(marker)].replace("\n\nHuman:", "\nHuman:").strip()
    return prompt, chosen[len(prefix):].strip(), rejected[len(prefix):].strip()


def eval_comparisons(rows: list[CandidateRow], constitution: Constitution, seed: int) -> list[Comparison]:
    """One comparison per human pair (chosen as i, rejected as j) under a principle drawn per row."""
    return [Comparison(r.id, r.prompt, 0, 1, draw_principle(constitution, seed, r.id)) for r in rows]


def candidate_texts(rows: list[CandidateRow]) -> dict[str, list[str]]:
    """Each row's candidate texts, by row id: what the judge is shown."""
    return {r.id: [c.text for c in r.candidates] for r in rows}


def judge_report(session: Session, rows: list[CandidateRow], comparisons: list[Comparison], template: Template,
                 cfg: JudgeConfig, name: str, human: bool) -> dict:
    """Judge `comparisons` (both orders), reject the ones whose request failed, write the bias
    report to NAME in the run folder and add its text to the run's notes; the report. `human`:
    candidate HUMAN of each pair is the human's choice, so agreement and calibration are measured."""
    texts = candidate_texts(rows)
    verdicts = judge_comparisons(session, comparisons, texts, template, cfg)
    reject_failed(session, comparisons, verdicts)
    report = bias_report(comparisons, texts, verdicts, human_first=[HUMAN] * len(comparisons) if human else None)
    session.write_json(name, report)
    session.notes.append(format_bias_report(report))
    return report


def reject_failed(session: Session, comparisons: list[Comparison], verdicts: dict) -> None:
    """A comparison whose request failed is a failure (exit 1, retried by a re-run), not a verdict."""
    for k, c in enumerate(comparisons):
        error = failed(verdicts[k]) if k in verdicts else None
        if error:
            session.reject(f"{c.row_id}:{c.i}:{c.j}:{c.principle.id}", Rejection("error", error),
                           {"row_id": c.row_id, "pair": [c.i, c.j], "principle": c.principle.id})


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
    report = {
        "pairs": len(comparisons), "judged": total,
        "failed": sum(1 for k in range(len(comparisons)) if k not in verdicts or failed(verdicts[k])),
        "position_consistency": _rate(consistent),
        "prefers_first_shown": _rate(shown_first),
        "prefers_longer": _rate(longer),
        "mean_confidence": _rate(confident),
    }
    if human_first is not None:
        report.update(_human_figures(comparisons, texts, human_first, agreement, bins))
    return report


def _rate(values: list) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _human_figures(comparisons: list[Comparison], texts: dict[str, list[str]], human_first: list[int],
                   agreement: list[bool], bins: dict[str, tuple[int, int]]) -> dict:
    """Agreement with the human labels, the humans' own length preference, and calibration."""
    human_longer = [len(texts[c.row_id][human_first[k]]) > len(texts[c.row_id][c.j if human_first[k] == c.i else c.i])
                    for k, c in enumerate(comparisons)
                    if len(texts[c.row_id][c.i]) != len(texts[c.row_id][c.j])]
    return {
        "agreement_with_human": _rate(agreement),
        "human_prefers_longer": _rate(human_longer),
        "human_prefers_first_shown": 0.5,  # both orders are shown, so a human label has no position
        "calibration": {label: {"pairs": n, "agreement": round(hit / n, 4)} for label, (hit, n) in sorted(bins.items())},
    }


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
