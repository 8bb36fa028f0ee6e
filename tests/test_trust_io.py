"""What a run does to files it does not own, and how it fails: readers leave folders alone, views are
rebuilt from the trace, --overwrite is narrow, resume checks the input's contents, progress is
logged off a terminal, the cache waits on a busy database, path errors are one line, one writer per
folder, SIGTERM is ^C."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from synth.backends.scripted import ScriptedBackend
from synth.runs.cache import ResponseCache
from conftest import invoke, read




def prompts(n):
    return [{"id": f"in-{i}", "prompt": f"prompt{i} w"} for i in range(n)]


def gen(server, src, out, *extra):
    return invoke("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", out, *extra)


def synth_process(*args, **kwargs):
    """`python -m synth ARGS` in a child process, stdout and stderr piped (not a terminal)."""
    return subprocess.Popen([sys.executable, "-m", "synth", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


# -- 1. readers never modify a run folder -------------------------------------------------------

def test_report_stats_and_export_leave_a_torn_run_folder_untouched(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(2) + [{"prompt": "one two three four five six seven"}])  # 2 rows: no embedder needed
    run = tmp_path / "run"
    assert gen(server, src, run, "--max-tokens", "5").exit_code == 0
    for name in ("rows.jsonl", "rejected.jsonl"):
        assert (run / name).stat().st_size > 0
        with (run / name).open("ab") as handle:
            handle.write(b'{"id": "x", "resp')  # a writer crashed (or is still writing) mid-line
    before = snapshot(run)

    result = invoke("stats", run / "rows.jsonl")  # read as a plain dataset: the torn line is an error
    assert "Traceback" not in result.output
    assert snapshot(run) == before
    result = invoke("stats", run)
    assert result.exit_code == 0, result.output
    assert snapshot(run) == before
    result = invoke("report", run, "--embedder", "static")
    assert result.exit_code == 0, result.output
    assert snapshot(run) == before
    result = invoke("export", "--input", run, "--format", "sft-prompt-completion", "--to", tmp_path / "out.jsonl")
    assert "Traceback" not in result.output
    assert snapshot(run) == before


# -- 2. critique-revise views are rebuilt from trace.jsonl --------------------------------------

def answer_or_revise(request):
    prompt = request.messages[-1]["content"]
    if prompt.startswith("You rewrite"):
        return f"Revised answer: A better, kinder and more careful answer, number {len(prompt)}."
    return f"My first answer, with a few details, for a request of {len(prompt)} characters."


def critique(request):
    return "Critique: it could be clearer and kinder."


def test_critique_revise_views_are_rebuilt_from_the_trace(tmp_path, write_jsonl, scripted_models):
    scripted_models(lambda spec: ScriptedBackend(critique if "critic" in spec else answer_or_revise, spec=spec))
    src = write_jsonl([{"prompt": "How do I boil an egg?"}, {"prompt": "Tell me a joke"},
                       {"prompt": "Name a prime number"}])
    out = tmp_path / "run"

    def run_cr():
        return invoke("critique-revise", "--prompts", src, "--model", "scripted:echo", "--critic", "scripted:critic",
                      "--output", out)

    assert run_cr().exit_code == 0
    assert len(read(out / "trace.jsonl")) == 3
    # A crash between writes: a view lost its last line, the other got one the trace never did.
    sft = (out / "sft.jsonl").read_text().splitlines(keepends=True)
    (out / "sft.jsonl").write_text("".join(sft[:-1]))
    pref = (out / "preference.jsonl").read_text().splitlines(keepends=True)
    stray = json.dumps({**json.loads(pref[-1]), "id": "not-in-the-trace"}) + "\n"
    (out / "preference.jsonl").write_text("".join(pref[:-1]) + stray + pref[-1])

    result = run_cr()
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in read(out / "trace.jsonl")]
    assert len(ids) == 3
    assert [r["id"] for r in read(out / "sft.jsonl")] == ids
    assert [r["id"] for r in read(out / "preference.jsonl")] == ids
    assert list(out.glob("*.tmp")) == []


# -- 3. --overwrite removes only files the run owns ---------------------------------------------

def test_overwrite_keeps_an_input_file_and_other_files_in_the_run_folder(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(3))
    out = tmp_path / "run"
    assert gen(server, src, out).exit_code == 0
    (out / "p.jsonl").write_bytes(src.read_bytes())
    (out / "notes.txt").write_text("my notes")
    result = gen(server, out / "p.jsonl", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "p.jsonl").read_bytes() == src.read_bytes()
    assert (out / "notes.txt").read_text() == "my notes"
    assert len(read(out / "rows.jsonl")) == 3


def test_overwrite_refuses_to_delete_its_own_input(tmp_path, write_jsonl, loopback):
    server = loopback()
    out = tmp_path / "run"
    assert gen(server, write_jsonl(prompts(3)), out).exit_code == 0
    rows = (out / "rows.jsonl").read_bytes()
    result = gen(server, out / "rows.jsonl", out, "--overwrite")
    assert result.exit_code == 2, result.output
    assert (out / "rows.jsonl").read_bytes() == rows


def test_overwrite_refuses_a_folder_without_a_manifest(tmp_path, write_jsonl, loopback):
    server = loopback()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "rows.jsonl").write_text('{"id": "keep"}\n')
    (folder / "notes.txt").write_text("my notes")
    result = gen(server, write_jsonl(prompts(2)), folder, "--overwrite")
    assert result.exit_code == 2 and "no synth manifest" in result.output
    assert (folder / "rows.jsonl").read_text() == '{"id": "keep"}\n' and (folder / "notes.txt").read_text() == "my notes"
    assert server.requests == []


# -- 4. resume identity includes the input's contents -------------------------------------------

def test_resume_refuses_an_input_file_whose_contents_changed(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(3))
    out = tmp_path / "run"
    assert gen(server, src, out).exit_code == 0
    calls = len(server.requests)
    write_jsonl([{"prompt": f"another prompt {i}"} for i in range(3)])  # same path, other prompts
    result = gen(server, src, out)
    assert result.exit_code == 2
    assert "holds rows of another run" in result.output and "input_sha256" in result.output
    assert len(server.requests) == calls


# -- 5. progress off a terminal -----------------------------------------------------------------

def test_progress_lines_are_printed_when_stderr_is_not_a_terminal(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(20))
    proc = synth_process("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", tmp_path / "run",
                         env={**os.environ, "SYNTH_PROGRESS_SECONDS": "0"})
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert re.search(r"^generate: 20/20 rows", stderr, re.M), stderr


# -- 6. the shared cache waits on a busy database -----------------------------------------------

def test_the_cache_waits_for_another_writer_instead_of_failing(tmp_path):
    path = tmp_path / "shared.sqlite"
    cache = ResponseCache(path)
    assert cache._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10000
    other = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another run is writing
    calling, outcome = threading.Event(), {}

    def reserve():
        calling.set()
        try:
            outcome["id"] = cache.reserve("run", "m", 0.0)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=reserve)
    thread.start()
    assert calling.wait(10)
    time.sleep(0.3)  # let the reserve meet the lock
    other.execute("COMMIT")
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert isinstance(outcome["id"], int)


# -- 7. path errors: one line, exit 2 -----------------------------------------------------------

def test_an_output_under_a_regular_file_is_one_line_and_exit_2(tmp_path, write_jsonl, loopback):
    server = loopback()
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    result = gen(server, write_jsonl(prompts(2)), afile / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(afile) in result.output


@pytest.mark.parametrize("under", ["cache.sqlite", "sub/cache.sqlite"])
def test_a_cache_under_a_regular_file_is_one_line_and_exit_2(tmp_path, write_jsonl, loopback, under):
    server = loopback()
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    result = gen(server, write_jsonl(prompts(2)), tmp_path / "run", "--cache", afile / under)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(afile) in result.output


# -- 8. one writer per folder -------------------------------------------------------------------

def test_a_locked_run_folder_is_refused_naming_the_holder(tmp_path, write_jsonl, loopback):
    from synth.runs.folder import lock_folder

    server = loopback()
    src = write_jsonl(prompts(2))
    folder = tmp_path / "run"
    folder.mkdir()
    handle = lock_folder(folder)
    try:
        result = gen(server, src, folder)
        assert result.exit_code == 2, result.output
        assert "PID" in result.output and str(os.getpid()) in result.output
        assert server.requests == []
    finally:
        handle.close()
    assert gen(server, src, folder).exit_code == 0


# -- 9. SIGTERM is handled like ^C --------------------------------------------------------------

def test_sigterm_marks_the_run_interrupted_and_it_resumes(tmp_path, write_jsonl, loopback):
    server = loopback(hold_matching="")
    src = write_jsonl(prompts(5))
    out = tmp_path / "run"
    args = ("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", out)
    proc = synth_process(*args)
    try:
        wait_until(lambda: server.held >= 1 or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    server.release()
    result = gen(server, src, out)
    assert result.exit_code == 0, result.output
    rows = read(out / "rows.jsonl")
    assert sorted(r["prompt"] for r in rows) == sorted(p["prompt"] for p in prompts(5))
    assert len({r["id"] for r in rows}) == 5
