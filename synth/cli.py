"""The `synth` command line: parse options, build objects, call one function, print a summary.

Heavy libraries (torch, transformers, llama.cpp, openai) are imported only inside the commands
that need them, so `synth --help` answers at once.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

import click

from synth import __version__
from synth.backends import SPEC_HELP

MODEL_HELP = f"Model spec. {SPEC_HELP}."


USER_FIXABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC)


class SynthGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["synth.argv"] = ["synth", *args]  # for the manifest (secrets are masked there)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        from synth.errors import SynthError
        from synth.runner import EXIT_TERMINATED, Terminated, handle_sigterm

        handle_sigterm()  # SIGTERM stops a run like ^C: rows kept, manifest marked interrupted, exit 143
        try:
            return super().invoke(ctx)
        except Terminated:  # a command with no run folder to mark: just the exit code
            click.echo("terminated", err=True)
            raise SystemExit(EXIT_TERMINATED) from None
        except OSError as exc:
            # A path the user chose can't be read or written (permissions, a file where a folder
            # should be, a read-only or full disk): one line, no traceback.
            if exc.filename is None or exc.errno not in USER_FIXABLE_ERRNOS:
                raise
            raise SynthError(f"{exc.filename}: {exc.strerror}; check the path and its permissions, "
                             "or choose another one") from None


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
            click.option("--overwrite", is_flag=True, help="Discard the rows, rejections and manifest synth wrote in the run folder and start again (nothing else there is touched; the response cache and spend ledger are kept)."),
            click.option("--cache", type=click.Path(path_type=Path),
                         help="A response cache shared between runs.  [default: cache.sqlite in the run folder]"),
            click.option("--dry-run", is_flag=True, help="Count rows and estimate tokens and cost; call no model."),
            click.option("--limit", type=click.IntRange(1), help="Process only the first N input rows."),
            click.option("--max-cost-usd", type=click.FloatRange(0), help="Hard cap on this run folder's spend in USD, across resumes: each request's worst case (prompt + --max-tokens) is reserved before it is sent, and one that could pass the cap is not sent. Stops cleanly (exit 4, resumable)."),
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
re-run to retry them); 2 bad input or options, or the run folder is in use; 3 the
model backend can't be used or went down mid-run (re-run to resume); 4 stopped by
--max-cost-usd; 130 interrupted (^C); 143 terminated (SIGTERM). Every finished row
is kept in all cases."""


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


# Each module registers its commands on `main`.
from synth import (cli_constitution, cli_dedup, cli_export, cli_feedback, cli_filter, cli_recipe,  # noqa: E402,F401
                   cli_select, cli_self_instruct)
