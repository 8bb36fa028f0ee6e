"""A GGUF model run in-process by llama.cpp (llama-cpp-python): the `local` default.

Loads in a fraction of a second and generates on the CPU one request at a time (llama.cpp's
Python API has no batch of independent chats). Choice log-probabilities come from the logits of
the next token after the rendered chat prompt.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from synth.backends.base import ChatRequest, Completion, OnComplete, logsumexp
from synth.errors import BackendError
from synth.extras import require


class LlamaCppBackend:
    def __init__(self, path: str, spec: str | None = None, n_ctx: int = 4096, n_threads: int | None = None):
        self.spec = spec or f"llamacpp:{path}"
        require("local", "llama_cpp", what=f"the model `{self.spec}`")
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = Llama(
                model_path=path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, verbose=False
            )
        except ValueError as exc:
            raise BackendError(f"{self.spec}: llama.cpp can't load {path} ({exc}); is it a GGUF model file?") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "ignore")
            bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def __repr__(self) -> str:
        return f"LlamaCppBackend({self.spec!r})"

    def generate(
        self, requests: Sequence[ChatRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        results = []
        for index, request in enumerate(requests):
            completion = self._complete(request)
            results.append(completion)
            if on_complete is not None:
                on_complete(index, completion)
        return results

    def _complete(self, request: ChatRequest) -> Completion:
        s = request.sampling
        try:
            response = self.llm.create_chat_completion(
                messages=request.messages,
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=s.max_tokens,
                seed=request.seed,
            )
        except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window of 4096"
            return Completion("", "error", error=str(exc))
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=(choice["message"].get("content") or "").strip(),
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )

    def _prompt_tokens(self, request: ChatRequest) -> list[int]:
        if self._formatter is None:
            raise BackendError(f"{self.spec}: the GGUF file has no chat template to render a judge prompt with")
        prompt = self._formatter(messages=request.messages).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _choice_token_ids(self, choice: str) -> list[int]:
        ids = set()
        for spelling in (choice, " " + choice):
            tokens = self.llm.tokenize(spelling.encode("utf-8"), add_bos=False, special=False)
            if tokens:
                ids.add(tokens[0])
        return sorted(ids)

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | None]:
        import numpy as np

        token_ids = {c: self._choice_token_ids(c) for c in choices}
        results: list[dict[str, float] | None] = []
        for request in requests:
            tokens = self._prompt_tokens(request)
            self.llm.reset()
            self.llm.eval(tokens)
            # Without logits_all, llama.cpp keeps only the last token's logits, in the context.
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).astype(np.float64)
            top = logits.max()
            logprobs = logits - (top + math.log(np.exp(logits - top).sum()))
            results.append(
                {c: logsumexp([float(logprobs[t]) for t in ids]) if ids else -math.inf for c, ids in token_ids.items()}
            )
        return results

    def close(self) -> None:
        if hasattr(self.llm, "close"):
            self.llm.close()
