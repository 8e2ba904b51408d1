"""``Producer``: what applications and operators call to enqueue work and read directly.

Every write goes through the queue and returns a :class:`Job`; reads (``get``, ``scan``) are
direct calls on the storage layer. Tenant isolation: every method takes ``user_id`` (default:
``DATAFOLD_DYNAMODB_USER_ID``), and every message carries it to the worker, which only ever
touches that user's partition.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, TextIO

from celery import Celery

from pipeline import ids
from pipeline.broker import sender_app
from pipeline.config import PipelineConfig
from pipeline.enqueue import CeleryEnqueuer, Enqueuer
from pipeline.ids import new_job_id
from pipeline.ledger import Ledger
from pipeline.messages import Plan, SingleWrite
from pipeline.payloads import LOST, PayloadStore
from pipeline.redis_boundary import Redis, connect
from pipeline.segmenter import DEFAULT_PARTITIONS
from pipeline.states import JobKind, PlanKind, Target
from producers.bulk import Group, bulk_job
from producers.export import ExportCounts, export_user
from producers.file_load import FileLoader
from producers.job import Job
from producers.multi_load import load_inputs
from producers.session import OnProgress, ProducerSession
from storage import errors
from storage.limits import check_partition, namespace_table
from storage.namespaced import DynamoNamespacedStore
from storage.schema import DynamoSchemaStore
from storage.settings import DynamoConfig


class Producer:
    def __init__(
        self,
        dynamo: DynamoConfig,
        pipeline: PipelineConfig,
        *,
        redis_client: Redis[Any] | None = None,
        enqueue: Enqueuer | None = None,
        app: Celery | None = None,
        partitions: int = DEFAULT_PARTITIONS,
    ) -> None:
        self.dynamo_config = dynamo
        self.config = pipeline
        self.redis = redis_client or connect(pipeline.redis_url, pipeline)
        self.ledger = Ledger(
            self.redis, ttl=pipeline.result_ttl, producer_timeout=pipeline.producer_timeout
        )
        if enqueue is None:
            if app is None:
                app = sender_app(pipeline)
            enqueue = CeleryEnqueuer(app, PayloadStore(self.redis, ttl=pipeline.result_ttl))
        self.enqueue = enqueue
        self.partitions = partitions
        self.sequencer = self.ledger.sequencer
        self._store: DynamoNamespacedStore | None = None

    @classmethod
    def from_env(cls) -> Producer:
        return cls(DynamoConfig.from_env(), PipelineConfig.from_env())

    def _user(self, user_id: str | None) -> str:
        """The user id to act as; InvalidKeyError before any job exists if DynamoDB could
        never store it (empty, or over the partition key's 2,048 bytes)."""
        user = user_id if user_id is not None else self.dynamo_config.user_id
        check_partition(user, operation="Producer")
        return user

    def _ns(self, namespace: str) -> str:
        namespace_table(self.dynamo_config.table_prefix, namespace)  # InvalidNamespaceError
        return namespace

    def job(self, job_id: str) -> Job:
        """A handle on an existing job (JobNotFoundError if unknown or expired)."""
        j = Job(job_id, self.ledger)
        j.status()
        return j

    # -- bulk -----------------------------------------------------------------------------
    def _bulk(
        self,
        kind: JobKind,
        groups: Iterable[Group],
        user: str,
        namespace: str | None,
        on_progress: OnProgress | None = None,
        **extra: str,
    ) -> Job:
        feed = (self.ledger, self.enqueue, self.config, self.partitions)
        job_id = bulk_job(*feed, kind, groups, user, namespace, on_progress, extra)
        return Job(job_id, self.ledger)

    def load(
        self,
        namespace: str,
        items: Iterable[tuple[bytes, bytes]],
        user_id: str | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Job:
        """Enqueue a bulk load of ``(key, value)`` byte pairs (streamed; last pair per key
        wins). Items DynamoDB would refuse are dead-lettered by the worker with the reason.
        Blocks while the queued-bytes budget is full (``on_progress`` hears about it)."""
        ns, user = self._ns(namespace), self._user(user_id)
        pairs = ((k, v) for k, v in items)
        return self._bulk(JobKind.LOAD, [(Target.KV, ns, pairs)], user, ns, on_progress)

    def delete_keys(
        self,
        namespace: str,
        keys: Iterable[bytes],
        user_id: str | None = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Job:
        """Enqueue deletes of ``keys`` (streamed; see :meth:`load`)."""
        ns, user = self._ns(namespace), self._user(user_id)
        pairs = ((k, None) for k in keys)
        return self._bulk(JobKind.DELETE, [(Target.KV, ns, pairs)], user, ns, on_progress)

    def load_file(
        self,
        path_or_dash: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        namespace: str | None = None,
        user_id: str | None = None,
        format: str = "jsonl",
        key_column: str | None = None,
        *,
        key_attribute: str | None = None,
        compression: str = "auto",
        strict: bool = False,
        force: bool = False,
        resume: str | None = None,
        on_progress: OnProgress | None = None,
    ) -> Job:
        """Enqueue the records of a JSONL, CSV or DynamoDB-JSON (``ddb-json``, keyed by
        ``key_attribute``, default ``PK``) input, streamed: memory stays flat for any size.
        An input is a path, ``-`` (stdin) or an ``s3://bucket/key`` URL, decompressed by
        extension (``.gz``, ``.bz2``, ``.zst``) or as ``compression`` says; a list of them, a
        pattern (``*.json.gz``) or an S3 prefix ending in ``/`` loads as one job, in the order
        listed (:mod:`producers.multi_load`). Bad lines are rejected with line number and
        reason; with ``strict`` any refuses the input before anything is enqueued.

        A JSONL input whose first line is an export line is an export file (see
        :meth:`export`): it is read twice, first to check its trailer's checksum and counts —
        a truncated or altered file raises InputError before anything is written — then to
        load it. With ``force`` a damaged export is loaded anyway (every intact line; the
        damaged ones are rejected lines) and the job's ``status().extra["export_problem"]``
        says what was wrong. Schema lines are restored directly, not through the queue.

        Reading blocks while the queued-bytes budget (``DATAFOLD_MAX_QUEUED_BYTES``) is full;
        ``on_progress`` hears of lines enqueued and of waiting. If the reading stops early
        (Ctrl-C, an error, Redis gone) the job is ``incomplete`` (or ``abandoned``, if this
        process dies): ``resume=JOB`` goes on from its last checkpoint with the same single
        input, options and user (NotResumableError if the input is not the same, by size and
        digest, or if the job read several inputs), ending with the totals an uninterrupted
        load would have."""
        user = self._user(user_id)
        if namespace is not None:
            self._ns(namespace)
        loader = FileLoader(
            ledger=self.ledger,
            enqueue=self.enqueue,
            partitions=self.partitions,
            segment_size=self.config.segment_size,
            check_namespace=self._ns,
            schema_store=self._schema_store,
            budget=self.config.max_queued_bytes,
            compression=compression,
        )
        keys = (key_column, key_attribute)  # ``namespace``: None only if the lines name theirs
        return load_inputs(
            loader, path_or_dash, namespace, user, format, *keys, strict=strict, force=force,
            resume=resume, on_progress=on_progress,
        )  # fmt: skip

    # -- export (direct reads) --------------------------------------------------------------
    def export(
        self,
        user_id: str | None,
        out: BinaryIO,
        namespaces: Sequence[str] | None = None,
        *,
        progress: TextIO | None = None,
    ) -> ExportCounts:
        """Write every schema and every item of ``user_id`` (in ``namespaces``, default all) to
        ``out`` (binary; not closed) as an export file that :meth:`load_file` takes back as it
        is. Direct paginated Queries of the user's partition, never a Scan; memory stays flat.
        ``progress`` (a terminal) gets a redrawn progress line. Returns the counts written.
        No schema table: no schemas. Raises InvalidNamespaceError / TableNotFoundError for a
        bad or missing named namespace, before writing anything."""
        user = self._user(user_id)
        names = [self._ns(n) for n in namespaces] if namespaces is not None else None
        try:
            schemas: DynamoSchemaStore | None = self._schema_store(user)
        except errors.TableNotFoundError:
            schemas = None
        return export_user(self.store(user), schemas, out, names, progress=progress)

    def _schema_store(self, user: str) -> DynamoSchemaStore:
        """The schema store of ``user`` on the shared client (one DescribeTable:
        TableNotFoundError if the schema table is missing)."""
        return DynamoSchemaStore(self.dynamo_config, user, dynamo=self.store(user).dynamo)

    # -- single writes --------------------------------------------------------------------
    def _single(
        self, kind: JobKind, namespace: str, key: bytes, value: bytes | None, user_id: str | None
    ) -> Job:
        ns, user = self._ns(namespace), self._user(user_id)
        if not isinstance(key, bytes) or (value is not None and not isinstance(value, bytes)):
            raise errors.ValidationError("keys and values are bytes", operation=kind)
        seq = self.sequencer.next()
        job_id, token = new_job_id(), ProducerSession.new_token()
        self.ledger.create(job_id, kind=kind, namespace=ns, user_id=user, producer=token, seq=seq)
        write = SingleWrite(job_id, ns, user, key, value, seq)
        self.ledger.plan(job_id, write.seg, 1)
        self.enqueue.single(write)
        self.ledger.seal(job_id, producer=token)  # after the journal: never sealed unsent
        return Job(job_id, self.ledger)

    def put(self, namespace: str, key: bytes, value: bytes, user_id: str | None = None) -> Job:
        """Enqueue one ordered put: of the puts and deletes of one key, the one enqueued last
        wins, whatever order workers run them in."""
        return self._single(JobKind.PUT, namespace, key, value, user_id)

    def delete(self, namespace: str, key: bytes, user_id: str | None = None) -> Job:
        """Enqueue one ordered delete (see :meth:`put`)."""
        return self._single(JobKind.DELETE_KEY, namespace, key, None, user_id)

    # -- bulk deletes planned by the worker -------------------------------------------------
    def _plan(self, what: PlanKind, user: str) -> Job:
        job_id, token = new_job_id(), ProducerSession.new_token()
        seq = self.ledger.create(job_id, kind=JobKind(what), user_id=user, producer=token)
        self.ledger.plan(job_id, ids.PLAN, 0)
        self.enqueue.stage(plan := Plan(job_id, what, user))  # journalled: a marked erase runs
        if what is PlanKind.RESET_USER:  # older writes superseded, newer wait: pipeline/erasure.py
            self.ledger.erasure.mark(user, job_id, seq)
        self.enqueue.send(plan)
        self.ledger.producing.handoff(job_id, token)  # the planner seals it
        return Job(job_id, self.ledger)

    def clear_all_schemas(self, user_id: str | None = None) -> Job:
        """Enqueue the deletion of every schema of the user (25 per BatchWriteItem)."""
        return self._plan(PlanKind.CLEAR_SCHEMAS, self._user(user_id))

    def reset_user(self, user_id: str) -> Job:
        """Enqueue the erasure of every item (every namespace) and schema of ``user_id``."""
        if not user_id:
            raise errors.ValidationError(
                "reset_user needs an explicit user id", operation="ResetUser"
            )
        return self._plan(PlanKind.RESET_USER, self._user(user_id))

    def replay_dead_letters(self, job_id: str) -> Job:
        """Enqueue again every dead letter of ``job_id`` (same namespace and user), but those
        that name no item (a segment's lost payload: its items are unknown)."""
        old = self.job(job_id).status()
        groups: dict[tuple[Target, str | None], list[tuple[bytes, bytes | None]]] = {}
        for d in self.ledger.dead_letters(job_id):
            if d.code == LOST:
                continue
            # A dead letter without a namespace is a schema (schema-table delete).
            where = (Target.KV, d.namespace) if d.namespace is not None else (Target.SCHEMAS, None)
            groups.setdefault(where, []).append((d.key, d.value))
        return self._bulk(
            JobKind.REPLAY,
            [(target, ns, pairs) for (target, ns), pairs in groups.items()],
            old.user_id,
            old.namespace,
            replay_of=job_id,
        )

    # -- direct reads ---------------------------------------------------------------------
    def store(self, user_id: str | None = None) -> DynamoNamespacedStore:
        """The storage layer for direct reads, as ``user_id``."""
        if self._store is None:
            self._store = DynamoNamespacedStore(self.dynamo_config)
        return self._store.for_user(self._user(user_id))

    def get(self, namespace: str, key: bytes, user_id: str | None = None) -> bytes | None:
        return self.store(user_id).open_namespace(self._ns(namespace), create=False).get(key)

    def scan(
        self,
        namespace: str,
        prefix: bytes = b"",
        user_id: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        kv = self.store(user_id).open_namespace(self._ns(namespace), create=False)
        return kv.scan_prefix(prefix, limit=limit)
