"""What tokens cost: a small editable price table (USD per million tokens) and token estimates."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from synth.backends import ModelSpec, parse_spec
from synth.backends.base import ChatRequest
from synth.errors import SynthError

DEFAULT_PRICES = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


FREE = Price(0.0, 0.0)


def load_prices(path: str | Path | None = None) -> dict[str, Price]:
    import yaml

    path = Path(path or os.environ.get("SYNTH_PRICES") or DEFAULT_PRICES)
    try:
        table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SynthError(f"{path}: no such price table") from None
    except yaml.YAMLError as exc:
        raise SynthError(f"{path}: not valid YAML ({exc})") from None
    prices = {}
    for model, entry in table.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), (int, float)) for k in ("input", "output")):
            raise SynthError(f"{path}: '{model}' needs numeric 'input' and 'output' (USD per million tokens)")
        prices[str(model)] = Price(float(entry["input"]), float(entry["output"]))
    return prices


def price_for(spec: str | ModelSpec, prices: dict[str, Price]) -> Price | None:
    """The model's price; FREE for local models; None when unknown."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind != "openai":
        return FREE
    return prices.get(parsed.target)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """About 4 characters a token for English, plus a few tokens of chat framing per message."""
    return sum(len(m["content"]) // 4 + 4 for m in request.messages) + 3


def worst_case_tokens(request: ChatRequest) -> tuple[int, int]:
    """(prompt, completion) tokens a request can cost at most, for reserving spend before it is sent.
    A token spans at least one UTF-8 byte, so bytes bound the prompt; the reply is bounded by
    max_tokens (one token for a judge's letter)."""
    prompt = sum(len(m["content"].encode("utf-8")) + 8 for m in request.messages) + 8
    return prompt, 1 if request.choices is not None else request.sampling.max_tokens
