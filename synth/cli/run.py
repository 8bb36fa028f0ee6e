"""`synth run RECIPE.yaml`: the steps of a recipe in one run folder, resumable step by step."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from synth.analysis.report import write_report
from synth.extras import MissingExtra
from synth.cli.options import default_output
from synth.cli.recipe import PREFERENCE_STEPS, Recipe, Step, load_recipe, option_names, resolve, step_argv, step_rows
from synth.errors import SynthError
from synth.export.formats import PREFERENCE_FORMATS
from synth.runs.folder import open_locked, write_json_atomic

# exit codes of a step that still leave usable rows: 0 (all rows), 1 (some requests failed after
# retries). A step that exited 1 is recorded "partial", not "done": the recipe goes on with its
# rows, and the next run of the recipe runs it again (resuming, so only what failed is asked again).
USABLE_EXITS = (0, 1)
STATUS = {0: "done", 1: "partial"}


def run_step(argv: list[str]) -> int:
    """One synth command in this process; its exit code (its own errors are printed by the group).
    The step gets this invocation's context object (e.g. the backend factory tests put behind it)."""
    root = click.get_current_context().find_root()
    try:
        root.command.main(args=argv, prog_name="synth", standalone_mode=False, obj=root.obj)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:  # a usage error in the step's options
        exc.show()
        return exc.exit_code
    return 0


@click.command(name="run")
@click.argument("recipe_path", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), help="The run folder.  [default: outputs/<recipe name>-<timestamp>]")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.html when the run ends.")
def run_recipe(recipe_path, output, report):
    """Run a recipe: synth commands in order, each reading the previous step's rows.

    \b
    Example:
      synth run recipes/constitutional-dpo.yaml --output outputs/cdpo

    The run folder holds one subfolder per step (01-critique-revise, 02-label, ...) and a
    manifest.json recording every step: its command line, status, exit code, rows file and times.
    Re-running the same command resumes: finished steps are skipped, and a step that was cut off
    goes on from its own run folder (nothing generated twice). A step whose requests partly
    failed after retries is recorded "partial": later steps use the rows it has, the recipe
    exits 1, and re-running it retries only what failed, then redoes the steps after it. The
    recipe is checked before any step runs: unknown steps or options and missing inputs are
    errors naming the recipe line. See recipes/ for examples.
    """
    recipe = load_recipe(recipe_path)
    output = output or default_output(recipe.name)
    # One recipe run per folder; released however this command ends (click closes its context).
    click.get_current_context().call_on_close(open_locked(output).close)
    state = RecipeRun.start(recipe, Path(recipe_path), output)
    for k, step in enumerate(recipe.steps):
        state.run(k, step)
    click.echo(state.finish(report))
    if state.partial:
        raise SystemExit(1)  # as a single command: 1 = some requests failed, re-run to retry them


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class RecipeRun:
    """One `synth run` in its folder: the manifest it writes, what an earlier run of the recipe
    finished (skipped when unchanged), each step's folder, and what to report at the end."""

    recipe: Recipe
    recipe_path: Path
    output: Path
    manifest: dict
    done: dict[str, dict]  # steps an earlier run finished, by name
    earlier_argv: dict[str, list[str] | None]
    rerun: bool = False  # once a step runs again, every later step does too: its input changed
    folders: dict[str, tuple[str, Path]] = field(default_factory=dict)  # step name -> (command, folder)
    last: str | None = None  # the last step whose rows the next step reads by default
    exports: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, recipe: Recipe, recipe_path: Path, output: Path) -> "RecipeRun":
        path = output / "manifest.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        manifest = {"command": "run", "recipe": str(recipe_path), "name": recipe.name, "steps": [],
                    "started_at": previous.get("started_at") or now()}
        return cls(recipe, recipe_path, output, manifest,
                   done={s["name"]: s for s in previous.get("steps", []) if s.get("status") == "done"},
                   earlier_argv={s["name"]: s.get("argv") for s in previous.get("steps", [])})

    def run(self, k: int, step: Step) -> None:
        """Run step k (or skip it: done earlier with the same command line) and note its files."""
        folder = self.output / f"{k + 1:02d}-{step.name}"
        source = self.source(step)
        argv = self.argv(step, folder, source)
        where = f"[{k + 1}/{len(self.recipe.steps)}] {step.name}"
        if not self.rerun and step.name in self.done and self.done[step.name].get("argv") == argv:
            click.echo(f"{where}: done earlier, skipped")
            self.manifest["steps"].append(self.done[step.name])
        else:
            click.echo(f"{where}: synth {' '.join(argv)}")
            if self.execute(step, folder, argv, source) != 0:
                click.echo(f"{where}: some requests failed; going on with the rows it has (running the same "
                           "command again retries the failed ones and redoes later steps)")
        self.folders[step.name] = (step.command, folder)
        if step.command == "export":
            self.exports += [f"{step.options.get('--format')}: {p}" for p in sorted(folder.iterdir())
                             if p.name != "README.md" and not p.name.endswith(".README.md")]
        else:
            self.last = step.name

    def source(self, step: Step) -> Path | None:
        """The step's input: a named step's rows, a path, the previous step's rows, or the recipe's input."""
        wants_preference = step.command in PREFERENCE_STEPS or (
            step.command == "export" and step.options.get("--format") in PREFERENCE_FORMATS)
        name = step.input if step.input in self.folders else (None if step.input else self.last)
        if name is not None:
            command, folder = self.folders[name]
            return step_rows(command, folder, wants_preference)
        value = step.input or self.recipe.input
        return resolve(self.recipe, value) if value else None

    def argv(self, step: Step, folder: Path, source: Path | None) -> list[str]:
        """The step's command line; with --overwrite where it must be redone over its old rows."""
        argv = step_argv(self.recipe, step, folder, source)
        if source is not None and source.is_file() and source.stat().st_size == 0:
            raise SynthError(f"{self.recipe_path} line {step.line}: step '{step.name}' has no input rows: {source} is "
                             f"empty (see rejected.jsonl beside it for why the previous step kept nothing)")
        # The recipe changed this step, or an earlier step ran again (so this step's input may hold
        # other rows): redo it; the response cache makes what is unchanged free. Not for export,
        # whose --overwrite means "replace files synth did not write": it replaces its own anyway.
        commands = click.get_current_context().find_root().command.commands
        if step.command != "export" and "--overwrite" in option_names(commands[step.command]) and folder.exists() \
                and (self.rerun or self.earlier_argv.get(step.name) not in (None, argv)):
            argv.append("--overwrite")
        return argv

    def execute(self, step: Step, folder: Path, argv: list[str], source: Path | None) -> int:
        """Run the step's command, recording it in the manifest before and after; its exit code. An
        error unless it left usable rows (a partial step is noted, and the recipe goes on)."""
        self.rerun = True
        started = time.monotonic()
        self.manifest["steps"].append({"name": step.name, "command": step.command, "folder": folder.name,
                                       "argv": argv, "input": str(source) if source else None,
                                       "status": "running", "started_at": now()})
        write_json_atomic(self.output / "manifest.json", self.manifest)
        folder.mkdir(parents=True, exist_ok=True)
        code = run_step(argv)
        self.manifest["steps"][-1].update(exit_code=code, wall_seconds=round(time.monotonic() - started, 3),
                                          ended_at=now(), status=STATUS.get(code, "failed"))
        write_json_atomic(self.output / "manifest.json", self.manifest)
        if code not in USABLE_EXITS:
            raise SynthError(f"{self.recipe_path}: step '{step.name}' (line {step.line}) stopped with exit code "
                             f"{code}; fix it and run the same command again to resume from this step")
        if code != 0:
            self.partial.append(step.name)
        return code

    def finish(self, report: bool) -> str:
        """Close the manifest (and write report.html); the summary."""
        self.manifest["ended_at"] = now()
        write_json_atomic(self.output / "manifest.json", self.manifest)
        steps, name = len(self.recipe.steps), self.recipe.name
        if self.partial:
            lines = [f"recipe {name}: {steps} steps run, {len(self.partial)} partial "
                     f"({', '.join(self.partial)}: some requests failed) -> {self.output}"]
        else:
            lines = [f"recipe {name}: {steps} steps done -> {self.output}"]
        lines += [f"  {path}" for path in self.exports]
        if report:
            try:
                lines.append(f"  report: {write_report(self.output)}")
            except MissingExtra as exc:  # the rows are made; only the page needs matplotlib
                lines.append(f"  report: skipped ({exc.message})")
        if self.partial:
            lines.append(f"  run the same command again to retry what failed (from step '{self.partial[0]}' on)")
        return "\n".join(lines)


@click.command(name="report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--embedder", default="minilm", show_default=True,
              help="Encoder for the diversity plots: 'minilm', 'static', or a local model folder.")
def report_command(run_dir, embedder):
    """Write RUN_DIR/report.html: a self-contained page of plots and tables about a run.

    Rows per step and rejection reasons, length distributions, principle usage, judge score and
    margin histograms with the position-consistency rate, diversity (nearest-neighbour cosine and a
    2-D projection coloured by step), tokens and cost per step, and sample rows side by side.
    Plots are embedded PNGs: the file opens offline and can be mailed as is.
    """
    click.echo(f"report: {write_report(run_dir, embedder)}")
