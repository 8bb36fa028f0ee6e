"""A local transformers model: a model folder, a hub id already in the local cache, or a GGUF file.

Batched generation with left padding (the model's own chat template renders the prompt); requests
are sorted by prompt length before batching so a batch wastes little on padding. Choice
log-probabilities come from the next-token logits. Nothing is downloaded: loading is always
`local_files_only`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from synth.backends.base import ChatRequest, Completion, OnComplete, logsumexp
from synth.errors import BackendError
from synth.extras import require


class TransformersBackend:
    def __init__(self, path: str, batch_size: int = 8, device: str = "cpu", spec: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.spec = spec or f"hf:{path}"
        torch, _ = require("local", "torch", "transformers", what=f"the model `{self.spec}`")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.batch_size = max(1, batch_size)
        self.device = device
        self._torch = torch
        target = Path(path).expanduser()
        kwargs: dict = {"local_files_only": True}
        if target.suffix == ".gguf":
            if not target.is_file():
                raise BackendError(f"{self.spec}: no GGUF file at {target}")
            # transformers dequantizes GGUF weights on load (slow, tens of seconds).
            kwargs["gguf_file"] = target.name
            source = str(target.parent)
        else:
            source = str(target) if target.exists() else path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
        except OSError as exc:
            raise BackendError(
                f"{self.spec}: can't load a model from {path} ({str(exc).splitlines()[0]}); "
                "give a local model folder, a .gguf file, or a hub id already in the local cache "
                "(nothing is downloaded)"
            ) from None
        self.model.to(device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}

    def __repr__(self) -> str:
        return f"TransformersBackend({self.spec!r}, batch_size={self.batch_size})"

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        text = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _batches(self, requests: Sequence[ChatRequest]):
        """Groups of (original index, prompt ids) with the same sampling, similar lengths together."""
        encoded = [(i, self._prompt_ids(r)) for i, r in enumerate(requests)]
        encoded.sort(key=lambda item: (repr(requests[item[0]].sampling), len(item[1])))
        group: list[tuple[int, list[int]]] = []
        for item in encoded:
            if group and (
                len(group) == self.batch_size or requests[group[0][0]].sampling != requests[item[0]].sampling
            ):
                yield group
                group = []
            group.append(item)
        if group:
            yield group

    def _pad(self, prompts: list[list[int]]):
        torch = self._torch
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        return ids, mask

    def generate(
        self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        torch = self._torch
        results: list[Completion | None] = [None] * len(requests)
        for group in self._batches(requests):
            sampling = requests[group[0][0]].sampling
            ids, mask = self._pad([p for _, p in group])
            seed = requests[group[0][0]].seed
            if seed is not None:
                torch.manual_seed(seed)
            sample = sampling.temperature > 0
            extra = {"temperature": sampling.temperature, "top_p": sampling.top_p} if sample else {}
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=sampling.max_tokens,
                    do_sample=sample,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **extra,
                )
            for row, (index, prompt) in enumerate(group):
                new = out[row, ids.shape[1]:].tolist()
                stopped = next((k for k, t in enumerate(new) if t in self._stop_ids), None)
                kept = new if stopped is None else new[:stopped]
                completion = Completion(
                    text=self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    finish_reason="length" if stopped is None and len(new) >= sampling.max_tokens else "stop",
                    prompt_tokens=len(prompt),
                    completion_tokens=len(kept) + (0 if stopped is None else 1),
                )
                results[index] = completion
                if on_complete is not None:
                    on_complete(index, completion)
        return results  # type: ignore[return-value]

    def _choice_token_ids(self, choice: str) -> list[int]:
        ids = set()
        for spelling in (choice, " " + choice):
            encoded = self.tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if encoded:
                ids.add(encoded[0])
        return sorted(ids)

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | None]:
        torch = self._torch
        token_ids = {c: self._choice_token_ids(c) for c in choices}
        results: list[dict[str, float] | None] = [None] * len(requests)
        for group in self._batches(requests):
            ids, mask = self._pad([p for _, p in group])
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, (index, _) in enumerate(group):
                results[index] = {
                    c: logsumexp([logprobs[row, t].item() for t in token_ids[c]]) if token_ids[c] else -math.inf
                    for c in choices
                }
        return results

    def close(self) -> None:
        pass
