"""Constitution files: the shipped ones, every kind of problem with its path and line, sampling."""

import random
from collections import Counter

import pytest

from synth.constitution import load_constitution, row_rng, sample_principles
from synth.errors import SynthError

from conftest import REPO, invoke

GOOD = """\
name: tiny
version: 2
description: A small test constitution.
principles:
  - id: kind
    critique: Is it unkind?
    revision: Make it kind.
    comparison: Which is kinder?
    weight: 3
    tags: [tone]
  - id: honest
    critique: Is it false?
    revision: Make it true.
examples:
  - prompt: Hi
    response: Go away.
    critique: Rude.
    revision: Hello! How can I help?
    principle: kind
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, minimum", [("harmless", 12), ("helpful_honest", 4), ("medical_safety", 3)])
def test_shipped_constitutions_are_valid(name, minimum):
    c = load_constitution(REPO / "constitutions" / f"{name}.yaml")
    assert len(c.principles) >= minimum and len(c.examples) >= 2
    assert all(p.comparison for p in c.principles)
    assert len({p.id for p in c.principles}) == len(c.principles)


def test_harmless_covers_the_required_principles():
    ids = {p.id for p in load_constitution(REPO / "constitutions" / "harmless.yaml").principles}
    assert ids >= {"harmful", "unethical", "racist", "sexist", "toxic", "dangerous", "illegal", "privacy",
                   "self-harm", "manipulation", "misinformation", "age-appropriate"}


def test_good_file_loads(tmp_path):
    c = load_constitution(write(tmp_path, GOOD))
    assert (c.name, c.version, len(c.principles)) == ("tiny", "2", 2)
    assert c.principles[0].weight == 3 and c.principles[0].tags == ("tone",)
    assert c.principles[1].id == "honest"
    assert c.examples[0].principle == "kind" and len(c.hash) == 12


def test_every_problem_is_reported_with_path_and_line(tmp_path):
    broken = GOOD.replace("    revision: Make it true.\n", "    revison: Make it true.\n") \
        .replace("id: kind", "id: honest").replace("critique: Is it unkind?", 'critique: "  "') \
        .replace("weight: 3", "weight: -1").replace("principle: kind", "principle: nope") \
        .replace("description: A small test constitution.\n", "")
    with pytest.raises(SynthError) as info:
        load_constitution(write(tmp_path, broken))
    message = info.value.message
    for expected in ["description: missing (line 1)",
                     "principles[1].revision: missing (line 10)",
                     "principles[1].revison: unknown key",
                     "principles[0].critique: empty text (line 5)",
                     "principles[1].id: duplicate id 'honest' (also principles[0]) (line 10)",
                     "principles[0].weight: must be a positive number (line 8)",
                     "examples[0].principle: no principle with id 'nope'"]:
        assert expected in message, message
    assert "7 problem(s)" in message


@pytest.mark.parametrize("text, expected", [
    ("- just a list\n", "(top): expected a mapping"),
    ("name: x\nversion: 1\ndescription: d\nprinciples: []\n", "principles: must be a non-empty list"),
    ("name: x\nversion: 1\ndescription: d\nprinciples:\n  - just text\n", "principles[0]: must be a mapping"),
    ("name: x\nversion: 1\ndescription: d\nprinciples:\n  - id: a b\n    critique: c\n    revision: r\n", "principles[0].id: must be a short name"),
    ("name: x\nversion: 1\ndescription: d\nprinciples:\n  - id: a\n    critique: c\n    revision: r\n    tags: t\n", "principles[0].tags: must be a list"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nversion: 1\ndescription: d\nprinciples:\n  - id: yes\n    critique: c\n    revision: r\n", "quote it"),
])
def test_broken_files(tmp_path, text, expected):
    with pytest.raises(SynthError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        load_constitution(write(tmp_path, text))


def test_validate_command(tmp_path):
    good, bad = write(tmp_path, GOOD, "good.yaml"), write(tmp_path, GOOD.replace("revision: Make it kind.", "revision: ''"), "bad.yaml")
    result = invoke(*["constitution", "validate", str(good), "harmless"])
    assert result.exit_code == 0 and "ok:" in result.output and "12 principles" in result.output
    result = invoke(*["constitution", "validate", str(good), str(bad)])
    assert result.exit_code == 2 and "principles[0].revision: empty text" in result.output


def test_sampling_is_reproducible_and_follows_weights(tmp_path):
    c = load_constitution(write(tmp_path, GOOD))
    assert sample_principles(c, row_rng(7, "row-a"), 5) == sample_principles(c, row_rng(7, "row-a"), 5)
    assert [p.id for p in sample_principles(c, row_rng(1, "x"), 50)] != [p.id for p in sample_principles(c, row_rng(2, "x"), 50)]
    counts = Counter(p.id for p in sample_principles(c, random.Random(0), 20000))
    assert counts["kind"] / 20000 == pytest.approx(0.75, abs=0.02)  # weight 3 against 1


def test_a_constitution_not_in_utf8_is_one_line_naming_the_line_and_the_fix(tmp_path, write_jsonl):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("A small test constitution.", "Une constitution très petite.").encode("latin-1"))
    with pytest.raises(SynthError, match=r"latin1.yaml line 3: not valid UTF-8 \(byte 33 of the line, 0xe8\); "
                                         r"re-save it as UTF-8"):
        load_constitution(path)
    prompts = write_jsonl([{"prompt": "hi"}])
    for args in (["constitution", "validate", str(path)],
                 ["critique-revise", "--prompts", str(prompts), "--constitution", str(path), "--model", "scripted:echo",
                  "--dry-run", "--output", str(tmp_path / "run")]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "latin1.yaml line 3: not valid UTF-8" in result.output and "re-save it as UTF-8" in result.output
        assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None)))
