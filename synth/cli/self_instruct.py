"""`synth self-instruct` and `synth stats`: bootstrap instructions from seed tasks, and measure them."""

from __future__ import annotations

from pathlib import Path

import click

from synth.analysis.stats import format_stats, instruction_stats
from synth.backends import Sampling, parse_spec
from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options
from synth.filters.heuristics import PAPER_BLACKLIST, InstructionHeuristics
from synth.generators.self_instruct import GENERATOR, Seed, SelfInstructConfig, load_seeds, self_instruct
from synth.prompts import Template, load_template
from synth.rows import stable_id
from synth.runs.plan import dry_run_estimate, prompt_tokens
from synth.runs.session import Session, RunOptions, check_price

TEMPLATES = {"generate": "generate", "classify": "classify", "input_first": "instances_input_first",
             "output_first": "instances_output_first"}

@click.command("self-instruct", epilog=EXIT_CODES)
@click.option("--seeds", "seeds_path", required=True, type=click.Path(path_type=Path),
              help="Seed tasks: Self-Instruct's JSONL (instruction, instances, is_classification), any JSONL with an 'instruction', or a .txt list.")
@click.option("--num", type=click.IntRange(1), default=100, show_default=True, help="Instructions to keep.")
@click.option("--max-requests", type=click.IntRange(1), help="Most generation requests to spend.  [default: max(20, 2 x --num / --per-request)]")
@click.option("--per-request", type=click.IntRange(1, 50), default=8, show_default=True, help="New tasks asked for in each request.")
@click.option("--requests-per-round", type=click.IntRange(1), default=16, show_default=True,
              help="Requests sent together before the pool is updated (part of the run's identity).")
@click.option("--rouge-threshold", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Reject a candidate whose ROUGE-L F-measure with any seed or kept instruction is above this.")
@click.option("--min-words", type=click.IntRange(0), default=3, show_default=True, help="Reject instructions of this many words or fewer.")
@click.option("--max-words", type=click.IntRange(1), default=150, show_default=True, help="Reject instructions of more words.")
@click.option("--blacklist", help="Comma-separated words or phrases a text model can't act on.  [default: the paper's: image, graph, file, map, draw, plot, go to, video, audio, music, ...]")
@click.option("--bad-starts", default="Write a program", show_default=True, help="Comma-separated openings to reject.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16), default=1024, show_default=True, help="Most tokens per generation request.")
@click.option("--instance-max-tokens", type=click.IntRange(16), default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the choice of in-context tasks and sampling.")
@click.option("--prompts-dir", type=click.Path(path_type=Path), help="Your copies of prompts/self_instruct/*.j2 take precedence.")
@run_options("self-instruct")
def self_instruct_command(seeds_path, num, max_requests, per_request, requests_per_round, rouge_threshold, min_words,
                          max_words, blacklist, bad_starts, temperature, top_p, max_tokens, instance_max_tokens, seed,
                          prompts_dir, model, **kw):
    """Bootstrap new instructions with input/output instances from a few seed tasks.

    \b
    Example:
      synth self-instruct --seeds seed_tasks.jsonl --model local --num 50 --output outputs/si

    Self-Instruct (Wang et al., 2023): each request shows 8 in-context tasks (6 seeds, 2
    generated) and asks for more; candidates pass the paper's filters (length, blacklist,
    "Write a program", leading punctuation or non-ASCII, exact duplicates, ROUGE-L > 0.7 with
    any kept or seed instruction), each rejection recorded with its reason in rejected.jsonl.
    Kept instructions (instructions.jsonl) are then classified and given instances; rows.jsonl
    holds SFT rows: instruction, input, output, meta. stats.json reports diversity.
    Re-running resumes by replaying the cache: nothing is generated twice; a larger --num
    goes on from where the last run stopped.
    """
    opts = make_run_options("self-instruct", kw)
    parse_spec(model)
    seeds = load_seeds(seeds_path)
    seeds = seeds[: opts.limit] if opts.limit else seeds
    cfg = SelfInstructConfig(
        num=num, max_requests=max_requests or max(20, -(-2 * num // per_request)), per_request=per_request,
        batch=requests_per_round, rouge_threshold=rouge_threshold, seed=seed,
        heuristics=InstructionHeuristics(min_words, max_words, word_list(blacklist) if blacklist else PAPER_BLACKLIST,
                                         word_list(bad_starts)),
        sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
        instance_sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=instance_max_tokens, seed=seed),
    )
    templates = {key: load_template(f"self_instruct/{name}", prompts_dir) for key, name in TEMPLATES.items()}
    identity = run_identity(seeds, templates, cfg, model)
    config = {**identity, "seeds_path": str(seeds_path), "num": num, "max_requests": cfg.max_requests,
              "input_rows": len(seeds)}
    if opts.dry_run:
        click.echo(self_instruct_dry_run(seeds, templates, cfg, model, opts))
        return
    session = Session(GENERATOR, identity, config, model, opts)
    session.note("templates", {t.name: t.provenance() for t in templates.values()})
    session.begin()  # replayed from the cache: rejections are re-recorded as the replay meets them
    kept = []
    with session.stopping():
        kept = self_instruct(session, seeds, templates, cfg, model)
    session.notes.append(write_self_instruct_stats(session, seeds))
    if len(kept) < num and session.status == "complete":
        session.notes.append(f"kept {len(kept)} of {num} instructions within {cfg.max_requests} requests; "
                             "raise --max-requests (or --num) and re-run to go on")
    print_outcome(session.close())


def word_list(text: str) -> tuple[str, ...]:
    """Comma-separated words or phrases."""
    return tuple(w.strip() for w in text.split(",") if w.strip())


def run_identity(seeds: list[Seed], templates: dict[str, Template], cfg: SelfInstructConfig, model: str) -> dict:
    """What makes two runs the same run (a resume) rather than different ones."""
    return {
        "seeds": stable_id([(s.instruction, s.instances, s.is_classification) for s in seeds]),
        "model": model, "sampling": cfg.sampling.to_dict(), "instance_sampling": cfg.instance_sampling.to_dict(),
        "per_request": cfg.per_request, "requests_per_round": cfg.batch, "rouge_threshold": cfg.rouge_threshold,
        "heuristics": [cfg.heuristics.min_words, cfg.heuristics.max_words, list(cfg.heuristics.blacklist),
                       list(cfg.heuristics.bad_starts)],
        "templates": {t.name: t.hash for t in templates.values()},
    }


def self_instruct_dry_run(seeds: list[Seed], templates: dict[str, Template], cfg: SelfInstructConfig, model: str,
                          opts: RunOptions) -> str:
    """--max-requests generation requests (8 in-context tasks each), then per instruction one
    classification and one instance request (few-shot instances are longer: about 200 tokens more)."""
    tasks = [s.instruction for s in seeds[:8]]
    prompt = prompt_tokens([{"role": "user", "content": templates["generate"].render(
        tasks=tasks, start=len(tasks) + 1, count=cfg.per_request)}])
    prompt_total = cfg.max_requests * prompt + cfg.num * (prompt + 200 + prompt)
    completion_total = cfg.max_requests * cfg.sampling.max_tokens + cfg.num * (cfg.instance_sampling.max_tokens + 3)
    work = (f"{len(seeds)} seeds, up to {cfg.max_requests} generation requests for {cfg.num} instructions, "
            f"then {cfg.num} classification and {cfg.num} instance requests")
    return dry_run_estimate("self-instruct", work, {model: (prompt_total, completion_total)},
                            {model: check_price(model, opts)})


def write_self_instruct_stats(session: Session, seeds: list[Seed]) -> str:
    """stats.json in the run folder (diversity, ROUGE-L to the seeds, rejections); its text."""
    kept = [r["instruction"] for r in session.read("instructions.jsonl")]
    stats = instruction_stats(session.read("rows.jsonl"), [s.instruction for s in seeds],
                              session.read("rejected.jsonl"), instructions=kept)
    session.write_json("stats.json", stats)
    return format_stats(stats)
