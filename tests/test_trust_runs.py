"""Money and data: one writer per folder, a hard spend cap on every path, books that survive kill -9,
failures that stay failures, a dead server that stops the run, rows streamed with no batch barrier."""

import json
import os
import signal
import subprocess
import sys
import time


from loopback_server import LoopbackServer
from synth.runs.prices import load_prices
from conftest import invoke, read

GPT4O, MINI = load_prices()["gpt-4o"], load_prices()["gpt-4o-mini"]




def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def billed(server, price):
    """What the server would have billed: every answer it sent, at the model's price."""
    return sum(price.cost(p, c) for p, c in server.billed)


def synth(*args):
    return [sys.executable, "-m", "synth", *[str(a) for a in args]]


def wait_for(condition, what, seconds=120):
    """Wait for a state (never for a time): fail with `what` if it never comes."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- one writer per folder ---------------------------------------------------------------------

def test_two_processes_on_one_folder_one_refuses_then_a_third_finishes(tmp_path, write_jsonl, loopback):
    server = loopback(hold_matching="")  # every request waits until released
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(60)])
    out = tmp_path / "run"
    argv = synth("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", out, "--concurrency", "8")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    wait_for(lambda: any(p.poll() is not None for p in procs), "one of the two processes to refuse")
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    _, err = loser.communicate()
    assert loser.returncode == 2, err
    assert f"PID {winner.pid}" in err and "Traceback" not in err
    wait_for(lambda: server.held >= 1, "the winner's requests to be in flight")
    winner.kill()  # kill -9: its OS lock dies with it
    winner.wait()
    server.release()
    third = subprocess.run(argv, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    ids = [r["id"] for r in read(out / "rows.jsonl")]
    assert len(ids) == 60 == len(set(ids))
    assert len(server.requests) <= 60 + 8


# -- the spend cap -----------------------------------------------------------------------------

def test_the_cap_holds_at_concurrency_16_and_a_rerun_sends_nothing(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl([{"prompt": f"q{i} " + "word " * 200} for i in range(100)])
    out = tmp_path / "run"
    cap = 0.02  # a dozen requests' worth; 16 in flight at once would pass it
    args = ["generate", "--input", src, "--model", f"openai:gpt-4o@{server.url}", "--output", out,
            "--concurrency", "16", "--max-tokens", "1000", "--max-cost-usd", cap]
    result = invoke(*args)
    assert result.exit_code == 4, result.output
    assert 0 < billed(server, GPT4O) <= cap
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and billed(server, GPT4O) <= manifest["cost_usd"] <= cap + 1e-9
    sent = len(server.requests)
    again = invoke(*args)
    assert again.exit_code == 4 and len(server.requests) == sent
    assert "would pass --max-cost-usd" in again.output
    zero = invoke("generate", "--input", src, "--model", f"openai:gpt-4o@{server.url}", "--output", tmp_path / "zero",
                  "--concurrency", "16", "--max-cost-usd", "0")
    assert zero.exit_code == 4 and len(server.requests) == sent


def test_the_judges_logprob_calls_are_capped_too(tmp_path, write_jsonl, loopback):
    server = loopback()
    rows = [{"prompt": f"question {i} " + "context " * 100, "candidates": [f"answer one {i}", f"answer two {i}"]}
            for i in range(40)]
    src = write_jsonl(rows)
    cap = 0.0006  # about ten judge calls at gpt-4o-mini prices
    result = invoke("label", "--input", src, "--judge", f"openai:gpt-4o-mini@{server.url}", "--output", tmp_path / "l",
                    "--concurrency", "16", "--max-cost-usd", cap)
    assert result.exit_code == 4, result.output
    assert server.billed and billed(server, MINI) <= cap
    assert len(server.requests) < 80  # 40 pairs in both orders would be 80 calls


# -- durable books ---------------------------------------------------------------------------------

def test_books_are_never_below_the_bill_after_kill_9_and_the_cap_holds_across_resumes(tmp_path, write_jsonl, loopback):
    server = loopback(delay=0.02)
    src = write_jsonl([{"prompt": f"question {i} with a few words"} for i in range(200)])
    out = tmp_path / "run"
    argv = synth("generate", "--input", src, "--model", f"openai:gpt-4o-mini@{server.url}", "--output", out,
                 "--concurrency", "8", "--max-tokens", "20")
    for target in (20, 50, 80):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: lines(out / "rows.jsonl") >= target or proc.poll() is not None, f"{target} rows")
        proc.kill()
        proc.wait()
    paid = billed(server, MINI)
    cap = paid * 1.6  # enough for some more rows, not for all 200
    result = subprocess.run(argv + ["--max-cost-usd", str(cap)], capture_output=True, text=True)
    assert result.returncode == 4, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert billed(server, MINI) <= cap
    assert manifest["cost_usd"] >= billed(server, MINI) - 1e-12  # pessimistic: never below the bill
    ids = [r["id"] for r in read(out / "rows.jsonl")]
    assert len(ids) == len(set(ids)) < 200


# -- failures stay failures --------------------------------------------------------------------------

def candidates(n, poisoned=0):
    return [{"id": f"row{i}", "prompt": f"question {i}",
             "candidates": [("POISON " if i == poisoned else "") + f"first answer {i}", f"second answer {i}"]}
            for i in range(n)]


def test_a_failed_judge_request_is_an_error_not_a_text_verdict(tmp_path, write_jsonl, loopback):
    for cot in ([], ["--cot"]):
        server = loopback(fail_matching="POISON")
        src = write_jsonl(candidates(6), name=f"in{len(cot)}.jsonl")
        out = tmp_path / f"labels{len(cot)}"
        # The loopback judge always says B, so both orders disagree: keep such pairs to see them all.
        args = ["label", "--input", src, "--judge", f"openai:m@{server.url}", "--output", out, "--max-retries", "0",
                "--keep-inconsistent", *cot]
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        errors = [r for r in read(out / "rejected.jsonl") if r["reason"] == "error"]
        assert [(r["input"]["row_id"], "HTTP 500" in r["error"]) for r in errors] == [("row0", True)]
        decided = {r["meta"]["parent_ids"][0] for r in read(out / "rows.jsonl")}
        decided |= {r["input"]["row_id"] for r in read(out / "rejected.jsonl") if r["reason"] != "error"}
        assert decided == {f"row{i}" for i in range(1, 6)}
        # No text answer was asked for instead: only letters (and CoT reasoning) were requested.
        assert all(b.get("logprobs") or b["max_tokens"] > 8 for b in server.requests)
        server.faults.fail_matching = None
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert all(r["reason"] != "error" for r in read(out / "rejected.jsonl"))
        assert len(read(out / "rows.jsonl")) + len(read(out / "rejected.jsonl")) == 6


def test_eval_judge_reports_failed_requests_as_failures(tmp_path, write_jsonl, loopback):
    server = loopback(fail_matching="POISON")
    pairs = [{"prompt": f"question {i}", "chosen": ("POISON " if i == 0 else "") + f"good {i}", "rejected": f"bad {i}"}
             for i in range(5)]
    out = tmp_path / "eval"
    args = ["eval-judge", "--pairs", write_jsonl(pairs), "--judge", f"openai:m@{server.url}", "--output", out,
            "--max-retries", "0"]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["judged"] == 4 and report["failed"] == 1
    assert [r["reason"] for r in read(out / "rejected.jsonl")] == ["error"]
    server.faults.fail_matching = None
    assert invoke(*args).exit_code == 0
    assert json.loads((out / "report.json").read_text())["judged"] == 5


def test_a_dead_server_stops_the_run_and_it_resumes(tmp_path, write_jsonl, loopback):
    server = loopback(delay=0.01)
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(231)])
    out = tmp_path / "run"
    argv = synth("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", out,
                 "--concurrency", "4", "--max-retries", "5", "--max-retry-wait", "0.05")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: lines(out / "rows.jsonl") >= 20, "20 rows")
    server.kill()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "seems down" in err and "Traceback" not in err
    assert read(out / "rejected.jsonl") == []  # rows not done are not failures: a re-run does them
    assert json.loads((out / "manifest.json").read_text())["status"] == "backend_error"
    revived = LoopbackServer(port=server.port).start()
    try:
        assert subprocess.run(argv, capture_output=True).returncode == 0
    finally:
        revived.stop()
    ids = [r["id"] for r in read(out / "rows.jsonl")]
    assert len(ids) == 231 == len(set(ids))


def test_requests_in_flight_when_max_tokens_is_refused_are_sent_again(tmp_path, write_jsonl, loopback):
    server = loopback(wants_max_completion_tokens=True, hold_matching="")
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(16)])
    out = tmp_path / "run"
    proc = subprocess.Popen(synth("generate", "--input", src, "--model", f"openai:m@{server.url}", "--output", out,
                                  "--concurrency", "16"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: server.held == 16, "all 16 requests in flight")
    server.release()  # all 16 now get the 400 asking for max_completion_tokens
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(read(out / "rows.jsonl")) == 16 and read(out / "rejected.jsonl") == []


# -- streaming ---------------------------------------------------------------------------------

def test_critique_revise_streams_rows_past_a_slow_one(tmp_path, write_jsonl, loopback):
    server = loopback(hold_matching="SLOW")
    src = write_jsonl([{"prompt": "SLOW question"}] + [{"prompt": f"question {i}"} for i in range(80)])
    out = tmp_path / "cr"
    proc = subprocess.Popen(synth("critique-revise", "--prompts", src, "--model", f"openai:m@{server.url}",
                                  "--output", out, "--concurrency", "8"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = lambda: lines(out / "trace.jsonl") + lines(out / "rejected.jsonl")  # noqa: E731
    wait_for(lambda: finished() == 80, "every other row to finish while the slow one is held")
    assert server.held == 1 and proc.poll() is None
    server.release()
    assert proc.wait(120) in (0, 1)
    assert finished() == 81


def test_concurrency_is_the_number_of_requests_in_flight(tmp_path, write_jsonl, loopback):
    server = loopback(hold_matching="")
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(150)])
    proc = subprocess.Popen(synth("critique-revise", "--prompts", src, "--model", f"openai:m@{server.url}",
                                  "--output", tmp_path / "cr", "--concurrency", "100"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: server.held == 100, "100 requests in flight")
    server.release()
    assert proc.wait(120) in (0, 1)
    assert server.max_in_flight == 100


# -- label keeps the conversation ------------------------------------------------------------------

def test_label_shows_the_judge_the_whole_conversation_and_keeps_it(tmp_path, write_jsonl, loopback):
    server = loopback()
    messages = [{"role": "system", "content": "You are a pirate assistant."},
                {"role": "user", "content": "Where is the treasure?"},
                {"role": "assistant", "content": "Under the old oak tree."},
                {"role": "user", "content": "How deep should I dig?"}]
    src = write_jsonl([{"id": "conv", "messages": messages, "candidates": ["Three feet, matey.", "I prefer A: dig."]},
                       {"id": "single", "prompt": "Say hi", "candidates": ["hi", "hello there"]}])
    out = tmp_path / "labels"
    # One order: the loopback judge's letter depends only on the position, so two orders would tie.
    result = invoke("label", "--input", src, "--judge", f"openai:m@{server.url}", "--output", out, "--no-swap")
    assert result.exit_code == 0, result.output
    judge_prompts = [b["messages"][-1]["content"] for b in server.requests if "How deep" in b["messages"][-1]["content"]]
    assert judge_prompts and all("You are a pirate assistant." in p and "Under the old oak tree." in p
                                 and "Where is the treasure?" in p for p in judge_prompts)
    rows = {r["meta"]["parent_ids"][0]: r for r in read(out / "rows.jsonl")}
    assert rows["conv"]["prompt"] == messages
    assert rows["conv"]["chosen"][0]["role"] == "assistant" and rows["conv"]["rejected"][0]["role"] == "assistant"
    assert rows["single"]["prompt"] == "Say hi" and isinstance(rows["single"]["chosen"], str)


def test_sigterm_while_writing_is_an_interruption(tmp_path, write_jsonl, loopback):
    server = loopback(delay=0.01)
    src = write_jsonl([{"prompt": f"question {i}"} for i in range(300)])
    out = tmp_path / "run"
    proc = subprocess.Popen(synth("generate", "--input", src, "--model", f"openai:gpt-4o-mini@{server.url}",
                                  "--output", out, "--concurrency", "4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: lines(out / "rows.jsonl") >= 30 or proc.poll() is not None, "30 rows")
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(60)
    manifest = json.loads((out / "manifest.json").read_text())
    if code == 0:  # it had already finished: nothing to interrupt
        assert manifest["status"] == "complete"
        return
    assert code == 143 and manifest["status"] == "interrupted"
    assert manifest["cost_usd"] >= billed(server, MINI) - 1e-12 > 0


def test_a_request_that_timed_out_stays_on_the_books(tmp_path, write_jsonl, loopback):
    server = loopback(script=["timeout"], timeout_sleep=2.0)  # the server may have done the work
    out = tmp_path / "run"
    result = invoke("generate", "--input", write_jsonl([{"prompt": "slow one"}, {"prompt": "fine one"}]),
                    "--model", f"openai:gpt-4o-mini@{server.url}", "--output", out, "--concurrency", "1",
                    "--max-retries", "0", "--request-timeout", "0.5")
    assert result.exit_code == 1, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    [(model, unsettled)] = manifest["unsettled"].items()
    assert unsettled["requests"] == 1 and unsettled["worst_case_usd"] > 0
    assert manifest["cost_usd"] >= unsettled["worst_case_usd"] + billed(server, MINI) - 1e-12
