"""`synth generate` through click, on the scripted backend and the loopback server."""

import subprocess
import sys


from conftest import invoke, read


def run(*args):
    return invoke(*[str(a) for a in args], catch_exceptions=False)



def test_generate_writes_rows_with_provenance(tmp_path, write_jsonl):
    src = write_jsonl([{"id": "a", "prompt": "hi", "topic": "greet"},
                       {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "yo"}]}])
    out = tmp_path / "run"
    result = run("generate", "--input", src, "--model", "scripted:echo", "--output", out, "--temperature", "0.2", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "2 rows" in result.output and "0 rejected" in result.output
    rows = read(out / "rows.jsonl")
    assert [r["response"] for r in rows] == ["echo: hi", "echo: yo"]
    first = rows[0]
    assert first["prompt"] == "hi" and first["topic"] == "greet"
    assert first["meta"]["model"] == "scripted:echo"
    assert first["meta"]["sampling"] == {"temperature": 0.2, "top_p": 1.0, "max_tokens": 256, "seed": 3}
    assert first["meta"]["parent_ids"] == ["a"] and first["meta"]["finish_reason"] == "stop"
    assert rows[1]["messages"][0]["content"] == "be brief"
    assert len({r["id"] for r in rows}) == 2


def test_ids_are_stable_across_runs(tmp_path, write_jsonl):
    src = write_jsonl([{"prompt": "same"}])
    run("generate", "--input", src, "--model", "scripted:echo", "--output", tmp_path / "a")
    run("generate", "--input", src, "--model", "scripted:echo", "--output", tmp_path / "b")
    assert read(tmp_path / "a" / "rows.jsonl")[0]["id"] == read(tmp_path / "b" / "rows.jsonl")[0]["id"]


def test_field_and_system_and_txt_input(tmp_path, write_jsonl):
    src = write_jsonl([{"question": "why?"}])
    out = tmp_path / "run"
    assert run("generate", "--input", src, "--field", "question", "--system", "S", "--model", "scripted:echo",
               "--output", out).exit_code == 0
    row = read(out / "rows.jsonl")[0]
    assert row["response"] == "echo: why?" and row["question"] == "why?"
    txt = tmp_path / "p.txt"
    txt.write_text("first\n\nsecond\n")
    assert run("generate", "--input", txt, "--model", "scripted:echo", "--output", tmp_path / "t").exit_code == 0
    assert [r["prompt"] for r in read(tmp_path / "t" / "rows.jsonl")] == ["first", "second"]


def bad(tmp_path, args, code=2):
    result = invoke(*[str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists() or not (tmp_path / "run" / "rows.jsonl").exists()
    return result.output


def test_bad_input_errors_are_one_clear_line(tmp_path, write_jsonl):
    out = tmp_path / "run"
    msg = bad(tmp_path, ["generate", "--input", tmp_path / "missing.jsonl", "--model", "scripted:echo", "--output", out])
    assert "missing.jsonl: no such file" in msg
    src = tmp_path / "broken.jsonl"
    src.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    msg = bad(tmp_path, ["generate", "--input", src, "--model", "scripted:echo", "--output", out])
    assert "broken.jsonl line 2: not valid JSON" in msg
    src = write_jsonl([{"prompt": "ok"}, {"text": "no prompt"}])
    msg = bad(tmp_path, ["generate", "--input", src, "--model", "scripted:echo", "--output", out])
    assert "line 2: no field 'prompt' (fields: text)" in msg and "--field" in msg
    src = write_jsonl([{"messages": [{"role": "robot", "content": "x"}]}])
    assert "field 'messages'[0]" in bad(tmp_path, ["generate", "--input", src, "--model", "scripted:echo", "--output", out])
    src = write_jsonl([{"prompt": "ok"}])
    assert "unknown model spec 'gpt4'" in bad(tmp_path, ["generate", "--input", src, "--model", "gpt4", "--output", out])
    msg = bad(tmp_path, ["generate", "--input", src, "--model", "openai:m@http://127.0.0.1:9/v1", "--output", out], code=3)
    assert "cannot reach the model server" in msg


def test_bad_row_fails_before_any_model_call(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl([{"prompt": "fine"}, {"prompt": ""}])
    result = invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                       "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "line 2 field 'prompt': empty prompt" in result.output
    assert server.requests == []


def test_truncated_and_failed_rows_go_to_rejected(tmp_path, write_jsonl, loopback):
    server = loopback(script=["400"])
    src = write_jsonl([{"prompt": "x"}, {"prompt": "one two three four five six"}, {"prompt": "short"}])
    out = tmp_path / "run"
    result = invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                       "--output", str(out), "--max-tokens", "4", "--concurrency", "1"])
    assert result.exit_code == 1  # a request failed: the exit code says so
    rows = read(out / "rows.jsonl")
    rejected = {r["input"]["prompt"]: r for r in read(out / "rejected.jsonl")}
    assert [r["prompt"] for r in rows] == ["short"]
    assert rejected["x"]["reason"] == "error" and "HTTP 400" in rejected["x"]["error"]
    assert rejected["one two three four five six"]["reason"] == "truncated"


def test_api_key_never_written(tmp_path, write_jsonl, loopback):
    server = loopback(script=["400"])
    src = write_jsonl([{"prompt": "a"}, {"prompt": "b"}])
    out = tmp_path / "run"
    result = invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                       "--output", str(out), "--api-key", "sk-very-secret-123"])
    assert "sk-very-secret-123" not in result.output
    for path in out.rglob("*"):
        assert b"sk-very-secret-123" not in path.read_bytes(), path


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from click.testing import CliRunner; from synth.cli import main; "
            "r = CliRunner().invoke(main, ['generate', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'openai', 'datasets', 'numpy') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_explains_specs():
    result = run("generate", "--help")
    assert "openai:MODEL@URL" in result.output and "--concurrency" in result.output


def test_non_utf8_line_is_named(tmp_path):
    src = tmp_path / "latin1.jsonl"
    src.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    msg = bad(tmp_path, ["generate", "--input", src, "--model", "scripted:echo", "--output", tmp_path / "run"])
    assert "latin1.jsonl line 2: not valid UTF-8" in msg
