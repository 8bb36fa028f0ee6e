"""`synth dedup` exact and rouge methods: clusters keep one row, lineage, keep-by, forms, errors."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.filters.dedup import deduplicate, normalise

from conftest import invoke, read



ROWS = [
    {"id": "a", "text": "Explain how a rainbow forms.", "score": 1},
    {"id": "b", "text": "explain how a RAINBOW forms!!", "score": 5},  # exact after normalisation
    {"id": "c", "text": "Explain how a rainbow forms in the sky.", "score": 2},  # near (ROUGE-L 10/13)
    {"id": "d", "text": "Write a haiku about autumn leaves.", "score": 3},  # distinct: must survive
    {"id": "e", "text": "List three uses of baking soda.", "score": 0},
]


def run(*args):
    return invoke(*["dedup", *[str(a) for a in args]])


def test_exact_then_rouge_keep_one_of_each_cluster(tmp_path, write_jsonl):
    src = write_jsonl(ROWS)
    out = tmp_path / "out"
    result = run("--input", src, "--output", out, "--method", "rouge,exact")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read(out / "rows.jsonl")] == ["a", "d", "e"]
    removed = {r["id"]: r for r in read(out / "removed.jsonl")}
    assert removed["b"]["duplicate_of"] == "a" and removed["b"]["method"] == "exact" and removed["b"]["similarity"] == 1.0
    assert removed["c"]["duplicate_of"] == "a" and removed["c"]["method"] == "rouge"
    assert removed["c"]["similarity"] == pytest.approx(10 / 13, abs=1e-6) and removed["c"]["row"] == ROWS[2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["methods"] == ["exact", "rouge"] and manifest["removed_by_method"] == {"exact": 1, "rouge": 1}
    # the same manifest shape as a model run's
    assert manifest["counts"] == {"input": manifest["counts"]["input"], "written": manifest["counts"]["input"] - 2,
                                  "rejected": 2, "rejected_by_reason": {"exact": 1, "rouge": 1}}
    assert manifest["status"] == "complete" and manifest["cost_usd"] == 0.0 and "versions" in manifest


def test_keep_by_keeps_the_best_copy(tmp_path, write_jsonl):
    out = tmp_path / "out"
    assert run("--input", write_jsonl(ROWS), "--output", out, "--method", "exact,rouge", "--keep-by", "score").exit_code == 0
    assert [r["id"] for r in read(out / "rows.jsonl")] == ["b", "d", "e"]  # input order kept
    assert {r["id"]: r["duplicate_of"] for r in read(out / "removed.jsonl")} == {"a": "b", "c": "b"}


def test_threshold_edges(write_jsonl):
    texts = [r["text"] for r in ROWS]
    near = deduplicate(texts, ["rouge"], rouge_threshold=10 / 13)  # strictly above: exactly 10/13 stays
    assert all(r.index != 2 for r in near)
    near = deduplicate(texts, ["rouge"], rouge_threshold=10 / 13 - 1e-9)
    assert any(r.index == 2 for r in near)


def test_chains_point_at_the_survivor():
    texts = ["alpha beta gamma delta", "Alpha beta gamma delta.", "alpha beta gamma delta epsilon"]
    # order: the near-copy first, so the exact group's first member is later removed by rouge
    removals = deduplicate(texts, ["exact", "rouge"], order=[2, 0, 1], rouge_threshold=0.7)
    assert {(r.index, r.duplicate_of) for r in removals} == {(0, 2), (1, 2)}


@given(st.lists(st.sampled_from(["a b c", "A b c!", "x y z", "a b c d", "q r s t u"]), max_size=12),
       st.sampled_from([["exact"], ["rouge"], ["exact", "rouge"]]))
def test_every_cluster_keeps_one_and_runs_are_deterministic(texts, methods):
    removals = deduplicate(texts, methods)
    removed = {r.index for r in removals}
    assert all(r.duplicate_of not in removed for r in removals)  # never both members of a pair
    assert removals == deduplicate(texts, methods)
    kept = [normalise(t) for k, t in enumerate(texts) if k not in removed]
    assert len(kept) == len(set(kept))


def test_template_and_forms(tmp_path, write_jsonl):
    rows = [{"instruction": "Add the numbers", "input": "1, 2"}, {"instruction": "add the numbers.", "input": "1 2"},
            {"instruction": "Add the numbers", "input": "3, 4"}]
    src = write_jsonl(rows)
    out = tmp_path / "jsonl"
    assert run("--input", src, "--output", out, "--template", "{instruction} {input}").exit_code == 0
    assert len(read(out / "rows.jsonl")) == 2
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "c.parquet"))
    assert run("--input", tmp_path / "c.parquet", "--output", tmp_path / "pq").exit_code == 0
    assert datasets.Dataset.from_parquet(str(tmp_path / "pq" / "rows.parquet")).num_rows == 2
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    assert run("--input", tmp_path / "hf", "--output", tmp_path / "hf-out").exit_code == 0
    assert datasets.load_from_disk(str(tmp_path / "hf-out" / "dataset")).num_rows == 2


def test_bad_input_is_a_clear_error(tmp_path, write_jsonl):
    result = run("--input", write_jsonl([{"text": "ok"}, {"other": 1}]), "--output", tmp_path / "o")
    assert result.exit_code == 2 and "line 2: no text field 'text'" in result.output
    result = run("--input", write_jsonl([{"text": "ok"}]), "--template", "{nope}", "--output", tmp_path / "o")
    assert result.exit_code == 2 and "--template names field 'nope'" in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "holds no rows" in run("--input", empty, "--output", tmp_path / "o").output
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert "line 2: not valid UTF-8" in run("--input", latin, "--output", tmp_path / "o").output
    assert "unknown minhush" in run("--input", write_jsonl([{"text": "x"}]), "--method", "minhush").output
    result = run("--input", write_jsonl([{"text": "x", "score": "high"}]), "--keep-by", "score", "--output", tmp_path / "o")
    assert result.exit_code == 2 and "needs a number" in result.output


# -- minhash --------------------------------------------------------------------------------

from synth.filters.minhash import MinHasher, jaccard, lsh_params, minhash_pass, shingles  # noqa: E402


def test_minhash_finds_templated_near_copies_and_keeps_distinct_texts():
    base = "please write a short friendly email to my landlord asking when the broken heater in the flat will be fixed"
    texts = [base, base.replace("short", "brief"), "summarise the following article about volcanic eruptions in iceland",
             base + " thanks", "translate the sentence into french and explain the grammar used in it"]
    removals = deduplicate([normalise(t) for t in texts], ["minhash"], minhash_threshold=0.6)  # pair 1 has J = 0.7
    assert {(r.index, r.duplicate_of) for r in removals} == {(1, 0), (3, 0)}
    for r in removals:
        assert r.similarity == pytest.approx(jaccard(shingles(texts[r.index]), shingles(texts[0])))


def test_verification_removes_lsh_false_positives():
    # Two texts share most shingles but sit below the threshold: LSH may pair them, verification must not.
    a = " ".join(f"w{i}" for i in range(20))
    b = " ".join(f"w{i}" for i in range(14)) + " x1 x2 x3 x4 x5 x6"
    j = jaccard(shingles(a), shingles(b))
    assert 0.4 < j < 0.8
    # One row per band: any shared minimum makes the pair a candidate, so LSH surely proposes it.
    assert minhash_pass([a, b], [0, 1], threshold=0.8, params=(128, 1)) == []
    assert minhash_pass([a, b], [0, 1], threshold=j, params=(128, 1)) == [(1, 0, j)]  # at the threshold: kept as a duplicate


def test_minhash_precision_is_one_and_recall_high_against_brute_force():
    import random

    rng = random.Random(3)
    vocab = [f"v{i}" for i in range(60)]
    bases = [[rng.choice(vocab) for _ in range(25)] for _ in range(40)]
    texts = []
    for words in bases:
        texts.append(" ".join(words))
        for _ in range(2):  # near copies with a word or two changed
            copy = list(words)
            for _ in range(rng.randint(0, 2)):
                copy[rng.randrange(len(copy))] = rng.choice(vocab)
            texts.append(" ".join(copy))
    found = minhash_pass(texts, range(len(texts)), threshold=0.8)
    sets = [shingles(t) for t in texts]
    assert all(jaccard(sets[i], sets[k]) >= 0.8 for i, k, _ in found)  # precision 1.0
    removed = {i for i, _, _ in found}
    kept = [i for i in range(len(texts)) if i not in removed]
    # recall: among kept rows no pair is still a true duplicate the LSH missed (almost never)
    missed = sum(1 for x in range(len(kept)) for y in range(x) if jaccard(sets[kept[x]], sets[kept[y]]) >= 0.8)
    assert missed <= 1 and len(removed) > 20


def test_signatures_are_deterministic_and_estimate_jaccard():
    a, b = shingles("the quick brown fox jumps over the lazy dog today"), shingles("the quick brown fox jumps over the lazy cat today")
    sig = MinHasher(256).signatures([a, b, set()])
    assert (sig == MinHasher(256).signatures([a, b, set()])).all()
    assert abs(float((sig[0] == sig[1]).mean()) - jaccard(a, b)) < 0.15
    assert (sig[2] == np.iinfo(sig.dtype).max).all()
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128


import numpy as np  # noqa: E402


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), st.integers(1, 4))
def test_shingles_are_the_word_ngrams_of_the_normalised_text(text, n):
    # the compiled byte scanner breaks words exactly where `normalise` does
    words = normalise(text).split()
    grams = {tuple(words[k:k + n]) for k in range(len(words) - n + 1)} if len(words) >= n else ({()} if words else set())
    assert shingles(text, n) == shingles(normalise(text), n)
    assert len(shingles(text, n)) == len(grams)
    assert shingles(" ".join(words).upper(), n) == shingles(text, n) or not text.isascii()
