"""How much our backends cost on top of the bare model call, measured in one run.

1. The `openai` backend vs the bare `openai.AsyncOpenAI` SDK with a semaphore of the same size:
   2,000 requests against a loopback OpenAI-compatible server (in its own process) that answers at
   once. Prints our requests/s divided by the bare SDK's (target >= 0.9).
2. The embedded GGUF on llama.cpp (`local`): load time and tokens/s, one request at a time.
3. The same GGUF on transformers: tokens/s at batch 8 divided by one at a time (target >= 4x).

    python benchmarks/backend_overhead.py [--requests 2000] [--concurrency 64] [--skip-local]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synth.backends import ChatRequest, Sampling  # noqa: E402


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "loopback_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def requests_for(n: int) -> list[ChatRequest]:
    return [ChatRequest([{"role": "user", "content": f"question number {i}"}], Sampling(temperature=0.7, max_tokens=64))
            for i in range(n)]


def bare_sdk(url: str, n: int, concurrency: int) -> float:
    import openai

    async def main() -> None:
        semaphore = asyncio.Semaphore(concurrency)
        async with openai.AsyncOpenAI(base_url=url, api_key="sk-bench") as client:

            async def one(i: int):
                async with semaphore:
                    return await client.chat.completions.create(
                        model="loopback", messages=[{"role": "user", "content": f"question number {i}"}],
                        temperature=0.7, max_tokens=64)

            results = await asyncio.gather(*(one(i) for i in range(n)))
            assert all(r.choices[0].message.content for r in results)

    start = time.perf_counter()
    asyncio.run(main())
    return n / (time.perf_counter() - start)


def ours(url: str, n: int, concurrency: int) -> float:
    from synth.backends.openai_compat import OpenAIBackend

    backend = OpenAIBackend("loopback", base_url=url, api_key="sk-bench", concurrency=concurrency, preflight=False)
    requests = requests_for(n)
    start = time.perf_counter()
    out = backend.generate(requests)
    elapsed = time.perf_counter() - start
    assert all(c.ok and c.text for c in out)
    return n / elapsed


def api_overhead(n: int, concurrency: int, rounds: int) -> None:
    proc, url = start_server()
    try:
        bare_sdk(url, 200, concurrency), ours(url, 200, concurrency)  # warm up both paths
        bare, mine = [], []
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
            bare.append(bare_sdk(url, n, concurrency))
            mine.append(ours(url, n, concurrency))
    finally:
        proc.terminate()
    b, m = statistics.median(bare), statistics.median(mine)
    print(f"openai backend, {n} requests, {concurrency} in flight, median of {rounds}:")
    print(f"  bare AsyncOpenAI + semaphore: {b:8.0f} req/s")
    print(f"  synth openai backend:         {m:8.0f} req/s")
    print(f"  ratio synth / bare SDK:       {m / b:8.2f}   (target >= 0.9)")


PROMPTS = [
    "Write a short poem about the sea.",
    "Explain recursion to a child.",
    "List three uses of a paperclip.",
    "What is the capital of France and why is it famous?",
    "Give me a tip for learning to cook.",
    "Describe a cat in one paragraph.",
    "Why is the sky blue?",
    "Suggest a name for a coffee shop.",
]


def tokens_per_second(backend, requests) -> tuple[float, int]:
    start = time.perf_counter()
    out = backend.generate(requests)
    elapsed = time.perf_counter() - start
    tokens = sum(c.completion_tokens for c in out)
    return tokens / elapsed, tokens


def local_models(max_tokens: int) -> None:
    from synth.backends.hf import TransformersBackend
    from synth.backends.llamacpp import LlamaCppBackend
    from synth.resources import embedded_gguf_path

    gguf = str(embedded_gguf_path())
    requests = [ChatRequest([{"role": "user", "content": p}], Sampling(temperature=0.0, max_tokens=max_tokens))
                for p in PROMPTS]

    start = time.perf_counter()
    llama = LlamaCppBackend(gguf, spec="local")
    load = time.perf_counter() - start
    tps, tokens = tokens_per_second(llama, requests)
    print(f"local (llama.cpp): load {load:.2f} s, {tps:.0f} tokens/s one request at a time ({tokens} tokens)")

    start = time.perf_counter()
    hf = TransformersBackend(gguf, batch_size=1, spec="hf:local")
    print(f"transformers: load (GGUF dequantization) {time.perf_counter() - start:.1f} s")
    single, t1 = tokens_per_second(hf, requests)
    hf.batch_size = 8
    batched, t8 = tokens_per_second(hf, requests)
    print(f"transformers: {single:.1f} tokens/s one at a time ({t1} tokens), {batched:.1f} tokens/s at batch 8 ({t8} tokens)")
    print(f"  ratio batch 8 / one at a time: {batched / single:.2f}x   (target >= 4x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    api_overhead(args.requests, args.concurrency, args.rounds)
    if not args.skip_local:
        local_models(args.max_tokens)
