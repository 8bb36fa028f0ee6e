"""Proof by training: exported sft-messages and dpo files train with TRL's SFTTrainer and
DPOTrainer, on a tiny randomly initialised Llama and a word-level tokenizer built here (no download)."""

import json
import math

import pytest

from conftest import invoke

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.slow

PREFERENCES = [
    {"id": f"p{i}", "prompt": f"How do I keep basil plant number {i} alive?",
     "chosen": f"Water basil {i} when the soil is dry and give it sun.", "rejected": f"Basil {i} cannot be kept alive."}
    for i in range(6)
]
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }} : {{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant :{% endif %}")


def tiny_model_and_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(texts + ["system user assistant :"],
                             trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)

    def model():
        import torch

        torch.manual_seed(0)
        return LlamaForCausalLM(config)

    return model, tokenizer


def common_args(n_rows):
    # 2 steps whose batches together hold every row: the trainer sees each row once
    return dict(max_steps=2, per_device_train_batch_size=math.ceil(n_rows / 2), learning_rate=1e-3, report_to=[],
                save_strategy="no", logging_steps=1, use_cpu=True, dataloader_drop_last=False, seed=0)


def export(tmp_path, write_jsonl, fmt):
    out = tmp_path / f"{fmt}.jsonl"
    result = invoke(*["export", "--input", str(write_jsonl(PREFERENCES)), "--format", fmt,
                                       "--to", str(out)])
    assert result.exit_code == 0, result.output
    return out


def texts_of(path):
    return [json.dumps(json.loads(line)) for line in path.read_text().splitlines()]


def test_sft_messages_export_trains_with_sft_trainer(tmp_path, write_jsonl):
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    path = export(tmp_path, write_jsonl, "sft-messages")
    data = load_dataset("json", data_files=str(path), split="train")
    make_model, tokenizer = tiny_model_and_tokenizer(texts_of(path))
    trainer = SFTTrainer(model=make_model(), args=SFTConfig(output_dir=str(tmp_path / "sft"), max_length=128,
                                                            **common_args(len(data))),
                         train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    assert math.isfinite(result.training_loss) and trainer.state.global_step == 2
    assert len(trainer.train_dataset) == len(PREFERENCES)  # no row lost in TRL's preprocessing
    assert all(len(ids) > 10 for ids in trainer.train_dataset["input_ids"])


def test_dpo_export_trains_with_dpo_trainer(tmp_path, write_jsonl):
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer

    path = export(tmp_path, write_jsonl, "dpo")
    data = load_dataset("json", data_files=str(path), split="train")
    assert data.column_names == ["prompt", "chosen", "rejected"]
    make_model, tokenizer = tiny_model_and_tokenizer(texts_of(path))
    trainer = DPOTrainer(model=make_model(), ref_model=make_model(),
                         args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=128, **common_args(len(data))),
                         train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    assert math.isfinite(result.training_loss) and trainer.state.global_step == 2
    assert len(trainer.train_dataset) == len(PREFERENCES)
