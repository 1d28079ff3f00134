"""Progress of long loops, the same way in every command: a bar on a terminal, plain lines in logs."""
from __future__ import annotations

import sys


class Progress:
    """Progress of a long loop, for ``progress(done)`` callbacks: a bar on a terminal; off a terminal
    (a redirected log) one plain line to stderr every ``every`` seconds, so runs shorter than that
    print nothing and a log never holds bar characters."""

    def __init__(self, total: int, label: str, enabled: bool = True, every: float = 10.0):
        import time
        self.total, self.label, self.every, self.clock = total, label, every, time.monotonic
        self.start = self.last = self.clock()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, unit="it", mininterval=0.5, leave=False)
        self.enabled, self.done = enabled, 0

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif self.enabled and self.clock() - self.last >= self.every:
            self.last = self.clock()
            rate = done / max(self.last - self.start, 1e-9)
            sys.stderr.write(f"{self.label}: {done}/{self.total} ({100 * done / self.total:.0f} %, "
                             f"{(self.total - done) / rate:.0f} s left)\n")
            sys.stderr.flush()
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
