"""``Job``: a handle on a queued job — its status from the ledger, waiting, dead letters."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from pipeline.ledger import Ledger
from pipeline.status import DeadLetter, JobStatus
from storage.errors import JobNotFoundError

__all__ = ["DeadLetter", "Job", "JobStatus"]


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
    ) -> None:
        self.id = job_id
        self._ledger = ledger
        self._sleep = sleep
        self._clock = clock

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
        poll: float = 0.25,
        out: TextIO | None = None,
        rate: Callable[[], float | None] | None = None,
    ) -> JobStatus:
        """Block until the job is finished (or ``timeout`` seconds pass: TimeoutError).
        With ``progress``, draw a progress bar on ``out`` (stderr by default); ``rate()``
        gives it the limiter's current rate (WCU/s, None if unknown)."""
        from producers.progress import ProgressBar

        bar = ProgressBar(out or sys.stderr, rate=rate) if progress else None
        deadline = None if timeout is None else self._clock() + timeout
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
            self._sleep(poll)

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
