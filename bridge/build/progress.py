"""What ``build`` shows while it works: one live line per function on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TextIO

REDRAW = 0.1  # seconds between redraws of the live display


class Display:
    """Per function: what it is doing and for how long. ``live``: redrawn in place (a terminal)."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream, self.live = stream, live
        self._rows: dict[str, tuple[float, str, float | None, bool]] = {}  # name -> (started, text, finished, ok)
        self._drawn = 0

    def update(self, name: str, text: str) -> None:
        """``name`` is now doing ``text``."""
        started = self._rows.get(name, (time.monotonic(), "", None, True))[0]
        self._rows[name] = (started, text, None, True)
        if not self.live:
            self._print(name, text, time.monotonic() - started)

    def finish(self, name: str, text: str, ok: bool = True) -> None:
        """``name`` is done (``text``: its outcome)."""
        started = self._rows.get(name, (time.monotonic(), "", None, True))[0]
        now = time.monotonic()
        self._rows[name] = (started, text, now, ok)
        if not self.live:
            self._print(name, text, now - started)

    def _print(self, name: str, text: str, elapsed: float) -> None:
        self.stream.write(f"{name}: {text} ({elapsed:.1f} s)\n")
        self.stream.flush()

    def draw(self) -> None:
        """Redraw every row in place (live mode)."""
        if not self.live:
            return
        width = max((len(n) for n in self._rows), default=0)
        now = time.monotonic()
        rows = []
        for name, (started, text, finished, ok) in self._rows.items():
            elapsed = (finished or now) - started
            mark = "…" if finished is None else ("✓" if ok else "✗")
            rows.append(f"{mark} {name:<{width}}  {elapsed:6.1f} s  {text}"[:150])
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{row}\n" for row in rows))
        self.stream.flush()
        self._drawn = len(rows)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Display]:
        """Redraw every REDRAW seconds while the body runs, and once more at the end."""
        task = asyncio.get_running_loop().create_task(self._redraw()) if self.live else None
        try:
            yield self
        finally:
            if task is not None:
                task.cancel()
            self.draw()

    async def _redraw(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(REDRAW)
