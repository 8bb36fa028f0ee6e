"""`synth select` and diversity stats: k-center greedy against brute force, stats with known answers."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.filters.diversity import (diversity_stats, distinct_n, k_center_greedy, kmeans_labels,
                                     nearest_neighbour_cosines, select_diverse, shares)

from conftest import invoke


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def reference_k_center(vectors, n, first):
    """The textbook loop: add the row whose best cosine to the picked rows is lowest."""
    picked = [first]
    while len(picked) < min(n, len(vectors)):
        candidates = [i for i in range(len(vectors)) if i not in picked]
        coverage = [max(float(vectors[i] @ vectors[p]) for p in picked) for i in candidates]
        picked.append(candidates[int(np.argmin(coverage))])
    return picked


def covering_radius(vectors, picked):
    """The cosine of the worst-covered row to its nearest picked row (higher is better covered)."""
    return min(max(float(vectors[i] @ vectors[p]) for p in picked) for i in range(len(vectors)))


@given(st.integers(0, 10_000), st.integers(2, 30), st.integers(1, 8))
def test_k_center_greedy_equals_the_reference(seed, rows, n):
    vectors = unit(np.random.default_rng(seed).normal(size=(rows, 5)))
    assert k_center_greedy(vectors, n, first=0, chunk=7) == reference_k_center(vectors, n, 0)


@given(st.integers(0, 10_000))
def test_k_center_is_within_twice_the_best_covering_on_small_inputs(seed):
    # brute force over every subset of 3 of 9 rows: greedy's worst-covered row is never worse than
    # the optimum's by more than the 2-approximation allows (in angle)
    vectors = unit(np.random.default_rng(seed).normal(size=(9, 3)))
    greedy = k_center_greedy(vectors, 3)
    best = max(covering_radius(vectors, list(subset)) for subset in itertools.combinations(range(9), 3))
    angle = lambda cos: float(np.arccos(np.clip(cos, -1, 1)))  # noqa: E731
    assert angle(covering_radius(vectors, greedy)) <= 2 * angle(best) + 1e-6


def test_k_center_picks_one_per_cluster_first():
    centres = unit(np.eye(4))
    rng = np.random.default_rng(0)
    vectors = unit(np.concatenate([c + 0.05 * rng.normal(size=(10, 4)) for c in centres]))
    picked = k_center_greedy(vectors, 4)
    assert sorted(p // 10 for p in picked) == [0, 1, 2, 3]


def test_shares_are_proportional_and_bounded():
    assert shares([50, 30, 20], 10) == [5, 3, 2]
    assert shares([1, 100], 10) == [0, 10] or shares([1, 100], 10) == [1, 9]
    assert shares([2, 2, 2], 100) == [2, 2, 2]
    assert sum(shares([7, 3, 5, 1], 9)) == 9


def test_per_cluster_selection_stays_within_clusters():
    rng = np.random.default_rng(1)
    vectors = unit(np.concatenate([c + 0.05 * rng.normal(size=(20, 3)) for c in np.eye(3)]))
    labels = kmeans_labels(vectors, 3)
    assert len(set(labels.tolist())) == 3 and all(len(set(labels[k * 20:(k + 1) * 20].tolist())) == 1 for k in range(3))
    picked = select_diverse(vectors, 6, labels)
    assert sorted(np.bincount(labels[picked]).tolist()) == [2, 2, 2]


def test_stats_with_known_answers():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    vectors = unit([[1, 0], [1, 0], [0, 1], [np.sqrt(0.5), np.sqrt(0.5)]])
    assert nearest_neighbour_cosines(vectors) == pytest.approx([1.0, 1.0, np.sqrt(0.5), np.sqrt(0.5)], abs=1e-6)
    stats = diversity_stats(["x y", "x y", "z w", "q r"], vectors, clusters=2)
    assert stats["nearest_neighbour_cosine"]["mean"] == pytest.approx((2 + 2 * np.sqrt(0.5)) / 4, abs=1e-4)
    assert stats["nearest_neighbour_cosine"]["histogram"]["0.95-1"] == 2
    assert stats["distinct_1"] == pytest.approx(6 / 8) and stats["clusters"]["k"] == 2
    assert sum(stats["clusters"]["sizes"]) == 4


ROWS = [{"id": f"r{i}", "text": t} for i, t in enumerate([
    "How do I bake sourdough bread at home?", "What's the way to bake sourdough bread at home?",
    "Write a haiku about autumn leaves.", "Compose a haiku about the leaves of autumn.",
    "List three uses of baking soda.", "Explain the causes of the French Revolution.",
    "Write a Python function that reverses a linked list.", "Translate 'good morning' into Spanish."])]


@pytest.mark.slow
def test_select_and_stats_cli_on_the_real_minilm(tmp_path, write_jsonl):
    src, out = write_jsonl(ROWS), tmp_path / "out"
    result = invoke(*["select", "--input", str(src), "--n", "4", "--output", str(out),
                                       "--vector-cache", str(tmp_path / "v.sqlite"), "--clusters", "3"])
    assert result.exit_code == 0, result.output
    kept = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(kept) == 4 and all({"cluster", "selection_rank"} <= set(r) for r in kept)
    texts = {r["text"] for r in kept}
    assert not {ROWS[0]["text"], ROWS[1]["text"]} <= texts and not {ROWS[2]["text"], ROWS[3]["text"]} <= texts
    result = invoke(*["stats", str(src), str(out / "rows.jsonl"), "--diversity", "--json",
                                       "--vector-cache", str(tmp_path / "v.sqlite"), "--clusters", "2"])
    assert result.exit_code == 0, result.output
    before, after = json.loads(result.output).values()
    assert after["diversity"]["nearest_neighbour_cosine"]["mean"] < before["diversity"]["nearest_neighbour_cosine"]["mean"]
