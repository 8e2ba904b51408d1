"""Admitting a delivery past its user's erasures (:mod:`pipeline.erasure`), worker side.

A delivery that holds its lease asks :meth:`Gate.enter` before writing anything. An erase it
waits for may already be over — finished, abandoned by its producer, or expired with its
results — and only a reader of the ledger can tell: then the gate releases it and asks again,
so a finished erase never holds a user's writes back. Deliveries of the erase jobs themselves
(and of jobs made before sequences existed) are not gated.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.erasure import member
from pipeline.ledger import Ledger
from pipeline.states import Admission, JobKind
from storage.errors import JobNotFoundError

UNGATED = frozenset({JobKind.RESET_USER, JobKind.CLEAR_SCHEMAS})
"""Jobs that only delete what the planner found: the erase itself is not held back by it."""


@dataclass
class Pass:
    """One delivery's admission: what it may do, and (when admitted) how to stay admitted."""

    admission: Admission
    ledger: Ledger
    user: str
    name: str = ""
    term: float = 0.0

    def renew(self) -> None:
        """Called with every lease renewal: the delivery is still in flight."""
        if self.name:
            self.ledger.erasure.renew(self.user, self.name, self.term)

    def leave(self) -> None:
        if self.name:
            self.ledger.erasure.leave(self.user, self.name)


class Gate:
    def __init__(self, ledger: Ledger, term: float) -> None:
        self.ledger = ledger
        self.term = term

    def enter(self, job: str, segment: str, user: str, token: str, seq: int | None = None) -> Pass:
        """Admit one delivery (``token``) of ``segment`` of ``job`` writing for ``user``;
        ``seq`` is the job's sequence when the caller knows it (a single write carries it)."""
        erasure = self.ledger.erasure
        if seq is None:
            seq, kind = erasure.job_sequence(job)
            if kind in UNGATED or not seq:
                return Pass(Admission.ADMITTED, self.ledger, user)
        name = member(seq, job, segment, token)
        for _ in range(8):  # each round releases one finished erase
            admission, erase = erasure.admit(user, seq, name, self.term)
            if admission is not Admission.WAIT or not self._over(erase):
                break
            erasure.release(user, erase)
        if admission is Admission.ADMITTED:
            return Pass(admission, self.ledger, user, name, self.term)
        return Pass(admission, self.ledger, user)

    def _over(self, job: str) -> bool:
        try:
            return self.ledger.status(job).finished
        except JobNotFoundError:
            return True
