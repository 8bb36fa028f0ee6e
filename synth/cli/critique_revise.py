"""`synth critique-revise` and `synth constitution`: Constitutional AI's supervised stage."""

from __future__ import annotations

from pathlib import Path

import click

from synth.backends import Sampling, parse_spec
from synth.cli.options import EXIT_CODES, make_run_options, print_outcome, run_options
from synth.constitution import Constitution, load_constitution
from synth.errors import SynthError
from synth.generators.critique_revise import GENERATOR, CritiqueReviseConfig, critique_revise, prepare_rows
from synth.prompts import Template, load_template
from synth.resources import data_dir
from synth.rows import read_rows
from synth.runs.plan import dry_run_estimate, prompt_tokens
from synth.runs.session import Session, RunOptions, check_price


def resolve_constitution(value: str) -> Path:
    """A constitution file path, or the name of a shipped one ("harmless")."""
    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in value:
        return path
    return data_dir("constitutions") / f"{value}.yaml"


@click.command("critique-revise", epilog=EXIT_CODES)
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
    session = Session(GENERATOR, identity, config, [model, critic], opts, rows_name="trace.jsonl")
    session.note("constitution", {**constitution.provenance(), "path": constitution.path})
    session.note("templates", {t.name: t.provenance() for t in templates.values()})
    session.skipped = sum(1 for p in prepared if p[0] in session.done)
    session.begin()  # rows rejected before are redone: from the cache, or afresh with --retry-rejected
    with session.stopping():
        critique_revise(session, prepared, constitution, templates, cfg)
    folder = session.folder.path
    session.notes.append(f"  SFT: {folder / 'sft.jsonl'}\n  preference: {folder / 'preference.jsonl'}")
    outcome = session.close()
    print_outcome(outcome)


def critique_revise_dry_run(prepared: list, constitution: Constitution, templates: dict[str, Template],
                            cfg: CritiqueReviseConfig, opts: RunOptions) -> str:
    """Answers and revisions go to --model, critiques to --critic; each critique and revision
    shows the prompt, the answer (at most --max-tokens) and the critique template."""
    examples = [e.__dict__ for e in constitution.examples]
    overhead = prompt_tokens([{"role": "user", "content": templates["critique"].render(
        prompt="", response="", principle=constitution.principles[0], examples=examples)}])
    n, rounds, answer = len(prepared), cfg.rounds, cfg.sampling.max_tokens
    prompts = sum(prompt_tokens(messages) for _, _, messages in prepared)
    per_stage = rounds * (n * (overhead + answer) + prompts)  # all critiques, or all revisions
    tokens: dict[str, tuple[int, int]] = {}
    for spec, prompt, completion in (
            (cfg.model, prompts + per_stage, n * (answer + rounds * cfg.revision_sampling.max_tokens)),
            (cfg.critic, per_stage, n * rounds * cfg.critique_sampling.max_tokens)):
        before = tokens.get(spec, (0, 0))
        tokens[spec] = (before[0] + prompt, before[1] + completion)
    work = f"{n} prompts x (1 answer + {rounds} x (critique + revision)) = {n * (1 + 2 * rounds)} requests"
    return dry_run_estimate("critique-revise", work, tokens, {spec: check_price(spec, opts) for spec in tokens})


@click.group()
def constitution() -> None:
    """Check and inspect constitution files (YAML principles)."""


@constitution.command("validate")
@click.argument("files", nargs=-1, required=True)
def constitution_validate(files):
    """Report every problem in each constitution FILE (or shipped name), with its path and line."""
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
