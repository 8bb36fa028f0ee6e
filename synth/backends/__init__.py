"""Pick a backend from a model spec string. One plain mapping from prefix to class; no registry.

    openai:gpt-4o-mini                         the OpenAI API (OPENAI_API_KEY)
    openai:NAME@http://127.0.0.1:8000/v1       any OpenAI-compatible server (vLLM, llama.cpp, ...)
    hf:/path/to/model-folder                   transformers; also a .gguf file or a cached hub id
    llamacpp:/path/to/model.gguf               llama.cpp in-process
    local                                      the embedded SmolLM2-135M-Instruct on llama.cpp
    hf:local, llamacpp:local                   the embedded GGUF on that backend
    scripted:echo                              a test double that echoes the prompt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synth.backends.base import Backend, ChatRequest, Completion, Sampling
from synth.errors import SynthError
from synth.extras import check

__all__ = ["Backend", "ChatRequest", "Completion", "Sampling", "ModelSpec", "parse_spec", "load_backend"]

SPEC_HELP = (
    "model specs: 'local' (embedded SmolLM2-135M), 'openai:MODEL', 'openai:MODEL@URL' "
    "(any OpenAI-compatible server), 'hf:PATH' (transformers: folder, .gguf file or cached hub id), "
    "'llamacpp:PATH.gguf'"
)

KINDS = ("openai", "hf", "llamacpp", "scripted")
LOCAL_KINDS = ("hf", "llamacpp")


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS
    target: str  # model name, path, or script name
    base_url: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind in LOCAL_KINDS

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" + (f"@{self.base_url}" if self.base_url else "")


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec, or raise a SynthError listing the valid forms."""
    text = spec.strip()
    if text == "local":
        return ModelSpec("llamacpp", "local")
    kind, sep, target = text.partition(":")
    if not sep or kind not in KINDS and kind != "vllm":
        raise SynthError(f"unknown model spec {spec!r}; {SPEC_HELP}")
    if kind == "vllm":
        raise SynthError(
            f"{spec!r}: serve the model with `vllm serve MODEL` and use 'openai:MODEL@http://HOST:8000/v1'"
        )
    if not target:
        raise SynthError(f"model spec {spec!r} names no model after '{kind}:'; {SPEC_HELP}")
    if kind == "openai":
        name, at, url = target.rpartition("@")
        if at and url.startswith(("http://", "https://")):
            if not name:
                raise SynthError(f"model spec {spec!r} names no model before '@'; e.g. openai:my-model@{url}")
            return ModelSpec("openai", name, url)
        if target.startswith(("http://", "https://")):
            raise SynthError(f"model spec {spec!r}: put the model name first, e.g. openai:my-model@{target}")
        return ModelSpec("openai", target)
    return ModelSpec(kind, target)


def load_backend(
    spec: str | ModelSpec,
    concurrency: int | None = None,
    api_key: str | None = None,
    max_attempts: int = 6,
    timeout: float = 120.0,
    max_wait: float = 60.0,
) -> Backend:
    """Build the backend for a spec; local models load here, API servers are reached once here.

    `concurrency` is requests in flight for API backends and the batch size for local ones;
    `max_attempts`, `timeout` (seconds per request) and `max_wait` (longest wait between
    retries) apply to API backends.
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind == "openai":
        from synth.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(parsed.target, base_url=parsed.base_url, api_key=api_key, concurrency=concurrency or 16,
                             max_attempts=max_attempts, timeout=timeout, backoff_max=max_wait)
    if parsed.kind == "scripted":
        from synth.backends.scripted import ScriptedBackend

        if parsed.target != "echo":
            raise SynthError(f"unknown scripted backend {parsed.target!r}: only 'scripted:echo' exists")
        return ScriptedBackend(spec=str(parsed))
    shown = "local" if parsed.target == "local" and parsed.kind == "llamacpp" else str(parsed)
    # Before the model path: without the [local] extra, that is the thing to fix first.
    check("local", *(("llama_cpp",) if parsed.kind == "llamacpp" else ("torch", "transformers")),
          what=f"the model `{shown}`")
    path = _local_model_path(parsed)
    if parsed.kind == "llamacpp":
        from synth.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(str(path), spec=shown)
    from synth.backends.hf import TransformersBackend

    return TransformersBackend(str(path), batch_size=concurrency or 8, spec=shown)


def _local_model_path(parsed: ModelSpec) -> Path | str:
    if parsed.target == "local":
        from synth.resources import embedded_gguf_path

        return embedded_gguf_path()
    path = Path(parsed.target).expanduser()
    if parsed.kind == "llamacpp":
        if not path.is_file():
            raise SynthError(f"model spec '{parsed}': no GGUF file at {path}")
        return path
    if not path.exists() and (path.is_absolute() or parsed.target.startswith((".", "~")) or parsed.target.count("/") != 1):
        raise SynthError(
            f"model spec '{parsed}': no model folder or .gguf file at {path} "
            "(a hub id like ORG/NAME works only when it is already in the local cache)"
        )
    return path if path.exists() else parsed.target
