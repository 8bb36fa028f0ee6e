"""The openai backend against a loopback server that injects faults: what retries, what doesn't."""

import pytest

from synth.backends import ChatRequest, Sampling
from synth.backends.openai_compat import OpenAIBackend, retry_after_seconds
from synth.errors import BackendError


def make_backend(server, **kwargs):
    kwargs.setdefault("timeout", 1.0)
    backend = OpenAIBackend("loopback", base_url=server.url, api_key="sk-secret-test-key", **kwargs)
    backend.waits = []

    async def record(seconds):
        backend.waits.append(seconds)

    backend._sleep = record  # no real sleeping; we assert on the waits instead
    return backend


def ask(*prompts, **sampling):
    return [ChatRequest([{"role": "user", "content": p}], Sampling(**sampling)) for p in prompts]


def test_request_building_and_results_in_order(loopback):
    server = loopback()
    backend = make_backend(server, concurrency=3)
    seen = []
    out = backend.generate(
        ask("one", "two", "three", "four", temperature=0.3, top_p=0.9, max_tokens=50, seed=7),
        on_complete=lambda i, c: seen.append((i, c.text)),
    )
    assert [c.text for c in out] == ["echo: one", "echo: two", "echo: three", "echo: four"]
    assert sorted(seen) == [(0, "echo: one"), (1, "echo: two"), (2, "echo: three"), (3, "echo: four")]
    assert all(c.finish_reason == "stop" and c.completion_tokens == 2 and c.prompt_tokens == 1 for c in out)
    body = server.requests[0]
    assert body["model"] == "loopback"
    assert body["messages"] == [{"role": "user", "content": body["messages"][0]["content"]}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.3, 0.9, 50, 7)


def test_length_finish_reason_is_reported(loopback):
    server = loopback()
    [completion] = make_backend(server).generate(ask("a b c d e f", max_tokens=3))
    assert completion.finish_reason == "length"
    assert completion.text == "echo: a b"


@pytest.mark.parametrize("fault", ["429", "500", "503", "garbage", "empty", "drop", "timeout"])
def test_transient_faults_are_retried(loopback, fault):
    server = loopback(script=[fault, fault], timeout_sleep=2.0)
    backend = make_backend(server, timeout=0.5)
    [completion] = backend.generate(ask("hello"))
    assert completion.ok and completion.text == "echo: hello"
    assert server.behaviours == [fault, fault, "ok"]
    assert len(backend.waits) == 2 and all(w > 0 for w in backend.waits)


def test_retry_after_is_honoured(loopback):
    server = loopback(script=["429:7", "429:3"])
    backend = make_backend(server)
    [completion] = backend.generate(ask("x"))
    assert completion.ok
    assert backend.waits == [7.0, 3.0]


def test_retry_after_is_capped(loopback):
    server = loopback(script=["429:5000"])
    backend = make_backend(server, backoff_max=30)
    backend.generate(ask("x"))
    assert backend.waits == [30]


def test_backoff_grows_without_retry_after(loopback):
    server = loopback(script=["500"] * 4)
    backend = make_backend(server, backoff_initial=1.0, backoff_max=100)
    backend.generate(ask("x"))
    # exponential with up to 1 s of jitter: 1, 2, 4, 8 (+ jitter)
    for attempt, wait in enumerate(backend.waits):
        assert 2**attempt <= wait <= 2**attempt + 1


def test_retry_after_header_forms():
    class E:
        def __init__(self, headers):
            self.response = type("R", (), {"headers": headers})()

    assert retry_after_seconds(E({"retry-after": "4"})) == 4
    assert retry_after_seconds(E({"retry-after-ms": "1500"})) == 1.5
    assert 0 <= retry_after_seconds(E({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) <= 0.0
    assert retry_after_seconds(E({})) is None
    assert retry_after_seconds(None) is None


def test_retry_budget_exhausted_fails_only_that_request(loopback):
    server = loopback(fail_prompts=("doomed",))
    backend = make_backend(server, max_attempts=4)
    out = backend.generate(ask("fine", "doomed", "also fine"))
    assert [c.ok for c in out] == [True, False, True]
    assert out[1].finish_reason == "error"
    assert "gave up after 4 attempts" in out[1].error and "HTTP 500" in out[1].error
    assert sum(1 for b in server.requests if b["messages"][0]["content"] == "doomed") == 4


def test_context_length_error_is_not_retried(loopback):
    server = loopback(script=["400"])
    backend = make_backend(server)
    [completion] = backend.generate(ask("too long"))
    assert not completion.ok and "HTTP 400" in completion.error and "context length" in completion.error
    assert len(server.requests) == 1 and backend.waits == []


@pytest.mark.parametrize("fault, message", [("401", "refused the API key"), ("404", "check the model name")])
def test_auth_and_not_found_stop_the_run_at_once(loopback, fault, message):
    server = loopback(script=[fault])
    backend = make_backend(server, concurrency=1)
    with pytest.raises(BackendError, match=message) as info:
        backend.generate(ask("a", "b", "c"))
    assert len(server.requests) == 1
    assert "sk-secret-test-key" not in str(info.value)


def test_concurrency_bounds_requests_in_flight(loopback):
    server = loopback(delay=0.05)
    backend = make_backend(server, concurrency=4)
    out = backend.generate(ask(*[f"p{i}" for i in range(24)]))
    assert all(c.ok for c in out)
    assert server.max_in_flight == 4


def test_choice_logprobs(loopback):
    server = loopback()
    backend = make_backend(server)
    a, b = backend.choice_logprobs(ask("I prefer A", "no preference"), ["A", "B"])
    assert a["A"] == pytest.approx(-0.2) and a["B"] == pytest.approx(-1.8)
    assert b["B"] == pytest.approx(-0.2) and b["A"] == pytest.approx(-1.8)
    body = server.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    assert body["temperature"] == 0.0


def test_key_is_never_in_repr_or_spec(loopback):
    server = loopback()
    backend = make_backend(server)
    assert "sk-secret" not in repr(backend) and "sk-secret" not in backend.spec
