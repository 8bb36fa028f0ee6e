"""`synth export`'s writing: rows in a trainer's format to files, a dataset folder or the Hub.

`export_dataset` reads a run folder (its preference or SFT view, or its rows) or a data file,
converts the rows (`synth.export.formats`), draws a held-out split, and writes each split as
JSONL or Parquet (DEST, or DEST-SPLIT with several splits), as an HF dataset folder
(save_to_disk), or stages and uploads it to a Hub dataset repository; a README.md dataset card
(`synth.export.card`) goes beside the data. It replaces only files an earlier synth export
wrote: everything that would replace a file is checked before anything is written.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from synth.corpus import cannot_write, read_corpus, uniform_rows
from synth.errors import SynthError
from synth.export.card import card_data_files, render_card, run_manifest, synth_card
from synth.export.formats import PREFERENCE_FORMATS, Dropped, convert

Card = Callable[[dict[str, str] | None], str]  # the card text, given {split: data file} (None: a dataset folder)


@dataclass
class ExportOptions:
    fmt: str
    conversational: bool = False
    split: str | None = None  # NAME=FRACTION to hold out
    seed: int = 0
    shuffle: bool = False
    system_prompt: str | None = None
    max_rows: int | None = None
    license_id: str = "other"
    private: bool = False  # a Hub repository created private
    overwrite: bool = False  # replace files (and a README.md) synth export did not write


def export_dataset(source: Path, dest: str, opts: ExportOptions, warn: Callable[[str], None]) -> str:
    """Export `source` to `dest` (a .jsonl/.parquet file, a folder, or hub:ORG/NAME); the summary.
    Warnings (rows or fields a format cannot hold) go to `warn` as they arise."""
    target = destination(dest)
    rows, dropped = export_rows(source, opts, warn)
    splits = split_rows(rows, opts.split, opts.seed)
    if dropped.counts:
        warn(f"warning: {opts.fmt} cannot hold everything in {source}: dropped " + dropped.summary())
    columns = list(dict.fromkeys(k for row in rows for k in row))
    manifest = run_manifest(source)
    name = dest[4:].split("/")[-1] if target is None else (target.stem or target.name)
    sizes = {k: len(v) for k, v in splits.items()}

    def card(files: dict[str, str] | None) -> str:
        return render_card(name, opts.fmt, opts.conversational, sizes, files, columns, source, manifest,
                           opts.license_id, dropped.summary(), dropped.empty)

    if target is None:
        repo = dest[4:]
        push_to_hub(repo, splits, card({k: f"data/{k}.parquet" for k in splits}),
                    Path(tempfile.mkdtemp(prefix="synth-hub-")), opts.private)
        return f"export: {len(rows)} rows as {opts.fmt} -> https://huggingface.co/datasets/{repo}"
    where, card_path, card_note = write_export(target, splits, card, name, opts.overwrite)
    return (f"export: {len(rows)} rows as {opts.fmt} (" + ", ".join(f"{k} {v}" for k, v in sizes.items())
            + f") -> {where}\n  card: {card_path}" + (f" ({card_note})" if card_note else ""))


def destination(dest: str) -> Path | None:
    """The file or folder `dest` names, or None for hub:ORG/NAME; an error for anything else."""
    if dest.startswith("hub:") and "/" not in dest[4:]:
        raise SynthError(f"--to {dest}: give hub:ORG/NAME")
    target = None if dest.startswith("hub:") else Path(dest)
    if target is not None and target.suffix not in (".jsonl", ".parquet", ""):
        raise SynthError(f"--to {dest}: write .jsonl, .parquet, a folder (no suffix) or hub:ORG/NAME")
    return target


def export_rows(source: Path, opts: ExportOptions, warn: Callable[[str], None]) -> tuple[list[dict], Dropped]:
    """The rows converted to opts.fmt, shuffled and cut to opts.max_rows, and what was dropped."""
    source_rows = input_rows(source, opts.fmt)
    if not source_rows:
        raise SynthError(f"{source}: no rows to export")
    rows, dropped = convert(source_rows, opts.fmt, opts.conversational, opts.system_prompt)
    if dropped.empty:
        warn(f"warning: dropped {dropped.empty} row{'s' if dropped.empty != 1 else ''} with an empty prompt "
             f"or reply (the first: {dropped.first_empty})")
        if not rows:
            raise SynthError(f"{source}: no rows to export: all {dropped.empty} have an empty prompt or reply")
    if opts.shuffle:
        random.Random(opts.seed).shuffle(rows)
    if opts.max_rows:
        rows = rows[:opts.max_rows]
    return rows, dropped


def input_rows(source: Path, fmt: str) -> list[tuple[dict, str]]:
    """[(row, 'file line N')] from a run folder (its preference or SFT view, or its rows) or a file."""
    if source.is_dir() and not (source / "dataset_info.json").exists() and not (source / "dataset_dict.json").exists():
        views = ["preference.jsonl", "rows.jsonl"] if fmt in PREFERENCE_FORMATS else ["sft.jsonl", "rows.jsonl"]
        views += ["rows.parquet", "dataset"]
        found = next((source / v for v in views if (source / v).exists()), None)
        if found is None:
            raise SynthError(f"{source}: a folder with none of {', '.join(views)}; give a run folder or a data file")
        source = found
    rows, lines, _ = read_corpus(source)
    return [(row, f"{source} line {line}") for row, line in zip(rows, lines)]


def split_rows(rows: list[dict], split: str | None, seed: int) -> dict[str, list[dict]]:
    if not split:
        return {"train": rows}
    name, _, share = split.partition("=")
    try:
        fraction = float(share)
    except ValueError:
        fraction = -1.0
    if not name or not 0 < fraction < 1:
        raise SynthError(f"--split {split}: give NAME=FRACTION with 0 < FRACTION < 1, e.g. test=0.05")
    held = set(random.Random(seed).sample(range(len(rows)), max(1, round(len(rows) * fraction)) if rows else 0))
    return {"train": [r for k, r in enumerate(rows) if k not in held], name: [r for k, r in enumerate(rows) if k in held]}


def write_export(target: Path, splits: dict[str, list[dict]], card: Card, name: str,
                 overwrite: bool) -> tuple[str, Path, str | None]:
    """Write the splits and their card to a file destination or a dataset folder, after checking
    that nothing it replaces is foreign; (where the data went, the card's path, a note on it)."""
    if target.suffix:
        check_not_foreign(split_paths(target, list(splits)), target.parent, name, overwrite)
        card_path, card_note = place_card(target.parent, name, overwrite)
    else:
        check_folder_not_foreign(target, overwrite)
        card_path, card_note = target / "README.md", None
    try:
        if target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            files = write_files(splits, target)
            where = ", ".join(str(target.parent / f) for f in files.values())
        else:
            dataset_dict(splits).save_to_disk(str(target))
            files, where = None, str(target)
        card_path.write_text(card(files), encoding="utf-8")
    except OSError as exc:
        raise cannot_write(target, exc, "--to") from None
    return where, card_path, card_note


def split_paths(dest: Path, split_names: list[str]) -> list[Path]:
    """The data file of each split: DEST, or DEST-SPLIT with several splits."""
    if len(split_names) == 1:
        return [dest]
    return [dest.with_name(f"{dest.stem}-{split}{dest.suffix}") for split in split_names]


def write_files(splits: dict[str, list[dict]], dest: Path) -> dict[str, str]:
    """Each split to a .jsonl or .parquet file (DEST, or DEST-SPLIT with several splits); {split: file name}."""
    written = {}
    for (split, rows), path in zip(splits.items(), split_paths(dest, list(splits))):
        if dest.suffix == ".jsonl":
            with path.open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            import datasets

            datasets.Dataset.from_list(uniform_rows(rows)).to_parquet(str(path))
        written[split] = path.name
    return written


def place_card(folder: Path, name: str, overwrite: bool) -> tuple[Path, str | None]:
    """(where the card goes, a note when that is not README.md). synth export never replaces a
    README.md it did not write, nor the card of another export into the same folder: the card
    then goes to NAME.README.md beside the data."""
    readme = folder / "README.md"
    if not readme.exists() or overwrite:
        return readme, None
    front = synth_card(readme)
    if front is not None and front.get("pretty_name", name) == name:
        return readme, None  # our own card of this same export: redo it
    other = folder / f"{name}.README.md"
    if other.exists() and synth_card(other) is None:
        raise SynthError(f"--to: {readme} and {other} exist and were not written by synth export; give --overwrite "
                         f"to replace {readme}, or export to another folder")
    why = "is the card of another export" if front is not None else "was not written by synth export"
    return other, f"{readme} {why}, so it was left alone; --overwrite replaces it"


def check_not_foreign(paths: list[Path], folder: Path, name: str, overwrite: bool) -> None:
    """An existing data file may be replaced only if a synth card beside it lists it (an earlier
    export wrote it), or with --overwrite."""
    if overwrite:
        return
    ours = card_data_files(synth_card(folder / "README.md")) | card_data_files(synth_card(folder / f"{name}.README.md"))
    for path in paths:
        if path.exists() and path.name not in ours:
            raise SynthError(f"--to: {path} exists and was not written by synth export; give --overwrite to replace "
                             "it, or choose another --to")


def check_folder_not_foreign(folder: Path, overwrite: bool) -> None:
    """A folder destination (HF save_to_disk) that exists with content must be an earlier export's."""
    if overwrite or not folder.exists():
        return
    if not folder.is_dir():
        raise SynthError(f"--to: {folder} is a file, and a --to without a suffix is a folder; give --to {folder}.jsonl "
                         "or .parquet, or --overwrite to replace the file")
    if any(folder.iterdir()) and synth_card(folder / "README.md") is None:
        raise SynthError(f"--to: {folder} is a folder with files that synth export did not write; give --overwrite "
                         "to write the dataset into it anyway, or choose another --to")


def dataset_dict(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({k: datasets.Dataset.from_list(uniform_rows(v)) for k, v in splits.items()})


def push_to_hub(repo: str, splits: dict[str, list[dict]], card: str, stage: Path, private: bool) -> None:
    """Stage the upload (one parquet file per split and the card, as the Hub lays datasets out),
    then upload the folder; offline or unauthenticated is a clear error, and the stage is kept."""
    from huggingface_hub import HfApi, get_token

    stage.mkdir(parents=True, exist_ok=True)
    (stage / "data").mkdir(exist_ok=True)
    for split, rows in splits.items():
        write_files({split: rows}, stage / "data" / f"{split}.parquet")
    (stage / "README.md").write_text(card, encoding="utf-8")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise SynthError(f"hub:{repo}: HF_HUB_OFFLINE is set, so nothing was uploaded; the upload is staged in "
                         f"{stage} (unset HF_HUB_OFFLINE and run again, or upload that folder yourself)")
    token = get_token()
    if not token:
        raise SynthError(f"hub:{repo}: not logged in to the Hugging Face Hub; run `huggingface-cli login` or set "
                         f"HF_TOKEN (the upload is staged in {stage})")
    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(stage),
                          commit_message="synth export")
    except Exception as exc:  # network, permission, bad name: all end here with the stage kept
        raise SynthError(f"hub:{repo}: upload failed ({type(exc).__name__}: {str(exc)[:200]}); the upload is "
                         f"staged in {stage}") from None
