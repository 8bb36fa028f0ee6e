"""`synth filter`: each quality check at its edges, property tests of the measures, and the CLI."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.filters.quality import QualityFilter, is_refusal_only, non_text_ratio, repeated_ngram_ratio
from conftest import invoke, read



def test_length_bounds_at_their_edges():
    f = QualityFilter(min_words=3, max_words=5, min_chars=10, max_chars=30)
    assert f.reason("one two") == "too_short"
    assert f.reason("one two three") is None  # exactly min_words
    assert f.reason("a b c") == "too_short"  # 3 words but 5 characters < min_chars
    assert f.reason("one two three four five") is None  # exactly max_words
    assert f.reason("one two three four five six") == "too_long"
    assert QualityFilter(max_chars=30).reason("x" * 30) is None and QualityFilter(max_chars=30).reason("x" * 31) == "too_long"


def test_repetition_edges():
    assert repeated_ngram_ratio("a b c a b c", 3) == pytest.approx(1 / 4)  # abc, bca, cab, abc: 1 repeat of 4
    f = QualityFilter(max_repetition=0.25)
    assert f.reason("a b c a b c") is None  # at the bound: kept
    assert f.reason("a b c a b c a") == "repetition"  # 2 repeats of 5 = 0.4
    assert repeated_ngram_ratio("only three words", 3) == 0.0


def test_non_text_edges():
    assert non_text_ratio("ab$$") == 0.5
    assert non_text_ratio("Hello, world! (1-2)") == 0.0  # letters, digits and punctuation are text
    f = QualityFilter(max_non_text=0.5)
    assert f.reason("ab $$") is None and f.reason("ab $$$") == "non_text"
    assert non_text_ratio("a\x00b\x01") == 0.5  # control characters count as non-text


def test_blacklist_allowlist_whole_words_any_case():
    f = QualityFilter(blacklist=("image", "go to"))
    assert f.reason("Describe this Image please") == "blacklist:image"
    assert f.reason("Describe the imagery in the poem") is None  # not a whole-word hit
    assert f.reason("Please go to the store") == "blacklist:go to"
    g = QualityFilter(allowlist=("python", "rust"))
    assert g.reason("Write it in Python.") is None and g.reason("Write it in Go.") == "not_allowlisted"


def test_empty_and_refusal_only_outputs():
    f = QualityFilter()
    assert f.reason("Tell me a joke", "   ") == "empty_output"
    assert f.reason("Tell me a joke", "I\u2019m sorry, but I can\u2019t help with that.") == "refusal_only"
    long = ("I'm sorry to hear that. Colds usually pass within a week or ten days. Rest as much as you can, "
            "drink plenty of warm fluids, use saline drops for a blocked nose, take paracetamol for aches, "
            "and see a doctor if a high fever lasts more than three days or breathing gets hard.")
    assert f.reason("I have a cold", long) is None  # apologises, then helps
    assert f.reason("Tell me a joke", "Why did the chicken cross the road?") is None
    assert f.reason("Tell me a joke", None) is None  # no response field: nothing to check
    assert QualityFilter(check_output=False).reason("Tell me a joke", "") is None


@given(st.text(max_size=200), st.integers(1, 5))
def test_measures_stay_in_range(text, n):
    assert 0.0 <= repeated_ngram_ratio(text, n) < 1.0
    assert 0.0 <= non_text_ratio(text) <= 1.0


@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), min_size=4, max_size=40), st.integers(1, 4))
def test_repetition_matches_a_plain_count(words, n):
    grams = [tuple(words[k:k + n]) for k in range(len(words) - n + 1)]
    repeats = sum(1 for k, g in enumerate(grams) if g in grams[:k])
    expected = repeats / len(grams) if len(grams) >= 2 else 0.0
    assert repeated_ngram_ratio(" ".join(words), n) == pytest.approx(expected)


@given(st.text(min_size=1, max_size=60))
def test_refusal_detection_is_prefix_based(tail):
    assert is_refusal_only("I cannot " + tail) == (len(("I cannot " + tail).split()) <= 40)


ROWS = [
    {"id": "ok", "instruction": "Explain how rainbows form.", "output": "Sunlight refracts in raindrops."},
    {"id": "refuse", "instruction": "Tell me how to pick a lock.", "output": "I'm sorry, but I can't help with that."},
    {"id": "empty", "instruction": "Name a prime number.", "output": ""},
    {"id": "loop", "instruction": "Write a poem.", "output": "the sea the sea the sea the sea the sea the sea"},
    {"id": "junk", "instruction": "$$$ ### @@@ ~~~ ^^^ |||", "output": "x"},
    {"id": "img", "instruction": "Draw an image of a cat.", "output": "ok"},
]


def test_cli_writes_kept_rows_and_reasons(tmp_path, write_jsonl):
    words = tmp_path / "banned.txt"
    words.write_text("# one per line\nimage\n")
    out = tmp_path / "out"
    result = invoke(*["filter", "--input", str(write_jsonl(ROWS)), "--output", str(out),
                                       "--blacklist", f"@{words}"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read(out / "rows.jsonl")] == ["ok"]
    assert {r["id"]: r["reason"] for r in read(out / "removed.jsonl")} == {
        "refuse": "refusal_only", "empty": "empty_output", "loop": "output_repetition", "junk": "non_text",
        "img": "blacklist:image"}
    assert read(out / "removed.jsonl")[0]["row"] == ROWS[1] and read(out / "removed.jsonl")[0]["line"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["input"] == 6 and counts["written"] == 1 and counts["rejected_by_reason"]["non_text"] == 1


def test_cli_errors(tmp_path, write_jsonl):
    src = write_jsonl(ROWS)
    result = invoke(*["filter", "--input", str(src), "--blacklist", "@nope.txt"])
    assert result.exit_code != 0 and "nope.txt" in result.output and "one word or phrase per line" in result.output
    result = invoke(*["filter", "--input", str(src), "--min-words", "5", "--max-words", "2"])
    assert result.exit_code != 0 and "--max-words 2 is below --min-words 5" in result.output
    result = invoke(*["filter", "--input", str(src), "--field", "prompt"])
    assert result.exit_code != 0 and "line 1" in result.output and "'prompt'" in result.output
