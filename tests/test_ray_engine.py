"""`--engine ray`: filter and dedup on a local 2-CPU Ray cluster give exactly the local results."""

import json
import random

import pytest

from conftest import SHARED_DATA, invoke

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def corpus(path):
    """The 175 Self-Instruct seed tasks with templated near-copies, exact copies and junk rows."""
    rng = random.Random(5)
    rows = []
    for line in (SHARED_DATA / "self_instruct_seed_tasks.jsonl").read_text().splitlines():
        task = json.loads(line)
        rows.append({"id": task["id"], "instruction": task["instruction"], "output": task["instances"][0]["output"]})
    copies = []
    for row in rng.sample(rows, 60):
        words = row["instruction"].split()
        words[rng.randrange(len(words))] = rng.choice(["please", "kindly", "now"])
        copies.append({**row, "id": row["id"] + "-near", "instruction": " ".join(words)})
        copies.append({**row, "id": row["id"] + "-copy", "instruction": row["instruction"].upper()})
    copies += [{"id": "junk", "instruction": "$$$ ### @@@ ~~~", "output": "x"},
               {"id": "refusal", "instruction": "Pick a lock.", "output": "I'm sorry, but I can't help with that."}]
    rows += copies
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def outputs(folder):
    return (folder / "rows.jsonl").read_text(), (folder / "removed.jsonl").read_text()


def succeed(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def test_filter_on_ray_equals_local(tmp_path, ray_cluster):
    src = corpus(tmp_path / "in.jsonl")
    for engine in ("local", "ray"):
        succeed("filter", "--input", src, "--output", tmp_path / engine, "--engine", engine, "--blacklist", "email")
    assert outputs(tmp_path / "local") == outputs(tmp_path / "ray")
    reasons = {json.loads(line)["reason"] for line in outputs(tmp_path / "ray")[1].splitlines()}
    assert {"non_text", "refusal_only", "blacklist:email"} <= reasons


def test_dedup_on_ray_equals_local(tmp_path, ray_cluster, distilled):
    cache_folder, _ = distilled
    [static] = cache_folder.glob("static-minilm-*")
    src = corpus(tmp_path / "in.jsonl")
    for engine in ("local", "ray"):
        succeed("dedup", "--input", src, "--output", tmp_path / engine, "--engine", engine,
               "--method", "exact,minhash,rouge,embedding", "--minhash-threshold", "0.6", "--embedder", static,
               "--embedding-threshold", "0.95", "--vector-cache", tmp_path / f"{engine}.sqlite")
    local, ray = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert local == ray
    methods = {json.loads(line)["method"] for line in ray[1].splitlines()}
    assert methods == {"exact", "minhash", "rouge", "embedding"} or {"exact", "minhash"} <= methods
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["removed_by_method"]["exact"] == 60
    assert manifest["removed_by_method"]["minhash"] > 20
