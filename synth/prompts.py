"""Prompt templates: Jinja2 files in `prompts/`, rendered in a sandbox, overridable per run.

A generator asks for a template by name; `--prompts-dir DIR` puts the user's folder first, so a
user changes a prompt by copying one file. Each template's name and a hash of its text go into
the rows' provenance and the run's identity (a changed prompt is a different run).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from synth.errors import SynthError
from synth.resources import data_dir


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "hash": self.hash}

    def render(self, **values) -> str:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                   trim_blocks=True, lstrip_blocks=True)
        try:
            return env.from_string(self.text).render(**values).strip()
        except jinja2.TemplateSyntaxError as exc:
            raise SynthError(f"{self.path} line {exc.lineno}: template syntax error: {exc.message}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise SynthError(f"{self.path}: the template tried something unsafe ({exc}); templates may only "
                             "insert the values they are given") from None
        except jinja2.UndefinedError as exc:
            raise SynthError(
                f"{self.path}: {exc.message}; this template is given: {', '.join(sorted(values))}"
            ) from None


def load_template(name: str, prompts_dir: str | Path | None = None) -> Template:
    """`name` (e.g. "self_instruct/generate") from `prompts_dir` if it has it, else the shipped one."""
    filename = f"{name}.j2"
    folders = ([Path(prompts_dir)] if prompts_dir else []) + [data_dir("prompts")]
    if prompts_dir and not Path(prompts_dir).is_dir():
        raise SynthError(f"--prompts-dir {prompts_dir}: no such folder")
    for folder in folders:
        path = folder / filename
        if path.is_file():
            template = Template(name, path, path.read_text(encoding="utf-8"))
            _check_syntax(template)
            return template
    raise SynthError(f"no prompt template '{filename}' in {' or '.join(str(f) for f in folders)}")


def _check_syntax(template: Template) -> None:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    try:
        SandboxedEnvironment().parse(template.text)
    except jinja2.TemplateSyntaxError as exc:
        raise SynthError(f"{template.path} line {exc.lineno}: template syntax error: {exc.message}") from None
