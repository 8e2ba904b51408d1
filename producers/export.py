"""Export files, both ends: write everything a user owns, and check a file before it is loaded.

Writing (:func:`export_user`): the user's schemas first, then the items of each namespace, as
JSONL in the format of :mod:`producers.export_format`, ending in the trailer (counts and the
sha256 of every line before it, each with its ``"\\n"``). Reads are paginated Queries on the
user's partition (never a Scan) of at most ``page_size`` items each, and each line is written as
soon as it is made, so memory stays flat for any size: about one page of items (default 250, at
most 1 MB of data) plus one line (at most ~540 KB: a 400 KB value in base64). Tombstones are not
exported (they are absent values). Cost: one Query per page per namespace, one ListTables page
per 100 tables (namespaces are tables shared by every user: the export only ever Queries this
user's partition of each, so nothing of another user can appear in it).

Loading (used by ``Producer.load_file``): a JSONL file whose first line is an export line is an
export; it is checked whole (:func:`verify_export`, pass 1) before anything is written, and its
schema lines are restored directly by a :class:`SchemaSink` — not through the queue — with their
timestamps and version, 25 per BatchWriteItem.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

from producers.export_format import ExportVerifier, SchemaRecord, Trailer
from producers.inputs import BadLine, read_jsonl
from producers.progress import ExportProgress
from storage import errors
from storage.kv import DynamoKvStore
from storage.namespaced import DynamoNamespacedStore
from storage.schema import DynamoSchemaStore
from storage.schema_item import Schema

EXPORT_PAGE_ITEMS = 250
"""Items per Query page while exporting: bounds memory with many small items (a parsed page
costs ~4 KB of Python objects per small item, so ~1 MB; 1 MB pages of tiny items would cost tens
of MB). A page is one Query call: 80 calls per 20,000 items."""
SCHEMA_CHUNK = 100
"""Schemas buffered before a restore call (4 BatchWriteItem calls of 25, in parallel)."""
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ExportCounts:
    """What an export wrote: item lines per namespace (only namespaces with items), schema
    lines, bytes written (trailer included) and the trailer's sha256 (hex)."""

    items: dict[str, int]
    schemas: int
    bytes: int
    sha256: str

    @property
    def total_items(self) -> int:
        return sum(self.items.values())


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _fields(rec: SchemaRecord | Trailer) -> dict[str, Any]:
    """The line's fields, named exactly as ``export_format`` parses them (``line`` excluded)."""
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name != "line"}


def item_line(namespace: str, key: bytes, value: bytes) -> bytes:
    return _line(
        {
            "kind": "item",
            "namespace": namespace,
            "key_b64": base64.b64encode(key).decode("ascii"),
            "value_b64": base64.b64encode(value).decode("ascii"),
        }
    )


def schema_line(s: Schema) -> bytes:
    rec = SchemaRecord(
        0, s.name, s.body, s.mutation_mappers or {}, s.created_at, s.updated_at, s.version
    )
    return _line({"kind": "schema", **_fields(rec)})


def trailer_line(items: dict[str, int], schemas: int, sha256: str) -> bytes:
    return _line({"kind": "trailer", **_fields(Trailer(0, items, schemas, sha256))})


class _Out:
    """Writes lines to ``out`` and hashes/counts them in an :class:`ExportVerifier`."""

    def __init__(self, out: BinaryIO, progress: ExportProgress | None) -> None:
        self.out, self.progress = out, progress
        self.sums = ExportVerifier()
        self.nbytes = 0
        self.where = "schemas"

    def write(self, line: bytes) -> None:
        self.out.write(line)
        self.sums.feed(line)
        self.nbytes += len(line)
        if self.progress is not None:
            self.progress.update(
                self.where, sum(self.sums.items.values()), self.sums.schemas, self.nbytes
            )


def _namespaces(
    store: DynamoNamespacedStore, named: Sequence[str] | None
) -> list[tuple[str, DynamoKvStore]]:
    """Open every namespace to export before a byte is written. A named namespace that does
    not exist raises :class:`TableNotFoundError`; a listed one that vanished is skipped."""
    if named is not None:
        return [(ns, store.open_namespace(ns, create=False)) for ns in dict.fromkeys(named)]
    out = []
    for ns in store.list_namespaces():
        try:
            out.append((ns, store.open_namespace(ns, create=False)))
        except errors.TableNotFoundError:
            continue
    return out


def export_user(
    store: DynamoNamespacedStore,
    schemas: DynamoSchemaStore | None,
    out: BinaryIO,
    namespaces: Sequence[str] | None = None,
    *,
    progress: TextIO | None = None,
    page_size: int = EXPORT_PAGE_ITEMS,
) -> ExportCounts:
    """Write every schema (``schemas``: the user's store, None if there is no schema table)
    and every item of ``store``'s user in ``namespaces`` (default: all) to ``out`` as an
    export file; return what was written. ``out`` is not closed or flushed.

    Raises :class:`TableNotFoundError` for a named namespace that does not exist (before
    writing anything), and any storage error of a read (the file is then left without its
    trailer, so it can never be loaded as whole)."""
    kvs = _namespaces(store, namespaces)
    bar = ExportProgress(progress) if progress is not None else None
    w = _Out(out, bar)
    if schemas is not None:
        for s in schemas.iter_schemas():
            w.write(schema_line(s))
            w.sums.schemas += 1
    for ns, kv in kvs:
        w.where = ns
        for key, value in kv.scan_prefix(b"", page_size=page_size):
            w.write(item_line(ns, key, value))
            w.sums.items[ns] += 1
    items = {ns: n for ns, n in w.sums.items.items() if n}
    last = trailer_line(items, w.sums.schemas, w.sums.sha256)
    out.write(last)
    if bar is not None:
        bar.update("done", sum(items.values()), w.sums.schemas, w.nbytes + len(last), force=True)
        bar.close()
    return ExportCounts(items, w.sums.schemas, w.nbytes + len(last), w.sums.sha256)


def export_to_path(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], ExportCounts]
) -> ExportCounts:
    """Run ``write`` on ``PATH.partial`` and rename it to ``path`` only once complete (and
    fsynced), so ``path`` never holds a half-written export; the partial file is removed if
    ``write`` raises."""
    final = os.fspath(path)
    partial = final + ".partial"
    try:
        with open(partial, "wb") as f:
            counts = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    return counts


# -- the loading side -------------------------------------------------------------------------
def looks_like_export(first_line: bytes) -> bool:
    """Whether a file's first line makes it an export: a JSON object with a ``kind`` (or a line
    starting ``{"kind"`` as the exporter writes it, even if damaged further on)."""
    line = first_line.removeprefix(_BOM).strip()
    if line.startswith(b'{"kind"'):
        return True
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and "kind" in obj


@dataclass(frozen=True)
class Verification:
    """Pass 1 over an export file: ``problem`` is None when it is whole and unaltered."""

    problem: str | None
    items: dict[str, int]
    schemas: int
    bad_lines: int


def verify_export(stream: BinaryIO) -> Verification:
    """Read the whole stream once: checksum and counts against the trailer (see
    :meth:`ExportVerifier.check` for the reasons). Constant memory; the caller rewinds."""
    v = ExportVerifier()
    trailer: Trailer | None = None
    bad = 0
    for rec in read_jsonl(stream, on_line=v.feed):
        v.count(rec)
        if isinstance(rec, Trailer):
            trailer = rec
        elif isinstance(rec, BadLine):
            bad += 1
    return Verification(v.check(trailer), dict(v.items), v.schemas, bad)


class SchemaSink:
    """Restores schema lines with ``DynamoSchemaStore.restore_schemas`` (timestamps and version
    as written), ``chunk`` at a time. Call :meth:`close` at the end; errors propagate."""

    def __init__(self, store: DynamoSchemaStore, chunk: int = SCHEMA_CHUNK) -> None:
        self.store, self.chunk = store, chunk
        self._buf: list[Schema] = []
        self.restored = 0

    def add(self, rec: SchemaRecord) -> None:
        self._buf.append(
            Schema(
                rec.name,
                rec.body,
                rec.mutation_mappers,
                rec.created_at,
                rec.updated_at,
                rec.version,
            )
        )
        if len(self._buf) >= self.chunk:
            self.close()

    def close(self) -> int:
        """Write what is buffered; return the schemas restored so far."""
        if self._buf:
            buf, self._buf = self._buf, []
            self.restored += self.store.restore_schemas(buf)
        return self.restored


class PrefixedStream(io.RawIOBase):
    """``head`` then the rest of ``rest``: gives back a first line already read from a stream
    that cannot seek (stdin). Wrap in ``io.BufferedReader``; closing it leaves ``rest`` open."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        read1 = getattr(self._rest, "read1", self._rest.read)
        data = read1(len(b))
        b[: len(data)] = data
        return len(data)
