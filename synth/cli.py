"""The `synth` command line: parse options, build objects, call one function, print a summary.

Heavy libraries (torch, transformers, llama.cpp, openai) are imported only inside the commands
that need them, so `synth --help` answers at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from synth import __version__
from synth.backends import SPEC_HELP

MODEL_HELP = f"Model spec. {SPEC_HELP}."


class SynthGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["synth.argv"] = ["synth", *args]  # for the manifest (secrets are masked there)
        return super().parse_args(ctx, args)


@click.group(cls=SynthGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synth")
def main() -> None:
    """Synthetic feedback and training data for aligning language models.

    Every command that calls a model writes one run folder (rows.jsonl, rejected.jsonl).
    The default model, `local`, is SmolLM2-135M-Instruct embedded in the install: it runs
    offline on a CPU.
    """


def default_output(command: str) -> Path:
    return Path("outputs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_options(command: str, model_option: bool = True):
    """The options every model-calling command shares: run folder, cache, cost, retries."""

    def decorate(f):
        options = [click.option("--model", default="local", show_default=True, help=MODEL_HELP)] if model_option else []
        options += [
            click.option("--output", type=click.Path(path_type=Path),
                         help=f"Run folder; re-running into it resumes.  [default: outputs/{command}-<timestamp>]"),
            click.option("--overwrite", is_flag=True, help="Discard the run folder's rows and start again (its response cache is kept and reused)."),
            click.option("--cache", type=click.Path(path_type=Path),
                         help="A response cache shared between runs.  [default: cache.sqlite in the run folder]"),
            click.option("--dry-run", is_flag=True, help="Count rows and estimate tokens and cost; call no model."),
            click.option("--limit", type=click.IntRange(1), help="Process only the first N input rows."),
            click.option("--max-cost-usd", type=click.FloatRange(0), help="Stop cleanly (resumable) before spending more than this."),
            click.option("--prices", type=click.Path(path_type=Path), help="Price table (YAML, USD per million tokens).  [default: the shipped one]"),
            click.option("--keep-truncated", is_flag=True, help="Keep responses cut off by --max-tokens (flagged meta.truncated).  [default: reject]"),
            click.option("--retry-rejected", is_flag=True, help="Ask the model again for rows rejected before, instead of reusing the cached response."),
            click.option("--concurrency", type=click.IntRange(1), help="Requests in flight (API models) or batch size (local models).  [default: 16 / 8]"),
            click.option("--max-retries", type=click.IntRange(0), default=5, show_default=True, help="Retries per request on 429/5xx/timeouts (API models)."),
            click.option("--max-retry-wait", type=click.FloatRange(0), default=60.0, show_default=True, help="Longest wait between retries, in seconds (a Retry-After header is honoured up to this)."),
            click.option("--request-timeout", type=click.FloatRange(0.1), default=120.0, show_default=True, help="Seconds per request (API models)."),
            click.option("--api-key", help="API key for openai: models.  [default: $OPENAI_API_KEY]; never written anywhere."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def make_run_options(command: str, kw: dict):
    from synth.runner import RunOptions

    return RunOptions(
        output=kw.pop("output") or default_output(command), overwrite=kw.pop("overwrite"), cache=kw.pop("cache"),
        dry_run=kw.pop("dry_run"), limit=kw.pop("limit"), max_cost_usd=kw.pop("max_cost_usd"),
        prices=kw.pop("prices"), keep_truncated=kw.pop("keep_truncated"), retry_rejected=kw.pop("retry_rejected"),
        concurrency=kw.pop("concurrency"), max_retries=kw.pop("max_retries"),
        request_timeout=kw.pop("request_timeout"), max_retry_wait=kw.pop("max_retry_wait"), api_key=kw.pop("api_key"),
        argv=click.get_current_context().meta.get("synth.argv", []),
    )


EXIT_CODES = """\b
Exit codes: 0 done; 1 some requests failed after retries (in rejected.jsonl;
re-run to retry them); 2 bad input or options; 3 the model backend can't be used;
4 stopped by --max-cost-usd; 130 interrupted. Every finished row is kept in all cases."""


@main.command(epilog=EXIT_CODES)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with a 'prompt' (string) or 'messages' (chat list) per row, or a .txt file, one prompt per line.")
@click.option("--field", help="Read the prompt from this field instead of 'messages'/'prompt'.")
@click.option("--system", help="A system message put before every prompt.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True, help="Most tokens per response.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (where the backend supports one).")
@run_options("generate")
def generate(input_path, field, system, temperature, top_p, max_tokens, seed, model, **kw):
    """One response per input row.

    \b
    Examples:
      synth generate --input prompts.jsonl --model local --output outputs/demo
      synth generate --input prompts.jsonl --model openai:gpt-4o-mini --max-cost-usd 2
      synth generate --input p.jsonl --model openai:qwen@http://127.0.0.1:8000/v1 --concurrency 64

    Each output row keeps the input's fields and adds `id` (a hash of the prompt), `response`
    and `meta` (model, sampling, token usage, finish reason). A response cut off by
    --max-tokens, an empty one, or a request that kept failing goes to rejected.jsonl with its
    reason. Re-running the same command resumes: finished rows are skipped and cached
    responses are reused, so nothing is paid for twice.
    """
    from synth.backends import Sampling, parse_spec
    from synth.generators.respond import GENERATOR, prepare_requests, response_row
    from synth.rows import read_rows
    from synth.runner import Job, execute

    opts = make_run_options("generate", kw)
    # Everything a user can get wrong is checked before the model is loaded or called.
    parse_spec(model)
    rows = read_rows(input_path)
    sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    jobs = [Job(row_id, row.data, request) for row_id, row, request in
            prepare_requests(rows, input_path, sampling, field=field, system=system)]
    identity = {"input": str(Path(input_path).resolve()), "model": model, "sampling": sampling.to_dict(),
                "field": field, "system": system}
    config = {**identity, "keep_truncated": opts.keep_truncated, "limit": opts.limit,
              "concurrency": opts.concurrency, "max_cost_usd": opts.max_cost_usd}

    def build_row(job: Job, completion):
        return response_row(job.id, job.input, job.request, completion, model)

    outcome = execute(GENERATOR, identity, config, jobs, model, build_row, opts)
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)


@main.command("self-instruct", epilog=EXIT_CODES)
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
    from synth.runner import ModelRun

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
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)


def self_instruct_dry_run(seeds, templates, cfg, model, opts) -> str:
    from synth.backends import ChatRequest
    from synth.prices import estimate_prompt_tokens
    from synth.runner import check_price

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
    from synth.stats import format_stats, instruction_stats
    from synth.store import read_jsonl_repairing, write_json_atomic

    folder = session.run.folder
    session.run._rows.flush()
    session.run._rejected.flush()
    kept = [r["instruction"] for r in read_jsonl_repairing(folder / "instructions.jsonl")]
    stats = instruction_stats(read_jsonl_repairing(folder / "rows.jsonl"), [s.instruction for s in seeds],
                              read_jsonl_repairing(folder / "rejected.jsonl"), instructions=kept)
    write_json_atomic(folder / "stats.json", stats)
    return format_stats(stats)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--seeds", "seeds_path", type=click.Path(exists=True, path_type=Path),
              help="Seed tasks to measure ROUGE-L against.  [default: a run folder's own seeds]")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(path, seeds_path, as_json):
    """Diversity statistics of an instruction dataset (a JSONL file or a run folder).

    Counts kept and rejected (by reason), the histogram of each instruction's highest ROUGE-L
    to the seed tasks, the most common leading words, and instruction/input/output lengths.
    """
    import json as json_module

    from synth.generators.self_instruct import load_seeds
    from synth.stats import format_stats, instruction_stats
    from synth.store import read_jsonl_repairing

    rejected, kept = [], None
    if path.is_dir():
        manifest_path = path / "manifest.json"
        manifest = json_module.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        seeds_path = seeds_path or manifest.get("config", {}).get("seeds_path")
        rejected = read_jsonl_repairing(path / "rejected.jsonl")
        if (path / "instructions.jsonl").exists():
            kept = [r["instruction"] for r in read_jsonl_repairing(path / "instructions.jsonl")]
        rows = read_jsonl_repairing(path / "rows.jsonl")
    else:
        from synth.rows import read_rows

        rows = [r.data for r in read_rows(path)]
    seeds = [s.instruction for s in load_seeds(seeds_path)] if seeds_path and Path(seeds_path).exists() else None
    result = instruction_stats(rows, seeds, rejected, instructions=kept)
    click.echo(json_module.dumps(result, indent=2) if as_json else format_stats(result))


def resolve_constitution(value: str) -> Path:
    """A constitution file path, or the name of a shipped one ("harmless")."""
    from synth.resources import data_dir

    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in value:
        return path
    return data_dir("constitutions") / f"{value}.yaml"


@main.command("critique-revise", epilog=EXIT_CODES)
@click.option("--prompts", "prompts_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with a 'prompt' or 'messages' per row (or a .txt file, one prompt per line).")
@click.option("--constitution", "constitution_path", default="harmless", show_default=True,
              help="A constitution YAML file, or the name of a shipped one (harmless, helpful_honest, medical_safety).")
@click.option("--critic", help="Model spec for the critiques.  [default: --model]")
@click.option("--rounds", type=click.IntRange(1, 20), default=1, show_default=True, help="Critique-and-revise rounds per prompt.")
@click.option("--field", help="Read the prompt from this field instead of 'messages'/'prompt'.")
@click.option("--system", help="A system message put before every prompt for the initial answer.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16), default=512, show_default=True, help="Most tokens per answer and revision.")
@click.option("--critique-max-tokens", type=click.IntRange(16), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds principle draws (per row) and sampling.")
@click.option("--prompts-dir", type=click.Path(path_type=Path), help="Your copies of prompts/critique_revise/*.j2 take precedence.")
@run_options("critique-revise")
def critique_revise_command(prompts_path, constitution_path, critic, rounds, field, system, temperature, max_tokens,
                            critique_max_tokens, seed, prompts_dir, model, **kw):
    """Answer, critique against a constitution's principle, revise; repeat (Constitutional AI, SL stage).

    \b
    Example:
      synth critique-revise --prompts prompts.jsonl --constitution harmless --model local --rounds 2

    For each prompt: an initial answer, then --rounds times a principle drawn by weight (seeded
    per row), a critique by --critic, and a revision. Writes sft.jsonl (chat messages ending in
    the final revision), preference.jsonl (prompt, chosen = final revision, rejected = initial
    answer; TRL's format) and trace.jsonl (every round), all sharing row ids. Rows whose
    revision is empty, unchanged, a refusal to revise, unparseable or leaking go to
    rejected.jsonl with the reason. Re-running resumes.
    """
    from synth.backends import Sampling, parse_spec
    from synth.constitution import load_constitution
    from synth.generators.critique_revise import GENERATOR, CritiqueReviseConfig, critique_revise, prepare_rows
    from synth.prompts import load_template
    from synth.rows import read_rows
    from synth.runner import ModelRun

    opts = make_run_options("critique-revise", kw)
    critic = critic or model
    parse_spec(model), parse_spec(critic)
    constitution = load_constitution(resolve_constitution(constitution_path))
    templates = {name: load_template(f"critique_revise/{name}", prompts_dir) for name in ("critique", "revision")}
    rows = read_rows(prompts_path)
    prepared = prepare_rows(rows, prompts_path, field, system)
    prepared = list({p[0]: p for p in prepared}.values())  # identical prompts: one row
    prepared = prepared[: opts.limit] if opts.limit else prepared
    cfg = CritiqueReviseConfig(
        model=model, critic=critic, rounds=rounds, seed=seed, system=system,
        sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=seed),
        critique_sampling=Sampling(temperature=temperature, max_tokens=critique_max_tokens, seed=seed),
        revision_sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=seed),
    )
    identity = {"input": str(Path(prompts_path).resolve()), "model": model, "critic": critic, "rounds": rounds,
                "seed": seed, "field": field, "system": system, "constitution": constitution.provenance(),
                "sampling": [cfg.sampling.to_dict(), cfg.critique_sampling.to_dict()],
                "templates": {t.name: t.hash for t in templates.values()}}
    config = {**identity, "input_rows": len(rows), "constitution_path": constitution.path}
    if opts.dry_run:
        click.echo(critique_revise_dry_run(prepared, constitution, templates, cfg, opts))
        return
    session = ModelRun(GENERATOR, identity, config, [model, critic], opts, rows_name="trace.jsonl")
    session.run.manifest["constitution"] = {**constitution.provenance(), "path": constitution.path}
    session.run.manifest["templates"] = {t.name: t.provenance() for t in templates.values()}
    session.skipped = sum(1 for p in prepared if p[0] in session.run.done)
    session.begin()  # rows rejected before are redone: from the cache, or afresh with --retry-rejected
    with session.stopping():
        critique_revise(session, prepared, constitution, templates, cfg)
    folder = session.run.folder
    session.notes.append(f"  SFT: {folder / 'sft.jsonl'}\n  preference: {folder / 'preference.jsonl'}")
    outcome = session.close()
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)


def critique_revise_dry_run(prepared, constitution, templates, cfg, opts) -> str:
    from synth.backends import ChatRequest
    from synth.prices import estimate_prompt_tokens
    from synth.runner import check_price

    examples = [e.__dict__ for e in constitution.examples]
    principle = constitution.principles[0]
    overhead = estimate_prompt_tokens(ChatRequest([{"role": "user", "content": templates["critique"].render(
        prompt="", response="", principle=principle, examples=examples)}]))
    prompt_tokens = completion_tokens = 0
    for _, _, messages in prepared:
        base = estimate_prompt_tokens(ChatRequest(messages))
        answer = cfg.sampling.max_tokens
        prompt_tokens += base + cfg.rounds * 2 * (overhead + base + answer)
        completion_tokens += answer + cfg.rounds * (cfg.critique_sampling.max_tokens + cfg.revision_sampling.max_tokens)
    lines = [f"critique-revise (dry run, no model called): {len(prepared)} prompts x (1 answer + {cfg.rounds} "
             f"x (critique + revision)) = {len(prepared) * (1 + 2 * cfg.rounds)} requests",
             f"  at most about {prompt_tokens:,} prompt and {completion_tokens:,} completion tokens"]
    for spec in dict.fromkeys([cfg.model, cfg.critic]):
        price = check_price(spec, opts)
        lines.append(f"  {spec}: " + (f"at most ${price.cost(prompt_tokens, completion_tokens):.4f} if it did everything"
                                      if price else "price unknown (add it to a price table: --prices FILE)"))
    return "\n".join(lines)


@main.group()
def constitution() -> None:
    """Check and inspect constitution files (YAML principles)."""


@constitution.command("validate")
@click.argument("files", nargs=-1, required=True)
def constitution_validate(files):
    """Report every problem in each constitution FILE (or shipped name), with its path and line."""
    from synth.constitution import load_constitution
    from synth.errors import SynthError

    failed = 0
    for value in files:
        try:
            c = load_constitution(resolve_constitution(value))
        except SynthError as exc:
            failed += 1
            click.echo(exc.message, err=True)
            continue
        weights = sum(p.weight for p in c.principles)
        click.echo(f"ok: {c.path}: {c.name} v{c.version}, {len(c.principles)} principles (total weight {weights:g}), "
                   f"{len(c.examples)} examples, hash {c.hash}")
    if failed:
        raise SystemExit(2)


from synth import cli_feedback  # noqa: E402,F401  (registers respond, label, eval-judge)

if __name__ == "__main__":
    main()
