"""Run folders: manifest, provenance, resume, cache, secrets, dry run, limits, cost."""

import json


from synth.backends import ChatRequest, Sampling
from synth.runs.cache import request_key
from conftest import invoke, read




def prompts(n, words=2):
    return [{"id": f"in-{i}", "prompt": " ".join([f"prompt{i}"] + ["w"] * (words - 1))} for i in range(n)]


def gen(server, src, out, *extra, model="m"):
    return invoke("generate", "--input", src, "--model", f"openai:{model}@{server.url}", "--output", out, *extra)


def test_run_folder_and_manifest(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(5) + [{"prompt": "one two three four five six seven"}])
    out = tmp_path / "run"
    result = gen(server, src, out, "--max-tokens", "5", "--temperature", "0.5", "--seed", "9")
    assert result.exit_code == 0, result.output
    rows, rejected = read(out / "rows.jsonl"), read(out / "rejected.jsonl")
    assert len(rows) == 5 and len(rejected) == 1
    assert rejected[0]["reason"] == "truncated" and rejected[0]["input"] == {"prompt": "one two three four five six seven"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "generate" and manifest["status"] == "complete"
    assert manifest["identity"]["sampling"] == {"temperature": 0.5, "top_p": 1.0, "max_tokens": 5, "seed": 9}
    assert manifest["counts"] == {"input": 6, "written": 5, "rejected": 1, "rejected_by_reason": {"truncated": 1}}
    spec = f"openai:m@{server.url}"
    assert manifest["tokens"][spec] == {"requests": 6, "prompt": 2 * 5 + 7, "completion": 3 * 5 + 5}
    assert set(manifest["versions"]) >= {"python", "synth", "openai"}
    assert manifest["started_at"] and manifest["ended_at"] and manifest["wall_seconds"] >= 0
    assert manifest["argv"][:2] == ["synth", "generate"] and "--seed" in manifest["argv"]
    for row in rows:
        assert row["meta"]["parent_ids"] == [row["prompt"].replace("prompt", "in-").split()[0]]
        assert row["response"].strip() and row["meta"]["finish_reason"] == "stop"
    assert "6 rows" not in result.output and "5 rows written" in result.output and "truncated: 1" in result.output


def test_keep_truncated_flags_the_row_and_reuses_the_cache(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl([{"prompt": "a b c d e f g h"}])
    out = tmp_path / "run"
    gen(server, src, out, "--max-tokens", "3")
    assert read(out / "rows.jsonl") == [] and len(server.requests) == 1
    # Same folder, same request: the raw response comes from the cache; only the decision changes.
    result = gen(server, src, out, "--max-tokens", "3", "--keep-truncated")
    assert result.exit_code == 0, result.output
    [row] = read(out / "rows.jsonl")
    assert row["meta"]["truncated"] is True and row["response"] == "echo: a b"
    assert len(server.requests) == 1 and read(out / "rejected.jsonl") == []


def test_retry_rejected_asks_the_model_again(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl([{"prompt": "a b c d e f g h"}, {"prompt": "ok"}])
    out = tmp_path / "run"
    gen(server, src, out, "--max-tokens", "3")
    gen(server, src, out, "--max-tokens", "3")
    assert len(server.requests) == 2  # the rejected row was re-judged from the cache
    assert len(read(out / "rejected.jsonl")) == 1  # and not recorded twice
    gen(server, src, out, "--max-tokens", "3", "--retry-rejected")
    assert len(server.requests) == 3 and len(read(out / "rejected.jsonl")) == 1


def test_resume_skips_finished_rows(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(10))
    out = tmp_path / "run"
    assert gen(server, src, out, "--limit", "4").exit_code == 0
    assert len(read(out / "rows.jsonl")) == 4 and len(server.requests) == 4
    result = gen(server, src, out)
    assert result.exit_code == 0 and "6 rows written (4 already done)" in result.output
    rows = read(out / "rows.jsonl")
    assert sorted(r["prompt"] for r in rows) == sorted(p["prompt"] for p in prompts(10))
    assert len(server.requests) == 10  # nothing asked twice
    assert len(json.loads((out / "manifest.json").read_text())["invocations"]) == 2


def test_torn_last_line_is_dropped_on_resume(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(3))
    out = tmp_path / "run"
    gen(server, src, out)
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])  # crash mid-write
    assert gen(server, src, out).exit_code == 0
    rows = read(out / "rows.jsonl")
    assert len(rows) == 3 and len({r["id"] for r in rows}) == 3


def test_damaged_middle_line_is_a_clear_error(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(3))
    out = tmp_path / "run"
    gen(server, src, out)
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text(lines[0] + "{garbage\n" + lines[2])
    result = gen(server, src, out)
    assert result.exit_code == 2 and "rows.jsonl line 2: not valid JSON" in result.output


def test_another_config_is_refused_unless_overwrite(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(2))
    out = tmp_path / "run"
    gen(server, src, out, "--temperature", "0.7")
    result = gen(server, src, out, "--temperature", "0.2")
    assert result.exit_code == 2
    assert "holds rows of another run" in result.output and "sampling" in result.output and "--overwrite" in result.output
    assert len(server.requests) == 2
    result = gen(server, src, out, "--temperature", "0.2", "--overwrite")
    assert result.exit_code == 0
    assert [r["meta"]["sampling"]["temperature"] for r in read(out / "rows.jsonl")] == [0.2, 0.2]


def test_shared_cache_makes_a_repeat_run_free_and_identical(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(20))
    cache = tmp_path / "shared.sqlite"
    assert gen(server, src, tmp_path / "a", "--cache", cache).exit_code == 0
    calls = len(server.requests)
    result = gen(server, src, tmp_path / "b", "--cache", cache)
    assert result.exit_code == 0 and "20 cache hits, 0 model calls" in result.output
    assert len(server.requests) == calls
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(read(tmp_path / "a" / "rows.jsonl"), key=key) == sorted(read(tmp_path / "b" / "rows.jsonl"), key=key)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["tokens"] == {} and manifest["cache_hits"] == 20


def test_cache_key_covers_what_decides_the_response():
    base = ChatRequest([{"role": "user", "content": "x"}], Sampling(temperature=0.9, seed=1))
    keys = {
        request_key("local", base),
        request_key("openai:m", base),
        request_key("local", ChatRequest(base.messages, base.sampling, sample=1)),
        request_key("local", ChatRequest(base.messages, Sampling(temperature=0.9, seed=2))),
        request_key("local", ChatRequest(base.messages, Sampling(temperature=0.8, seed=1))),
        request_key("local", ChatRequest([{"role": "user", "content": "y"}], base.sampling)),
    }
    assert len(keys) == 6
    assert request_key("local", base) == request_key("local", ChatRequest([{"role": "user", "content": "x"}], Sampling(temperature=0.9, seed=1)))
    # Distinct samples also get distinct seeds.
    assert ChatRequest(base.messages, base.sampling, sample=3).seed == 4


def test_no_secret_in_any_file_or_log(tmp_path, write_jsonl, loopback):
    server = loopback(script=["500", "400"])
    src = write_jsonl(prompts(4))
    out = tmp_path / "run"
    secret = "sk-proj-TOPSECRET-0123456789"
    result = gen(server, src, out, "--api-key", secret, "--max-retries", "0")
    assert result.exit_code == 1
    assert secret not in result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"rows.jsonl", "rejected.jsonl", "manifest.json", "cache.sqlite"}
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    argv = json.loads((out / "manifest.json").read_text())["argv"]
    assert argv[argv.index("--api-key") + 1] == "***"


def test_dry_run_calls_nothing(tmp_path, write_jsonl, loopback):
    server = loopback()
    src = write_jsonl(prompts(50, words=40))
    out = tmp_path / "run"
    result = gen(server, src, out, "--dry-run", "--max-tokens", "100", model="gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert "50 rows, 0 already done, 50 to do" in result.output
    assert "at most 5,000 completion tokens" in result.output and "$" in result.output
    assert server.requests == [] and not out.exists()
    result = gen(server, src, out, "--dry-run", model="unlisted-model")
    assert "cost: unknown" in result.output


def test_max_cost_stops_cleanly_and_resumes(tmp_path, write_jsonl, loopback):
    server = loopback()
    # 1000 tokens in ($0.15/M) and 1001 out ($0.60/M) a row: about $0.00075 a row
    src = write_jsonl(prompts(40, words=1000))
    out = tmp_path / "run"
    result = gen(server, src, out, "--max-cost-usd", "0.0075", "--concurrency", "1", "--max-tokens", "2000",
                 model="gpt-4o-mini")
    assert result.exit_code == 4, result.output
    assert "--max-cost-usd reached" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["cost_usd"] <= 0.0075
    written = len(read(out / "rows.jsonl"))
    assert 5 <= written < 40 and len(server.requests) == written
    result = gen(server, src, out, "--max-cost-usd", "1", "--max-tokens", "2000", model="gpt-4o-mini")
    assert result.exit_code == 0
    rows = read(out / "rows.jsonl")
    assert len(rows) == 40 == len({r["id"] for r in rows}) and len(server.requests) == 40


def test_max_cost_needs_a_known_price(tmp_path, write_jsonl, loopback):
    server = loopback()
    result = gen(server, write_jsonl(prompts(2)), tmp_path / "run", "--max-cost-usd", "1", model="mystery")
    assert result.exit_code == 2 and "no known price for" in result.output and server.requests == []


def test_price_table_override(tmp_path, write_jsonl, loopback):
    server = loopback()
    table = tmp_path / "prices.yaml"
    table.write_text("mystery: {input: 1000000, output: 0}\n")
    src = write_jsonl(prompts(3))
    result = gen(server, src, tmp_path / "run", "--prices", table, "--max-cost-usd", "100", model="mystery")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["cost_usd"] == 6.0  # 3 requests x 2 prompt tokens x $1 a token
    assert result.exit_code == 0
    table.write_text("mystery: {input: lots}\n")
    result = gen(server, src, tmp_path / "run2", "--prices", table, model="mystery")
    assert result.exit_code == 2 and "needs numeric 'input' and 'output'" in result.output
