"""Rows of any synth run (or of a dataset in a known trainer format) to the formats trainers read.

Every input row is first read into one of two shapes:

    Conversation  messages (role/content; system, user, assistant turns)
    Preference    prompt messages, chosen and rejected replies (strings), optional score/margin

and every output format is written from those, so any format converts to any other that can
hold it. What a target can't hold (a system prompt in KTO, earlier turns in prompt-completion,
extra columns) is dropped with a warning that names it, never silently. A row with an empty (or
whitespace-only) prompt or reply is dropped and counted: a trainer would learn from nothing.

Formats (TRL's dataset formats, and the files Axolotl, LLaMA-Factory, OpenRLHF and the OpenAI
fine-tuning API read):
    sft-messages           {"messages": [{"role", "content"}, ...]}                 (TRL conversational)
    sft-prompt-completion  {"prompt": str, "completion": str}                         (TRL prompt-completion)
    alpaca                 {"instruction", "input", "output", "system", "history"}    (LLaMA-Factory alpaca)
    sharegpt               {"conversations": [{"from", "value"}], "system"}           (LLaMA-Factory/Axolotl sharegpt)
    openai-chat            {"messages": [...]}                                         (OpenAI fine-tuning JSONL)
    dpo                    {"prompt", "chosen", "rejected"}: strings, or message lists with --conversational
    kto                    {"prompt", "completion", "label"}: one row per reply, chosen True, rejected False
    reward                 {"prompt", "chosen", "rejected", "margin"?, "score_chosen"?, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synth.errors import SynthError

SFT_FORMATS = ("sft-messages", "sft-prompt-completion", "alpaca", "sharegpt", "openai-chat")
PREFERENCE_FORMATS = ("dpo", "kto", "reward")
FORMATS = SFT_FORMATS + PREFERENCE_FORMATS
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "user"}
ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preference:
    prompt: list[dict[str, str]]  # the conversation up to the reply
    chosen: str
    rejected: str
    scores: dict[str, Any] = field(default_factory=dict)  # margin, score_chosen, score_rejected, confidence
    extra: dict[str, Any] = field(default_factory=dict)


class Dropped:
    """What a conversion could not carry, counted by name, for one warning at the end."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.empty = 0  # rows dropped for an empty prompt or reply (not a limit of the format: kept apart)
        self.first_empty: str | None = None  # where the first one was, for the warning

    def add_empty(self, where: str) -> None:
        self.empty += 1
        self.first_empty = self.first_empty or where

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def summary(self) -> str:
        return "; ".join(f"{what} ({n} rows)" for what, n in sorted(self.counts.items()))


# ---- reading ------------------------------------------------------------------------------

def _text(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        turns = [m for m in value if m.get("role") == "assistant"] or value
        if isinstance(turns[-1].get("content"), str):
            return turns[-1]["content"]
    raise SynthError(f"{where}: '{name}' must be a string or a list of role/content messages")


def _messages(value: Any, where: str, name: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                       and m.get("role") in ("system", "user", "assistant") for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise SynthError(f"{where}: '{name}' must be a string or a list of messages with role "
                     "(system/user/assistant) and content")


KNOWN = {"messages", "instruction", "input", "output", "system", "history", "conversations", "prompt",
         "completion", "response", "chosen", "rejected", "label", "margin", "score_chosen", "score_rejected",
         "confidence", "score"}


def read_example(row: dict, where: str) -> Conversation | Preference | tuple[Conversation, bool]:
    """One row in any supported shape; a KTO row comes back as (conversation, label)."""
    extra = {k: v for k, v in row.items() if k not in KNOWN}
    if "chosen" in row and "rejected" in row:
        prompt = _messages(row.get("prompt", []), where, "prompt") if row.get("prompt") is not None else []
        if isinstance(row.get("system"), str) and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": row["system"]}] + prompt
        scores = {k: row[k] for k in ("margin", "score_chosen", "score_rejected", "confidence", "score")
                  if row.get(k) is not None}
        return Preference(prompt, _text(row["chosen"], where, "chosen"), _text(row["rejected"], where, "rejected"),
                          scores, extra)
    if "messages" in row:
        return Conversation(_messages(row["messages"], where, "messages"), extra)
    if "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list) or not all(isinstance(t, dict) and t.get("from") in SHAREGPT_ROLES
                                                  and isinstance(t.get("value"), str) for t in turns):
            raise SynthError(f"{where}: 'conversations' must be a list of {{from, value}} turns "
                             f"(from: {', '.join(SHAREGPT_ROLES)})")
        messages = [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in turns]
        if isinstance(row.get("system"), str) and row["system"]:
            messages = [{"role": "system", "content": row["system"]}] + messages
        return Conversation(messages, extra)
    if "instruction" in row:
        if not isinstance(row.get("output"), str):
            raise SynthError(f"{where}: an alpaca row needs an 'output' string beside 'instruction'")
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        for turn in row.get("history") or []:  # LLaMA-Factory: [[user, assistant], ...]
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        return Conversation(messages, extra)
    if "prompt" in row and ("completion" in row or "response" in row):
        reply = row.get("completion", row.get("response"))
        conversation = Conversation(_messages(row["prompt"], where, "prompt")
                                    + [{"role": "assistant", "content": _text(reply, where, "completion")}], extra)
        if isinstance(row.get("label"), bool):
            return conversation, row["label"]
        return conversation
    raise SynthError(f"{where}: not a row synth can export: needs messages, conversations, instruction/output, "
                     f"prompt/completion or prompt/chosen/rejected (fields: {', '.join(sorted(row))})")


def _blank(text: str) -> bool:
    return not text.strip()


def empty_prompt_or_reply(example: Conversation | Preference, with_rejected: bool = True) -> bool:
    """Whether the example has no user turn with text, or any empty turn or reply; `with_rejected`
    False when the target keeps only the chosen side (SFT formats)."""
    if isinstance(example, Preference):
        turns = [m for m in example.prompt if m["role"] != "system"]
        replies = [example.chosen, example.rejected] if with_rejected else [example.chosen]
        return (not any(m["role"] == "user" for m in turns) or any(_blank(m["content"]) for m in turns)
                or any(_blank(r) for r in replies))
    turns = [m for m in example.messages if m["role"] != "system"]
    return not any(m["role"] == "user" for m in turns) or any(_blank(m["content"]) for m in turns)


# ---- writing ------------------------------------------------------------------------------

def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and not any(m["role"] == "system" for m in messages):
        return [{"role": "system", "content": system}] + messages
    return messages


def _split_reply(messages: list[dict], where: str) -> tuple[list[dict], str]:
    if not messages or messages[-1]["role"] != "assistant":
        raise SynthError(f"{where}: the conversation does not end with an assistant reply to train on")
    return messages[:-1], messages[-1]["content"]


def _prompt_text(prompt: list[dict], dropped: Dropped) -> str:
    users = [m for m in prompt if m["role"] != "system"]
    if any(m["role"] == "system" for m in prompt):
        dropped.add("system prompt")
    if len(users) > 1:
        dropped.add("earlier turns")
    return users[-1]["content"] if users else ""


def write_sft(example: Conversation, fmt: str, system: str | None, dropped: Dropped, where: str) -> dict:
    messages = _with_system(example.messages, system)
    if fmt in ("sft-messages", "openai-chat"):
        return {"messages": messages}
    prompt, reply = _split_reply(messages, where)
    if fmt == "sft-prompt-completion":
        return {"prompt": _prompt_text(prompt, dropped), "completion": reply}
    systems = [m["content"] for m in prompt if m["role"] == "system"]
    turns = [m for m in prompt if m["role"] != "system"]
    if fmt == "alpaca":
        history, pending = [], None
        for m in turns[:-1]:
            if m["role"] == "user":
                pending = m["content"]
            elif pending is not None:
                history.append([pending, m["content"]])
                pending = None
        row = {"instruction": turns[-1]["content"] if turns else "", "input": "", "output": reply}
        if systems:
            row["system"] = systems[0]
        if history:
            row["history"] = history
        return row
    if fmt == "sharegpt":
        row = {"conversations": [{"from": ROLE_TO_SHAREGPT[m["role"]], "value": m["content"]} for m in turns]
               + [{"from": "gpt", "value": reply}]}
        if systems:
            row["system"] = systems[0]
        return row
    raise ValueError(fmt)


def write_preference(example: Preference, fmt: str, conversational: bool, system: str | None,
                     dropped: Dropped) -> list[dict]:
    prompt = _with_system(example.prompt, system)
    if conversational:
        prompt_value: Any = prompt
        chosen: Any = [{"role": "assistant", "content": example.chosen}]
        rejected: Any = [{"role": "assistant", "content": example.rejected}]
    else:
        prompt_value, chosen, rejected = _prompt_text(prompt, dropped), example.chosen, example.rejected
    if fmt == "dpo":
        return [{"prompt": prompt_value, "chosen": chosen, "rejected": rejected}]
    if fmt == "kto":
        return [{"prompt": prompt_value, "completion": chosen, "label": True},
                {"prompt": prompt_value, "completion": rejected, "label": False}]
    if fmt == "reward":
        return [{"prompt": prompt_value, "chosen": chosen, "rejected": rejected, **example.scores}]
    raise ValueError(fmt)


def convert(rows: list[tuple[dict, str]], fmt: str, conversational: bool = False,
            system: str | None = None) -> tuple[list[dict], Dropped]:
    """(exported rows, what was dropped) for [(row, where)]: SFT formats take conversations (and
    the chosen side of preferences), preference formats take preferences (and KTO rows in pairs)."""
    if fmt not in FORMATS:
        raise SynthError(f"--format {fmt}: unknown; choose from {', '.join(FORMATS)}")
    dropped, out = Dropped(), []
    kto_pending: dict[str, dict] = {}
    for row, where in rows:
        example = read_example(row, where)
        if isinstance(example, tuple):  # a KTO row: a conversation with a label
            example, label = example
            if empty_prompt_or_reply(example):
                dropped.add_empty(where)
                continue
            if fmt in PREFERENCE_FORMATS:
                prompt, reply = _split_reply(example.messages, where)
                key = repr(prompt)
                other = kto_pending.pop(key, None)
                if other is None or other["label"] == label:
                    kto_pending[key] = {"label": label, "reply": reply, "where": where}
                    continue
                good, bad = (reply, other["reply"]) if label else (other["reply"], reply)
                example = Preference(prompt, good, bad)
            else:
                if not label:
                    dropped.add("KTO rows labelled false (not SFT material)")
                    continue
                dropped.add("label")
        if empty_prompt_or_reply(example, with_rejected=fmt not in SFT_FORMATS):
            dropped.add_empty(where)
            continue
        if example.extra:
            for name in example.extra:
                dropped.add(f"column '{name}'")
        if fmt in SFT_FORMATS:
            if isinstance(example, Preference):
                dropped.add("rejected reply")
                if example.scores:
                    dropped.add("preference scores")
                example = Conversation(example.prompt + [{"role": "assistant", "content": example.chosen}])
            out.append(write_sft(example, fmt, system, dropped, where))
        else:
            if isinstance(example, Conversation):
                raise SynthError(f"{where}: --format {fmt} needs preference rows (prompt/chosen/rejected); "
                                 "this row is a single conversation")
            if fmt != "reward" and example.scores:
                dropped.add("preference scores")
            out += write_preference(example, fmt, conversational, system, dropped)
    if kto_pending:
        dropped.add("KTO rows without an opposite-label partner for the same prompt")
    return out, dropped
