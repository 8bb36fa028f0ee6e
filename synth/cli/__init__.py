"""The `synth` command line: the group and the explicit list of its commands.

Each module of this package holds one family of commands; each command parses options, builds
objects, calls one library function and prints its summary. Nothing outside `synth/cli/`
imports click. Heavy libraries (torch, transformers, llama.cpp, openai) are imported only inside
the commands that need them, so `synth --help` answers at once.
"""

from __future__ import annotations

import errno

import click

from synth import __version__
from synth.cli.critique_revise import constitution, critique_revise_command
from synth.cli.dedup import dedup
from synth.cli.export import export_command
from synth.cli.filter import filter_command
from synth.cli.generate import generate, respond
from synth.cli.label import eval_judge, label
from synth.cli.run import report_command, run_recipe
from synth.cli.select import select, stats
from synth.cli.self_instruct import self_instruct_command
from synth.errors import SynthError

USER_FIXABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC)


class SynthGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["synth.argv"] = ["synth", *args]  # for the manifest (secrets are masked there)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        from synth.runs.session import EXIT_TERMINATED, Terminated, handle_sigterm

        handle_sigterm()  # SIGTERM stops a run like ^C: rows kept, manifest marked interrupted, exit 143
        try:
            return super().invoke(ctx)
        except Terminated:  # a command with no run folder to mark: just the exit code
            click.echo("terminated", err=True)
            raise SystemExit(EXIT_TERMINATED) from None
        except SynthError as exc:
            fail(exc)
        except OSError as exc:
            # A path the user chose can't be read or written (permissions, a file where a folder
            # should be, a read-only or full disk): one line, no traceback.
            if exc.filename is None or exc.errno not in USER_FIXABLE_ERRNOS:
                raise
            fail(SynthError(f"{exc.filename}: {exc.strerror}; check the path and its permissions, or choose another one"))


def fail(exc: SynthError) -> None:
    """A user-fixable error: one line on stderr, then its exit code."""
    click.echo(f"Error: {exc.message}", err=True)
    raise SystemExit(exc.exit_code)


@click.group(cls=SynthGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synth")
def main() -> None:
    """Synthetic feedback and training data for aligning language models.

    Every command that calls a model writes one run folder (rows.jsonl, rejected.jsonl).
    The default model, `local`, is SmolLM2-135M-Instruct embedded in the install: it runs
    offline on a CPU.
    """


COMMANDS = [generate, respond, critique_revise_command, constitution, self_instruct_command, label, eval_judge, dedup,
            filter_command, select, stats, export_command, run_recipe, report_command]
for command in COMMANDS:
    main.add_command(command)
