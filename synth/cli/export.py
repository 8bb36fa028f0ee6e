"""`synth export`: a run (or any dataset in a known format) to a trainer's format, with a dataset card."""

from __future__ import annotations

from pathlib import Path

import click

from synth.export.formats import FORMATS
from synth.export.writers import ExportOptions, export_dataset


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
    opts = ExportOptions(fmt, conversational=conversational, split=split, seed=seed, shuffle=shuffle,
                         system_prompt=system_prompt, max_rows=max_rows, license_id=license_id, private=private,
                         overwrite=overwrite)
    click.echo(export_dataset(source, dest, opts, warn=lambda message: click.echo(message, err=True)))
