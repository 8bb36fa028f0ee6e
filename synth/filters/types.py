"""What every filter step returns: which row goes, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Removal:
    index: int  # the removed row
    duplicate_of: int  # the kept row it duplicates
    method: str
    similarity: float
