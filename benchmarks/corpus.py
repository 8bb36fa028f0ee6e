"""Real corpora for the benchmarks, downloaded once into a cache folder.

`debian_descriptions()`: the English package descriptions of Debian 12 "bookworm", section main,
63,956 rows, from the Debian archive's translation index

    http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.xz   (about 6 MB)

Why this corpus: the deduplication benchmark needs >= 50k real rows with real near-duplicates,
and the T0 corpus named in the issue cannot be reached from the machines these benchmarks run on,
while deb.debian.org (a package registry) can. Debian descriptions are written by people, vary
from one line to several paragraphs, and are full of templated near-copies (the `-dev`, `-doc`,
`-dbg`, `python3-` and per-language variants of one source package share most of their text),
which is the kind of duplication a synthetic-data pipeline has to catch.

Row = {"id": package name, "text": short description + "\\n" + the long description's lines
joined by spaces (paragraph separators " ." dropped)}, in the file's order. The cache folder is
$SYNTH_CACHE_DIR, else $XDG_CACHE_HOME/synth, else ~/.cache/synth; files go under its `bench/`.
"""

from __future__ import annotations

import itertools
import lzma
import os
import random
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Sequence

DEBIAN_URL = "http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.xz"


def cache_dir() -> Path:
    if os.environ.get("SYNTH_CACHE_DIR"):
        root = Path(os.environ["SYNTH_CACHE_DIR"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "synth"
    else:
        root = Path.home() / ".cache" / "synth"
    folder = root / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch(url: str, name: str) -> Path:
    """`url` saved as `name` in the cache folder, downloaded only when it is not there yet."""
    path = cache_dir() / name
    if not path.is_file():
        partial = path.with_suffix(path.suffix + ".part")
        with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        partial.replace(path)
    return path


def parse_translation(lines: Iterable[str]) -> Iterator[dict]:
    """Rows from the lines of a Translation-en file (blocks separated by blank lines)."""
    name, short, long_lines = None, None, []
    for line in itertools.chain(lines, [""]):
        line = line.rstrip("\n")
        if not line:  # end of a block
            if name and short is not None:
                yield {"id": name, "text": short + "\n" + " ".join(long_lines)}
            name, short, long_lines = None, None, []
        elif line.startswith("Package: "):
            name = line[len("Package: "):].strip()
        elif line.startswith("Description-en: "):
            short = line[len("Description-en: "):].strip()
        elif line.startswith(" ") and short is not None:
            line = line.strip()
            if line != ".":  # paragraph break
                long_lines.append(line)


def debian_descriptions(limit: int | None = None) -> list[dict]:
    """The 63,956 English package descriptions of Debian bookworm main, in the index's order.
    Read as a stream, so loading costs little more memory than the rows themselves."""
    path = fetch(DEBIAN_URL, "bookworm-main-Translation-en.xz")
    with lzma.open(path, "rt", encoding="utf-8") as lines:
        return list(itertools.islice(parse_translation(lines), limit))


def sample_indices(n: int, k: int, seed: int = 0) -> list[int]:
    """A seeded random sample of `k` of `n` row indices, in corpus order."""
    return sorted(random.Random(seed).sample(range(n), min(k, n)))


def near_duplicate_pairs(sets: Sequence[set[int]], threshold: float, block: int = 512) -> list[list[int]]:
    """For each row i, every earlier row j with Jaccard(sets[i], sets[j]) >= threshold, exactly.

    All pairs are scored: the intersections come from a sparse product of the row x shingle
    incidence matrix with itself (pairs sharing no shingle have Jaccard 0), then Jaccard =
    |a & b| / |a | b| in float64, as `synth.filters.minhash.jaccard` computes it. Empty sets match
    nothing."""
    import numpy as np
    from scipy import sparse

    sizes = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    flat = np.fromiter((h for s in sets for h in s), dtype=np.uint64, count=int(sizes.sum()))
    _, columns = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), sizes)
    matrix = sparse.csr_matrix((np.ones(len(flat), dtype=np.int32), (rows, columns.ravel())),
                               shape=(len(sets), int(columns.max(initial=-1)) + 1))
    earlier: list[list[int]] = []
    for start in range(0, len(sets), block):
        stop = min(start + block, len(sets))
        inter = (matrix[start:stop] @ matrix[:stop].T).tocoo()
        i, j, shared = inter.row + start, inter.col, inter.data.astype(np.float64)
        keep = (j < i) & (sizes[i] > 0) & (sizes[j] > 0)
        i, j, shared = i[keep], j[keep], shared[keep]
        hit = shared / (sizes[i] + sizes[j] - shared) >= threshold
        found: list[list[int]] = [[] for _ in range(stop - start)]
        for a, b in zip(i[hit].tolist(), j[hit].tolist()):
            found[a - start].append(b)
        earlier += [sorted(f) for f in found]
    return earlier


if __name__ == "__main__":
    rows = debian_descriptions()
    words = sum(len(r["text"].split()) for r in rows) / len(rows)
    print(f"{len(rows):,} rows, {words:.1f} words on average; first: {rows[0]}")


def resampled(rows: Sequence[dict], n: int, seed: int = 0) -> list[dict]:
    """n rows drawn (with replacement) from `rows`, each copy with 0-3 small word edits (drop,
    repeat, swap with the next, or replace by a word from elsewhere in the corpus), to scale a
    real corpus up while keeping its vocabulary, lengths and near-duplicate structure."""
    rng = random.Random(seed)
    vocabulary = [w for row in rows[:2000] for w in row["text"].split()]
    out = []
    for k in range(n):
        base = rows[rng.randrange(len(rows))]
        words = base["text"].split()
        for _ in range(rng.randint(0, 3) if len(words) > 3 else 0):
            at = rng.randrange(len(words) - 1)
            edit = rng.randrange(4)
            if edit == 0:
                del words[at]
            elif edit == 1:
                words.insert(at, words[at])
            elif edit == 2:
                words[at], words[at + 1] = words[at + 1], words[at]
            else:
                words[at] = rng.choice(vocabulary)
        out.append({"id": f"{base['id']}~{k}", "text": " ".join(words)})
    return out
