"""Diversity statistics of an instruction dataset, as the Self-Instruct paper reports them.

Counts kept and rejected (by reason), the distribution of each instruction's highest ROUGE-L
to the seed tasks, the most common leading verbs, and instruction/input/output lengths.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from typing import Iterable

ROUGE_BINS = [i / 10 for i in range(11)]


def length_summary(lengths: list[int]) -> dict:
    if not lengths:
        return {"count": 0}
    return {"count": len(lengths), "min": min(lengths), "median": statistics.median(lengths),
            "mean": round(statistics.fmean(lengths), 2), "max": max(lengths),
            "histogram": _histogram(lengths, [0, 5, 10, 20, 40, 80, 160, 320, 10**9])}


def _histogram(values: Iterable[float], edges: list[float]) -> dict[str, int]:
    """Counts per bin [edges[i], edges[i+1]); the top value of the last bin counts in it."""
    labels = [f"{lo:g}-{hi:g}" if hi < 10**9 else f">={lo:g}" for lo, hi in zip(edges, edges[1:])]
    counts = [0] * len(labels)
    for value in values:
        counts[min(max(bisect.bisect_right(edges, value) - 1, 0), len(labels) - 1)] += 1
    return dict(zip(labels, counts))


def leading_verb(instruction: str) -> str:
    words = instruction.split()
    return words[0].strip(".,:;!?\"'()").lower() if words else ""


def instruction_stats(rows: list[dict], seeds: list[str] | None = None, rejected: list[dict] | None = None,
                      instructions: list[str] | None = None) -> dict:
    """Statistics of SFT `rows`; instruction-level figures use `instructions` when given (a
    Self-Instruct run keeps some instructions that got no usable instance)."""
    if instructions is None:
        instructions = [r["instruction"] for r in rows if isinstance(r.get("instruction"), str)]
    instructions = list(dict.fromkeys(instructions))
    stats: dict = {
        "rows": len(rows),
        "instructions": len(instructions),
        "rejected_by_reason": dict(Counter(r.get("reason", "unknown") for r in (rejected or [])).most_common()),
        "leading_verbs": dict(Counter(leading_verb(i) for i in instructions).most_common(20)),
        "lengths_words": {
            field: length_summary([len(str(r.get(field, "")).split()) for r in rows if field in r])
            for field in ("instruction", "input", "output")
        },
    }
    if seeds:
        from synth.filters.rouge import RougeLFilter

        pool = RougeLFilter(1.0, seeds)
        scores = [m.score if (m := pool.max_similarity(i)) else 0.0 for i in instructions]
        stats["rouge_l_to_seeds"] = {
            "mean": round(statistics.fmean(scores), 4) if scores else None,
            "histogram": _histogram(scores, ROUGE_BINS),
        }
    return stats


def format_stats(stats: dict) -> str:
    lines = [f"{stats['instructions']} distinct instructions; {stats['rows']} rows" if stats["instructions"]
             else f"{stats['rows']} rows"]
    if stats["rejected_by_reason"]:
        lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in stats["rejected_by_reason"].items()))
    if "rouge_l_to_seeds" in stats:
        lines.append(f"highest ROUGE-L to a seed (mean {stats['rouge_l_to_seeds']['mean']}):")
        lines += _bars(stats["rouge_l_to_seeds"]["histogram"])
    if stats["leading_verbs"]:
        lines.append("leading words: " + ", ".join(f"{k} {v}" for k, v in list(stats["leading_verbs"].items())[:12]))
    for field, summary in stats["lengths_words"].items():
        if summary.get("count"):
            lines.append(f"{field} length (words): min {summary['min']}, median {summary['median']}, "
                         f"mean {summary['mean']}, max {summary['max']}")
    return "\n".join(lines)


def _bars(histogram: dict[str, int], width: int = 30) -> list[str]:
    top = max(histogram.values()) or 1
    return [f"  {label:>9} {'#' * round(width * count / top):<{width}} {count}" for label, count in histogram.items()]


def diversity_table(names: list[str], results: list[dict]) -> str:
    """The diversity figures of one or more datasets side by side (before/after a cleaning step)."""
    width = max(14, *(len(n) for n in names))
    head = f"{'diversity':<28}" + "".join(f"{n[-width:]:>{width + 2}}" for n in names)
    rows = [("rows", [r["rows"] for r in results]),
            ("nearest-neighbour cos mean", [r["nearest_neighbour_cosine"]["mean"] for r in results]),
            ("nearest-neighbour cos median", [r["nearest_neighbour_cosine"]["median"] for r in results]),
            ("distinct-1", [r["distinct_1"] for r in results]),
            ("distinct-2", [r["distinct_2"] for r in results]),
            ("k-means clusters", [r["clusters"]["k"] for r in results]),
            ("largest cluster", [r["clusters"]["sizes"][0] if r["clusters"]["sizes"] else 0 for r in results])]
    lines = [head] + [f"{label:<28}" + "".join(f"{str(v):>{width + 2}}" for v in values) for label, values in rows]
    lines.append("nearest-neighbour cosine histogram:")
    for bin_label in results[0]["nearest_neighbour_cosine"]["histogram"]:
        lines.append(f"  {bin_label:<26}" + "".join(
            f"{r['nearest_neighbour_cosine']['histogram'][bin_label]:>{width + 2}}" for r in results))
    return "\n".join(lines)
