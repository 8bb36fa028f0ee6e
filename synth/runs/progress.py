"""Progress of a run: a bar on a terminal, a plain line every so often in a log."""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """A progress bar on a terminal; elsewhere (a log file, CI) a plain line every so often."""

    def __init__(self, session, total: int, initial: int, unit: str):
        self.session, self.total, self.n, self.unit = session, total, initial, unit
        self.interactive = sys.stderr.isatty()
        self.every = float(os.environ.get("SYNTH_PROGRESS_SECONDS", "30"))
        self.started = self.last = time.monotonic()
        self.start_n = initial
        self.bar = None
        if session.opts.progress and self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=session.command, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.session.opts.progress and now - self.last >= self.every:
            self.last = now
            rate = (self.n - self.start_n) / max(now - self.started, 1e-9)
            rejected = sum(v for k, v in self.session.counts.items() if k.startswith("rejected:"))
            print(f"{self.session.command}: {self.n}/{self.total} {self.unit}s, {rejected} rejected, "
                  f"${self.session.committed_usd:.4f}, {rate:.1f} {self.unit}s/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
