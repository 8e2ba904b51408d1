"""``Job``: a handle on a queued job — its status from the ledger, waiting, dead letters."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from pipeline.ledger import Ledger
from pipeline.notify import FinishedSignal
from pipeline.status import DeadLetter, JobStatus
from storage.errors import JobNotFoundError

__all__ = ["DeadLetter", "Job", "JobStatus"]

QUIET_PERIOD = 1.0
"""Seconds between two status reads of a wait without a bar while the job does not finish."""
BAR_PERIOD = 0.25
"""The same with a progress bar: how often it is redrawn."""


class Job:
    """A job in the pipeline. ``wait()`` gives read-your-writes: once it returns a finished
    status, direct reads see every item the job wrote."""

    def __init__(
        self,
        job_id: str,
        ledger: Ledger,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        signal: FinishedSignal | None = None,
    ) -> None:
        self.id = job_id
        self._ledger = ledger
        self._sleep = sleep
        self._clock = clock
        self._signal = signal or FinishedSignal(ledger.r)

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        """State and totals now. Raises JobNotFoundError if unknown or expired."""
        return self._ledger.status(self.id)

    def wait(
        self,
        timeout: float | None = None,
        progress: bool = False,
        *,
        poll: float | None = None,
        out: TextIO | None = None,
        rate: Callable[[], float | None] | None = None,
    ) -> JobStatus:
        """Block until the job is finished (or ``timeout`` seconds pass: TimeoutError).
        With ``progress``, draw a progress bar on ``out`` (stderr by default); ``rate()``
        gives it the limiter's current rate (WCU/s, None if unknown).

        It wakes the moment the job finishes (the ledger's finished signal,
        :mod:`pipeline.notify`) and reads the status then, and at least every ``poll``
        seconds meanwhile (default 1 s; 0.25 s with a bar, its refresh)."""
        from producers.progress import ProgressBar

        bar = ProgressBar(out or sys.stderr, rate=rate) if progress else None
        period = poll if poll is not None else (BAR_PERIOD if bar else QUIET_PERIOD)
        deadline = None if timeout is None else self._clock() + timeout
        woken = False
        while True:
            st = self.status()
            if bar:
                bar.update(st)
            if st.finished:
                if bar:
                    bar.close(st)
                return st
            if deadline is not None and self._clock() >= deadline:
                if bar:
                    bar.close(st)
                raise TimeoutError(
                    f"job {self.id} not finished after {timeout}s "
                    f"(state {st.state}, {st.processed}/{st.items} items)"
                )
            pause = period if deadline is None else min(period, deadline - self._clock())
            if woken:  # signalled yet not finished (resumed since): never spin on the signal
                self._sleep(max(0.0, pause))
                woken = False
            else:
                woken = self._signal.wait(self.id, pause)

    def dead_letters(self) -> Iterator[DeadLetter]:
        """Items the pipeline gave up on, each with key, value, reason and error code."""
        self.status()  # raise JobNotFoundError rather than yield nothing for a wrong id
        return self._ledger.dead_letters(self.id)

    def rejected_lines(self) -> list[tuple[int, str]]:
        """Input lines refused before enqueueing: (line number, reason), at most 1000 kept."""
        return self._ledger.producing.rejected_lines(self.id)

    def exists(self) -> bool:
        try:
            self.status()
        except JobNotFoundError:
            return False
        return True
