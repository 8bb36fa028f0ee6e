"""Critique-and-revise: cleaning parsers (property tests), template safety, the generator, resume."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.backends.scripted import ScriptedBackend
from synth.errors import SynthError
from synth.parsing import clean_model_text, is_refusal_to_revise
from synth.prompts import Template, load_template

from conftest import REPO, SHARED_DATA, invoke, read

# -- cleaning --------------------------------------------------------------------------------

plain_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9).filter(
    lambda w: w not in {"answer", "response", "revision", "critique", "assistant", "here", "principle", "now", "example"})
plain_text = st.lists(plain_word, min_size=1, max_size=30).map(" ".join).map(lambda t: t[0].upper() + t[1:] + ".")
labels = st.sampled_from(["Revision: ", "Revised answer: ", "**Revised response:** ", "Critique: ", "Answer:",
                          "Here is the revised answer: ", "Sure, here's my revised response:\n", "REVISION:  ",
                          "[ANSWER]\n", "[SUGGESTION] ", ""])


@settings(max_examples=300)
@given(text=plain_text, label=labels, quoted=st.booleans(), leak=st.booleans())
def test_labels_quotes_and_leakage_are_removed(text, label, quoted, leak):
    body = f'"{text}"' if quoted else text
    raw = label + body + ("\n\nCritique request: say what is wrong" if leak else "") + ("\n[/ANSWER]" if label == "[ANSWER]\n" else "")
    assert clean_model_text(raw) == text


@given(st.text(max_size=300))
def test_cleaning_is_idempotent_and_never_crashes(text):
    once = clean_model_text(text)
    assert clean_model_text(once) == once


@pytest.mark.parametrize("raw, clean", [
    ("Answer: 42", "42"),
    ("Revision:\n\nThe capital is Paris.\nIt is in France.", "The capital is Paris.\nIt is in France."),
    ("The fix is simple.\n**Critique:** leaked template", "The fix is simple."),
    ("Use quotes like \"this\" inside.", "Use quotes like \"this\" inside."),
    ("Plain text: with a colon inside", "Plain text: with a colon inside"),
    ("Revision:", ""),
])
def test_cleaning_cases(raw, clean):
    assert clean_model_text(raw) == clean


@pytest.mark.parametrize("text, refusal", [
    ("No revision is needed.", True), ("No changes are necessary; the answer is fine.", True),
    ("The original response is already appropriate.", True), ("I cannot revise this answer.", True),
    ("No, you should not do that; here is why.", False), ("The answer is simple: drink water.", False),
])
def test_refusal_to_revise(text, refusal):
    assert is_refusal_to_revise(text) is refusal


# -- templates are data, sandboxed, strict ---------------------------------------------------

def test_user_text_is_inserted_as_data_never_as_template_code():
    template = load_template("critique_revise/critique")
    from synth.constitution import Principle

    evil = "{{ 7 * 7 }} {% for x in range(3) %}loop{% endfor %} {{ ''.__class__ }}"
    out = template.render(prompt=evil, response=evil, principle=Principle("p", "Is it bad?", "Fix."), examples=[])
    assert out.count("{{ 7 * 7 }}") == 2 and "49" not in out and "looploop" not in out


def test_a_template_cannot_reach_python_internals(tmp_path):
    path = tmp_path / "evil.j2"
    path.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SynthError, match="evil.j2: the template tried something unsafe"):
        Template("evil", path, path.read_text()).render()


def test_a_missing_variable_names_the_template_and_variable(tmp_path):
    path = tmp_path / "t.j2"
    path.write_text("Hello {{ name }} and {{ missing_thing }}")
    with pytest.raises(SynthError, match=r"t\.j2: 'missing_thing' is undefined"):
        Template("t", path, path.read_text()).render(name="x")


# -- the generator on scripted models --------------------------------------------------------

def answer_model(request):
    prompt = request.messages[-1]["content"]
    if prompt.startswith("You rewrite"):
        response = re.search(r"\[ANSWER\]\n(.*?)\n\[/ANSWER\]", prompt.rsplit("Now rewrite this one.", 1)[1], re.S).group(1)
        request_text = re.search(r"\[REQUEST\]\n(.*?)\n\[/REQUEST\]", prompt.rsplit("Now rewrite this one.", 1)[1], re.S).group(1)
        if "EMPTY" in request_text:
            return "Revision:"
        if "SAME" in request_text:
            return response
        if "REFUSE" in request_text:
            return "No revision is needed."
        if "LEAK" in request_text:
            return "Revision: I can't help with getting into someone else's network without permission; that is unauthorised access and illegal in most places."
        return f"Revised answer: {response} (revised)"
    return f"My first answer, with a few details, for a request of {len(prompt)} characters."


def critic_model(request):
    prompt = request.messages[-1]["content"]
    principle = re.search(r"^Principle: (.*)$", prompt, re.M).group(1)
    return f"Critique: it could be better. [{principle}]"


@pytest.fixture
def models(scripted_models):
    return scripted_models(lambda spec: ScriptedBackend(critic_model if "critic" in spec else answer_model, spec=spec))



def run_cr(src, out, *extra):
    return invoke(*["critique-revise", "--prompts", str(src), "--model", "scripted:echo",
                                     "--critic", "scripted:critic", "--output", str(out), *extra])


def test_three_views_share_ids_and_rounds_chain(tmp_path, write_jsonl, models):
    src = write_jsonl([{"id": "p1", "prompt": "How do I boil an egg?"}, {"prompt": "Tell me a joke"}])
    out = tmp_path / "run"
    result = run_cr(src, out, "--rounds", "2", "--constitution", "harmless")
    assert result.exit_code == 0, result.output
    sft, pref, trace = read(out / "sft.jsonl"), read(out / "preference.jsonl"), read(out / "trace.jsonl")
    assert [r["id"] for r in sft] == [r["id"] for r in pref] == [r["id"] for r in trace] and len(sft) == 2
    first = trace[0]
    assert first["initial"] == "My first answer, with a few details, for a request of 21 characters."
    assert first["final"] == first["initial"] + " (revised) (revised)"
    assert [r["round"] for r in first["rounds"]] == [1, 2]
    assert first["meta"]["principles"] == [r["principle"] for r in first["rounds"]]
    assert first["meta"]["constitution"]["name"] == "harmless" and first["meta"]["parent_ids"] == ["p1"]
    assert sft[0]["messages"] == [{"role": "user", "content": "How do I boil an egg?"},
                                  {"role": "assistant", "content": first["final"]}]
    assert (pref[0]["prompt"], pref[0]["chosen"], pref[0]["rejected"]) == ("How do I boil an egg?", first["final"], first["initial"])
    # The critic model got every critique request, the main model every answer and revision.
    critic_prompts = [r.messages[-1]["content"] for r in models["scripted:critic"][0].requests]
    assert len(critic_prompts) == 4 and all(p.startswith("You review") for p in critic_prompts)
    assert len(models["scripted:echo"][0].requests) == 2 + 4
    # Round 2's critique reviews round 1's revision; the principle text shown is the drawn one.
    from synth.constitution import load_constitution

    harmless = load_constitution(REPO / "constitutions" / "harmless.yaml")
    for round_ in first["rounds"]:
        assert round_["critique"] == f"it could be better. [{harmless.principle(round_['principle']).critique}]"


def test_principles_are_drawn_reproducibly_per_row(tmp_path, write_jsonl, models):
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(12)])
    run_cr(src, tmp_path / "a", "--rounds", "3", "--seed", "5")
    run_cr(src, tmp_path / "b", "--rounds", "3", "--seed", "5", "--limit", "4")
    run_cr(src, tmp_path / "c", "--rounds", "3", "--seed", "6")
    draws = lambda d: {r["id"]: r["meta"]["principles"] for r in read(tmp_path / d / "trace.jsonl")}  # noqa: E731
    a, b, c = draws("a"), draws("b"), draws("c")
    assert all(a[k] == v for k, v in b.items())  # independent of which other rows run
    assert a != c


@pytest.mark.parametrize("marker, reason", [("EMPTY", "unparseable"), ("SAME", "unchanged"),
                                            ("REFUSE", "refusal_to_revise"), ("LEAK", "leaking")])
def test_bad_revisions_are_rejected_with_their_reason(tmp_path, write_jsonl, models, marker, reason):
    src = write_jsonl([{"prompt": f"{marker} please"}, {"prompt": "a fine question"}])
    out = tmp_path / "run"
    result = run_cr(src, out)
    assert result.exit_code == 0, result.output
    [rejected] = read(out / "rejected.jsonl")
    assert rejected["reason"] == reason and rejected["input"] == {"prompt": f"{marker} please"}
    assert rejected["trace"]["rounds"][0]["critique"]
    assert [r["prompt"] for r in read(out / "preference.jsonl")] == ["a fine question"]


def test_resume_mid_run_sends_nothing_twice(tmp_path, write_jsonl, models, monkeypatch):
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(6)])
    reference = tmp_path / "reference"
    assert run_cr(src, reference, "--rounds", "2").exit_code == 0
    out = tmp_path / "run"
    original, calls = ScriptedBackend.generate, {"n": 0}

    def crashing(self, requests, on_complete=None):
        calls["n"] += 1
        if calls["n"] == 4:  # answers, critiques 1, revisions 1, then ^C during critiques 2
            raise KeyboardInterrupt
        return original(self, requests, on_complete)

    monkeypatch.setattr(ScriptedBackend, "generate", crashing)
    assert run_cr(src, out, "--rounds", "2").exit_code == 130
    crashed = (models["scripted:echo"][-1], models["scripted:critic"][-1])  # [0] served the reference run
    sent_before = {json.dumps(r.messages) for b in crashed for r in b.requests}
    assert sent_before
    monkeypatch.setattr(ScriptedBackend, "generate", original)
    assert run_cr(src, out, "--rounds", "2").exit_code == 0
    sent_after = [json.dumps(r.messages) for b in (models["scripted:echo"][-1], models["scripted:critic"][-1]) for r in b.requests]
    assert not sent_before & set(sent_after)
    for name in ("sft.jsonl", "preference.jsonl", "trace.jsonl"):
        assert sorted(read(out / name), key=json.dumps) == sorted(read(reference / name), key=json.dumps)


def test_a_crash_between_views_and_trace_leaves_no_duplicate(tmp_path, write_jsonl, models):
    src = write_jsonl([{"prompt": "q1"}, {"prompt": "q2"}])
    out = tmp_path / "run"
    run_cr(src, out)
    trace = (out / "trace.jsonl").read_text().splitlines(keepends=True)
    (out / "trace.jsonl").write_text(trace[0])  # the second row's views were written, its trace was not
    assert run_cr(src, out).exit_code == 0
    for name in ("sft.jsonl", "preference.jsonl", "trace.jsonl"):
        ids = [r["id"] for r in read(out / name)]
        assert len(ids) == 2 == len(set(ids))


def test_bad_inputs_fail_before_any_call(tmp_path, write_jsonl, models):
    src = write_jsonl([{"prompt": "ok"}])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nprinciples: []\n")
    result = run_cr(src, tmp_path / "r", "--constitution", str(bad))
    assert result.exit_code == 2 and "description: missing" in result.output and models == {}
    result = run_cr(src, tmp_path / "r", "--constitution", "no_such_name")
    assert result.exit_code == 2 and "no such constitution file" in result.output
    result = run_cr(src, tmp_path / "r", "--dry-run", "--rounds", "2")
    assert result.exit_code == 0 and "1 prompts x (1 answer + 2 x (critique + revision)) = 5 requests" in result.output
    assert models == {}


@pytest.mark.slow
def test_end_to_end_on_the_local_model(tmp_path):
    import datasets

    prompts = [json.loads(line) for line in (SHARED_DATA / "red_team_prompts.jsonl").read_text().splitlines()[:3]]
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    out = tmp_path / "run"
    result = invoke(*["critique-revise", "--prompts", str(src), "--constitution", "harmless",
                                       "--model", "local", "--rounds", "1", "--output", str(out), "--max-tokens", "384",
                                       "--keep-truncated"])
    assert result.exit_code == 0, result.output
    trace, rejected = read(out / "trace.jsonl"), read(out / "rejected.jsonl")
    assert len(trace) + len(rejected) == 3 and trace, result.output
    for name in ("sft.jsonl", "preference.jsonl", "trace.jsonl"):
        loaded = datasets.load_dataset("json", data_files=str(out / name), split="train")
        assert len(loaded) == len(trace)
    pref = datasets.load_dataset("json", data_files=str(out / "preference.jsonl"), split="train")
    assert set(pref.column_names) >= {"id", "prompt", "chosen", "rejected"}
    assert all(row["chosen"].strip() and row["chosen"] != row["rejected"] for row in pref)


@pytest.mark.parametrize("stage", ["You review", "You rewrite"])
def test_a_failed_request_at_any_stage_is_an_error_and_a_rerun_retries_it(tmp_path, write_jsonl, scripted_models, stage):
    from synth.backends.base import Completion

    failing = {"on": True}

    def flaky(model):
        def reply(request):
            text = request.messages[-1]["content"]
            if failing["on"] and "FLAKY" in text and text.startswith(stage):
                return Completion("", "error", error="gave up after 6 attempts: HTTP 503: overloaded")
            return model(request)
        return reply

    scripted_models(lambda spec: ScriptedBackend(flaky(critic_model if "critic" in spec else answer_model), spec=spec))
    src = write_jsonl([{"prompt": "FLAKY question"}, {"prompt": "a fine question"}])
    out = tmp_path / "run"
    result = run_cr(src, out, "--rounds", "2")
    assert result.exit_code == 1, result.output
    [rejected] = read(out / "rejected.jsonl")
    assert rejected["reason"] == "error" and "HTTP 503" in rejected["error"] and "round 1" in rejected["error"]
    assert [r["prompt"] for r in read(out / "trace.jsonl")] == ["a fine question"]
    failing["on"] = False
    result = run_cr(src, out, "--rounds", "2")
    assert result.exit_code == 0, result.output
    assert read(out / "rejected.jsonl") == [] and len(read(out / "sft.jsonl")) == 2
