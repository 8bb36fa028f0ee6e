"""The embedded embedding model loads offline from its package and gives real sentence vectors."""

import pytest

from synth.resources import load_embedder

pytestmark = pytest.mark.slow


def test_embedded_minilm_embeds_offline():
    model = load_embedder()
    vectors = model.encode(["How do I bake bread?", "What is a recipe for bread?", "The stock market fell today."],
                           normalize_embeddings=True)
    assert vectors.shape == (3, 384)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.5 > unrelated
