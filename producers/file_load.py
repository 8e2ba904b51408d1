"""The machinery of ``Producer.load_file``: open the input, check it, enqueue its records,
and resume an interrupted load from its checkpoint (:mod:`producers.checkpoint`).

The input is opened by :class:`~producers.opened.OpenedInput` (local, stdin or S3,
decompressed; spooled when it must be read twice and cannot seek). Records are cut into segments per
namespace; bad lines are recorded in the job; schema lines are restored directly. The reading
runs inside a :class:`~producers.session.ProducerSession` (heartbeat; ``incomplete`` with why if
it stops early) and plans under the queued-bytes budget (:class:`~producers.session.BudgetGate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from pipeline import ids
from pipeline.enqueue import Enqueuer
from pipeline.ids import new_job_id
from pipeline.ledger import Ledger
from pipeline.segmenter import SEGMENT_MAX_BYTES
from pipeline.states import JobKind
from producers.checkpoint import Checkpoint, TrackedInput
from producers.export import SchemaSink, verify_export
from producers.feed import Feed, namespace_problem
from producers.inputs import BadLine, Parsed, Record, read_records
from producers.job import Job
from producers.opened import OpenedInput, input_size
from producers.session import BudgetGate, OnProgress, ProducerSession
from storage import errors
from storage.schema import DynamoSchemaStore

MAX_STRICT_REPORT = 5


@dataclass(frozen=True)
class FileLoader:
    """What a load takes from its ``Producer``: the ledger, the enqueuer, the segmenting
    settings, the namespace check, the user's schema store (opened only when needed) and the
    queued-bytes budget."""

    ledger: Ledger
    enqueue: Enqueuer
    partitions: int
    segment_size: int
    check_namespace: Callable[[str], str]
    schema_store: Callable[[str], DynamoSchemaStore]
    budget: int = 0
    compression: str = "auto"
    s3: Any = None  # the S3 client inputs are read with (None: one made when needed)

    def load(
        self,
        path_or_dash: str | os.PathLike[str],
        namespace: str | None,
        user: str,
        format: str,
        key_column: str | None,
        *,
        strict: bool,
        force: bool,
        resume: str | None = None,
        on_progress: OnProgress | None = None,
    ) -> Job:
        """See ``Producer.load_file`` (``user`` resolved, ``namespace`` already checked)."""
        opened = OpenedInput(
            path_or_dash, strict, format, compression=self.compression, client=self.s3
        )
        with opened as stream:
            extra: dict[str, str] = {}
            sink: SchemaSink | None = None
            if opened.export:
                extra, sink = self._verify_export(stream, user, force)
            if strict:
                self.check_strict(stream, format, key_column, namespace)
            cut = (self.partitions, self.segment_size, SEGMENT_MAX_BYTES)
            base = Checkpoint(format, key_column, namespace, input_size(stream), cut=cut)
            tracker = TrackedInput(stream)
            if resume is None:
                # Reading starts now: a CSV without its key column fails before any job exists.
                records = read_records(tracker, format, key_column)
                base = replace(base, header_end=tracker.position if format == "csv" else 0)
                job_id, token = new_job_id(), ProducerSession.new_token()
                if str(path_or_dash) != "-":
                    extra["file"] = os.fspath(path_or_dash)
                self.ledger.create(
                    job_id,
                    kind=JobKind.LOAD,
                    namespace=namespace or "",
                    user_id=user,
                    producer=token,
                    extra=extra,
                )
            else:
                job_id, token = resume, ProducerSession.new_token()
                base, records = self._resumable(job_id, user, base, tracker, token)
            feed = Feed(
                self.ledger,
                self.enqueue,
                job_id,
                user,
                namespace,
                partitions=self.partitions,
                segment_size=self.segment_size,
                check_namespace=self.check_namespace,
                schema_store=self.schema_store,
            )
            feed.enter(os.fspath(path_or_dash))
            with ProducerSession(self.ledger, job_id, token=token) as session:
                if resume is not None:
                    self._cut_again_if_unsent(job_id, base)
                gate = BudgetGate(session, self.budget, on_progress=on_progress)
                session.describe = lambda: (
                    f"{gate.lines} input lines enqueued; go on with "
                    f"`datafold load {os.fspath(path_or_dash)} --resume {job_id}`"
                )
                feed.run(records, tracker, base, gate, session, sink=sink)
        return Job(job_id, self.ledger)

    def _resumable(
        self, job_id: str, user: str, base: Checkpoint, tracker: TrackedInput, token: str
    ) -> tuple[Checkpoint, Iterator[Parsed]]:
        """Check that job ``job_id`` is this user's stopped load of this input, cut alike,
        read the input up to its checkpoint (size and digest compared) and open the reader
        there; only then take the job over as producer ``token``. Returns the checkpoint and
        the records after it. NotResumableError, with nothing taken over, if not."""
        st = self.ledger.status(job_id)
        if st.kind != JobKind.LOAD or st.user_id != user:
            raise errors.NotResumableError(
                f"job {job_id} is not a load of user {user!r}", operation="Resume"
            )
        if st.extra.get("sources"):
            raise errors.NotResumableError(
                f"job {job_id} loaded {st.extra['sources']} inputs as one job; such a job does "
                "not resume: load them again",
                operation="Resume",
            )
        if not st.state.stopped:
            why = (
                "still being fed by its producer"
                if st.fed
                else "its input was read to the end"
                if st.sealed
                else "not stopped"
            )
            raise errors.NotResumableError(
                f"job {job_id} is {st.state}: {why}; only an incomplete or abandoned load resumes",
                operation="Resume",
            )
        text = self.ledger.producing.checkpoint(job_id)
        cp = Checkpoint.from_json(text) if text else base
        for name, mine, theirs in (
            ("format", base.format, cp.format),
            ("key column", base.key_column, cp.key_column),
            ("namespace", base.namespace, cp.namespace),
            ("partitions, segment size and bytes", base.cut, cp.cut),
        ):
            if mine != theirs:
                raise errors.NotResumableError(
                    f"job {job_id} was loaded with {name} {theirs!r}, not {mine!r}",
                    operation="Resume",
                )
        if cp.size is not None and base.size is not None and cp.size != base.size:
            raise errors.NotResumableError(
                f"not the same file: {base.size} bytes, job {job_id} read {cp.size}",
                operation="Resume",
            )
        header = tracker.skip_to(cp.offset, keep=cp.header_end)
        if tracker.offset != cp.offset or (
            cp.digest and tracker.mark().digest.hexdigest() != cp.digest
        ):
            raise errors.NotResumableError(
                f"not the same file: its first {cp.offset} bytes differ from what job "
                f"{job_id} read",
                operation="Resume",
            )
        records = read_records(
            tracker,
            cp.format,
            cp.key_column,
            start_line=cp.line,
            header_rows=header if cp.format == "csv" and cp.offset else None,
        )
        if self.ledger.producing.resume(job_id, token) != text:
            self.ledger.producing.stop(job_id, token, st.stopped or "resume raced another")
            raise errors.NotResumableError(
                f"job {job_id} moved on while this resume read its input; try again",
                operation="Resume",
            )
        return cp, records

    def _cut_again_if_unsent(self, job_id: str, cp: Checkpoint) -> None:
        """The segment planned last may never have been staged (its producer died in
        between, or it was taken back since): roll its partition back to cut it again.
        Rejected lines past the checkpoint are shown again as they are read again."""
        if cp.last is not None:
            scope, p, before = cp.last
            nxt = cp.scopes[scope][p][0]
            if nxt > 0 and not self.ledger.producing.sent(job_id, ids.segment(scope, p, nxt - 1)):
                cp.scopes[scope][p] = [nxt - 1, before]
        self.ledger.producing.keep_rejected_through(job_id, cp.line)

    def _verify_export(
        self, stream: BinaryIO, user: str, force: bool
    ) -> tuple[dict[str, str], SchemaSink | None]:
        """Pass 1 over an export file: refuse it unless whole (or ``force``); open the schema
        store now if it has schemas, so a missing schema table fails before any write."""
        check = verify_export(stream)
        stream.seek(0)
        if check.problem and not force:
            raise errors.InputError(
                f"export file refused, nothing written: {check.problem} "
                "(--force loads its intact lines)",
                operation="Load",
            )
        extra = {"schemas": str(check.schemas)}
        if check.problem:
            extra["export_problem"] = check.problem
        return extra, SchemaSink(self.schema_store(user)) if check.schemas else None

    def check_strict(
        self,
        stream: BinaryIO,
        format: str,
        key_column: str | None,
        namespace: str | None,
        *,
        rewind: bool = True,
    ) -> None:
        """Everything the load would reject, refused before any job exists: bad lines, lines
        without a namespace, namespaces DynamoDB cannot name a table after. ``rewind``: seek
        the stream back to its start after."""
        bad: list[BadLine] = []
        valid: set[str] = set()
        for rec in read_records(stream, format, key_column):
            if isinstance(rec, BadLine):
                bad.append(rec)
            elif isinstance(rec, Record):
                why = namespace_problem(namespace or rec.namespace, valid, self.check_namespace)
                if why:
                    bad.append(BadLine(rec.line, why))
        if bad:
            shown = "; ".join(f"line {b.line}: {b.reason}" for b in bad[:MAX_STRICT_REPORT])
            extra = len(bad) - MAX_STRICT_REPORT
            more = f" (and {extra} more)" if extra > 0 else ""
            raise errors.InputError(
                f"{len(bad)} bad lines, nothing enqueued: {shown}{more}", operation="Load"
            )
        if rewind:
            stream.seek(0)
