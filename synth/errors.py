"""The one error type a user can cause: printed by click as one line, no traceback."""

from __future__ import annotations

import click


class SynthError(click.ClickException):
    """A problem the user can fix: the message names the file, line or field, and the fix."""

    exit_code = 2


class BackendError(SynthError):
    """The model backend can't serve this run at all (bad key, unknown model, unreachable server)."""

    exit_code = 3
