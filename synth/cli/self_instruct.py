"""`synth self-instruct` and `synth stats`: bootstrap instructions from seed tasks, and measure them."""

from __future__ import annotations

from pathlib import Path

import click

from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options

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
    from synth.backends import Sampling, parse_spec
    from synth.filters.heuristics import PAPER_BLACKLIST, InstructionHeuristics
    from synth.generators.self_instruct import GENERATOR, SelfInstructConfig, load_seeds, self_instruct
    from synth.prompts import load_template
    from synth.rows import stable_id
    from synth.runs.session import ModelRun

    opts = make_run_options("self-instruct", kw)
    parse_spec(model)
    seeds = load_seeds(seeds_path)[: opts.limit] if opts.limit else load_seeds(seeds_path)
    words = lambda text: tuple(w.strip() for w in text.split(",") if w.strip())  # noqa: E731
    cfg = SelfInstructConfig(
        num=num, max_requests=max_requests or max(20, -(-2 * num // per_request)), per_request=per_request,
        batch=requests_per_round, rouge_threshold=rouge_threshold, seed=seed,
        heuristics=InstructionHeuristics(min_words, max_words, words(blacklist) if blacklist else PAPER_BLACKLIST,
                                         words(bad_starts)),
        sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
        instance_sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=instance_max_tokens, seed=seed),
    )
    templates = {key: load_template(f"self_instruct/{name}", prompts_dir) for key, name in
                 [("generate", "generate"), ("classify", "classify"), ("input_first", "instances_input_first"),
                  ("output_first", "instances_output_first")]}
    identity = {
        "seeds": stable_id([(s.instruction, s.instances, s.is_classification) for s in seeds]),
        "model": model, "sampling": cfg.sampling.to_dict(), "instance_sampling": cfg.instance_sampling.to_dict(),
        "per_request": per_request, "requests_per_round": requests_per_round, "rouge_threshold": rouge_threshold,
        "heuristics": [min_words, max_words, list(cfg.heuristics.blacklist), list(cfg.heuristics.bad_starts)],
        "templates": {t.name: t.hash for t in templates.values()},
    }
    config = {**identity, "seeds_path": str(seeds_path), "num": num, "max_requests": cfg.max_requests,
              "input_rows": len(seeds)}
    if opts.dry_run:
        click.echo(self_instruct_dry_run(seeds, templates, cfg, model, opts))
        return
    session = ModelRun(GENERATOR, identity, config, model, opts)
    session.run.manifest["templates"] = {t.name: t.provenance() for t in templates.values()}
    session.begin()  # replayed from the cache: rejections are re-recorded as the replay meets them
    kept = []
    with session.stopping():
        kept = self_instruct(session, seeds, templates, cfg, model)
    report = write_self_instruct_stats(session, seeds)
    session.notes.append(report)
    if len(kept) < num and session.status == "complete":
        session.notes.append(f"kept {len(kept)} of {num} instructions within {cfg.max_requests} requests; "
                             "raise --max-requests (or --num) and re-run to go on")
    outcome = session.close()
    print_outcome(outcome)


def self_instruct_dry_run(seeds, templates, cfg, model, opts) -> str:
    from synth.backends import ChatRequest
    from synth.runs.prices import estimate_prompt_tokens
    from synth.runs.session import check_price

    tasks = [s.instruction for s in seeds[:8]]
    prompt = estimate_prompt_tokens(ChatRequest([{"role": "user", "content": templates["generate"].render(
        tasks=tasks, start=len(tasks) + 1, count=cfg.per_request)}]))
    per_instance = prompt + 200  # few-shot instances are longer than the instruction list
    prompt_total = cfg.max_requests * prompt + cfg.num * (per_instance + prompt)
    completion_total = cfg.max_requests * cfg.sampling.max_tokens + cfg.num * (cfg.instance_sampling.max_tokens + 3)
    price = check_price(model, opts)
    cost = (f"at most ${price.cost(prompt_total, completion_total):.4f} with {model}" if price
            else f"unknown for '{model}' (add it to a price table and pass --prices FILE)")
    return (f"self-instruct (dry run, no model called): {len(seeds)} seeds, up to {cfg.max_requests} generation "
            f"requests for {cfg.num} instructions, then {cfg.num} classification and {cfg.num} instance requests\n"
            f"  at most about {prompt_total:,} prompt and {completion_total:,} completion tokens; cost {cost}")


def write_self_instruct_stats(session, seeds) -> str:
    from synth.analysis.stats import format_stats, instruction_stats
    from synth.runs.folder import read_jsonl, write_json_atomic

    folder = session.run.folder
    session.run.flush()
    kept = [r["instruction"] for r in read_jsonl(folder / "instructions.jsonl")]
    stats = instruction_stats(read_jsonl(folder / "rows.jsonl"), [s.instruction for s in seeds],
                              read_jsonl(folder / "rejected.jsonl"), instructions=kept)
    write_json_atomic(folder / "stats.json", stats)
    return format_stats(stats)
