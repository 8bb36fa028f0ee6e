"""The options every model-calling command shares, and the run options they become."""

from __future__ import annotations

import time
from pathlib import Path

import click

from synth.backends import SPEC_HELP

MODEL_HELP = f"Model spec. {SPEC_HELP}."


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
    from synth.runs.session import RunOptions

    return RunOptions(
        output=kw.pop("output") or default_output(command), overwrite=kw.pop("overwrite"), cache=kw.pop("cache"),
        dry_run=kw.pop("dry_run"), limit=kw.pop("limit"), max_cost_usd=kw.pop("max_cost_usd"),
        prices=kw.pop("prices"), keep_truncated=kw.pop("keep_truncated"), retry_rejected=kw.pop("retry_rejected"),
        concurrency=kw.pop("concurrency"), max_retries=kw.pop("max_retries"),
        request_timeout=kw.pop("request_timeout"), max_retry_wait=kw.pop("max_retry_wait"), api_key=kw.pop("api_key"),
        argv=click.get_current_context().meta.get("synth.argv", []),
        # `main(obj={"backend_factory": make})` puts another backend factory behind every model (tests).
        **({"backend_factory": factory} if (factory := (click.get_current_context().find_root().obj or {})
                                                      .get("backend_factory")) else {}),
    )


EXIT_CODES = """\b
Exit codes: 0 done; 1 some requests failed after retries (in rejected.jsonl;
re-run to retry them); 2 bad input or options, or the run folder is in use; 3 the
model backend can't be used or went down mid-run (re-run to resume); 4 stopped by
--max-cost-usd; 130 interrupted (^C); 143 terminated (SIGTERM). Every finished row
is kept in all cases."""


def print_outcome(outcome) -> None:
    """Print a run's summary (stdout) and any backend error (stderr); exit with its code."""
    if outcome.summary:
        click.echo(outcome.summary)
    if outcome.error:
        click.echo(f"Error: {outcome.error}", err=True)
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)
