"""Files a user gets wrong: the wrong kind of file, the wrong encoding, a place that can't be written.

Each is one line naming the file and the fix, exit code 2, and never a traceback.
"""

import json

import pytest

from conftest import invoke

RECIPE = """name: tiny
input: prompts.jsonl
steps:
  - step: generate
    model: scripted:echo
"""


def fails(*args, code=2):
    result = invoke(*[str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None))), result.output
    return result.output


def generate(path, tmp_path):
    return fails("generate", "--input", path, "--model", "scripted:echo", "--output", tmp_path / "run")


def parquet(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


# -- the wrong kind of file for a command that reads JSONL ---------------------------------------

def test_a_parquet_file_is_named_as_such_with_a_conversion(tmp_path):
    path = parquet(tmp_path / "data.parquet", [{"prompt": "hi"}])
    msg = generate(path, tmp_path)
    assert "data.parquet: a Parquet file, but this command reads JSONL (one JSON object per line)" in msg
    assert "pd.read_parquet" in msg and "data.jsonl" in msg and "not valid JSON" not in msg
    # by its magic bytes too, whatever it is called
    renamed = tmp_path / "data.jsonl"
    renamed.write_bytes(path.read_bytes())
    msg = generate(renamed, tmp_path)
    assert "data.jsonl: a Parquet file" in msg and "not valid JSON" not in msg


def test_a_csv_file_is_named_as_such_with_a_conversion(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\nhello\n")
    msg = generate(path, tmp_path)
    assert "prompts.csv: a CSV file, but this command reads JSONL" in msg and "pd.read_csv('" in msg
    assert "prompts.jsonl" in msg and "not valid JSON" not in msg
    # a command that reads corpora says what it reads
    msg = fails("dedup", "--input", path, "--output", tmp_path / "dedup", "--method", "exact")
    assert "prompts.csv: a CSV file, but this command reads JSONL (one JSON object per line), Parquet" in msg


def test_binary_and_utf16_files(tmp_path):
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x00\x01\x02garbage")
    assert "blob.jsonl: a binary file, but this command reads JSONL" in generate(binary, tmp_path)
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text('{"prompt": "hi"}\n', encoding="utf-16")
    assert "utf16.jsonl: UTF-16 text, but synth reads UTF-8; re-save it as UTF-8" in generate(utf16, tmp_path)


def test_a_parquet_corpus_under_another_name_is_read_as_parquet(tmp_path):
    from synth.corpus import read_corpus

    path = tmp_path / "rows.jsonl"
    path.write_bytes(parquet(tmp_path / "x.parquet", [{"text": "a"}, {"text": "b"}]).read_bytes())
    assert read_corpus(path)[0] == [{"text": "a"}, {"text": "b"}]


# -- encodings -----------------------------------------------------------------------------------

def test_a_recipe_not_in_utf8_is_one_line_naming_the_line_and_the_fix(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    path = tmp_path / "recipe.yaml"
    path.write_bytes(RECIPE.replace("name: tiny", "name: tiny\ndescription: café").encode("latin-1"))
    msg = fails("run", path, "--output", tmp_path / "out")
    assert f"{path} line 2: not valid UTF-8 (byte 17 of the line, 0xe9); re-save it as UTF-8" in msg


# -- places that can't be written ---------------------------------------------------------------

def locked_folder(tmp_path):
    """A folder this process may not write in; skipped where permissions don't bind (root, CAP_DAC_OVERRIDE)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        (locked / "probe").write_text("")
    except PermissionError:
        return locked
    pytest.skip("this process writes through chmod (root); the file-under-a-file tests cover it")


def a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("not a folder\n")
    return path


def a_recipe(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path / "recipe.yaml"


def test_run_output_under_a_file_is_one_line(tmp_path):
    recipe = a_recipe(tmp_path)
    blocker = a_file(tmp_path)
    msg = fails("run", recipe, "--output", blocker / "sub")
    assert f"cannot write to {blocker / 'sub'}: {blocker} is a file, not a folder; choose another --output" in msg
    msg = fails("run", recipe, "--output", blocker)
    assert f"cannot write to {blocker}: {blocker} is a file, not a folder; choose another --output" in msg


def test_run_output_without_permission_is_one_line(tmp_path):
    recipe = a_recipe(tmp_path)
    locked = locked_folder(tmp_path)
    msg = fails("run", recipe, "--output", locked / "out")
    assert f"cannot write to {locked / 'out'}: permission denied; choose another --output" in msg


def test_export_under_a_file_is_one_line(tmp_path, write_jsonl):
    src = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    blocker = a_file(tmp_path)
    for dest in (blocker / "out.jsonl", blocker / "sub" / "out.parquet", blocker / "folder"):
        msg = fails("export", "--input", src, "--format", "sft-messages", "--to", dest)
        assert f"cannot write to {dest}: {blocker} is a file, not a folder; choose another --to" in msg, msg


def test_export_permission_denied_is_one_line(tmp_path, write_jsonl, monkeypatch):
    import synth.export.writers

    src = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    dest = tmp_path / "out" / "sft.jsonl"

    def refuse(splits, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(synth.export.writers, "write_files", refuse)  # as root, chmod would not refuse
    msg = fails("export", "--input", src, "--format", "sft-messages", "--to", dest)
    assert f"cannot write to {dest}: permission denied; choose another --to" in msg


def test_export_to_a_locked_folder_is_one_line(tmp_path, write_jsonl):
    src = write_jsonl([{"prompt": "hi", "completion": "hello"}])
    locked = locked_folder(tmp_path)
    msg = fails("export", "--input", src, "--format", "sft-messages", "--to", locked / "sft.jsonl")
    assert f"cannot write to {locked / 'sft.jsonl'}: permission denied; choose another --to" in msg


def test_rows_still_read_after_these_checks(tmp_path, write_jsonl):
    # the checks look at the suffix and the first bytes only: ordinary JSONL and .txt read as before
    out = tmp_path / "run"
    result = invoke(*["generate", "--input", str(write_jsonl([{"prompt": "hi"}])), "--model",
                                       "scripted:echo", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "rows.jsonl").read_text().splitlines()[0])["response"] == "echo: hi"
