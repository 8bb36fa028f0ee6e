"""What a run would send, told before anything is sent: the estimate every `--dry-run` prints.

Each command counts its own work (requests per row, prompt sizes, token limits); this module
turns those counts into one text block of the same shape for every command:

    label (dry run, no model called): 3 prompts, 9 comparisons, 18 judge calls (both orders)
      about 2,345 prompt tokens; at most 18 completion tokens
      cost with openai:gpt-4o-mini: about $0.0004 for prompts, at most $0.0004 in all
"""

from __future__ import annotations

from typing import Mapping

from synth.backends.base import ChatRequest, Message
from synth.runs.prices import Price, estimate_prompt_tokens

UNKNOWN_PRICE = "add it to a price table and pass --prices FILE"


def prompt_tokens(messages: list[Message]) -> int:
    """About how many tokens a request with these chat messages is (`estimate_prompt_tokens`)."""
    return estimate_prompt_tokens(ChatRequest(messages))


def dry_run_estimate(command: str, work: str, tokens: Mapping[str, tuple[int, int]],
                     prices: Mapping[str, Price | None]) -> str:
    """The dry-run text: what the command would do (`work`), the tokens it would send and get
    back in all, and each model's cost. `tokens`: model spec -> (prompt tokens, most completion
    tokens) that model would be sent; `prices`: model spec -> its price (None when unknown)."""
    prompt = sum(p for p, _ in tokens.values())
    completion = sum(c for _, c in tokens.values())
    lines = [f"{command} (dry run, no model called): {work}",
             f"  about {prompt:,} prompt tokens; at most {completion:,} completion tokens"]
    for model, (model_prompt, model_completion) in tokens.items():
        price = prices.get(model)
        if price is None:
            lines.append(f"  cost: unknown for '{model}' ({UNKNOWN_PRICE})")
        else:
            lines.append(f"  cost with {model}: about ${price.cost(model_prompt, 0):.4f} for prompts, "
                         f"at most ${price.cost(model_prompt, model_completion):.4f} in all")
    return "\n".join(lines)
