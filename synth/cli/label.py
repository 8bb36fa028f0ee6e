"""`synth label` and `synth eval-judge`: AI-feedback labels, and how far to trust the judge."""

from __future__ import annotations

import json
from pathlib import Path

import click

from synth.backends import parse_spec
from synth.cli.critique_revise import resolve_constitution
from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options
from synth.constitution import load_constitution
from synth.generators.judge_eval import GENERAL, candidate_texts, eval_comparisons, human_pairs, judge_report
from synth.generators.label import LabelConfig, candidate_rows, comparisons_for, label as label_rows
from synth.generators.pairwise import Comparison, JudgeConfig, judge_estimate
from synth.prompts import Template, load_template
from synth.rows import read_rows
from synth.runs.plan import dry_run_estimate
from synth.runs.session import Session, RunOptions, check_price


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
        click.echo(judge_dry_run("label", f"{len(rows)} prompts, {len(comparisons)} comparisons", rows, comparisons,
                                 template, cfg, opts))
        return
    session = Session("label-audit" if audit else "label", identity, config, judge, opts)
    session.note("constitution", {**constitution.provenance(), "path": constitution.path})
    session.begin()
    with session.stopping():
        if audit:
            judge_report(session, rows, comparisons[:audit], template, cfg, "audit.json", human=False)
            session.notes.append("audit only: nothing labeled; run again without --audit (the audited pairs are cached)")
        else:
            label_rows(session, rows, constitution, template, cfg, {"constitution_path": constitution.path})
    print_outcome(session.close())


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
    opts = make_run_options("eval-judge", kw)
    parse_spec(judge)
    rows = human_pairs(pairs_path)
    rows = rows[: opts.limit] if opts.limit else rows
    constitution = load_constitution(resolve_constitution(constitution_path)) if constitution_path else GENERAL
    template = load_template("pairwise/judge", prompts_dir)
    cfg = JudgeConfig(judge=judge, cot=cot, seed=seed)
    comparisons = eval_comparisons(rows, constitution, seed)
    if opts.dry_run:
        click.echo(judge_dry_run("eval-judge", f"{len(rows)} pairs", rows, comparisons, template, cfg, opts))
        return
    identity = {"input": str(Path(pairs_path).resolve()), "judge": judge, "cot": cot, "seed": seed,
                "constitution": constitution.provenance(), "template": template.hash}
    session = Session("eval-judge", identity, {**identity, "input_rows": len(rows)}, judge, opts)
    session.begin()
    report = None
    with session.stopping():
        report = judge_report(session, rows, comparisons, template, cfg, "report.json", human=True)
    outcome = session.close()
    if report is not None:
        outcome.summary += "\n" + json.dumps({"agreement_with_human": report.get("agreement_with_human")})
    print_outcome(outcome)


def judge_dry_run(command: str, counted: str, rows, comparisons: list[Comparison], template: Template,
                  cfg: JudgeConfig, opts: RunOptions) -> str:
    """The dry-run estimate of judging `comparisons` (`counted`: what they are)."""
    requests, prompt, completion = judge_estimate(comparisons, candidate_texts(rows), template, cfg)
    how = ("both orders" if cfg.swap else "one order") + (", reasoning first" if cfg.cot else "")
    return dry_run_estimate(command, f"{counted}, {requests} judge calls ({how})", {cfg.judge: (prompt, completion)},
                            {cfg.judge: check_price(cfg.judge, opts)})
