"""Progress on a terminal: a job's bar (items/s, retries, dead letters, then a summary), and an
export's line."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from pipeline.status import JobStatus
from producers.session import Progress
from storage.errors import StorageError

WIDTH = 30
MIB = 2**20


def summary(st: JobStatus) -> str:
    """One-paragraph end-of-job summary (a stopped load says why, and how to go on)."""
    rate = st.processed / st.elapsed if st.elapsed > 0 else 0.0
    lines = [
        f"job {st.id}: {st.state}",
        f"  items {st.items}: written {st.written}, deleted {st.deleted}, "
        f"superseded {st.superseded}, dead-lettered {st.dead_lettered}",
        f"  rejected input lines {st.rejected}, requeues {st.requeues}",
        f"  {st.elapsed:.1f}s, {rate:,.0f} items/s, {st.consumed_wcu:,.0f} WCU consumed",
    ]
    if st.failures:
        lines.append(f"  failed: {st.error}")
    if st.state.stopped:
        lines.append(f"  input not read to the end: {st.stopped or st.state}")
        if st.lines:
            lines.append(f"  input lines enqueued (checkpoint): {st.lines}")
        if st.kind == "load" and st.extra.get("sources"):
            lines.append(f"  a load of {st.extra['sources']} inputs does not resume: load again")
        elif st.kind == "load":
            file = st.extra.get("file", "FILE")
            lines.append(f"  go on with: datafold load {file} --resume {st.id}")
    return "\n".join(lines)


def eta(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss``), ``?`` when unknown."""
    if seconds is None:
        return "?"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class ProgressBar:
    """Redraws one line on a terminal; on a pipe, prints a line every ``every`` seconds.
    Shows items/s over the last ``window`` seconds, the limiter's current rate (``rate()``,
    WCU/s, when given and known) and an ETA at that items/s (``+`` while the input is still
    being read: more items may come)."""

    def __init__(
        self,
        out: TextIO,
        *,
        every: float = 5.0,
        rate: Callable[[], float | None] | None = None,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every = every
        self.rate = rate
        self.window, self.clock = window, clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last = 0.0

    def speed(self, st: JobStatus) -> float:
        """Items per second over the last ``window`` seconds (overall, until two samples)."""
        now = self.clock()
        self._samples.append((now, st.processed))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        t0, p0 = self._samples[0]
        if now - t0 >= 0.5:
            return max(0.0, (st.processed - p0) / (now - t0))
        return st.processed / st.elapsed if st.elapsed > 0 else 0.0

    def render(self, st: JobStatus) -> str:
        total = max(st.items, 1)
        frac = min(1.0, st.processed / total)
        filled = int(frac * WIDTH)
        speed = self.speed(st)
        left = max(0, st.items - st.processed)
        more = "" if st.sealed or st.finished else "+"
        secs = 0.0 if not left else (left / speed if speed > 0 else None)
        limit = None
        if self.rate is not None:
            try:
                limit = self.rate()
            except StorageError:
                limit = None
        limiter = f"  limiter {limit:,.0f} WCU/s" if limit is not None else ""
        return (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {frac:6.1%} "
            f"{st.processed}/{st.items} items  {speed:,.0f}/s{limiter}  ETA {eta(secs)}{more}  "
            f"requeues {st.requeues}  dead {st.dead_lettered}  {st.state}"
        )

    def update(self, st: JobStatus) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r" + self.render(st) + "\x1b[K")
            self.out.flush()
        elif now - self._last >= self.every:
            self.out.write(self.render(st) + "\n")
            self.out.flush()
            self._last = now

    def close(self, st: JobStatus) -> None:
        if self.tty:
            self.out.write("\r" + self.render(st) + "\x1b[K\n")
        self.out.write(summary(st) + "\n")
        self.out.flush()


class ExportProgress:
    """One line redrawn on a terminal (at most every ``every`` seconds): namespace, items,
    schemas, MiB, items/s. Give it a tty only; nothing is printed on ``close`` but a newline."""

    def __init__(
        self, out: TextIO, *, every: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out, self.every, self.clock = out, every, clock
        self.start = self._last = clock()

    def update(
        self, where: str, items: int, schemas: int, nbytes: int, *, force: bool = False
    ) -> None:
        now = self.clock()
        if not force and now - self._last < self.every:
            return
        self._last = now
        rate = items / (now - self.start) if now > self.start else 0.0
        self.out.write(
            f"\rexport {where}: {items:,} items, {schemas:,} schemas, "
            f"{nbytes / 2**20:,.1f} MiB, {rate:,.0f} items/s\x1b[K"
        )
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


class EnqueueProgress:
    """While a producer reads: lines, items (of this run), the queued bytes against the budget,
    and whether it waits for workers. Redrawn on a terminal at most every ``every`` seconds, or
    as soon as waiting starts or stops; on a pipe, a line every ``pipe_every`` seconds, and one
    when it first waits."""

    def __init__(
        self,
        out: TextIO,
        *,
        every: float = 0.2,
        pipe_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.clock = out, clock
        self.tty = out.isatty()
        self.every = every if self.tty else pipe_every
        self._last = -1e9
        self._waiting = False
        self._waited = False
        self._drawn = False

    @staticmethod
    def render(p: Progress) -> str:
        where = f"{p.lines:,} lines, " if p.lines else ""
        source = f"{p.source}: " if p.source else ""
        text = (
            f"enqueue: {source}{where}{p.items:,} items; queued {p.queued / MIB:,.1f} of "
            f"{p.budget / MIB:,.0f} MiB"
        )
        return text + (" — waiting for workers" if p.waiting else "")

    def __call__(self, p: Progress) -> None:
        now = self.clock()
        changed = p.waiting != self._waiting if self.tty else p.waiting and not self._waited
        self._waiting = p.waiting
        if not changed and now - self._last < self.every:
            return
        self._last = now
        self._waited = self._waited or p.waiting
        if self.tty:
            self.out.write("\r" + self.render(p) + "\x1b[K")
        else:
            self.out.write(self.render(p) + "\n")
        self.out.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
