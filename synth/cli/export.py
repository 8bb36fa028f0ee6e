"""`synth export`: a run (or any dataset in a known format) to a trainer's format, with a dataset card."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import click

from synth.errors import SynthError
from synth.export.formats import FORMATS, PREFERENCE_FORMATS


def input_rows(source: Path, fmt: str) -> list[tuple[dict, str]]:
    """[(row, 'file line N')] from a run folder (its preference or SFT view, or its rows) or a file."""
    from synth.corpus import read_corpus

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

            from synth.corpus import uniform_rows

            datasets.Dataset.from_list(uniform_rows(rows)).to_parquet(str(path))
        written[split] = path.name
    return written


def place_card(folder: Path, name: str, overwrite: bool) -> tuple[Path, str | None]:
    """(where the card goes, a note when that is not README.md). synth export never replaces a
    README.md it did not write, nor the card of another export into the same folder: the card
    then goes to NAME.README.md beside the data."""
    from synth.export.card import synth_card

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
    from synth.export.card import card_data_files, synth_card

    if overwrite:
        return
    ours = card_data_files(synth_card(folder / "README.md")) | card_data_files(synth_card(folder / f"{name}.README.md"))
    for path in paths:
        if path.exists() and path.name not in ours:
            raise SynthError(f"--to: {path} exists and was not written by synth export; give --overwrite to replace "
                             "it, or choose another --to")


def check_folder_not_foreign(folder: Path, overwrite: bool) -> None:
    """A folder destination (HF save_to_disk) that exists with content must be an earlier export's."""
    from synth.export.card import synth_card

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

    from synth.corpus import uniform_rows

    return datasets.DatasetDict({k: datasets.Dataset.from_list(uniform_rows(v)) for k, v in splits.items()})


def push_to_hub(repo: str, splits: dict[str, list[dict]], card: str, stage: Path, private: bool) -> None:
    """Stage the upload (one parquet file per split and the card, as the Hub lays datasets out),
    then upload the folder; offline or unauthenticated is a clear error, and the stage is kept."""
    import os

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


@click.command(name="export")
@click.option("--input", "source", required=True, type=click.Path(path_type=Path),
              help="A run folder (its preference/SFT view or rows) or a JSONL/Parquet/HF dataset in any supported shape.")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="The trainer format to write.")
@click.option("--to", "dest", required=True,
              help="out.jsonl, out.parquet, a folder (HF save_to_disk), or hub:ORG/NAME (push to the Hub).")
@click.option("--conversational", is_flag=True, help="dpo/kto/reward: prompt and replies as message lists (TRL conversational).")
@click.option("--split", help="Hold out a split, e.g. test=0.05 (rows drawn with --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --split and --shuffle.")
@click.option("--shuffle", is_flag=True, help="Shuffle the rows (with --seed).")
@click.option("--system-prompt", help="Add this system message to every conversation that has none.")
@click.option("--max-rows", type=click.IntRange(1), help="Export at most this many rows (after shuffling).")
@click.option("--license", "license_id", default="other", show_default=True, help="License id for the dataset card.")
@click.option("--private", is_flag=True, help="hub: create the dataset repository as private.")
@click.option("--overwrite", is_flag=True,
              help="Replace files at --to (and a README.md there) that synth export did not write.  [default: refuse]")
def export_command(source, fmt, dest, conversational, split, seed, shuffle, system_prompt, max_rows, license_id, private,
                   overwrite):
    """Write a dataset that TRL, Axolotl, LLaMA-Factory, OpenRLHF or the OpenAI API reads as is.

    \b
    Examples:
      synth export --input outputs/critique-revise-1 --format dpo --to dpo.jsonl --split test=0.05
      synth export --input outputs/critique-revise-1 --format sft-messages --to sft/
      synth export --input alpaca.jsonl --format sharegpt --to sharegpt.jsonl
      synth export --input outputs/label-1 --format dpo --conversational --to hub:me/my-prefs

    \b
    Formats:
      sft-messages           {"messages": [{"role", "content"}]}       (TRL conversational)
      sft-prompt-completion  {"prompt", "completion"}                   (TRL prompt-completion)
      alpaca                 {"instruction", "input", "output", "system", "history"}  (LLaMA-Factory, Axolotl)
      sharegpt               {"conversations": [{"from", "value"}], "system"}         (LLaMA-Factory, Axolotl)
      openai-chat            {"messages": [...]}                        (OpenAI fine-tuning JSONL)
      dpo                    {"prompt", "chosen", "rejected"}           (TRL DPO, OpenRLHF)
      kto                    {"prompt", "completion", "label"}          (TRL KTO, unpaired)
      reward                 {"prompt", "chosen", "rejected", "margin"...}  (TRL RewardTrainer)

    Any supported shape converts to any format that can hold it; whatever a format cannot hold
    (a system prompt, earlier turns, a rejected reply, extra columns) is dropped with a warning
    naming it; so is a row with an empty prompt or reply (counted, and noted in the card).

    A README.md dataset card with Hub front matter is written beside the file (or inside the
    folder). synth export replaces only files an earlier synth export wrote: an existing data
    file of other origin needs --overwrite, and a README.md of other origin (or another
    export's card) is left alone, the card going to NAME.README.md instead.
    """
    from synth.corpus import cannot_write
    from synth.export.card import render_card, run_manifest
    from synth.export.formats import convert

    if dest.startswith("hub:") and "/" not in dest[4:]:
        raise SynthError(f"--to {dest}: give hub:ORG/NAME")
    target = None if dest.startswith("hub:") else Path(dest)
    if target is not None and target.suffix not in (".jsonl", ".parquet", ""):
        raise SynthError(f"--to {dest}: write .jsonl, .parquet, a folder (no suffix) or hub:ORG/NAME")
    source_rows = input_rows(source, fmt)
    if not source_rows:
        raise SynthError(f"{source}: no rows to export")
    rows, dropped = convert(source_rows, fmt, conversational, system_prompt)
    if dropped.empty:
        click.echo(f"warning: dropped {dropped.empty} row{'s' if dropped.empty != 1 else ''} with an empty prompt "
                   f"or reply (the first: {dropped.first_empty})", err=True)
        if not rows:
            raise SynthError(f"{source}: no rows to export: all {dropped.empty} have an empty prompt or reply")
    if shuffle:
        random.Random(seed).shuffle(rows)
    if max_rows:
        rows = rows[:max_rows]
    splits = split_rows(rows, split, seed)
    if dropped.counts:
        click.echo(f"warning: {fmt} cannot hold everything in {source}: dropped " + dropped.summary(), err=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    manifest = run_manifest(source)
    name = dest[4:].split("/")[-1] if target is None else (target.stem or target.name)
    sizes = {k: len(v) for k, v in splits.items()}
    if target is None:
        repo = dest[4:]
        card = render_card(name, fmt, conversational, sizes, {k: f"data/{k}.parquet" for k in splits}, columns, source,
                           manifest, license_id, dropped.summary(), dropped.empty)
        stage = Path(tempfile.mkdtemp(prefix="synth-hub-"))
        push_to_hub(repo, splits, card, stage, private)
        click.echo(f"export: {len(rows)} rows as {fmt} -> https://huggingface.co/datasets/{repo}")
        return
    # Everything that would replace a file is checked before anything is written.
    if target.suffix:
        folder = target.parent
        check_not_foreign(split_paths(target, list(splits)), folder, name, overwrite)
        card_path, card_note = place_card(folder, name, overwrite)
    else:
        folder = target
        check_folder_not_foreign(target, overwrite)
        card_path, card_note = target / "README.md", None
    try:
        if target.suffix:
            folder.mkdir(parents=True, exist_ok=True)
            files = write_files(splits, target)
            where = ", ".join(str(folder / f) for f in files.values())
        else:
            dataset_dict(splits).save_to_disk(str(target))
            files, where = None, str(target)
        card_path.write_text(render_card(name, fmt, conversational, sizes, files, columns, source, manifest,
                                         license_id, dropped.summary(), dropped.empty), encoding="utf-8")
    except OSError as exc:
        raise cannot_write(target, exc, "--to") from None
    click.echo(f"export: {len(rows)} rows as {fmt} (" + ", ".join(f"{k} {v}" for k, v in sizes.items())
               + f") -> {where}\n  card: {card_path}" + (f" ({card_note})" if card_note else ""))
