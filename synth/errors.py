"""The errors a user can cause or fix, each with its exit code. Plain exceptions: the library never
prints; `synth/cli/` turns them into one line on stderr and the exit code, no traceback."""

from __future__ import annotations


class SynthError(Exception):
    """A problem the user can fix: the message names the file, line or field, and the fix."""

    exit_code = 2

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BackendError(SynthError):
    """The model backend can't serve this run at all (bad key, unknown model, unreachable server)."""

    exit_code = 3
