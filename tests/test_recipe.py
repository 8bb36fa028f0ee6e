"""`synth run` recipes: checked before any call, one folder per step, resumable; `synth report`."""

import json
import math
import shutil
import subprocess

import pytest

from synth.backends.scripted import ScriptedBackend
from synth.cli import main
from test_critique_revise import answer_model, critic_model
from test_pairwise import shown
from conftest import invoke

PROMPTS = [{"id": f"p{i}", "prompt": f"Question number {i}: how do I look after a {animal}?"}
           for i, animal in enumerate(["cat", "dog", "parrot", "goldfish"])]


def judge_logprobs(request):
    first, second = shown(request.messages[0]["content"])
    good_first = "(revised)" in first
    return {"A": math.log(0.85 if good_first else 0.15), "B": math.log(0.15 if good_first else 0.85)}


def judge_text(request):
    first, _ = shown(request.messages[0]["content"])
    return "A" if "(revised)" in first else "B"


@pytest.fixture
def models(scripted_models):
    def make(spec):
        if "judge" in spec:
            return ScriptedBackend(judge_text, logprobs=judge_logprobs, spec=spec)
        return ScriptedBackend(critic_model if "critic" in spec else answer_model, spec=spec)
    return scripted_models(make)


def recipe(tmp_path, body, prompts=PROMPTS):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    path = tmp_path / "recipe.yaml"
    path.write_text(body)
    return path


CDPO = """name: cdpo
input: prompts.jsonl
steps:
  - step: critique-revise
    model: scripted:echo
    critic: scripted:critic
    constitution: {constitution}
    rounds: 1
  - step: label
    judge: scripted:judge
    constitution: {constitution}
  - step: dedup
    method: exact,minhash
  - step: export
    name: export-sft
    input: critique-revise
    format: sft-messages
    to: sft.jsonl
  - step: export
    name: export-dpo
    input: dedup
    format: dpo
    to: dpo.jsonl
"""


def cdpo(tmp_path):
    from synth.resources import data_dir

    return recipe(tmp_path, CDPO.format(constitution=data_dir("constitutions") / "harmless.yaml"))


def run(*args):
    return invoke(*["run", *[str(a) for a in args]])


def test_recipe_runs_every_step_in_one_folder_and_resumes(tmp_path, models):
    out = tmp_path / "run"
    result = run(cdpo(tmp_path), "--output", out, "--no-report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["folder"] for s in manifest["steps"]] == ["01-critique-revise", "02-label", "03-dedup", "04-export-sft",
                                                        "05-export-dpo"]
    assert all(s["status"] == "done" for s in manifest["steps"])
    assert manifest["steps"][1]["input"].endswith("01-critique-revise/preference.jsonl")
    sft = [json.loads(x) for x in (out / "04-export-sft" / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (out / "05-export-dpo" / "dpo.jsonl").read_text().splitlines()]
    assert len(sft) == 4 and sft[0]["messages"][-1]["content"].endswith("(revised)")
    assert len(dpo) == 4 and all(r["chosen"].endswith("(revised)") for r in dpo)
    assert str(out / "05-export-dpo" / "dpo.jsonl") in result.output
    calls = sum(len(b.requests) for backends in models.values() for b in backends)
    again = run(cdpo(tmp_path), "--output", out, "--no-report")
    assert again.exit_code == 0 and again.output.count("done earlier, skipped") == 5
    assert sum(len(b.requests) for backends in models.values() for b in backends) == calls  # nothing re-asked


def test_a_failed_step_resumes_from_that_step(tmp_path, models):
    path = cdpo(tmp_path)
    broken = path.read_text().replace("method: exact,minhash", "method: exact,minhush")
    path.write_text(broken)
    out = tmp_path / "run"
    result = run(path, "--output", out, "--no-report")
    assert result.exit_code != 0 and "step 'dedup'" in result.output and "run the same command again" in result.output
    steps = json.loads((out / "manifest.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["done", "done", "failed"]
    path.write_text(broken.replace("minhush", "minhash"))
    result = run(path, "--output", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert result.output.count("done earlier, skipped") == 2 and "[3/5] dedup: synth dedup" in result.output


@pytest.mark.parametrize("change, message", [
    (("rounds: 1", "roundz: 1"), "line 8: step 'critique-revise' (critique-revise) has no option 'roundz'"),
    (("step: dedup", "step: dedupe"), "line 12: unknown step 'dedupe'"),
    (("input: prompts.jsonl", "input: missing.jsonl"), "line 2: input file 'missing.jsonl' does not exist"),
    (("input: dedup", "input: nowhere"), "line 21: input 'nowhere' is neither an earlier step"),
    (("name: cdpo", "nme: cdpo"), "line 1: unknown key 'nme'"),
])
def test_recipe_errors_name_the_line_before_any_call(tmp_path, models, change, message):
    path = cdpo(tmp_path)
    path.write_text(path.read_text().replace(*change))
    result = run(path, "--output", tmp_path / "run")
    assert result.exit_code != 0 and str(path) in result.output and message in result.output, result.output
    assert not any(b.requests for backends in models.values() for b in backends)


def test_shipped_recipes_are_valid():
    from synth.cli.recipe import load_recipe
    from synth.resources import data_dir

    recipes = data_dir("constitutions").parent / "recipes"
    names = sorted(p.name for p in recipes.glob("*.yaml"))
    assert {"constitutional-dpo.yaml", "self-instruct-sft.yaml", "clean-corpus.yaml"} <= set(names)
    for path in recipes.glob("*.yaml"):
        assert load_recipe(path, main.commands).steps


@pytest.mark.slow
def test_report_renders_its_plots_and_tables_in_headless_chromium(tmp_path, models):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (make install installs it)")
    out = tmp_path / "run"
    result = run(cdpo(tmp_path), "--output", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    for heading in ("Rows per step", "Length distributions", "Principle usage", "Judge", "Diversity",
                    "Tokens and estimated cost", "Sample rows"):
        assert heading in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    images = page.count("<img")
    assert images >= 6 and f"images {images}/{images} tables" in dom  # every plot decoded
    assert "tables 3" in dom or "tables 4" in dom


PARTIAL = """name: partial
input: prompts.jsonl
steps:
  - step: generate
    model: openai:m@{url}
    max-retries: 0
  - step: export
    format: sft-prompt-completion
    to: sft.jsonl
"""


def test_a_step_with_failed_requests_is_partial_and_runs_again(tmp_path, loopback):
    server = loopback(fail_prompts=("doomed",))
    prompts = [{"id": "a", "prompt": "first"}, {"id": "b", "prompt": "doomed"}, {"id": "c", "prompt": "third"}]
    path = recipe(tmp_path, PARTIAL.format(url=server.url), prompts)
    out = tmp_path / "run"
    result = run(path, "--output", out, "--no-report")
    assert result.exit_code == 1, result.output  # like the step itself: some requests failed, re-run to retry
    steps = json.loads((out / "manifest.json").read_text())["steps"]
    assert [(s["status"], s["exit_code"]) for s in steps] == [("partial", 1), ("done", 0)]
    assert "1 partial (generate: some requests failed)" in result.output
    sft = out / "02-export" / "sft.jsonl"
    assert sorted(json.loads(x)["prompt"] for x in sft.read_text().splitlines()) == ["first", "third"]
    asked = len(server.requests)
    server.faults.fail_prompts = ()  # the fault is cleared
    result = run(path, "--output", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert "done earlier, skipped" not in result.output
    assert "[1/2] generate: synth generate" in result.output and "[2/2] export: synth export" in result.output
    assert [s["status"] for s in json.loads((out / "manifest.json").read_text())["steps"]] == ["done", "done"]
    assert [r["messages"][-1]["content"] for r in server.requests[asked:]] == ["doomed"]  # only what failed
    assert sorted(json.loads(x)["prompt"] for x in sft.read_text().splitlines()) == ["doomed", "first", "third"]
    again = run(path, "--output", out, "--no-report")
    assert again.exit_code == 0 and again.output.count("done earlier, skipped") == 2
