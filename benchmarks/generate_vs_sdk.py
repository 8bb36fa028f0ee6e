"""Whole-process `synth generate` vs a hand-written openai-SDK script doing the same job, in one run.

Both run as fresh subprocesses of this interpreter (interpreter start, imports, reading the prompts,
the requests, writing one JSON line per answer), against one loopback OpenAI-compatible server in
its own process that answers at once. They alternate; the median wall time of each is compared.
Prints the ratio SDK time / synth time (target >= 0.9: synth at least 90% of the bare SDK's
throughput).

    python benchmarks/generate_vs_sdk.py [--requests 5000] [--concurrency 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What a user would write by hand; the sampling matches `synth generate`'s defaults.
SDK_SCRIPT = '''\
import asyncio, json, sys
import httpx, openai

url, prompts_path, out_path, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def main():
    with open(prompts_path) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0,
                                  http_client=openai.DefaultAsyncHttpxClient(limits=limits)) as client:
        with open(out_path, "w") as out:
            async def one(prompt):
                async with semaphore:
                    r = await client.chat.completions.create(
                        model="bench", messages=[{"role": "user", "content": prompt}],
                        temperature=0.7, top_p=1.0, max_tokens=256, seed=0)
                out.write(json.dumps({"prompt": prompt, "response": r.choices[0].message.content,
                                      "usage": r.usage.model_dump()}) + "\\n")
                out.flush()
            await asyncio.gather(*(one(p) for p in prompts))

asyncio.run(main())
'''


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "loopback_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def count_lines(path: Path) -> int:
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def timed(cmd: list[str], log: Path) -> float:
    """Wall time of `cmd` as a fresh process; its stdout/stderr go to `log`. Fails loudly on a non-zero exit."""
    with open(log, "w") as f:
        start = time.perf_counter()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=os.environ.copy()).returncode
        elapsed = time.perf_counter() - start
    if rc != 0:
        sys.exit(f"FAILED (exit {rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return elapsed


def check(path: Path, n: int, what: str, log: Path) -> None:
    got = count_lines(path) if path.exists() else 0
    if got != n:
        sys.exit(f"FAILED: {what} wrote {got} rows to {path}, expected {n}\n{log.read_text()[-3000:]}")


def run_sdk(tmp: Path, url: str, prompts: Path, n: int, concurrency: int, tag: str) -> float:
    out, log = tmp / f"sdk-{tag}.jsonl", tmp / f"sdk-{tag}.log"
    seconds = timed([sys.executable, str(tmp / "bare_sdk.py"), url, str(prompts), str(out), str(concurrency)], log)
    check(out, n, "bare SDK script", log)
    return seconds


def run_synth(tmp: Path, url: str, prompts: Path, n: int, concurrency: int, tag: str) -> float:
    out, log = tmp / f"synth-{tag}", tmp / f"synth-{tag}.log"  # a fresh run folder: empty cache
    seconds = timed([sys.executable, "-m", "synth", "generate", "--input", str(prompts), "--model", f"openai:bench@{url}",
                     "--output", str(out), "--concurrency", str(concurrency)], log)
    check(out / "rows.jsonl", n, "synth generate", log)
    return seconds


def write_prompts(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"question {i}: what is {i} plus {i + 1}, and why?"}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="prompts per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternated (default 3)")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency

    print(f"Whole-process wall time: `synth generate --model openai:...` vs a bare AsyncOpenAI script, "
          f"{n} requests, {c} in flight, loopback server, median of {args.repeats}")
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as name:
            tmp = Path(name)
            (tmp / "bare_sdk.py").write_text(SDK_SCRIPT)
            prompts, warm = tmp / "prompts.jsonl", tmp / "warm.jsonl"
            write_prompts(prompts, n)
            write_prompts(warm, min(n, 100))
            run_sdk(tmp, url, warm, min(n, 100), c, "warm")  # untimed: warm the disk cache and .pyc files
            run_synth(tmp, url, warm, min(n, 100), c, "warm")
            sdk, synth = [], []
            for r in range(args.repeats):  # alternated, so drift on a shared machine hits both alike
                sdk.append(run_sdk(tmp, url, prompts, n, c, str(r)))
                synth.append(run_synth(tmp, url, prompts, n, c, str(r)))
                print(f"  run {r + 1}: bare SDK {sdk[-1]:6.2f} s   synth generate {synth[-1]:6.2f} s", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)

    s, g = statistics.median(sdk), statistics.median(synth)
    print(f"{'':24}{'median s':>10}{'req/s':>10}")
    print(f"{'bare SDK script':24}{s:10.2f}{n / s:10.0f}")
    print(f"{'synth generate':24}{g:10.2f}{n / g:10.0f}")
    print(f"ratio SDK time / synth time: {s / g:.2f}   (target >= 0.9)  [{n} requests, concurrency {c}]")


if __name__ == "__main__":
    main()
