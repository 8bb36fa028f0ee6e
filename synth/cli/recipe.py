"""Recipes: a YAML list of synth commands run one after another, each reading the previous step's rows.

    name: constitutional-dpo
    input: examples/prompts.jsonl          # the first step's input (or give it in the step)
    model: local                           # a default for every step that takes --model/--judge/--critic
    steps:
      - step: critique-revise              # any synth command; other keys are its options
        constitution: constitutions/harmless.yaml
        rounds: 1
      - step: label
        constitution: constitutions/harmless.yaml
      - step: export
        input: critique-revise             # a step's name (its rows) or a path; default: the previous step
        format: sft-messages
        to: sft.jsonl                      # relative: inside the step's folder

Everything is checked before the first step runs: step names, option names (as in `synth CMD --help`),
inputs. Errors name the recipe file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from synth.errors import SynthError
from synth.rows import read_text_utf8

STEPS = ("self-instruct", "generate", "respond", "critique-revise", "label", "dedup", "filter", "select", "export")
INPUT_OPTION = {"self-instruct": "--seeds", "critique-revise": "--prompts", "respond": "--prompts"}
MODEL_OPTIONS = {"critique-revise": ("--model", "--critic"), "label": ("--judge",), "generate": ("--model",),
                 "self-instruct": ("--model",), "respond": ("--model",)}
PREFERENCE_STEPS = ("label",)
RESERVED = ("step", "name", "input")


@dataclass
class Step:
    command: str
    name: str
    line: int
    options: dict[str, Any]
    option_lines: dict[str, int]
    input: str | None = None
    input_line: int = 0


@dataclass
class Recipe:
    path: Path
    name: str
    input: str | None
    model: str | None
    steps: list[Step] = field(default_factory=list)


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def load_recipe(path: Path, commands: dict | None = None) -> Recipe:
    """Parse and check a recipe against the CLI's `commands` (name -> click command; the whole
    `synth` group's when None); every error names `path` and the line."""
    if commands is None:
        commands = click.get_current_context().find_root().command.commands
    top = _top_level(path)
    recipe = Recipe(path, str(_plain(top["name"][0])) if "name" in top else path.stem,
                    _plain(top["input"][0]) if "input" in top else None,
                    _plain(top["model"][0]) if "model" in top else None)
    names: list[str] = []
    for node in top["steps"][0].value:
        recipe.steps.append(_step(path, node, names, commands))
    first = recipe.steps[0]
    source = first.input or recipe.input
    if source is None and first.command != "self-instruct":
        raise SynthError(f"{path} line {first.line}: the first step needs an input: give 'input:' in the recipe or the step")
    if source is not None and not resolve(recipe, source).exists():
        raise SynthError(f"{path} line {first.input_line or top.get('input', (None, first.line))[1]}: "
                         f"input file '{source}' does not exist")
    return recipe


def _top_level(path: Path) -> dict[str, tuple[yaml.Node, int]]:
    """The recipe's top-level keys: {key: (its YAML node, its line)}, checked."""
    if not path.is_file():
        raise SynthError(f"{path}: no such recipe file")
    try:
        root = yaml.compose(read_text_utf8(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SynthError(f"{path} line {mark.line + 1 if mark else '?'}: not valid YAML ({getattr(exc, 'problem', exc)})")
    if not isinstance(root, yaml.MappingNode):
        raise SynthError(f"{path}: a recipe is a mapping with 'steps' (see recipes/ for examples)")
    top = {k.value: (v, k.start_mark.line + 1) for k, v in root.value}
    unknown = set(top) - {"name", "description", "input", "model", "steps"}
    if unknown:
        key = sorted(unknown)[0]
        raise SynthError(f"{path} line {top[key][1]}: unknown key '{key}' (recipe keys: name, description, input, "
                         "model, steps)")
    if "steps" not in top or not isinstance(top["steps"][0], yaml.SequenceNode) or not top["steps"][0].value:
        raise SynthError(f"{path}: 'steps' must be a non-empty list of steps")
    return top


def _step(path: Path, node: yaml.Node, names: list[str], commands: dict) -> Step:
    """One step, checked: a known command, its own options, an input that is an earlier step
    (of `names`, to which its name is added) or a file."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise SynthError(f"{path} line {line}: each step is a mapping with 'step: COMMAND'")
    items = {k.value: (_plain(v), k.start_mark.line + 1) for k, v in node.value}
    if "step" not in items:
        raise SynthError(f"{path} line {line}: this step has no 'step:' (one of {', '.join(STEPS)})")
    command = items["step"][0]
    if command not in STEPS:
        raise SynthError(f"{path} line {items['step'][1]}: unknown step '{command}' (one of {', '.join(STEPS)})")
    name = str(items["name"][0]) if "name" in items else command
    if name in names:
        name = f"{name}-{len(names) + 1}"
    names.append(name)
    step = Step(command, name, line, *_options(path, name, command, items, option_names(commands[command])))
    if "input" in items:
        step.input, step.input_line = str(items["input"][0]), items["input"][1]
        if step.input not in names[:-1] and not (path.parent / step.input).exists() and not Path(step.input).exists():
            raise SynthError(f"{path} line {step.input_line}: input '{step.input}' is neither an earlier step "
                             f"({', '.join(names[:-1]) or 'none yet'}) nor a file")
    return step


def _options(path: Path, name: str, command: str, items: dict[str, tuple[Any, int]],
             known: set[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """The step's options as the command's flags (--key), and the line of each."""
    options, lines = {}, {}
    for key, (value, key_line) in items.items():
        if key in RESERVED:
            continue
        option = "--" + key.replace("_", "-")
        if option not in known or option in ("--output", "--input", INPUT_OPTION.get(command)):
            raise SynthError(f"{path} line {key_line}: step '{name}' ({command}) has no option '{key}'"
                             + ("; the runner sets it" if option in known else
                                f" (options: {', '.join(sorted(k[2:] for k in known))})"))
        options[option], lines[option] = value, key_line
    return options, lines


def option_names(command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts
            if opt.startswith("--")}


def resolve(recipe: Recipe, value: str) -> Path:
    """A path in a recipe: as given if it exists from here, else relative to the recipe's folder."""
    path = Path(value)
    return path if path.exists() or path.is_absolute() else recipe.path.parent / value


def step_rows(command: str, folder: Path, wants_preference: bool) -> Path:
    """The file a step leaves for the next one."""
    candidates = {"critique-revise": ["preference.jsonl", "sft.jsonl"] if wants_preference else ["sft.jsonl"],
                  }.get(command, ["rows.jsonl", "rows.parquet", "dataset"])
    for name in candidates:
        if (folder / name).exists():
            return folder / name
    if command == "export":
        raise SynthError(f"step folder {folder}: an export step's files are not an input for another step")
    raise SynthError(f"step folder {folder}: the step left none of {', '.join(candidates)}")


def step_argv(recipe: Recipe, step: Step, folder: Path, source: Path | None) -> list[str]:
    argv = [step.command]
    if source is not None:
        argv += [INPUT_OPTION.get(step.command, "--input"), str(source)]
    for option in MODEL_OPTIONS.get(step.command, ()):
        if recipe.model and option not in step.options:
            argv += [option, recipe.model]
    for option, value in step.options.items():
        if step.command == "export" and option == "--to" and not str(value).startswith("hub:"):
            value = str(folder / value) if not Path(str(value)).is_absolute() else value
        elif isinstance(value, str) and option in ("--constitution", "--seeds", "--prompts-dir", "--prices",
                                                    "--blacklist", "--allowlist") and not value.startswith("@"):
            value = str(resolve(recipe, value))
        if value is True:
            argv.append(option)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for item in value:
                argv += [option, str(item)]
        else:
            argv += [option, str(value)]
    if step.command != "export":
        argv += ["--output", str(folder)]
    return argv
