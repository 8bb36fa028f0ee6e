"""What the run machinery costs: a fully cached re-run vs a plain run, and per-row bookkeeping.

A 2,000-row `synth generate` against a loopback OpenAI-compatible server (its own process) that
answers at once: first plain (every request goes to the server), then again into a new folder
with the same --cache (no request at all). Prints cached time / plain time (target <= 0.1), then
the per-row cost of appending a row, caching a response and rewriting the manifest.

    python benchmarks/resume_overhead.py [--rows 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from backend_overhead import start_server  # noqa: E402

from synth.backends import ChatRequest, Completion  # noqa: E402
from synth.runs.cache import ResponseCache, request_key  # noqa: E402
from synth.cli import main  # noqa: E402
from synth.runs.folder import RunFolder  # noqa: E402


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    try:
        main.main(args=args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    return time.perf_counter() - start


def bookkeeping(folder: Path, rows: int) -> None:
    run = RunFolder.open(folder / "bookkeeping", "bench", {"x": 1}, {"input_rows": rows})
    run.begin()
    row = {"id": "", "prompt": "question number 1234", "response": "echo: question number 1234",
           "meta": {"generator": "generate", "model": "openai:m", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}}
    start = time.perf_counter()
    for i in range(rows):
        run.write_row({**row, "id": f"{i:016x}"})
    per_row = (time.perf_counter() - start) / rows

    cache = ResponseCache(folder / "bookkeeping" / "cache.sqlite")
    completion = Completion("echo: question number 1234", "stop", 3, 4)
    start = time.perf_counter()
    for i in range(rows):  # what every paid response costs: reserve before sending, settle with the cache write
        reservation = cache.reserve("bench", "openai:m", 0.001)
        cache.settle(reservation, request_key("openai:m", ChatRequest([{"role": "user", "content": f"q {i}"}])),
                     completion, 0.0001)
    per_put = (time.perf_counter() - start) / rows

    start = time.perf_counter()
    for _ in range(50):
        run.save_manifest()
    per_manifest = (time.perf_counter() - start) / 50
    run.finish("complete")
    print(f"  append a row to rows.jsonl:   {per_row * 1e6:7.1f} us/row")
    print(f"  reserve, then cache + charge: {per_put * 1e6:7.1f} us/row")
    print(f"  rewrite manifest.json:        {per_manifest * 1e3:7.2f} ms each (at most every 2 s during a run)")


def main_benchmark(rows: int) -> None:
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            src = folder / "prompts.jsonl"
            src.write_text("".join(json.dumps({"prompt": f"question number {i}"}) + "\n" for i in range(rows)))
            common = ["generate", "--input", str(src), "--model", f"openai:m@{url}", "--concurrency", "64",
                      "--cache", str(folder / "cache.sqlite")]
            plain = timed_run(common + ["--output", str(folder / "plain")])
            cached = timed_run(common + ["--output", str(folder / "cached")])
            same = sorted((folder / "plain" / "rows.jsonl").read_text().splitlines()) == \
                sorted((folder / "cached" / "rows.jsonl").read_text().splitlines())
            print(f"\n{rows}-row run against an instant loopback server:")
            print(f"  plain run:                    {plain:7.2f} s ({rows / plain:.0f} rows/s)")
            print(f"  fully cached run:             {cached:7.2f} s ({rows / cached:.0f} rows/s), rows identical: {same}")
            print(f"  ratio cached / plain:         {cached / plain:7.3f}   (target <= 0.1)")
            print("per-row bookkeeping:")
            bookkeeping(folder, rows)
    finally:
        proc.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    main_benchmark(parser.parse_args().rows)
