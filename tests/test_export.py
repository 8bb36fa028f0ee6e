"""`synth export`: every format's shape, round trips, splits, the dataset card, the Hub path offline."""

import json

import pytest
import yaml

from synth.export.formats import FORMATS, convert
from conftest import invoke, read

PREFERENCES = [
    {"id": f"p{i}", "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Question {i}?"}],
     "chosen": [{"role": "assistant", "content": f"A careful answer {i}."}],
     "rejected": [{"role": "assistant", "content": f"A rude answer {i}."}], "margin": 0.5 + i / 10}
    for i in range(6)
]
ALPACA = [{"instruction": f"Name a colour number {i}.", "input": "" if i % 2 else "in French", "output": f"Rouge {i}"}
          for i in range(6)]


def run(*args):
    return invoke(*["export", *[str(a) for a in args]])



def card(path):
    text = path.read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_dpo_string_and_conversational_forms(tmp_path, write_jsonl):
    src = write_jsonl(PREFERENCES)
    assert run("--input", src, "--format", "dpo", "--to", tmp_path / "a" / "dpo.jsonl").exit_code == 0
    rows = read(tmp_path / "a" / "dpo.jsonl")
    assert rows[0] == {"prompt": "Question 0?", "chosen": "A careful answer 0.", "rejected": "A rude answer 0."}
    assert run("--input", src, "--format", "dpo", "--conversational", "--to", tmp_path / "b" / "dpo.jsonl").exit_code == 0
    rows = read(tmp_path / "b" / "dpo.jsonl")
    assert rows[0]["prompt"] == PREFERENCES[0]["prompt"] and rows[0]["chosen"] == PREFERENCES[0]["chosen"]


def test_each_format_has_the_documented_shape(write_jsonl):
    sft_rows = [(r, f"line {k}") for k, r in enumerate(ALPACA)]
    shapes = {
        "sft-messages": {"messages"}, "openai-chat": {"messages"}, "sft-prompt-completion": {"prompt", "completion"},
        "alpaca": {"instruction", "input", "output"}, "sharegpt": {"conversations"},
    }
    for fmt, keys in shapes.items():
        out, _ = convert(sft_rows, fmt)
        assert len(out) == len(ALPACA) and set(out[0]) == keys, fmt
    out, _ = convert(sft_rows, "sharegpt")
    assert out[0]["conversations"] == [{"from": "human", "value": "Name a colour number 0.\n\nin French"},
                                       {"from": "gpt", "value": "Rouge 0"}]
    pref = [(r, f"line {k}") for k, r in enumerate(PREFERENCES)]
    out, _ = convert(pref, "kto")
    assert len(out) == 12 and [r["label"] for r in out[:2]] == [True, False] and set(out[0]) == {"prompt", "completion", "label"}
    out, _ = convert(pref, "reward")
    assert out[0]["margin"] == 0.5 and {"prompt", "chosen", "rejected"} <= set(out[0])
    out, _ = convert(pref, "openai-chat")
    assert [m["role"] for m in out[0]["messages"]] == ["system", "user", "assistant"]


def test_round_trips_keep_what_the_target_holds(tmp_path, write_jsonl):
    """alpaca -> sharegpt -> sft-messages -> alpaca gives the rows back; dpo -> kto -> dpo too."""
    src = write_jsonl(ALPACA)
    steps = [("sharegpt", "a.jsonl"), ("sft-messages", "b.parquet"), ("openai-chat", "c"), ("alpaca", "d.jsonl")]
    current = src
    for fmt, name in steps:
        result = run("--input", current, "--format", fmt, "--to", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert "dropped" not in result.output, result.output
        current = tmp_path / name
    assert read(tmp_path / "d.jsonl") == [{"instruction": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""),
                                          "input": "", "output": r["output"]} for r in ALPACA]
    src = write_jsonl(PREFERENCES, "pref.jsonl")
    for fmt, name in (("kto", "k.jsonl"), ("dpo", "back.jsonl")):
        result = run("--input", src, "--format", fmt, "--conversational", "--to", tmp_path / name)
        assert result.exit_code == 0, result.output
        src = tmp_path / name
    assert read(tmp_path / "back.jsonl") == [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in PREFERENCES]


def test_lossy_conversions_warn_and_name_what_was_dropped(tmp_path, write_jsonl):
    result = run("--input", write_jsonl(PREFERENCES), "--format", "sft-prompt-completion", "--to", tmp_path / "x.jsonl")
    assert result.exit_code == 0
    for what in ("system prompt (6 rows)", "rejected reply (6 rows)", "preference scores (6 rows)", "column 'id' (6 rows)"):
        assert what in result.output
    assert len(read(tmp_path / "x.jsonl")) == 6


def test_split_shuffle_system_prompt_max_rows_and_card(tmp_path, write_jsonl):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "preference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PREFERENCES))
    (run_dir / "manifest.json").write_text(json.dumps({
        "command": "critique-revise", "models": {"local": {}}, "constitution": {"name": "harmless", "hash": "6a30f6ca07e5"},
        "counts": {"input": 7, "written": 6, "rejected": 1, "rejected_by_reason": {"leaking": 1}}}))
    out = tmp_path / "export" / "dpo.jsonl"
    result = run("--input", run_dir, "--format", "dpo", "--to", out, "--split", "test=0.34", "--shuffle", "--seed", "3",
                 "--system-prompt", "ignored: rows have one")
    assert result.exit_code == 0, result.output
    train, test = read(out.with_name("dpo-train.jsonl")), read(out.with_name("dpo-test.jsonl"))
    assert len(train) == 4 and len(test) == 2 and {r["prompt"] for r in train + test} == {f"Question {i}?" for i in range(6)}
    front, body = card(out.parent / "README.md")
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "dpo-train.jsonl"},
                                                 {"split": "test", "path": "dpo-test.jsonl"}]
    assert front["size_categories"] == ["n<1K"] and "dpo" in front["tags"] and front["license"] == "other"
    assert "critique-revise" in body and "harmless (hash 6a30f6ca07e5)" in body and "`local`" in body
    assert "leaking 1" in body and "`chosen`" in body
    result = run("--input", write_jsonl(ALPACA), "--format", "sft-messages", "--to", tmp_path / "folder",
                 "--system-prompt", "You are terse.", "--max-rows", "3")
    assert result.exit_code == 0, result.output
    import datasets

    data = datasets.load_from_disk(str(tmp_path / "folder"))
    assert len(data["train"]) == 3 and data["train"][0]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert (tmp_path / "folder" / "README.md").exists()


def test_hub_export_stages_the_upload_and_fails_clearly_offline(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("--input", write_jsonl(PREFERENCES), "--format", "dpo", "--to", "hub:someone/prefs", "--split", "test=0.5")
    assert result.exit_code != 0 and "HF_HUB_OFFLINE" in result.output and "staged in" in result.output
    stage = result.output.split("staged in ")[1].split()[0]
    import pathlib

    staged = pathlib.Path(stage)
    assert sorted(p.name for p in (staged / "data").iterdir()) == ["test.parquet", "train.parquet"]
    front, _ = card(staged / "README.md")
    assert front["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train.parquet"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    result = run("--input", write_jsonl(PREFERENCES, "p2.jsonl"), "--format", "dpo", "--to", "hub:someone/prefs")
    assert result.exit_code != 0 and "not logged in" in result.output and "huggingface-cli login" in result.output


def test_bad_input_is_a_clear_error(tmp_path, write_jsonl):
    result = run("--input", write_jsonl(ALPACA), "--format", "dpo", "--to", tmp_path / "x.jsonl")
    assert result.exit_code != 0 and "line 1" in result.output and "preference rows" in result.output
    result = run("--input", write_jsonl([{"text": "hi"}]), "--format", "alpaca", "--to", tmp_path / "x.jsonl")
    assert result.exit_code != 0 and "line 1" in result.output and "not a row synth can export" in result.output
    result = run("--input", write_jsonl(ALPACA), "--format", "alpaca", "--to", tmp_path / "x.csv")
    assert result.exit_code != 0 and ".jsonl, .parquet" in result.output
    result = run("--input", write_jsonl(ALPACA), "--format", "alpaca", "--to", tmp_path / "x.jsonl", "--split", "test=2")
    assert result.exit_code != 0 and "0 < FRACTION < 1" in result.output
    assert set(FORMATS) >= {"dpo", "kto", "reward", "alpaca", "sharegpt"}


# -- Axolotl / LLaMA-Factory documented shapes -------------------------------------------------

def test_alpaca_and_sharegpt_match_llama_factory_and_axolotl(tmp_path, write_jsonl):
    conversation = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                                  {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
                                  {"role": "assistant", "content": "A2"}]}]
    src = write_jsonl(conversation)
    assert run("--input", src, "--format", "alpaca", "--to", tmp_path / "alpaca.jsonl").exit_code == 0
    # LLaMA-Factory alpaca: instruction/input/output, optional system, history = [[user, assistant], ...]
    assert read(tmp_path / "alpaca.jsonl") == [{"instruction": "U2", "input": "", "output": "A2", "system": "S",
                                                "history": [["U1", "A1"]]}]
    assert run("--input", src, "--format", "sharegpt", "--to", tmp_path / "sharegpt.jsonl").exit_code == 0
    # sharegpt: conversations of {from: human|gpt, value}, alternating, starting with human; system apart
    row = read(tmp_path / "sharegpt.jsonl")[0]
    assert row["system"] == "S" and [t["from"] for t in row["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert all(set(t) == {"from", "value"} for t in row["conversations"])


def test_parquet_and_hf_forms_keep_keys_only_later_rows_have(tmp_path):
    # Dataset.from_list takes its columns from the first row alone; every writer goes through uniform_rows
    from synth.corpus import read_corpus, write_corpus

    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": "y", "score": 3}]
    for form in ("parquet", "hf"):
        written = write_corpus(rows, tmp_path / form, form)
        assert read_corpus(written)[0] == [{"id": "a", "text": "x", "score": None}, {"id": "b", "text": "y", "score": 3}]


# -- never replacing a file synth export did not write ------------------------------------------

def test_a_readme_synth_did_not_write_is_left_alone(tmp_path, write_jsonl, monkeypatch):
    src = write_jsonl(ALPACA)
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# My project\n")
    monkeypatch.chdir(project)
    result = run("--input", src, "--format", "sharegpt", "--to", "sharegpt.parquet")
    assert result.exit_code == 0, result.output
    assert (project / "README.md").read_text() == "# My project\n"
    assert "card: sharegpt.README.md (README.md was not written by synth export, so it was left alone" in result.output
    front, body = card(project / "sharegpt.README.md")
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "sharegpt.parquet"}]
    assert "<!-- written by synth export" in body
    again = run("--input", src, "--format", "sharegpt", "--to", "sharegpt.parquet", "--max-rows", "2")
    assert again.exit_code == 0, again.output  # its own data file and card: replaced without --overwrite
    assert (project / "README.md").read_text() == "# My project\n"
    result = run("--input", src, "--format", "sharegpt", "--to", "sharegpt.parquet", "--overwrite")
    assert result.exit_code == 0 and "card: README.md\n" in result.output + "\n", result.output
    assert "<!-- written by synth export" in (project / "README.md").read_text()


def test_a_data_file_synth_did_not_write_needs_overwrite(tmp_path, write_jsonl):
    src = write_jsonl(ALPACA)
    mine = tmp_path / "out" / "data.jsonl"
    mine.parent.mkdir()
    mine.write_text('{"mine": 1}\n')
    result = run("--input", src, "--format", "alpaca", "--to", mine)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"--to: {mine} exists and was not written by synth export; give --overwrite to replace it" in result.output
    assert mine.read_text() == '{"mine": 1}\n' and not (mine.parent / "README.md").exists()
    result = run("--input", src, "--format", "alpaca", "--to", mine, "--overwrite")
    assert result.exit_code == 0 and len(read(mine)) == 6, result.output
    # the same for a split file, and for a folder destination holding someone else's files
    train, test = mine.with_name("data-train.jsonl"), mine.with_name("data-test.jsonl")
    test.write_text("{}\n")
    result = run("--input", src, "--format", "alpaca", "--to", mine, "--split", "test=0.5")
    assert result.exit_code == 2 and f"--to: {test} exists and was not written by synth export" in result.output
    result = run("--input", src, "--format", "alpaca", "--to", mine, "--split", "test=0.5", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read(train)) == 3 and len(read(test)) == 3
    # written by synth export now (its card lists them): a re-export replaces them without --overwrite
    result = run("--input", src, "--format", "alpaca", "--to", mine, "--split", "test=0.5", "--max-rows", "4")
    assert result.exit_code == 0, result.output
    assert len(read(train)) == 2 and len(read(test)) == 2
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    result = run("--input", src, "--format", "alpaca", "--to", folder)
    assert result.exit_code == 2 and "files that synth export did not write; give --overwrite" in result.output
    assert run("--input", src, "--format", "alpaca", "--to", folder, "--overwrite").exit_code == 0
    assert run("--input", src, "--format", "alpaca", "--to", folder).exit_code == 0  # ours now


def test_two_exports_into_one_folder_keep_both_cards(tmp_path, write_jsonl):
    out = tmp_path / "out"
    sft = run("--input", write_jsonl(PREFERENCES), "--format", "sft-messages", "--to", out / "sft.jsonl")
    dpo = run("--input", write_jsonl(PREFERENCES), "--format", "dpo", "--to", out / "dpo.jsonl")
    assert sft.exit_code == 0 and dpo.exit_code == 0, sft.output + dpo.output
    assert "README.md is the card of another export" in dpo.output
    assert card(out / "README.md")[0]["pretty_name"] == "sft" and card(out / "dpo.README.md")[0]["pretty_name"] == "dpo"
    for fmt, name in (("sft-messages", "sft.jsonl"), ("dpo", "dpo.jsonl")):  # each re-export finds its own files
        result = run("--input", write_jsonl(PREFERENCES), "--format", fmt, "--to", out / name)
        assert result.exit_code == 0, result.output


# -- empty prompts and replies ------------------------------------------------------------------

def test_rows_with_an_empty_prompt_or_reply_are_dropped_and_counted(tmp_path, write_jsonl):
    prefs = PREFERENCES[:3] + [
        {**PREFERENCES[3], "prompt": [{"role": "user", "content": "  "}]},
        {**PREFERENCES[4], "chosen": "\n"},
        {**PREFERENCES[5], "rejected": [{"role": "assistant", "content": ""}]},
    ]
    out = tmp_path / "dpo" / "dpo.jsonl"
    result = run("--input", write_jsonl(prefs), "--format", "dpo", "--to", out)
    assert result.exit_code == 0, result.output
    assert "dropped 3 rows with an empty prompt or reply (the first: " in result.output and "line 4)" in result.output
    assert len(read(out)) == 3
    _, body = card(out.parent / "README.md")
    assert "Dropped on export: 3 rows with an empty prompt or reply" in body
    # SFT keeps the chosen side only: an empty rejected reply costs nothing there
    out = tmp_path / "sft" / "sft.jsonl"
    assert "dropped 2 rows" in run("--input", write_jsonl(prefs), "--format", "sft-messages", "--to", out).output
    sft = [{"prompt": "Hi", "completion": "Hello"}, {"prompt": "", "completion": "x"}, {"prompt": "Q", "response": " "},
           {"instruction": " ", "input": "", "output": "y"}, {"messages": [{"role": "user", "content": "U"},
                                                                         {"role": "assistant", "content": ""}]}]
    for fmt in ("sft-messages", "sft-prompt-completion", "alpaca", "sharegpt", "openai-chat"):
        out = tmp_path / fmt / "x.jsonl"
        result = run("--input", write_jsonl(sft, "sft.jsonl"), "--format", fmt, "--to", out)
        assert result.exit_code == 0 and "dropped 4 rows with an empty prompt or reply" in result.output, result.output
        assert len(read(out)) == 1
    kto = [{"prompt": "P", "completion": "good", "label": True}, {"prompt": "P", "completion": "", "label": False}]
    result = run("--input", write_jsonl(kto, "kto.jsonl"), "--format", "kto", "--to", tmp_path / "k.jsonl")
    assert "dropped 1 row with an empty prompt or reply" in result.output
    result = run("--input", write_jsonl(sft[1:], "empty.jsonl"), "--format", "alpaca", "--to", tmp_path / "e.jsonl")
    assert result.exit_code == 2 and "no rows to export: all 4 have an empty prompt or reply" in result.output
