import pytest

from synth.backends import ModelSpec, load_backend, parse_spec
from synth.errors import SynthError


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("local", ModelSpec("llamacpp", "local")),
        ("openai:gpt-4o-mini", ModelSpec("openai", "gpt-4o-mini")),
        ("openai:my-model@http://127.0.0.1:8000/v1", ModelSpec("openai", "my-model", "http://127.0.0.1:8000/v1")),
        ("openai:org/model:tag@https://h.example/v1", ModelSpec("openai", "org/model:tag", "https://h.example/v1")),
        ("openai:user@example", ModelSpec("openai", "user@example")),
        ("hf:/models/smol", ModelSpec("hf", "/models/smol")),
        ("hf:local", ModelSpec("hf", "local")),
        ("llamacpp:/m/x.gguf", ModelSpec("llamacpp", "/m/x.gguf")),
        ("  scripted:echo ", ModelSpec("scripted", "echo")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("gpt-4o", "unknown model spec"),
        ("foo:bar", "unknown model spec"),
        ("openai:", "names no model"),
        ("openai:@http://x/v1", "names no model before '@'"),
        ("openai:http://127.0.0.1:8000/v1", "put the model name first"),
        ("vllm:meta/llama", "vllm serve"),
    ],
)
def test_parse_spec_errors(spec, fragment):
    with pytest.raises(SynthError, match=fragment):
        parse_spec(spec)


def test_missing_local_paths_fail_before_loading(tmp_path):
    with pytest.raises(SynthError, match="no GGUF file"):
        load_backend(f"llamacpp:{tmp_path / 'nope.gguf'}")
    with pytest.raises(SynthError, match="no model folder"):
        load_backend(f"hf:{tmp_path / 'nope'}")


def test_openai_without_key_for_the_real_api(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SynthError, match="OPENAI_API_KEY"):
        load_backend("openai:gpt-4o-mini")


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(SynthError, match="cannot reach the model server at http://127.0.0.1:9/v1"):
        load_backend("openai:x@http://127.0.0.1:9/v1")
