"""The lines a model run ends with: what was written and rejected, what it cost, how to go on."""

from __future__ import annotations

from collections import Counter

from synth.runs.folder import RunFolder


def summary(command: str, run: RunFolder, counts: Counter, skipped: int, duplicates: int, status: str, seconds: float,
            stop_note: str = "") -> str:
    rejected = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("rejected:")}
    tokens = {k: sum(t.get(k, 0) for t in run.manifest["tokens"].values()) for k in ("prompt", "completion")}
    parts = [
        f"{command}: {counts['written']} rows written" + (f" ({skipped} already done)" if skipped else ""),
        f"{sum(rejected.values())} rejected" + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) + ")" if rejected else ""),
        f"{counts['cache_hits']} cache hits, {counts['model_calls']} model calls",
        f"{tokens.get('prompt', 0):,} tokens in, {tokens.get('completion', 0):,} out in all",
        f"${run.manifest['cost_usd']:.4f}",
        f"{seconds:.1f} s",
    ]
    text = " · ".join(parts) + f"\n  -> {run.path / run.rows_name}"
    if duplicates:
        text += f"\n  {duplicates} duplicate input rows were done once"
    if status == "stopped":
        text += (f"\n  stopped: --max-cost-usd reached ({stop_note}); nothing more was sent. Re-run the same command "
                 f"with --output {run.path} and a higher --max-cost-usd to resume (the cap counts this folder's "
                 "whole spend, across resumes)")
    elif status == "backend_error":
        text += f"\n  stopped: the model server failed; every finished row is saved: re-run the same command with --output {run.path} to resume"
    elif status == "interrupted":
        text += f"\n  interrupted: every finished row is saved; re-run the same command with --output {run.path} to resume"
    elif rejected.get("error"):
        text += f"\n  some requests failed after retries (see rejected.jsonl); re-run the same command with --output {run.path} to retry them"
    return text
