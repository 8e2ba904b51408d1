"""Holding a segment's lease while it runs: the fence that keeps a stale delivery from writing.

A delivery takes the lease in the ledger (``Ledger.take``) before it writes anything; while it
runs, a :class:`LeaseKeeper` renews it every third of its term in a thread of its own, and the
runner asks :meth:`LeaseKeeper.stop_reason` before every batch. The keeper says the lease is
lost as soon as a renewal is refused (another delivery took it after it expired) or when no
renewal has succeeded for a whole term (Redis unreachable: the lease may have expired, so this
holder must assume it did). Recording (``Ledger.finish`` with the token) checks the lease again,
atomically, so a holder that lost it counts nothing.

Cost: one Redis round trip per third of a term per running segment, not per item.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from pipeline.ledger import Ledger
from storage.errors import BackendUnavailableError

log = logging.getLogger(__name__)

LOST = "lease lost: another delivery owns this segment now"


class LeaseKeeper:
    """Renews ``token``'s lease on ``segment`` until the ``with`` block ends."""

    def __init__(
        self,
        ledger: Ledger,
        job: str,
        segment: str,
        token: str,
        term: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        since: float | None = None,
        on_renew: Callable[[], None] | None = None,
    ) -> None:
        self.ledger, self.job, self.segment, self.token = ledger, job, segment, token
        self.on_renew = on_renew  # renews what lives as long as the lease (worker.admission)
        self.term = term
        self.clock = clock
        # When the last successful renewal (or the take: ``since``) was sent.
        self._renewed = clock() if since is None else since
        self._refused = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._refused or self.clock() - self._renewed >= self.term

    def stop_reason(self) -> str | None:
        """None while this delivery holds the lease; why to stop otherwise."""
        return LOST if self.lost else None

    def _renew_until_done(self) -> None:
        while not self._done.wait(self.term / 3):
            sent = self.clock()
            try:
                held = self.ledger.renew(self.job, self.segment, self.token, self.term)
                if held and self.on_renew is not None:
                    self.on_renew()
            except BackendUnavailableError as exc:
                log.warning("job %s segment %s: lease not renewed: %s", self.job, self.segment, exc)
                continue
            except Exception:  # never let the keeper die quietly: the run would go on unfenced
                log.exception("job %s segment %s: lease renewal failed", self.job, self.segment)
                self._refused = True
                return
            if not held:
                self._refused = True
                log.warning("job %s segment %s: %s", self.job, self.segment, LOST)
                return
            self._renewed = sent

    def __enter__(self) -> LeaseKeeper:
        self._thread = threading.Thread(
            target=self._renew_until_done, name="datafold-lease", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._refused = True  # a write still asking after the run ended must stop
        if self._thread is not None:
            self._thread.join()
