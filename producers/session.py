"""A producer's hold on the job it feeds: heartbeat, backpressure, and an honest end.

:class:`ProducerSession` is entered around the reading of a bulk job's input. While inside, a
daemon thread beats the job's heartbeat every quarter of ``DATAFOLD_PRODUCER_TIMEOUT`` (so a
producer blocked on its input or on workers is still alive); a producer killed without a word
is marked abandoned by the next look after the timeout (``pipeline.producing``). If anything
escapes the block — Ctrl-C, an input that raises, Redis gone — the job is marked
``incomplete`` with why before the exception goes on, and the exception gets a note naming the
job: a load whose input was not read to the end never ends ``succeeded``.

:class:`BudgetGate` plans each cut segment under ``DATAFOLD_MAX_QUEUED_BYTES``: when every
producer's queued and unfinished payloads leave no room, it waits for workers (backoff from
50 ms to 1 s), reporting it through ``on_progress``. Nothing is refused and nothing dropped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from pipeline.ledger import Ledger
from pipeline.messages import Segment
from pipeline.segmenter import Segmenter
from pipeline.status import PlanStatus
from storage.errors import BackendUnavailableError, ProducerFencedError, StorageError

WAIT_FIRST, WAIT_MAX = 0.05, 1.0


@dataclass(frozen=True)
class Progress:
    """What a producer reports while it reads: ``lines`` read (0 when not a file), ``items``
    enqueued, ``queued`` bytes over every job and the ``budget``; ``waiting`` for workers;
    ``source``: the input being read, when a job reads several."""

    job: str
    lines: int
    items: int
    queued: int
    budget: int
    waiting: bool
    source: str = ""


OnProgress = Callable[[Progress], None]


def stop_reason(exc: BaseException) -> str:
    """Why a load stopped, in one line, for ``datafold status``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, BackendUnavailableError):
        return f"Redis unreachable: {exc}"
    if isinstance(exc, StorageError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"its input raised {type(exc).__name__}" + (f": {text}" if text else "")


class ProducerSession:
    """The producer token of one job, its heartbeat thread, and its stop on failure."""

    def __init__(self, ledger: Ledger, job_id: str, *, token: str | None = None) -> None:
        self.ledger = ledger
        self.job = job_id
        self.token = token or self.new_token()
        self.describe: Callable[[], str] = lambda: ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    def _beat(self) -> None:
        every = max(0.2, self.ledger.producing.timeout / 4)
        while not self._stop.wait(every):
            try:
                if not self.ledger.producing.beat(self.job, self.token):
                    return  # fenced: the next plan or seal says so
            except BackendUnavailableError:
                continue  # a missed beat; the timeout allows several

    def __enter__(self) -> ProducerSession:
        self._thread = threading.Thread(
            target=self._beat, name=f"datafold-heartbeat-{self.job}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if exc is None or isinstance(exc, ProducerFencedError):
            return
        try:
            if self.ledger.producing.stop(self.job, self.token, stop_reason(exc)):
                self.ledger.unplan_unsent(self.job)
                state = "is incomplete"
            else:
                state = "is no longer this producer's (marked abandoned, or resumed elsewhere)"
        except BackendUnavailableError:
            state = "will be marked abandoned once its heartbeat times out"
        detail = self.describe()
        exc.add_note(f"job {self.job} {state}" + (f": {detail}" if detail else ""))


class BudgetGate:
    """Plans segments as ``session``'s producer under the queued-bytes ``budget`` (0: none);
    ``checkpoint(cutter, p)`` gives the resume checkpoint to store with each (or None)."""

    def __init__(
        self,
        session: ProducerSession,
        budget: int,
        *,
        checkpoint: Callable[[Segmenter, int], tuple[str, int]] | None = None,
        on_progress: OnProgress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.budget = budget
        self.checkpoint = checkpoint
        self.on_progress = on_progress
        self.sleep = sleep
        self.items = 0
        self.lines = 0
        self.source = ""

    def plan(self, cutter: Segmenter, p: int, seg: Segment, size: int) -> None:
        mark = self.checkpoint(cutter, p) if self.checkpoint else None
        text, lines = mark if mark is not None else ("", 0)
        wait = WAIT_FIRST
        while True:
            ans = self.session.ledger.plan(
                seg.job,
                seg.seg,
                seg.n,
                size=size,
                budget=self.budget,
                producer=self.session.token,
                checkpoint=text,
                lines=lines,
            )
            if ans.status is PlanStatus.PLANNED:
                break
            self.report(ans.queued, waiting=True)
            self.sleep(wait)
            wait = min(WAIT_MAX, wait * 2)
        self.items += seg.n
        self.lines = max(self.lines, lines)
        self.report(ans.queued, waiting=False)

    def report(self, queued: int, *, waiting: bool) -> None:
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    self.session.job,
                    self.lines,
                    self.items,
                    queued,
                    self.budget,
                    waiting,
                    self.source,
                )
            )
