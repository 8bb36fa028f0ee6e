"""`synth respond`, `synth label` and `synth eval-judge`: candidates, AI-feedback labels, judge checks."""

from __future__ import annotations

import json
from pathlib import Path

import click

from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options
from synth.cli.critique_revise import resolve_constitution


@click.command(epilog=EXIT_CODES)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="Candidates (from `synth respond`), or pairs with prompt/chosen/rejected (e.g. preference.jsonl).")
@click.option("--constitution", "constitution_path", default="harmless", show_default=True,
              help="Constitution file or shipped name; its principles' `comparison` questions are asked.")
@click.option("--judge", default="local", show_default=True, help="Model spec of the judge.")
@click.option("--all-principles", is_flag=True, help="Ask every principle about every pair and average (default: one drawn per pair).")
@click.option("--cot", is_flag=True, help="Let the judge reason first, then read its answer.")
@click.option("--no-swap", is_flag=True, help="Judge each pair in one order only (cheaper, but position bias stays).")
@click.option("--min-margin", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Reject pairs whose margin 2*score-1 is below this.")
@click.option("--keep-inconsistent", is_flag=True, help="Keep pairs whose two orders disagree (default: reject them).")
@click.option("--binarize", type=click.Choice(["best-worst"]), help="For K > 2 candidates: one pair per prompt, best vs worst by mean score.")
@click.option("--audit", type=click.IntRange(1), help="Judge only the first N pairs, print the judge's biases, and stop.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the principle drawn for each pair.")
@click.option("--prompts-dir", type=click.Path(path_type=Path), help="Your copy of prompts/pairwise/judge.j2 takes precedence.")
@run_options("label", model_option=False)
def label(input_path, constitution_path, judge, all_principles, cot, no_swap, min_margin, keep_inconsistent, binarize,
          audit, seed, prompts_dir, **kw):
    """Preference pairs labeled by an AI judge under a constitution (RLAIF), with soft labels.

    \b
    Example:
      synth label --input outputs/cands/rows.jsonl --constitution harmless --judge local --output outputs/labels

    For each pair of candidates the judge answers the principle's comparison question with A or
    B; the soft label is P(A)/(P(A)+P(B)) from its log-probabilities (its parsed text answer when
    the backend has none). Each pair is judged in both orders and the probabilities averaged.
    Rows: prompt, chosen, rejected, score (P(chosen is better)), margin, per-principle scores,
    position_consistent. Unreadable verdicts, inconsistent orders and small margins go to
    rejected.jsonl. Try --audit 20 first to see the judge's position and length bias.
    """
    from synth.backends import parse_spec
    from synth.constitution import load_constitution
    from synth.generators.label import LabelConfig, candidate_rows, comparisons_for, label as label_rows
    from synth.generators.pairwise import bias_report, format_bias_report, judge_comparisons
    from synth.prompts import load_template
    from synth.rows import read_rows
    from synth.runs.session import ModelRun
    from synth.runs.folder import write_json_atomic

    opts = make_run_options("label", kw)
    parse_spec(judge)
    constitution = load_constitution(resolve_constitution(constitution_path))
    template = load_template("pairwise/judge", prompts_dir)
    rows = candidate_rows(read_rows(input_path), input_path)
    rows = rows[: opts.limit] if opts.limit else rows
    cfg = LabelConfig(judge=judge, cot=cot, seed=seed, swap=not no_swap, all_principles=all_principles,
                      min_margin=min_margin, binarize=binarize, keep_inconsistent=keep_inconsistent)
    identity = {"input": str(Path(input_path).resolve()), "judge": judge, "cot": cot, "swap": not no_swap,
                "all_principles": all_principles, "seed": seed, "constitution": constitution.provenance(),
                "template": template.hash}
    config = {**identity, "min_margin": min_margin, "binarize": binarize, "input_rows": len(rows)}
    comparisons = [c for r in rows for c in comparisons_for(r, constitution, cfg)]
    if opts.dry_run:
        per = (2 if cfg.swap else 1) * (2 if cot else 1)
        click.echo(f"label (dry run, no model called): {len(rows)} prompts, {len(comparisons)} comparisons, "
                   f"{len(comparisons) * per} judge calls ({'both orders' if cfg.swap else 'one order'}"
                   f"{', reasoning first' if cot else ''})")
        return
    command = "label-audit" if audit else "label"
    session = ModelRun(command, identity, config, judge, opts)
    session.run.manifest["constitution"] = {**constitution.provenance(), "path": constitution.path}
    session.begin()
    with session.stopping():
        if audit:
            sample = comparisons[:audit]
            texts = {r.id: [c.text for c in r.candidates] for r in rows}
            verdicts = judge_comparisons(session, sample, texts, template, cfg)
            reject_failed(session, sample, verdicts)
            report = bias_report(sample, texts, verdicts)
            write_json_atomic(session.run.folder / "audit.json", report)
            session.notes.append(format_bias_report(report))
            session.notes.append("audit only: nothing labeled; run again without --audit (the audited pairs are cached)")
        else:
            label_rows(session, rows, constitution, template, cfg, {"constitution_path": constitution.path})
    outcome = session.close()
    print_outcome(outcome)


def human_pairs(path: Path):
    """(CandidateRow with [chosen, rejected], human choice 0) from TRL-style prompt/chosen/rejected
    rows or HH-RLHF transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...")."""
    from synth.errors import SynthError
    from synth.generators.label import CandidateRow
    from synth.generators.pairwise import Candidate
    from synth.rows import read_rows, stable_id

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


@click.command("eval-judge", epilog=EXIT_CODES)
@click.option("--pairs", "pairs_path", required=True, type=click.Path(path_type=Path),
              help="Human-labeled pairs: prompt/chosen/rejected (TRL), or HH-RLHF chosen/rejected transcripts.")
@click.option("--judge", default="local", show_default=True, help="Model spec of the judge.")
@click.option("--constitution", "constitution_path", help="Ask a constitution's comparison questions instead of the general one.")
@click.option("--cot", is_flag=True, help="Let the judge reason first.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prompts-dir", type=click.Path(path_type=Path))
@run_options("eval-judge", model_option=False)
def eval_judge(pairs_path, judge, constitution_path, cot, seed, prompts_dir, **kw):
    """How far to trust a judge: agreement with human labels, consistency, calibration, biases.

    Each pair is judged in both orders. Reports agreement with the human choice, the position
    consistency rate, mean confidence, calibration (agreement per confidence bin), and how often
    the judge prefers the longer response and the one shown first, next to the human labels'
    rates. Writes report.json in the run folder.
    """
    from synth.backends import parse_spec
    from synth.constitution import Constitution, Principle, load_constitution
    from synth.generators.pairwise import Comparison, JudgeConfig, bias_report, format_bias_report, judge_comparisons
    from synth.prompts import load_template
    from synth.runs.session import ModelRun
    from synth.runs.folder import write_json_atomic

    opts = make_run_options("eval-judge", kw)
    parse_spec(judge)
    rows = human_pairs(pairs_path)
    rows = rows[: opts.limit] if opts.limit else rows
    if constitution_path:
        constitution = load_constitution(resolve_constitution(constitution_path))
    else:
        general = Principle("overall", "Is the response unhelpful, dishonest or harmful?", "Make it better.",
                            "Which response is more helpful, honest and harmless?")
        constitution = Constitution("general", "1", "one general question", (general,))
    template = load_template("pairwise/judge", prompts_dir)
    cfg = JudgeConfig(judge=judge, cot=cot, seed=seed)
    from synth.constitution import row_rng

    principles = [p for p in constitution.principles if p.comparison] or list(constitution.principles)
    comparisons = [Comparison(r.id, r.prompt, 0, 1, row_rng(seed, r.id).choices(principles, weights=[p.weight for p in principles])[0])
                   for r in rows]
    if opts.dry_run:
        click.echo(f"eval-judge (dry run, no model called): {len(rows)} pairs, {len(rows) * (4 if cot else 2)} judge calls")
        return
    identity = {"input": str(Path(pairs_path).resolve()), "judge": judge, "cot": cot, "seed": seed,
                "constitution": constitution.provenance(), "template": template.hash}
    session = ModelRun("eval-judge", identity, {**identity, "input_rows": len(rows)}, judge, opts)
    session.begin()
    report = None
    with session.stopping():
        texts = {r.id: [c.text for c in r.candidates] for r in rows}
        verdicts = judge_comparisons(session, comparisons, texts, template, cfg)
        reject_failed(session, comparisons, verdicts)
        report = bias_report(comparisons, texts, verdicts, human_first=[0] * len(comparisons))
        write_json_atomic(session.run.folder / "report.json", report)
        session.notes.append(format_bias_report(report))
    outcome = session.close()
    if report is not None:
        outcome.summary += "\n" + json.dumps({"agreement_with_human": report.get("agreement_with_human")})
    print_outcome(outcome)


def reject_failed(session, comparisons, verdicts) -> None:
    """A comparison whose request failed is a failure (exit 1, retried by a re-run), not a verdict."""
    from synth.generators.pairwise import failed
    from synth.runs.session import Rejection

    for k, c in enumerate(comparisons):
        error = failed(verdicts[k]) if k in verdicts else None
        if error:
            session.reject(f"{c.row_id}:{c.i}:{c.j}:{c.principle.id}", Rejection("error", error),
                           {"row_id": c.row_id, "pair": [c.i, c.j], "principle": c.principle.id})
