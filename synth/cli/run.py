"""`synth run RECIPE.yaml`: the steps of a recipe in one run folder, resumable step by step."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from synth.cli.options import default_output

# exit codes of a step that still leave usable rows: 0 (all rows), 1 (some requests failed after
# retries). A step that exited 1 is recorded "partial", not "done": the recipe goes on with its
# rows, and the next run of the recipe runs it again (resuming, so only what failed is asked again).
USABLE_EXITS = (0, 1)
STATUS = {0: "done", 1: "partial"}


def run_step(argv: list[str]) -> int:
    """One synth command in this process; its exit code (its own errors are printed by the group)."""
    try:
        click.get_current_context().find_root().command.main(args=argv, prog_name="synth", standalone_mode=False)
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
    from synth.corpus import check_writable
    from synth.errors import SynthError
    from synth.export.formats import PREFERENCE_FORMATS
    from synth.cli.recipe import PREFERENCE_STEPS, load_recipe, option_names, resolve, step_argv, step_rows
    from synth.runs.folder import lock_folder, write_json_atomic

    recipe = load_recipe(recipe_path)
    output = output or default_output(recipe.name)
    check_writable(output, "--output")
    # One recipe run per folder; released however this command ends (click closes its context).
    click.get_current_context().call_on_close(lock_folder(output).close)
    manifest_path = output / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    done = {s["name"]: s for s in previous.get("steps", []) if s.get("status") == "done"}
    earlier_argv = {s["name"]: s.get("argv") for s in previous.get("steps", [])}
    rerun = False  # once a step runs again, every later step does too: its input changed
    manifest = {"command": "run", "recipe": str(recipe_path), "name": recipe.name, "steps": [],
                "started_at": previous.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S")}
    folders: dict[str, tuple[str, Path]] = {}
    last: str | None = None
    exports: list[str] = []
    partial: list[str] = []
    for k, step in enumerate(recipe.steps):
        folder = output / f"{k + 1:02d}-{step.name}"
        wants_preference = step.command in PREFERENCE_STEPS or (
            step.command == "export" and step.options.get("--format") in PREFERENCE_FORMATS)
        if step.input in folders:
            command, source_folder = folders[step.input]
            source = step_rows(command, source_folder, wants_preference)
        elif step.input:
            source = resolve(recipe, step.input)
        elif last is not None:
            command, source_folder = folders[last]
            source = step_rows(command, source_folder, wants_preference)
        else:
            source = resolve(recipe, recipe.input) if recipe.input else None
        argv = step_argv(recipe, step, folder, source)
        if source is not None and source.is_file() and source.stat().st_size == 0:
            raise SynthError(f"{recipe_path} line {step.line}: step '{step.name}' has no input rows: {source} is empty "
                             f"(see rejected.jsonl beside it for why the previous step kept nothing)")
        # The recipe changed this step, or an earlier step ran again (so this step's input may hold
        # other rows): redo it; the response cache makes what is unchanged free. Not for export,
        # whose --overwrite means "replace files synth did not write": it replaces its own anyway.
        if step.command != "export" and "--overwrite" in option_names(click.get_current_context().find_root().command.commands[step.command]) \
                and folder.exists() and (rerun or earlier_argv.get(step.name) not in (None, argv)):
            argv.append("--overwrite")
        record = {"name": step.name, "command": step.command, "folder": folder.name, "argv": argv,
                  "input": str(source) if source else None}
        if not rerun and step.name in done and done[step.name].get("argv") == argv:
            click.echo(f"[{k + 1}/{len(recipe.steps)}] {step.name}: done earlier, skipped")
            manifest["steps"].append(done[step.name])
        else:
            click.echo(f"[{k + 1}/{len(recipe.steps)}] {step.name}: synth {' '.join(argv)}")
            rerun = True
            started = time.monotonic()
            manifest["steps"].append({**record, "status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            write_json_atomic(manifest_path, manifest)
            folder.mkdir(parents=True, exist_ok=True)
            code = run_step(argv)
            manifest["steps"][-1].update(exit_code=code, wall_seconds=round(time.monotonic() - started, 3),
                                         ended_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         status=STATUS.get(code, "failed"))
            write_json_atomic(manifest_path, manifest)
            if code not in USABLE_EXITS:
                raise SynthError(f"{recipe_path}: step '{step.name}' (line {step.line}) stopped with exit code {code}; "
                                 f"fix it and run the same command again to resume from this step")
            if code != 0:
                partial.append(step.name)
                click.echo(f"[{k + 1}/{len(recipe.steps)}] {step.name}: some requests failed; going on with the rows "
                           "it has (running the same command again retries the failed ones and redoes later steps)")
        folders[step.name] = (step.command, folder)
        if step.command == "export":
            exports += [f"{step.options.get('--format')}: {p}" for p in sorted(folder.iterdir())
                        if p.name != "README.md" and not p.name.endswith(".README.md")]
        else:
            last = step.name
    manifest["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(manifest_path, manifest)
    if partial:
        lines = [f"recipe {recipe.name}: {len(recipe.steps)} steps run, {len(partial)} partial "
                 f"({', '.join(partial)}: some requests failed) -> {output}"]
    else:
        lines = [f"recipe {recipe.name}: {len(recipe.steps)} steps done -> {output}"]
    lines += [f"  {path}" for path in exports]
    if report:
        from synth.analysis.report import write_report

        lines.append(f"  report: {write_report(output)}")
    if partial:
        lines.append(f"  run the same command again to retry what failed (from step '{partial[0]}' on)")
    click.echo("\n".join(lines))
    if partial:
        raise SystemExit(1)  # as a single command: 1 = some requests failed, re-run to retry them


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
    from synth.analysis.report import write_report

    click.echo(f"report: {write_report(run_dir, embedder)}")
