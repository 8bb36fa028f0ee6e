"""End-to-end: the openai backend against a real OpenAI-compatible server (llama-cpp-python[server])."""

import math
import socket
import subprocess
import sys
import time

import httpx
import pytest

from synth.backends import ChatRequest, Sampling, load_backend
from synth.resources import embedded_gguf_path

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")  # a pipe nobody reads would fill up and stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def test_generate_through_a_real_server(llama_server):
    backend = load_backend(f"openai:smollm2@{llama_server}", concurrency=2)
    requests = [ChatRequest([{"role": "user", "content": p}], Sampling(temperature=0.0, max_tokens=40, seed=1))
                for p in ("Name a colour of the sky.", "Say hello to a friend.")]
    out = backend.generate(requests)
    for completion in out:
        assert completion.ok, completion.error
        assert completion.text.strip()
        assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
        assert completion.finish_reason in ("stop", "length")


def test_choice_logprobs_through_a_real_server(llama_server):
    backend = load_backend(f"openai:smollm2@{llama_server}")
    question = "Which one is a fruit? (A) an apple (B) a car. Answer with the letter A or B only."
    [logprobs] = backend.choice_logprobs([ChatRequest([{"role": "user", "content": question}])], ["A", "B"])
    assert logprobs is not None
    assert all(math.isfinite(v) for v in logprobs.values())
    assert logprobs["A"] > logprobs["B"]
    # The server runs the same GGUF as the in-process backend: the same distribution.
    [local] = load_backend("local").choice_logprobs([ChatRequest([{"role": "user", "content": question}])], ["A", "B"])
    assert logprobs["A"] == pytest.approx(local["A"], abs=0.05)


def test_judge_probabilities_through_a_real_server(llama_server):
    from synth.generators.pairwise import p_first_from_logprobs

    backend = load_backend(f"openai:smollm2@{llama_server}")
    asks = [ChatRequest([{"role": "user", "content": f"Repeat exactly this letter: {letter}"}]) for letter in "AB"]
    p_a, p_b = (p_first_from_logprobs(lp) for lp in backend.choice_logprobs(asks, ["A", "B"]))
    assert 0 < p_a < 1 and 0 < p_b < 1  # normalised over the two letters
    assert p_a > 0.5 > p_b  # the choice flips with the content
