"""End-to-end on the real embedded model: llama.cpp in-process (`local`) and transformers on the GGUF."""

import json
import math
import socket

import pytest

from synth.backends import ChatRequest, Sampling, load_backend
from conftest import invoke

pytestmark = pytest.mark.slow

QUESTION = "Which one is a fruit? (A) an apple (B) a car. Answer with the letter A or B only."


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail the test if anything tries to reach a non-loopback address (no telemetry, no downloads)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise AssertionError(f"network connection attempted to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="module")
def hf_local():
    """The transformers backend on the embedded GGUF: loading dequantizes it (20-45 s), so once."""
    return load_backend("hf:local", concurrency=2)


def test_generate_on_the_local_model(tmp_path, write_jsonl, loopback_only):
    src = write_jsonl([{"prompt": "Name a colour of the sky."}, {"prompt": "Say hello to a friend."}])
    out = tmp_path / "run"
    result = invoke(*["generate", "--input", str(src), "--model", "local", "--output", str(out),
                                       "--max-tokens", "200", "--temperature", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    rejected = (out / "rejected.jsonl").read_text().splitlines()
    assert len(rows) + len(rejected) == 2 and len(rows) >= 1
    for row in rows:
        assert row["response"].strip()
        assert row["meta"]["model"] == "local" and row["meta"]["usage"]["completion_tokens"] > 0


def test_local_choice_logprobs():
    backend = load_backend("local")
    [logprobs] = backend.choice_logprobs([ChatRequest([{"role": "user", "content": QUESTION}])], ["A", "B"])
    assert set(logprobs) == {"A", "B"}
    assert all(math.isfinite(v) and v < 0 for v in logprobs.values())
    assert math.exp(logprobs["A"]) + math.exp(logprobs["B"]) <= 1.0
    assert logprobs["A"] > logprobs["B"]  # even a 135M model knows an apple is a fruit


def test_transformers_backend_on_the_embedded_gguf(hf_local):
    requests = [ChatRequest([{"role": "user", "content": p}], Sampling(temperature=0, max_tokens=24))
                for p in ("Name a colour of the sky.", "Say hello to a friend in one short sentence.", "Count to three.")]
    seen = []
    out = hf_local.generate(requests, on_complete=lambda i, c: seen.append(i))
    assert sorted(seen) == [0, 1, 2]
    for completion in out:
        assert completion.text.strip() and completion.finish_reason in ("stop", "length")
        assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    # Batched (left-padded) greedy decoding must equal one request alone.
    [alone] = hf_local.generate(requests[1:2])
    assert alone.text == out[1].text


def test_transformers_choice_logprobs_agree_with_llamacpp(hf_local):
    request = ChatRequest([{"role": "user", "content": QUESTION}])
    [hf] = hf_local.choice_logprobs([request], ["A", "B"])
    [llama] = load_backend("local").choice_logprobs([request], ["A", "B"])
    assert hf["A"] > hf["B"]
    # The same weights (Q4 in llama.cpp, dequantized in transformers) give close probabilities.
    assert abs(math.exp(hf["A"]) - math.exp(llama["A"])) < 0.1
