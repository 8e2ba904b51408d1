"""Many inputs as one load job (:func:`load_many`): files, S3 objects, a prefix or a pattern
expanded by :func:`producers.sources.expand_sources`, read one after the other.

One job, one total: the records of every input go through one :class:`~producers.feed.Feed`
in the order the inputs are listed, so the last line per key wins across inputs as within
one. Line numbers restart with each input; a rejected line names its input
(``s3://b/part-2.json.gz: not valid JSON``). The progress line names the input being read.
Such a job does not resume (its checkpoints would have to name the input too): ``--resume``
refuses it, and a stopped one ends ``incomplete`` like any load, never ``succeeded``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from pipeline.ids import new_job_id
from pipeline.segmenter import SEGMENT_MAX_BYTES
from pipeline.states import JobKind
from producers.checkpoint import Checkpoint, TrackedInput
from producers.ddb_json import DEFAULT_KEY_ATTRIBUTE
from producers.feed import Feed
from producers.inputs import FORMATS, BadLine, Parsed, read_records
from producers.job import Job
from producers.records import LineSource
from producers.session import BudgetGate, OnProgress, ProducerSession
from producers.sources import close_source, expand_sources, is_s3, open_source, s3_client
from storage.errors import InputError, NotResumableError

if TYPE_CHECKING:
    from producers.file_load import FileLoader


class SourceChain:
    """The input being read, as one stream: empty between inputs (each reader ends there)."""

    def __init__(self) -> None:
        self.current: BinaryIO | None = None

    def readline(self, size: int = -1) -> bytes:
        return self.current.readline(size) if self.current is not None else b""

    def read(self, size: int = -1) -> bytes:
        return self.current.read(size) if self.current is not None else b""


def chained_records(
    specs: list[str],
    tracker: LineSource,
    chain: SourceChain,
    format: str,
    key_column: str | None,
    *,
    compression: str = "auto",
    client: Any = None,
    on_source: Any = None,
) -> Iterator[Parsed]:
    """The records of every input in turn, read through ``tracker`` over ``chain``; rejected
    lines name their input. ``on_source(i, spec)`` hears when input ``i`` (1-based) starts."""
    for i, spec in enumerate(specs, 1):
        if on_source is not None:
            on_source(i, spec)
        stream = open_source(spec, compression, client=client)
        chain.current = stream
        try:
            for rec in read_records(tracker, format, key_column):
                yield (
                    BadLine(rec.line, f"{spec}: {rec.reason}") if isinstance(rec, BadLine) else rec
                )
        finally:
            chain.current = None
            close_source(spec, stream)


def load_many(
    loader: FileLoader,
    specs: list[str],
    namespace: str | None,
    user: str,
    format: str,
    key_column: str | None,
    *,
    strict: bool,
    on_progress: OnProgress | None = None,
) -> Job:
    """See ``Producer.load_file`` with several inputs (``user`` resolved, ``namespace``
    checked). With ``strict``, every input is read once first and any bad line refuses them
    all, before any job exists."""
    if strict:
        for spec in specs:
            stream = open_source(spec, loader.compression, client=loader.s3)
            try:
                loader.check_strict(stream, format, key_column, namespace, rewind=False)
            except InputError as exc:
                raise InputError(f"{spec}: {exc.message}", operation="Load") from None
            finally:
                close_source(spec, stream)
    chain = SourceChain()
    tracker = TrackedInput(cast(BinaryIO, chain))
    cut = (loader.partitions, loader.segment_size, SEGMENT_MAX_BYTES)
    base = Checkpoint(format, key_column, namespace, None, cut=cut)
    job_id, token = new_job_id(), ProducerSession.new_token()
    extra = {"sources": str(len(specs)), "file": " ".join(specs)[:1000]}
    loader.ledger.create(
        job_id,
        kind=JobKind.LOAD,
        namespace=namespace or "",
        user_id=user,
        producer=token,
        extra=extra,
    )
    feed = Feed(
        loader.ledger,
        loader.enqueue,
        job_id,
        user,
        namespace,
        partitions=loader.partitions,
        segment_size=loader.segment_size,
        check_namespace=loader.check_namespace,
        schema_store=loader.schema_store,
    )
    with ProducerSession(loader.ledger, job_id, token=token) as session:
        gate = BudgetGate(session, loader.budget, on_progress=on_progress)
        where = {"now": ""}

        def on_source(i: int, spec: str) -> None:
            where["now"] = gate.source = f"input {i}/{len(specs)} {spec}"
            feed.enter(spec)

        session.describe = lambda: (
            f"stopped while reading {where['now'] or 'the first input'}; a load of several "
            "inputs does not resume: load them again"
        )
        records = chained_records(
            specs,
            tracker,
            chain,
            format,
            key_column,
            compression=loader.compression,
            client=loader.s3,
            on_source=on_source,
        )
        feed.run(records, tracker, base, gate, session)
    return Job(job_id, loader.ledger)


def key_field(format: str, key_column: str | None, key_attribute: str | None) -> str | None:
    """What the reader of ``format`` takes as its key: the CSV column, or the ddb-json
    attribute (default ``PK``). InputError for an unknown format or a misplaced option."""
    if format not in FORMATS:
        raise InputError(f"unknown input format {format!r} (use {', '.join(FORMATS)})")
    if format == "ddb-json":
        if key_column is not None:
            raise InputError("the ddb-json format takes a key attribute, not a key column")
        return key_attribute or DEFAULT_KEY_ATTRIBUTE
    if key_attribute is not None:
        raise InputError("a key attribute applies only to the ddb-json format")
    return key_column


def expand_inputs(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], client: Any = None
) -> tuple[list[str], Any]:
    """The inputs named, expanded (:func:`~producers.sources.expand_sources`), and the S3
    client to read them with: ``client``, or one made if any is on S3 (else None)."""
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not given:
        raise InputError("no input to load")
    names = [os.fspath(x) for x in given]
    if client is None and any(is_s3(n) for n in names):
        client = s3_client()  # one client for listing and every object
    return expand_sources(names, client=client), client


def load_inputs(
    loader: FileLoader,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    namespace: str | None,
    user: str,
    format: str,
    key_column: str | None,
    key_attribute: str | None,
    *,
    strict: bool,
    force: bool,
    resume: str | None,
    on_progress: OnProgress | None,
) -> Job:
    """``Producer.load_file``'s dispatch: expand the inputs; one is a (resumable) file load,
    several are one job of many inputs. The key of a ddb-json line is ``key_attribute``."""
    key_column = key_field(format, key_column, key_attribute)
    client = loader.s3
    specs, client = expand_inputs(inputs, client)
    loader = replace(loader, s3=client)
    if len(specs) == 1:
        args = (specs[0], namespace, user, format, key_column)
        return loader.load(
            *args, strict=strict, force=force, resume=resume, on_progress=on_progress
        )
    if resume is not None:
        raise NotResumableError(
            f"{len(specs)} inputs: only a load of one input resumes (load them again)",
            operation="Resume",
        )
    return load_many(
        loader, specs, namespace, user, format, key_column, strict=strict, on_progress=on_progress
    )
