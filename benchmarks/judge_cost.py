"""What each judging safeguard costs: model calls and tokens per labeled pair.

Labels the same pairs with `synth label` four ways on one judge (default: the embedded `local`
model): one order or both (position debiasing), with or without --cot (reasoning first), and
prints calls, prompt and completion tokens and seconds per pair, from each run's manifest. The
pairs are real: each of the first Self-Instruct seed tasks with its human-written output against
another task's output (or pass --pairs FILE with prompt/chosen/rejected rows).

    python benchmarks/judge_cost.py [--judge SPEC] [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))

from resume_overhead import timed_run as run  # noqa: E402

SEEDS = REPO.parent / "shared" / "data" / "self_instruct_seed_tasks.jsonl"


def seed_pairs(n: int) -> list[dict]:
    tasks = [json.loads(line) for line in SEEDS.read_text().splitlines()]
    tasks = [t for t in tasks if t["instances"] and len(t["instances"][0]["output"]) < 400]
    rows = []
    for k in range(n):
        task, other = tasks[k], tasks[(k + 7) % len(tasks)]
        prompt = task["instruction"] + (("\n\n" + task["instances"][0]["input"]) if task["instances"][0]["input"] else "")
        rows.append({"prompt": prompt, "candidates": [task["instances"][0]["output"], other["instances"][0]["output"]]})
    return rows


def main_benchmark(judge: str, n: int, pairs_file: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "pairs.jsonl"
        if pairs_file:
            src = pairs_file
        else:
            src.write_text("".join(json.dumps(r) + "\n" for r in seed_pairs(n)))
        configs = [("one order", ["--no-swap"]), ("both orders", []),
                   ("one order + cot", ["--no-swap", "--cot"]), ("both orders + cot", ["--cot"])]
        results = []
        for name, extra in configs:
            out = folder / name.replace(" ", "_").replace("+", "")
            seconds = run(["label", "--input", str(src), "--judge", judge, "--keep-inconsistent", "--output", str(out),
                           *extra])
            manifest = json.loads((out / "manifest.json").read_text())
            tokens = manifest["tokens"].get(judge, {"requests": 0, "prompt": 0, "completion": 0})
            labeled = manifest["counts"]["input"]
            results.append((name, tokens["requests"] / labeled, tokens["prompt"] / labeled,
                            tokens["completion"] / labeled, seconds / labeled))
    print(f"\njudge {judge}, {labeled} pairs (prompt tokens of one-token logprob calls are estimated):")
    print(f"{'configuration':<20} {'calls/pair':>10} {'prompt tok/pair':>16} {'completion tok/pair':>20} {'s/pair':>8}")
    for name, calls, prompt, completion, seconds in results:
        print(f"{name:<20} {calls:>10.2f} {prompt:>16.0f} {completion:>20.1f} {seconds:>8.2f}")
    base = results[0]
    print(f"both orders cost {results[1][1] / base[1]:.1f}x the calls; cot costs "
          f"{results[2][2] / base[2]:.1f}x the prompt tokens and {results[2][3] / max(base[3], 1e-9):.0f}x the completion tokens")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="local")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--pairs-file", type=Path)
    args = parser.parse_args()
    main_benchmark(args.judge, args.pairs, args.pairs_file)
