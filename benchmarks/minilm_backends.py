"""MiniLM encoding: PyTorch through sentence-transformers (`--embedder minilm`) vs the ONNX
Runtime path (`minilm-onnx`), on the same real texts in one run: rows/s, the ratio, and the cosine
of each ONNX vector to its PyTorch vector. ONNX would be the default only if it were faster at a
cosine of at least 0.99; measured on 2 cores it is 0.84x, so `minilm` stays on PyTorch.

    python benchmarks/minilm_backends.py [--rows 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import debian_descriptions  # noqa: E402

from synth.filters.embedders import load_encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    texts = [r["text"] for r in debian_descriptions(args.rows)]
    vectors, speed = {}, {}
    for spec in ("minilm", "minilm-onnx"):
        encoder = load_encoder(spec)
        encoder.encode(texts[:32])  # warm-up
        started = time.perf_counter()
        vectors[spec] = encoder.encode(texts)
        speed[spec] = len(texts) / (time.perf_counter() - started)
        print(f"{spec:<13} {type(encoder).__name__:<20} {speed[spec]:7.1f} rows/s")
    cosines = (vectors["minilm-onnx"] * vectors["minilm"]).sum(axis=1)
    print(f"onnx / torch rows/s: {speed['minilm-onnx'] / speed['minilm']:.2f}   (onnx the default only if > 1.0)")
    print(f"cosine onnx vs torch: min {cosines.min():.5f}, mean {cosines.mean():.5f}   (and min >= 0.99)")


if __name__ == "__main__":
    main()
