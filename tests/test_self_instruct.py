"""Self-Instruct: parsers (property tests), filters at their edges, the loop, and resume by replay."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.backends.scripted import ScriptedBackend
from synth.filters.heuristics import InstructionHeuristics
from synth.generators.self_instruct import load_seeds
from synth.parsing import parse_instances, parse_numbered_list, parse_yes_no

from conftest import SHARED_DATA, invoke, read

# -- parsing ---------------------------------------------------------------------------------

word = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu"), max_codepoint=0x7F), min_size=1, max_size=8)
item = st.lists(word, min_size=1, max_size=8).map(" ".join)
style = st.sampled_from(["{n}. {t}", "{n}) {t}", "Task {n}: {t}", "{n} - {t}", "**{n}.** {t}", "  {n}.  {t}"])


@settings(max_examples=200, deadline=None)
@given(items=st.lists(item, min_size=1, max_size=12), style=style, start=st.integers(0, 300),
       blank_lines=st.booleans(), preamble=st.booleans(), trailing=st.booleans(), step=st.sampled_from([1, 1, 2, 0]))
def test_numbered_lists_parse_back(items, style, start, blank_lines, preamble, trailing, step):
    lines = ["Here are some new tasks:", ""] if preamble else []
    for k, text in enumerate(items):
        lines.append(style.format(n=start + k * step, t=text))
        if blank_lines:
            lines.append("")
    if trailing:
        lines += ["", "I hope these tasks are useful!"]
    assert parse_numbered_list("\n".join(lines)) == items


def test_numbered_list_continuation_lines_join_their_item():
    text = "9. Explain gravity\n   to a child.\n10. Sort the numbers\n\nThat is all."
    assert parse_numbered_list(text) == ["Explain gravity to a child.", "Sort the numbers"]
    assert parse_numbered_list("No list here at all.") == []
    assert parse_numbered_list("") == []


def test_parse_instances_both_orders():
    text = "Example 1\nInput: 2 + 2\nOutput: 4\n\nExample 2\nInput: None\nOutput: Hello\nthere"
    assert parse_instances(text, output_first=False) == [{"input": "2 + 2", "output": "4"},
                                                         {"input": "", "output": "Hello\nthere"}]
    assert parse_instances("Output: A haiku.", output_first=False) == [{"input": "", "output": "A haiku."}]
    text = "Class label: Positive\nInput: I love it.\n\nClass label: Negative\nInput: Awful."
    assert parse_instances(text, output_first=True) == [{"input": "I love it.", "output": "Positive"},
                                                        {"input": "Awful.", "output": "Negative"}]
    # A task with no input may be answered directly; a classification answer needs its labels.
    assert parse_instances("Just the answer.", output_first=False) == [{"input": "", "output": "Just the answer."}]
    assert parse_instances("Just the answer.", output_first=True) == []
    assert parse_instances("Input: dangling with no output", output_first=False) == []
    dupes = "Input: a\nOutput: b\nInput: a\nOutput: b\nInput: same\nOutput: same"
    assert parse_instances(dupes, output_first=False) == [{"input": "a", "output": "b"}]


@given(st.text())
def test_parsers_never_crash(text):
    parse_numbered_list(text)
    parse_instances(text, output_first=True)
    parse_instances(text, output_first=False)
    parse_yes_no(text)


def test_parse_yes_no():
    assert parse_yes_no("Yes.") is True and parse_yes_no(" no, it is not") is False
    assert parse_yes_no("Yesterday") is None and parse_yes_no("It depends") is None


# -- filters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("Sort these numbers", "too_short"),                      # 3 words: 3 < n is required
    ("Sort these numbers please", None),                      # 4 words
    (" ".join(["word"] * 150), None),
    (" ".join(["word"] * 151), "too_long"),
    ("Describe the image in detail please", "blacklist:image"),
    ("Explain the mapping between two sets", None),          # whole words only
    ("Give directions to go to the station", "blacklist:go to"),
    ("Summarise this MUSIC review briefly", "blacklist:music"),
    ("Write a program that sorts a list", "bad_start:write_a_program"),
    ("Write a poem that sorts a list", None),
    ('"Explain why the sky is blue', "starts_with_punctuation"),
    ("Éxplain why the sky is blue", "starts_with_non_ascii"),
])
def test_heuristics_at_their_edges(text, reason):
    assert InstructionHeuristics().reason(text) == reason


def test_heuristics_options():
    h = InstructionHeuristics(min_words=1, max_words=5, blacklist=("banana",), bad_starts=("Tell me",))
    assert h.reason("Eat a banana now") == "blacklist:banana"
    assert h.reason("Tell me a joke") == "bad_start:tell_me"
    assert h.reason("Describe the image") is None
    assert h.reason("one two three four five six") == "too_long"


# -- seeds -----------------------------------------------------------------------------------

def test_load_seeds_formats(tmp_path, write_jsonl):
    seeds = load_seeds(SHARED_DATA / "self_instruct_seed_tasks.jsonl")
    assert len(seeds) == 175 and seeds[0].instances and isinstance(seeds[0].is_classification, bool)
    plain = write_jsonl([{"instruction": "Do a thing well"}, {"prompt": "Another  task\nhere"}])
    assert [s.instruction for s in load_seeds(plain)] == ["Do a thing well", "Another task here"]
    txt = tmp_path / "seeds.txt"
    txt.write_text("First task\nSecond task\n")
    assert [s.instruction for s in load_seeds(txt)] == ["First task", "Second task"]


def test_bad_seeds_are_clear_errors(write_jsonl):
    from synth.errors import SynthError

    with pytest.raises(SynthError, match="line 2: each seed needs a non-empty 'instruction'"):
        load_seeds(write_jsonl([{"instruction": "ok task here"}, {"text": "x"}]))
    with pytest.raises(SynthError, match="line 1 field 'instances'"):
        load_seeds(write_jsonl([{"instruction": "ok", "instances": "nope"}]))


# -- the loop on a scripted model ------------------------------------------------------------

TOPICS = ["volcanoes", "tax law", "knitting", "graph theory", "jazz", "rust lang", "tea", "chess", "sailing",
          "fungi", "opera", "bridges", "glaciers", "poetry", "owls", "cement", "comets", "cheese"]


def scripted_model():
    """Answers like a well-behaved model: new numbered tasks (some copies, some bad), classification
    verdicts, and instances, so every branch of the loop runs. A pure function of the request,
    like a cached model: request k always gets the same answer."""

    def respond(request):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Decide whether"):
            task = prompt.rsplit("Task:", 1)[-1]
            return "Yes" if "Classify" in task else "No"
        if prompt.startswith("Write examples for a classification"):
            return "Class label: Positive\nInput: I loved it.\n\nClass label: Negative\nInput: I hated it."
        if prompt.startswith("Write examples"):
            return "Example 1\nInput: something to work on\nOutput: a careful answer\n\nExample 2\nInput: None\nOutput: another answer"
        shown = re.findall(r"^\d+\. (.*)$", prompt, re.M)
        items = [shown[0], "Draw a picture of a cat", "Ok"]  # a copy, a blacklisted word, too short
        for i in range(5):
            n = request.sample * 5 + i
            topic = TOPICS[n % len(TOPICS)]
            verb = "Classify the sentiment of a review about" if n % 3 == 0 else f"Write essay number {n} about"
            items.append(f"{verb} {topic} for readers aged {n}")
        return "\n".join(f"{9 + k}. {t}" for k, t in enumerate(items))

    return respond


@pytest.fixture
def scripted(scripted_models):
    """Make `--model scripted:echo` load this test's scripted backend (and record it)."""
    return scripted_models(lambda spec: ScriptedBackend(scripted_model(), spec="scripted:self-instruct"))["scripted:echo"]


def run_si(out, *extra):
    return invoke(*["self-instruct", "--seeds", str(SHARED_DATA / "self_instruct_seed_tasks.jsonl"),
                                     "--model", "scripted:echo", "--output", str(out), *extra])



def test_the_loop_keeps_filters_and_writes_sft_rows(tmp_path, scripted):
    out = tmp_path / "si"
    result = run_si(out, "--num", "12", "--requests-per-round", "2")
    assert result.exit_code == 0, result.output
    kept = read(out / "instructions.jsonl")
    assert len(kept) == 12
    generate_prompts = [r.messages[-1]["content"] for r in scripted[0].requests if r.messages[-1]["content"].startswith("Come up")]
    # 8 in-context tasks per request: 6 seeds + 2 generated once there are some.
    seed_set = {s.instruction for s in load_seeds(SHARED_DATA / "self_instruct_seed_tasks.jsonl")}
    for k, prompt in enumerate(generate_prompts):
        shown = re.findall(r"^\d+\. (.*)$", prompt, re.M)
        assert len(shown) == 8
        generated_shown = [t for t in shown if t not in seed_set]
        assert len(generated_shown) == (0 if k < 2 else 2)  # the first round sees no generated ones
    reasons = {r["reason"] for r in read(out / "rejected.jsonl")}
    assert {"duplicate", "rouge_l", "blacklist:picture", "too_short"} <= reasons
    for rejected in read(out / "rejected.jsonl"):
        if rejected["reason"] == "rouge_l":  # the near-copies of earlier generated tasks
            score = float(rejected["error"].split()[1])
            assert score > 0.7 and rejected["error"].split(" with: ")[1] in {k["instruction"] for k in kept}
    rows = read(out / "rows.jsonl")
    assert rows and all(set(r) == {"id", "instruction", "input", "output", "meta"} for r in rows)
    clf = [r for r in rows if r["meta"]["is_classification"]]
    assert clf and all(r["output"] in ("Positive", "Negative") for r in clf)  # output-first format
    assert {r["instruction"] for r in rows} == {r["instruction"] for r in kept}
    assert all(r["meta"]["parent_ids"] == [next(k["id"] for k in kept if k["instruction"] == r["instruction"])] for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["instructions"] == 12 and sum(stats["rouge_l_to_seeds"]["histogram"].values()) == 12
    assert "highest ROUGE-L to a seed" in result.output


def test_resume_mid_loop_replays_the_cache_and_generates_nothing_twice(tmp_path, scripted, monkeypatch):
    reference = tmp_path / "reference"
    assert run_si(reference, "--num", "15", "--requests-per-round", "1").exit_code == 0
    out = tmp_path / "resumed"
    # Crash the first attempt after 4 generation requests (a ^C in the middle of the loop).
    original = ScriptedBackend.generate
    calls = {"n": 0}

    def crashing(self, requests, on_complete=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, requests, on_complete)

    monkeypatch.setattr(ScriptedBackend, "generate", crashing)
    result = run_si(out, "--num", "15", "--requests-per-round", "1")
    assert result.exit_code == 130, result.output
    partial = read(out / "instructions.jsonl")
    assert 0 < len(partial) < 15
    first_prompts = {json.dumps(r.messages) for r in scripted[-1].requests}
    monkeypatch.setattr(ScriptedBackend, "generate", original)
    result = run_si(out, "--num", "15", "--requests-per-round", "1")
    assert result.exit_code == 0, result.output
    second_prompts = [json.dumps(r.messages) for r in scripted[-1].requests]
    assert not first_prompts & set(second_prompts), "a request was sent to the model twice"
    # The pool was restored exactly: the resumed run equals the uninterrupted one.
    assert read(out / "instructions.jsonl") == read(reference / "instructions.jsonl")
    by_id = lambda r: r["id"]  # noqa: E731
    assert sorted(read(out / "rows.jsonl"), key=by_id) == sorted(read(reference / "rows.jsonl"), key=by_id)
    assert sorted(read(out / "rejected.jsonl"), key=json.dumps) == sorted(read(reference / "rejected.jsonl"), key=json.dumps)


def test_a_larger_num_goes_on_from_the_last_run(tmp_path, scripted):
    out = tmp_path / "si"
    assert run_si(out, "--num", "6", "--requests-per-round", "1").exit_code == 0
    sent_first = len(scripted[-1].requests)
    assert run_si(out, "--num", "10", "--requests-per-round", "1").exit_code == 0
    kept = read(out / "instructions.jsonl")
    assert len(kept) == 10 and len({k["id"] for k in kept}) == 10
    assert len(scripted[-1].requests) < sent_first + 10  # only the new work reached the model


def test_dry_run_and_bad_options(tmp_path, scripted):
    result = run_si(tmp_path / "x", "--num", "20", "--dry-run")
    assert result.exit_code == 0 and "dry run, no model called" in result.output and not (tmp_path / "x").exists()
    assert scripted == []
    bad = tmp_path / "bad_prompts"
    bad.mkdir()
    (bad / "self_instruct").mkdir()
    (bad / "self_instruct" / "generate.j2").write_text("{% for t in tasks %}{{ t }\n")
    result = run_si(tmp_path / "y", "--prompts-dir", str(bad))
    assert result.exit_code == 2 and "generate.j2 line" in result.output and "syntax error" in result.output
    assert scripted == []


def test_prompts_dir_overrides_a_template(tmp_path, scripted):
    mine = tmp_path / "mine" / "self_instruct"
    mine.mkdir(parents=True)
    (mine / "classify.j2").write_text("Decide whether this is classification: {{ instruction }}")
    out = tmp_path / "si"
    assert run_si(out, "--num", "3", "--prompts-dir", str(tmp_path / "mine")).exit_code == 0
    prompts = [r.messages[-1]["content"] for r in scripted[0].requests]
    assert any(p.startswith("Decide whether this is classification: ") for p in prompts)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["templates"]["self_instruct/classify"]["hash"] != manifest["templates"]["self_instruct/generate"]["hash"]


@pytest.mark.slow
def test_end_to_end_on_the_local_model(tmp_path):
    out = tmp_path / "si"
    result = invoke(*["self-instruct", "--seeds", str(SHARED_DATA / "self_instruct_seed_tasks.jsonl"),
                                       "--model", "local", "--num", "5", "--output", str(out), "--max-tokens", "384",
                                       "--instance-max-tokens", "256", "--max-requests", "40"])
    assert result.exit_code == 0, result.output
    kept = read(out / "instructions.jsonl")
    assert len(kept) == 5
    seeds = [s.instruction for s in load_seeds(SHARED_DATA / "self_instruct_seed_tasks.jsonl")]
    from synth.filters.rouge import RougeLFilter

    pool = RougeLFilter(0.7, seeds)
    for record in kept:
        assert InstructionHeuristics().reason(record["instruction"]) is None
        assert pool.is_novel(record["instruction"])
        pool.add(record["instruction"])
    for row in read(out / "rows.jsonl"):
        assert row["instruction"] in {k["instruction"] for k in kept} and row["output"].strip()
    assert (out / "stats.json").exists()


def failing_once(fails):
    """The scripted model, except that requests for which `fails(request)` is true fail (as after
    their retries) the first time they are asked."""
    from synth.backends.base import Completion

    respond, seen = scripted_model(), set()

    def reply(request):
        key = json.dumps(request.messages)
        if fails(request) and key not in seen:
            seen.add(key)
            return Completion("", "error", error="gave up after 6 attempts: HTTP 503: overloaded")
        return respond(request)

    return reply


def test_a_failed_generation_request_stops_the_loop_and_a_rerun_equals_an_uninterrupted_run(tmp_path, scripted_models):
    reply = failing_once(lambda r: r.sample == 3 and r.messages[-1]["content"].startswith("Come up"))
    scripted_models(lambda spec: ScriptedBackend(reply, spec="scripted:si"))
    reference = tmp_path / "reference"
    args = ("--num", "15", "--requests-per-round", "2")
    out = tmp_path / "resumed"
    result = run_si(out, *args)
    assert result.exit_code == 1, result.output
    assert [r["id"] for r in read(out / "rejected.jsonl") if r["reason"] == "error"] == ["request-3"]
    assert "stopped at request 3" in result.output
    assert run_si(out, *args).exit_code == 0  # the replay retries request 3 and goes on
    scripted_models(lambda spec: ScriptedBackend(scripted_model(), spec="scripted:si"))
    assert run_si(reference, *args).exit_code == 0
    assert read(out / "instructions.jsonl") == read(reference / "instructions.jsonl")
    by_id = lambda r: r["id"]  # noqa: E731
    assert sorted(read(out / "rows.jsonl"), key=by_id) == sorted(read(reference / "rows.jsonl"), key=by_id)
    assert sorted(read(out / "rejected.jsonl"), key=json.dumps) == sorted(read(reference / "rejected.jsonl"), key=json.dumps)


def test_a_failed_classification_is_a_recorded_error_and_a_rerun_retries_it(tmp_path, scripted_models):
    reply = failing_once(lambda r: r.messages[-1]["content"].startswith("Decide whether")
                         and re.search(r"aged 0\b", r.messages[-1]["content"].rsplit("Task:", 1)[-1]))
    scripted_models(lambda spec: ScriptedBackend(reply, spec="scripted:si"))
    out = tmp_path / "si"
    result = run_si(out, "--num", "6", "--requests-per-round", "1")
    assert result.exit_code == 1, result.output
    [failed] = [r for r in read(out / "rejected.jsonl") if r["reason"] == "error"]
    assert "classification request" in failed["error"] and "aged 0" in failed["input"]["instruction"]
    assert not any(r["instruction"].endswith("aged 0") for r in read(out / "rows.jsonl"))  # never guessed
    assert run_si(out, "--num", "6", "--requests-per-round", "1").exit_code == 0
    assert any(r["instruction"].endswith("aged 0") for r in read(out / "rows.jsonl"))
    assert all(r["reason"] != "error" for r in read(out / "rejected.jsonl"))


def test_a_replay_that_meets_an_uncached_request_trims_the_files_to_the_pool(tmp_path, scripted):
    out = tmp_path / "si"
    assert run_si(out, "--num", "10", "--requests-per-round", "1").exit_code == 0
    kept = read(out / "instructions.jsonl")
    # An earlier run (older code, or a lost cache) left records the pool would no longer hold.
    stray = {"id": "stray", "instruction": "Not in the pool", "meta": {}}
    with (out / "instructions.jsonl").open("a") as handle:
        handle.write(json.dumps(stray) + "\n")
    with (out / "rows.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "stray-row", "instruction": "Not in the pool", "input": "", "output": "x",
                                 "meta": {"parent_ids": ["stray"]}}) + "\n")
    assert run_si(out, "--num", "12", "--requests-per-round", "1").exit_code == 0
    after = read(out / "instructions.jsonl")
    assert after[: len(kept)] == kept and "stray" not in {r["id"] for r in after} and len(after) == 12
    assert "stray-row" not in {r["id"] for r in read(out / "rows.jsonl")}
