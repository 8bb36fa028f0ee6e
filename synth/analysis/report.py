"""`report.html` for a run: one self-contained page (plots as embedded PNGs, no network to view).

Works on a recipe run (one subfolder per step) or a single command's run folder. Sections:
rows per step and rejection reasons; length distributions; principle usage; judge score and
margin histograms and the position-consistency rate; diversity (nearest-neighbour cosine
histogram and a 2-D projection of the embeddings coloured by source); tokens and estimated cost
per step; and a sample of rows side by side (prompt, initial answer, critique, revision).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

from synth.extras import MissingExtra, check, require
from synth.runs.folder import read_jsonl

SAMPLE_ROWS = 5
REPORT_NEEDS = "report.html (synth report; synth run unless --no-report)"
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var check = document.getElementById('render-check');
  check.textContent = 'images ' + ok + '/' + images.length + ' tables ' + document.querySelectorAll('table').length;
});
</script>"""


def _figure_png(draw) -> str:
    matplotlib = require("report", "matplotlib", what=REPORT_NEEDS)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _steps(run: Path) -> list[tuple[str, Path, dict]]:
    """(name, folder, manifest) of each step; a single run folder is one step."""
    manifest = _load(run / "manifest.json")
    if manifest.get("command") == "run":
        return [(s["name"], run / s["folder"], {"command": s["command"], **_load(run / s["folder"] / "manifest.json")})
                for s in manifest.get("steps", []) if (run / s["folder"]).is_dir()]
    return [(manifest.get("command", run.name), run, manifest)]


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _rows(folder: Path, name: str) -> list[dict]:
    path = folder / name
    return read_jsonl(path) if path.exists() else []


def _text(value) -> str:
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


def write_report(run: Path, embedder: str = "minilm") -> Path:
    check("report", "matplotlib", what=REPORT_NEEDS)  # before any work
    steps = _steps(run)
    trace = next((_rows(f, "trace.jsonl") for _, f, _ in steps if (f / "trace.jsonl").exists()), [])
    labels_rows = next((_rows(f, "rows.jsonl") for _, f, m in steps if m.get("command") == "label"), [])
    final = next((_rows(f, n) for _, f, m in reversed(steps) if m.get("command") not in ("export",)
                  for n in ("rows.jsonl", "preference.jsonl", "sft.jsonl") if (f / n).exists()), [])
    sections = [*_counts_and_cost(steps), _lengths(final), _principles(trace, labels_rows), _judge(labels_rows),
                _diversity(steps, embedder), _samples(trace)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>synth report: {html.escape(run.name)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top;white-space:pre-wrap;max-width:260px}img{max-width:100%}</style></head><body>"
            f"<h1>synth report: {html.escape(run.name)}</h1><p id='render-check'>not rendered</p>"
            + "".join(sections) + CHECK_SCRIPT + "</body></html>")
    out = run / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _counts_and_cost(steps) -> list[str]:
    """Rows per step, rejection and removal reasons, tokens and cost."""
    count_rows, cost_rows, reasons = [], [], Counter()
    for name, folder, manifest in steps:
        counts = manifest.get("counts") or {}  # every step's manifest has the same counts
        count_rows.append([name, counts.get("input", ""), counts.get("written", ""), counts.get("rejected", "")])
        for reason, n in (counts.get("rejected_by_reason") or {}).items():
            reasons[f"{name}: {reason}"] += n
        tokens = manifest.get("tokens") or {}
        per_model = [t for t in tokens.values() if isinstance(t, dict)] if isinstance(tokens, dict) else []
        total_in = sum(t.get("prompt", t.get("input", 0)) for t in per_model)
        total_out = sum(t.get("completion", t.get("output", 0)) for t in per_model)
        cost_rows.append([name, total_in, total_out, manifest.get("cost_usd", 0) or 0])
    sections = ["<h2>Rows per step</h2>" + _table(["step", "in", "written / kept", "rejected / removed"], count_rows)]
    if reasons:
        labels, values = zip(*reasons.most_common(15))
        sections.append("<h2>Rejection and removal reasons</h2>" + _figure_png(
            lambda ax: (ax.barh(range(len(values)), values), ax.set_yticks(range(len(values)), labels, fontsize=7),
                        ax.invert_yaxis(), ax.set_xlabel("rows"))))
    sections.append("<h2>Tokens and estimated cost per step</h2>"
                    + _table(["step", "input tokens", "output tokens", "cost (USD)"], cost_rows))
    return sections


def _lengths(final: list[dict]) -> str:
    lengths = {}
    for field in ("prompt", "instruction", "chosen", "rejected", "output", "text"):
        values = [len(_text(r.get(field)).split()) for r in final if r.get(field) is not None]
        if values:
            lengths[field] = values
    if not lengths:
        return ""
    return "<h2>Length distributions (words)</h2>" + _figure_png(
        lambda ax: ([ax.hist(v, bins=20, alpha=0.55, label=k) for k, v in lengths.items()], ax.legend(),
                    ax.set_xlabel("words"), ax.set_ylabel("rows")))


def _principles(trace: list[dict], labels_rows: list[dict]) -> str:
    principles = Counter(r.get("principle") for t in trace for r in t.get("rounds", []) if r.get("principle"))
    for row in labels_rows:
        principles.update(f"judge: {p}" for p in (row.get("meta") or {}).get("principles", []))
    if not principles:
        return ""
    names, counts = zip(*principles.most_common(20))
    return "<h2>Principle usage</h2>" + _figure_png(
        lambda ax: (ax.barh(range(len(counts)), counts), ax.set_yticks(range(len(counts)), names, fontsize=7),
                    ax.invert_yaxis(), ax.set_xlabel("uses")))


def _judge(labels_rows: list[dict]) -> str:
    if not labels_rows:
        return ""
    scores = [r["score"] for r in labels_rows if isinstance(r.get("score"), (int, float))]
    margins = [r["margin"] for r in labels_rows if isinstance(r.get("margin"), (int, float))]
    consistent = [r["position_consistent"] for r in labels_rows if isinstance(r.get("position_consistent"), bool)]
    rate = f"{sum(consistent) / len(consistent):.0%} of {len(consistent)} pairs" if consistent else "not measured"
    return (f"<h2>Judge</h2><p>Position consistency (same winner in both orders): <b>{rate}</b></p>"
            + _figure_png(lambda ax: (ax.hist(scores, bins=10, range=(0, 1), alpha=0.6, label="score"),
                                      ax.hist(margins, bins=10, range=(0, 1), alpha=0.6, label="margin (confidence)"),
                                      ax.legend(), ax.set_xlabel("probability"), ax.set_ylabel("pairs"))))


def _samples(trace: list[dict]) -> str:
    if not trace:
        return ""
    sample = [[_text(t.get("prompt"))[:400], _text(t.get("initial"))[:600],
               _text((t.get("rounds") or [{}])[-1].get("critique"))[:600],
               _text((t.get("rounds") or [{}])[-1].get("revision"))[:600]] for t in trace[:SAMPLE_ROWS]]
    return "<h2>Sample rows</h2>" + _table(["prompt", "initial", "critique", "revision"], sample)


def _diversity(steps, embedder: str) -> str:
    """Nearest-neighbour cosine histogram and a PCA projection coloured by the step rows came from."""
    texts, sources, seen = [], [], set()
    for name, folder, manifest in steps:
        if manifest.get("command") in ("export",):
            continue
        for file in ("rows.jsonl", "sft.jsonl"):
            for row in _rows(folder, file)[:500]:
                text = _text(row.get("chosen") or row.get("output") or row.get("prompt") or row.get("text")
                             or row.get("messages"))
                if text.strip() and text not in seen:  # each text once, coloured by the step it first appears in
                    seen.add(text)
                    texts.append(text)
                    sources.append(name)
            if (folder / file).exists():
                break
    if len(texts) < 3:
        return "<h2>Diversity</h2><p>Too few rows to measure.</p>"
    import numpy as np

    from synth.filters.diversity import nearest_neighbour_cosines
    from synth.filters.embedders import load_encoder

    try:
        vectors = load_encoder(embedder).encode(texts)
        require("dedup", "faiss", what="the diversity section")
    except MissingExtra as exc:  # the rest of the report needs only [report]
        return f"<h2>Diversity</h2><p>Not measured: {html.escape(exc.message)}</p>"
    nn = nearest_neighbour_cosines(vectors)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T

    def scatter(ax):
        for source in dict.fromkeys(sources):
            mask = np.array([s == source for s in sources])
            ax.scatter(points[mask, 0], points[mask, 1], s=12, label=source, alpha=0.7)
        ax.legend(fontsize=7)
        ax.set_title("2-D projection (PCA) of the embeddings", fontsize=9)

    return ("<h2>Diversity</h2>"
            + _figure_png(lambda ax: (ax.hist(nn, bins=20, range=(min(0, float(nn.min())), 1)),
                                      ax.set_xlabel("cosine to the nearest other row"), ax.set_ylabel("rows")))
            + _figure_png(scatter))
