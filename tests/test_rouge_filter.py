"""The ROUGE-L novelty filter makes exactly rouge_score's decisions (0 disagreements)."""

from __future__ import annotations

import functools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from synth.filters import rouge
from synth.filters.rouge import Match, RougeLFilter, greedy_filter, rouge_l_f, rouge_tokenize

from conftest import SHARED_DATA  # noqa: E402

SEEDS = SHARED_DATA / "self_instruct_seed_tasks.jsonl"
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 0.9, 1.0]
VOCAB = ["the", "The", "THE", "a", "cat", "dog", "sat", "on", "mat", "42", "don't", "café", "x"]
SEPARATORS = [" ", "  ", ", ", ". ", "-", "!\n", "\t", " (", ") "]


def ref_f(target: str, prediction: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def brute_force(pool: list[str], text: str, threshold: float) -> tuple[int, float] | None:
    """What Self-Instruct does: rouge_score against every pool item; the first of the maxima."""
    scores = [ref_f(item, text) for item in pool]
    if not scores or max(scores) <= threshold:
        return None
    return scores.index(max(scores)), max(scores)


def pair(match: Match | None) -> tuple[int, float] | None:
    return None if match is None else (match.index, match.score)


@st.composite
def sentences(draw, max_words: int = 9) -> str:
    words = draw(st.lists(st.sampled_from(VOCAB), max_size=max_words))
    out = draw(st.sampled_from(["", " ", "..."]))
    for word in words:
        out += word + draw(st.sampled_from(SEPARATORS))
    return out


@pytest.fixture(params=[0, 12, 10**9], ids=["cdist", "mixed", "loop"])
def loop_max(request, monkeypatch):
    """Exercise both ways of scoring the surviving pairs (one cdist call, a Python loop)."""
    monkeypatch.setattr(rouge, "_LOOP_MAX", request.param)
    return request.param


# -- tokenizer and F-measure --------------------------------------------------------------------

TRICKY = ["İstanbul", "\u212a KELVIN", "ﬁle", "１２３ 123", "don't e-mail", "naïve café", "straße",
          "ǅemal", "ΣΑΣ", "a_b", "x\ny\tz\r\n", "", "   ", "!!!", "ABC123def", "\u0130\u0131"]


@pytest.mark.parametrize("text", TRICKY)
def test_tokenize_tricky_text(text):
    assert rouge_tokenize(text) == SCORER._tokenizer.tokenize(text)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_tokenize_matches_rouge_score(text):
    assert rouge_tokenize(text) == SCORER._tokenizer.tokenize(text)


@settings(max_examples=400, deadline=None)
@given(sentences(), sentences())
def test_rouge_l_f_matches_rouge_score(a, b):
    f = rouge_l_f(rouge_tokenize(a), rouge_tokenize(b))
    assert f == ref_f(a, b)
    assert f == ref_f(b, a)  # exactly symmetric


def seed_instructions() -> list[str]:
    if not SEEDS.exists():
        pytest.skip(f"{SEEDS} not found")
    return [json.loads(line)["instruction"] for line in SEEDS.read_text(encoding="utf-8").splitlines()]


def test_rouge_l_f_on_real_instructions():
    seeds = seed_instructions()
    tokens = [rouge_tokenize(s) for s in seeds]
    rng = random.Random(1)
    for i, seed in enumerate(seeds):
        for j in rng.sample(range(len(seeds)), 15) + [i]:
            assert rouge_l_f(tokens[i], tokens[j]) == ref_f(seed, seeds[j])


def test_token_codes_skip_surrogates():
    codes = [rouge._char(i) for i in range(0xD7F0, 0xD810)]
    assert len(set(codes)) == len(codes)
    assert all(not 0xD800 <= ord(c) <= 0xDFFF for c in codes)


def test_pool_with_more_tokens_than_the_surrogate_gap():
    big = " ".join(f"t{i}" for i in range(0xD800 + 500))
    near = " ".join(f"t{i}" for i in range(0xD7F0, 0xD810))  # ids straddle the surrogate range
    keeper = RougeLFilter(0.7, [big, near])
    assert pair(keeper.find_similar(near + " t5")) == brute_force([big, near], near + " t5", 0.7)
    assert pair(keeper.max_similarity("t0 t1 t55290")) == brute_force([big, near], "t0 t1 t55290", -1)


# -- find_similar / is_novel / max_similarity against brute force --------------------------------

@settings(max_examples=150, deadline=None)
@given(st.lists(sentences(), max_size=15), st.lists(sentences(), min_size=1, max_size=4),
       st.sampled_from(THRESHOLDS + [-0.5, 1.5]))
def test_find_similar_matches_brute_force(pool, candidates, threshold):
    keeper = RougeLFilter(threshold, pool)
    assert len(keeper) == len(pool) and keeper.texts == pool
    for text in candidates:
        expected = brute_force(pool, text, threshold)
        assert pair(keeper.find_similar(text)) == expected
        assert keeper.is_novel(text) == (expected is None)
        assert pair(keeper.max_similarity(text)) == brute_force(pool, text, -1.0)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_random_pools_at_every_threshold(threshold, loop_max):
    rng = random.Random(threshold)
    words = "a b c d e f g".split()  # few words, many repeats: heavy overlaps

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randrange(0, 14)))

    for _ in range(25):
        pool = [text() for _ in range(rng.randrange(0, 40))]
        keeper = RougeLFilter(threshold, pool)
        for _ in range(6):
            candidate = rng.choice(pool) if pool and rng.random() < 0.2 else text()
            assert pair(keeper.find_similar(candidate)) == brute_force(pool, candidate, threshold)


def test_edge_cases():
    empty = RougeLFilter()
    assert len(empty) == 0 and empty.find_similar("a b c") is None and empty.max_similarity("a b") is None
    keeper = RougeLFilter(0.7, ["write a poem", "", "!!!"])
    assert keeper.add("???") == 3 and len(keeper) == 4 and keeper.texts[3] == "???"
    assert keeper.is_novel("") and keeper.is_novel("...") and keeper.is_novel("totally new words")
    assert pair(keeper.find_similar("Write a poem!")) == (0, 1.0)
    assert pair(keeper.max_similarity("")) == (0, 0.0)
    assert RougeLFilter(1.0, ["write a poem"]).is_novel("write a poem")  # F = 1.0 is not > 1.0
    assert pair(RougeLFilter(0.0, ["x y", "z poem w v u"]).find_similar("a poem")) == (1, ref_f("z poem w v u", "a poem"))
    assert pair(RougeLFilter(0.0, ["x y"]).find_similar("a poem")) is None


# -- greedy_filter --------------------------------------------------------------------------------

def test_greedy_filter_semantics():
    pool = ["a b c d e f"]
    texts = ["a b c d e f g h",  # 12/14 > 0.7 against the pool: rejected
             "q r s t",  # kept: pool index 1
             "c d e f g h i j",  # 8/14 vs the pool; 12/16 vs the rejected text, which did not join
             "q r s t u",  # 8/9 vs "q r s t"
             "c d e f g h i j"]  # identical to a kept text: pool index 2
    results = [pair(m) for m in greedy_filter(texts, 0.7, pool)]
    assert results == [(0, ref_f(pool[0], texts[0])), None, None, (1, ref_f(texts[1], texts[3])), (2, 1.0)]
    assert greedy_filter([]) == [] and greedy_filter(["same", "same"], pool=[]) == [None, Match(0, 1.0)]


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(words))
        op = rng.choice(["drop", "duplicate", "swap", "replace"])
        if op == "drop" and len(words) > 1:
            del words[i]
        elif op == "duplicate":
            words.insert(i, words[i])
        elif op == "swap":
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = rng.choice(["please", "the", "Explain", "list", "a", "story"])
    return " ".join(words)


@functools.lru_cache(maxsize=None)
def seed_greedy_case() -> tuple[list[str], list[str], dict[float, list[tuple[int, float] | None]]]:
    """Seeds 40.. and two perturbed variants of every seed, shuffled, against a pool of seeds :40;
    the expected decisions from the reference greedy loop with rouge_score (computed once)."""
    seeds = seed_instructions()
    rng = random.Random(0)
    variants = [perturb(s, rng) for s in seeds for _ in range(2)]
    texts = seeds[40:] + variants
    rng.shuffle(texts)
    pool = seeds[:40]
    tokens = {t: SCORER._tokenizer.tokenize(t) for t in pool + texts}
    memo: dict[tuple[str, str], float] = {}

    def f(a: str, b: str) -> float:  # rouge_score's own LCS scoring (what .score() runs)
        if (a, b) not in memo:
            memo[(a, b)] = rouge_scorer._score_lcs(tokens[a], tokens[b]).fmeasure
        return memo[(a, b)]

    expected = {}
    for threshold in (0.7, 0.5):
        kept = list(pool)
        expected[threshold] = []
        for text in texts:
            scores = [f(item, text) for item in kept]
            if max(scores) > threshold:
                expected[threshold].append((scores.index(max(scores)), max(scores)))
            else:
                expected[threshold].append(None)
                kept.append(text)
    return texts, pool, expected


@pytest.mark.parametrize("threshold", [0.7, 0.5])
def test_greedy_filter_on_seed_instructions(threshold, loop_max):
    texts, pool, expected = seed_greedy_case()
    got = [pair(m) for m in greedy_filter(texts, threshold, pool)]
    assert got == expected[threshold]
    assert 0 < sum(e is not None for e in got) < len(texts)  # both decisions happen


def test_score_lcs_is_what_score_runs():
    a, b = "Write a poem about the sea.", "write a short poem about a sea"
    assert rouge_scorer._score_lcs(SCORER._tokenizer.tokenize(a), SCORER._tokenizer.tokenize(b)) == \
        SCORER.score(a, b)["rougeL"]
