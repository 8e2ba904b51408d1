"""What a rate limiter offers the batch writer and the single writes (``worker.limiter``).

A protocol only: storage knows nothing of Redis or of how capacity is shared. The batch writer
takes a user's fair share in the caller's thread (:meth:`Pacer.admit`) before handing a batch
to the threads every caller shares, then the table's capacity in that thread
(:meth:`Pacer.acquire`), and reports what the call consumed (:meth:`Pacer.feedback`).
"""

from __future__ import annotations

from typing import Protocol


class Pacer(Protocol):
    """What a rate limiter offers the batch writer (see ``worker.limiter``)."""

    def acquire(
        self,
        table: str,
        units: float,
        deadline: float | None = None,
        partition: str | None = None,
        *,
        admitted: bool = False,
    ) -> float:
        """Block until ``units`` WCU may be spent on ``table``; return seconds waited.
        :class:`~storage.errors.StoppedError` (nothing charged) if that would pass
        ``deadline`` (the pacer's own clock). ``partition``: the partition key every item of
        the call shares (None: several). ``admitted``: :meth:`admit` was passed already."""
        ...

    def admit(
        self, table: str, units: float, deadline: float | None, partition: str | None
    ) -> float:
        """Block until ``partition`` may hand ``units`` more to the shared threads (its fair
        share of the table); seconds waited. StoppedError past ``deadline``."""
        ...

    def feedback(
        self,
        table: str,
        *,
        units: float,
        throttled: bool,
        partition: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        """Report what a call consumed and whether it was throttled or partly refused;
        ``reasons``: the refusal's ``ThrottlingReasons`` (none for unprocessed items)."""
        ...
