"""The machinery of ``Producer.load_file``: open the input, check it, enqueue its records.

An input that must be read twice (``strict``, or an export file, verified first) and cannot
seek is spooled to a temp file, so memory stays flat. Records are cut into segments per
namespace; bad lines are recorded in the job; schema lines are restored directly.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger, new_job_id
from pipeline.segmenter import Segmenter
from pipeline.states import JobKind
from producers.export import PrefixedStream, SchemaSink, looks_like_export, verify_export
from producers.inputs import (
    MAX_LINE_BYTES,
    BadLine,
    Record,
    SchemaRecord,
    Trailer,
    open_input,
    read_records,
)
from producers.job import Job
from storage import errors
from storage.schema import DynamoSchemaStore

MAX_STRICT_REPORT = 5


class _Opened:
    """Open the input and tell whether it is an export file (first line). Stdin (or any
    unseekable input) is spooled to a temp file when it must be read twice — ``strict``,
    or an export file (verified first) — so memory stays flat."""

    def __init__(self, path: str | os.PathLike[str], strict: bool, format: str = "jsonl") -> None:
        self.path, self.strict, self.format = path, strict, format
        self.export = False
        self.src: BinaryIO | None = None
        self.tmp: Any = None

    def __enter__(self) -> BinaryIO:
        src = self.src = open_input(self.path)
        seekable = str(self.path) != "-" and src.seekable()
        head = b""
        if self.format == "jsonl":
            head = src.readline(MAX_LINE_BYTES + 1)
            self.export = looks_like_export(head)
        if seekable:
            src.seek(0)
            return src
        if self.strict or self.export:
            self.tmp = tempfile.TemporaryFile()
            self.tmp.write(head)
            shutil.copyfileobj(src, self.tmp, 1024 * 1024)
            self.tmp.seek(0)
            return self.tmp  # type: ignore[no-any-return]
        return io.BufferedReader(PrefixedStream(head, src)) if head else src

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.close()
        if self.src is not None and str(self.path) != "-":
            self.src.close()


@dataclass(frozen=True)
class FileLoader:
    """What a load takes from its ``Producer``: the ledger, the enqueuer, the segmenting
    settings, the namespace check and the user's schema store (opened only when needed)."""

    ledger: Ledger
    enqueue: Enqueuer
    partitions: int
    segment_size: int
    check_namespace: Callable[[str], str]
    schema_store: Callable[[str], DynamoSchemaStore]

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
    ) -> Job:
        """See ``Producer.load_file`` (``user`` resolved, ``namespace`` already checked)."""
        opened = _Opened(path_or_dash, strict, format)
        with opened as stream:
            extra: dict[str, str] = {}
            sink: SchemaSink | None = None
            if opened.export:
                extra, sink = self._verify_export(stream, user, force)
            if strict:
                self._check_strict(stream, format, key_column)
            return self._load_stream(
                stream, namespace, user, format, key_column, sink=sink, extra=extra
            )

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

    @staticmethod
    def _check_strict(stream: BinaryIO, format: str, key_column: str | None) -> None:
        bad = [r for r in read_records(stream, format, key_column) if isinstance(r, BadLine)]
        if bad:
            shown = "; ".join(f"line {b.line}: {b.reason}" for b in bad[:MAX_STRICT_REPORT])
            extra = len(bad) - MAX_STRICT_REPORT
            more = f" (and {extra} more)" if extra > 0 else ""
            raise errors.InputError(
                f"{len(bad)} bad lines, nothing enqueued: {shown}{more}", operation="Load"
            )
        stream.seek(0)

    def _load_stream(
        self,
        stream: BinaryIO,
        namespace: str | None,
        user: str,
        format: str,
        key_column: str | None,
        *,
        sink: SchemaSink | None = None,
        extra: dict[str, str] | None = None,
    ) -> Job:
        records = read_records(stream, format, key_column)  # checks format and CSV header now
        job_id = new_job_id()
        self.ledger.create(
            job_id, kind=JobKind.LOAD, namespace=namespace or "", user_id=user, **(extra or {})
        )
        segs: dict[str, Segmenter] = {}
        rejected: list[tuple[int, str]] = []
        n_rejected = 0
        try:
            for rec in records:
                if isinstance(rec, BadLine):
                    n_rejected += 1
                    rejected.append((rec.line, rec.reason))
                    if len(rejected) >= 100:
                        self.ledger.reject_lines(job_id, rejected)
                        rejected = []
                    continue
                if isinstance(rec, SchemaRecord):
                    if sink is None:
                        sink = SchemaSink(self.schema_store(user))
                    sink.add(rec)
                    continue
                if isinstance(rec, Trailer) or not isinstance(rec, Record):
                    continue
                ns = namespace or rec.namespace
                if ns is None:
                    n_rejected += 1
                    rejected.append((rec.line, "no namespace (give --namespace)"))
                    continue
                s = segs.get(ns)
                if s is None:
                    self.check_namespace(ns)
                    s = segs[ns] = Segmenter(
                        job=job_id,
                        ns=ns,
                        user=user,
                        ledger=self.ledger,
                        enqueue=self.enqueue,
                        partitions=self.partitions,
                        segment_size=self.segment_size,
                    )
                s.add(rec.key, rec.value)
            if sink is not None:
                sink.close()
        finally:
            for s in segs.values():
                s.close()
            self.ledger.reject_lines(job_id, rejected)
            self.ledger.seal(job_id, rejected=n_rejected)
        return Job(job_id, self.ledger)
