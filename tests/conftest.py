import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # loopback_server, helpers
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# What synth builds once per machine (ONNX export, distilled static model, vectors) goes to a
# folder of this test session, never the user's ~/.cache.
os.environ["SYNTH_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="synth-test-cache-")

from loopback_server import Faults, LoopbackServer  # noqa: E402
from hypothesis import settings  # noqa: E402

# Shared CI machines are noisy: a slow example is not a failure (speed is for benchmarks/).
settings.register_profile("synth", deadline=None)
settings.load_profile("synth")

REPO = Path(__file__).resolve().parent.parent
def _shared_data() -> Path:
    """../shared/data beside the checkout (as in CI); $SYNTH_SHARED_DATA or /work/shared/data else."""
    candidates = [REPO.parent / "shared" / "data", Path(os.environ.get("SYNTH_SHARED_DATA", "/nonexistent")),
                  Path("/work/shared/data")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture
def loopback():
    """Start a loopback OpenAI-compatible server with the given faults; stopped after the test."""
    servers = []

    def start(**faults) -> LoopbackServer:
        server = LoopbackServer(Faults(**faults)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def write_jsonl(tmp_path):
    import json

    def write(rows, name="input.jsonl"):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


def invoke(*args, **kwargs):
    """`synth ARGS` in this process (click's CliRunner), with the scripted models of the running
    test (see `scripted_models`) behind every model spec."""
    from click.testing import CliRunner

    from synth.cli import main

    obj = {"backend_factory": _factory[0]} if _factory else None
    return CliRunner().invoke(main, [str(a) for a in args], obj=obj, **kwargs)


def read(path):
    """The rows of a JSONL file ([] when it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


_factory: list = []  # the backend factory `invoke` passes to the CLI while a test has one


@pytest.fixture
def scripted_models():
    """`scripted_models(make)`: every model spec a run started with `invoke` loads becomes
    `make(spec)` (a scripted backend); returns {spec: [backends made for it, in order]}."""
    from collections import defaultdict

    def install(make):
        made = defaultdict(list)

        def load(spec, **kwargs):
            backend = make(spec)
            made[spec].append(backend)
            return backend

        _factory[:] = [load]
        return made

    yield install
    _factory.clear()


PARAPHRASES = [
    {"id": "bread-1", "text": "How do I bake sourdough bread at home?"},
    {"id": "haiku-1", "text": "Write a haiku about autumn leaves."},
    {"id": "bread-2", "text": "What's the way to bake sourdough bread at home?"},
    {"id": "soda", "text": "List three uses of baking soda."},
    {"id": "haiku-2", "text": "Compose a haiku about the leaves of autumn."},
    {"id": "france", "text": "Explain the causes of the French Revolution."},
    {"id": "python", "text": "Write a Python function that reverses a linked list."},
]


@pytest.fixture(scope="session")
def distilled(tmp_path_factory):
    """`synth dedup --embedder static` in a fresh process with the hub offline and an empty cache
    folder: the static model is distilled there from the packaged MiniLM."""
    folder = tmp_path_factory.mktemp("cache")
    src = folder / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in PARAPHRASES))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SYNTH_CACHE_DIR": str(folder),
           "HF_HOME": str(folder / "hf-home-empty")}
    result = subprocess.run([sys.executable, "-m", "synth", "dedup", "--input", str(src), "--output",
                             str(folder / "out"), "--method", "embedding", "--embedder", "static", "--threshold", "0.8"],
                            env=env, capture_output=True, text=True, timeout=600)
    return folder, result


