"""A crash, a ^C or a storm of server errors never costs finished work, and never duplicates it."""

import json
import os
import random
import signal
import subprocess
import sys
import time


from conftest import invoke, read



def count_lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def synth_cmd(server, src, out, *extra):
    return [sys.executable, "-m", "synth", "generate", "--input", str(src), "--model", f"openai:m@{server.url}",
            "--output", str(out), "--concurrency", "4", *extra]


def test_killed_at_random_points_then_resumed_equals_an_uninterrupted_run(tmp_path, write_jsonl, loopback):
    server = loopback(delay=0.01)
    n = 150
    src = write_jsonl([{"id": f"r{i}", "prompt": f"question {i} " + "word " * (i % 7)} for i in range(n)])
    reference = tmp_path / "reference"
    assert invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                     "--output", str(reference)]).exit_code == 0
    out = tmp_path / "killed"
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(5, n - 10), 6))  # kill after this many rows have landed
    signals = [signal.SIGKILL] * 5 + [signal.SIGINT]
    rng.shuffle(signals)
    for target, sig in zip(targets, signals):
        proc = subprocess.Popen(synth_cmd(server, src, out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while count_lines(out / "rows.jsonl") < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, sig)
        code = proc.wait(30)
        before = read_lenient(out / "rows.jsonl")
        assert len(before) == len({r["id"] for r in before}), "a row was written twice"
        status = json.loads((out / "manifest.json").read_text()).get("status") if (out / "manifest.json").exists() else None
        if code == 0:  # the run finished before the signal landed: nothing was interrupted
            assert status == "complete"
        elif sig == signal.SIGINT and code != -signal.SIGINT:  # Python got to handle it: a clean stop
            assert code == 130 and status == "interrupted"
    assert subprocess.run(synth_cmd(server, src, out), capture_output=True).returncode == 0
    rows = read(out / "rows.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == n == len(set(ids))
    by_id = lambda r: r["id"]  # noqa: E731
    assert sorted(rows, key=by_id) == sorted(read(reference / "rows.jsonl"), key=by_id)
    assert read(out / "rejected.jsonl") == []


def read_lenient(path):
    """Rows of a file a killed process may have left with a torn last line."""
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line] if path.exists() else []


def test_a_storm_of_server_errors_loses_nothing(tmp_path, write_jsonl, loopback):
    server = loopback(fail_rate=0.3, fail_kinds=("429", "500", "503", "timeout", "garbage", "drop", "empty"),
                      seed=7, timeout_sleep=1.0, fail_prompts=("doomed",), fail_prompts_with="429:0")
    rows_in = [{"prompt": f"row {i}"} for i in range(300)] + [{"prompt": "doomed"}]
    src = write_jsonl(rows_in)
    out = tmp_path / "run"
    result = invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                       "--output", str(out), "--concurrency", "32", "--max-retries", "12",
                                       "--request-timeout", "0.5", "--max-retry-wait", "0.5"])
    assert result.exit_code == 1, result.output  # one row failed for good, and the exit code says so
    rows = read(out / "rows.jsonl")
    assert sorted(r["prompt"] for r in rows) == sorted(f"row {i}" for i in range(300))
    assert len({r["id"] for r in rows}) == 300
    assert all(r["response"] == "echo: " + r["prompt"] for r in rows)
    [failed] = read(out / "rejected.jsonl")
    assert failed["reason"] == "error" and failed["input"] == {"prompt": "doomed"}
    assert "gave up after 13 attempts" in failed["error"] and "HTTP 429" in failed["error"]
    assert sum(b != "ok" for b in server.behaviours) > 80  # the storm really happened
    assert "error: 1" in result.output
    # Re-running retries only the failed row.
    server.faults.fail_prompts = ()
    sent = len(server.requests)
    result = invoke(*["generate", "--input", str(src), "--model", f"openai:m@{server.url}",
                                       "--output", str(out), "--concurrency", "32", "--max-retries", "12",
                                       "--request-timeout", "0.5", "--max-retry-wait", "0.5"])
    assert result.exit_code == 0, result.output
    assert len(read(out / "rows.jsonl")) == 301 and read(out / "rejected.jsonl") == []
    assert len(server.requests) - sent >= 1 and all(b["messages"][0]["content"] == "doomed" for b in server.requests[sent:])
