"""In-memory stores with the same interface and rules as the DynamoDB ones.

A real implementation (validation, per-user isolation, sequenced writes with tombstones, sorted
prefix scans, last-wins batches), not a mock: unit tests of the pipeline run against it with no
services. Thread-safe.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from storage import errors
from storage.batch import BatchResult, Rejected, WriteOp
from storage.kv import DynamoKvStore, KvStore
from storage.limits import MAX_ITEM_BYTES, check_key, check_partition, item_size, namespace_table
from storage.settings import DEFAULT_TABLE_PREFIX


class _Tomb:
    """A tombstone; ``had``: whether it replaced a value (what its delete reported)."""

    def __init__(self, had: bool) -> None:
        self.had = had


class _Table:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        # user id -> sorted keys, and (user, key) -> (value or _Tomb, seq)
        self.keys: dict[str, list[bytes]] = {}
        self.items: dict[tuple[str, bytes], tuple[object, int | None]] = {}

    def set(self, user: str, key: bytes, value: object, seq: int | None) -> None:
        if (user, key) not in self.items:
            bisect.insort(self.keys.setdefault(user, []), key)
        self.items[(user, key)] = (value, seq)

    def remove(self, user: str, key: bytes) -> object | None:
        old = self.items.pop((user, key), None)
        if old is not None:
            ks = self.keys[user]
            ks.pop(bisect.bisect_left(ks, key))
            return old[0]
        return None


class MemoryKvStore:
    """``KvStore`` over a shared in-memory table, seen through one user's partition."""

    def __init__(self, table: _Table, name: str, user_id: str) -> None:
        self._t = table
        self.table = name
        self.user_id = user_id

    def _check_value(self, key: bytes, value: bytes, seq: int | None = None) -> None:
        check_key(key, table=self.table, operation="PutItem")
        if not isinstance(value, (bytes, bytearray)):
            raise errors.ValidationError(
                f"values are bytes, got {type(value).__name__}",
                operation="PutItem",
                table=self.table,
                key=key,
            )
        item: dict[str, dict[str, Any]] = {
            "PK": {"S": self.user_id},
            "SK": {"B": key},
            "Value": {"B": value},
        }
        if seq is not None:
            item["Seq"] = {"N": str(seq)}
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise errors.ItemTooLargeError(
                f"item is {size} bytes as DynamoDB counts it, over the {MAX_ITEM_BYTES}-byte limit",
                operation="PutItem",
                table=self.table,
                key=key,
            )

    def get(self, key: bytes) -> bytes | None:
        check_key(key, table=self.table, operation="GetItem")
        with self._t.lock:
            value, _ = self._t.items.get((self.user_id, bytes(key)), (None, None))
        return value if isinstance(value, bytes) else None

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def seq_of(self, key: bytes) -> int | None:
        check_key(key, table=self.table, operation="GetItem")
        with self._t.lock:
            return self._t.items.get((self.user_id, key), (None, None))[1]

    def _newer(self, key: bytes, seq: int | None, operation: str = "PutItem") -> None:
        if seq is None:
            return
        _, old = self._t.items.get((self.user_id, key), (None, None))
        if old is not None and old >= seq:
            raise errors.ConditionFailedError(
                "the condition of the write was false",
                operation=operation,
                table=self.table,
                key=key,
                code="ConditionalCheckFailedException",
            )

    def put(self, key: bytes, value: bytes, *, seq: int | None = None) -> None:
        """As the DynamoDB store: a sequenced put finding itself stored (same sequence and
        value) succeeds without writing again."""
        self._check_value(key, value, seq)
        with self._t.lock:
            if seq is not None and self._t.items.get((self.user_id, bytes(key))) == (
                bytes(value),
                seq,
            ):
                return
            self._newer(bytes(key), seq)
            self._t.set(self.user_id, bytes(key), bytes(value), seq)

    def delete(self, key: bytes, *, seq: int | None = None) -> bool:
        """As the DynamoDB store: a sequenced delete finding its own tombstone reports what
        that tombstone's delete reported."""
        check_key(key, table=self.table, operation="DeleteItem")
        k = bytes(key)
        with self._t.lock:
            existed = self.get(k) is not None
            if seq is None:
                self._t.remove(self.user_id, k)
                return existed
            old, old_seq = self._t.items.get((self.user_id, k), (None, None))
            if old_seq == seq and isinstance(old, _Tomb):
                return old.had
            self._newer(k, seq, "UpdateItem")
            self._t.set(self.user_id, k, _Tomb(existed), seq)
        return existed

    def _keys(self, prefix: bytes) -> list[bytes]:
        ks = self._t.keys.get(self.user_id, [])
        lo = bisect.bisect_left(ks, prefix)
        out = []
        for k in ks[lo:]:
            if not k.startswith(prefix):
                break
            out.append(k)
        return out

    def scan_prefix(
        self, prefix: bytes, *, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        with self._t.lock:
            pairs = [
                (k, v)
                for k in self._keys(bytes(prefix))
                if isinstance(v := self._t.items[(self.user_id, k)][0], bytes)
            ]
        if limit is not None:
            pairs = pairs[: max(limit, 0)]
        yield from pairs

    def scan_keys(self, prefix: bytes = b"") -> Iterator[bytes]:
        with self._t.lock:
            keys = self._keys(bytes(prefix))
        yield from keys

    def _batch(
        self, ops: Iterable[tuple[bytes, bytes | None]], raise_on_incomplete: bool
    ) -> BatchResult:
        result = BatchResult()
        last: dict[bytes, bytes | None] = {}
        for key, value in ops:
            try:
                if value is None:
                    check_key(key, table=self.table, operation="DeleteItem")
                else:
                    self._check_value(key, value)
            except errors.StorageError as exc:
                req: dict[str, object] = {"DeleteRequest": {}} if value is None else {}
                result.rejected.append(Rejected(WriteOp(key, value, req, 0), exc))
                continue
            last.pop(bytes(key), None)
            last[bytes(key)] = value
        with self._t.lock:
            for key, value in last.items():
                if value is None:
                    self._t.remove(self.user_id, key)
                    result.deleted += 1
                else:
                    self._t.set(self.user_id, key, value, None)
                    result.written += 1
        if raise_on_incomplete:
            result.raise_if_incomplete(self.table)
        return result

    def batch_put(
        self, items: Iterable[tuple[bytes, bytes]], *, raise_on_incomplete: bool = True
    ) -> BatchResult:
        return self._batch(((k, v) for k, v in items), raise_on_incomplete)

    def batch_delete(
        self, keys: Iterable[bytes], *, raise_on_incomplete: bool = True
    ) -> BatchResult:
        return self._batch(((k, None) for k in keys), raise_on_incomplete)

    def flush(self) -> None:
        """Nothing to do."""


class MemoryNamespacedStore:
    """``NamespacedStore`` in memory; stores made by :meth:`for_user` share the tables."""

    def __init__(
        self,
        user_id: str = "default",
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        _tables: dict[str, _Table] | None = None,
    ) -> None:
        check_partition(user_id, table=table_prefix, operation="OpenNamespace")
        self.user_id = user_id
        self.table_prefix = table_prefix
        self._tables: dict[str, _Table] = {} if _tables is None else _tables
        self._lock = threading.Lock()

    def for_user(self, user_id: str) -> MemoryNamespacedStore:
        return MemoryNamespacedStore(user_id, table_prefix=self.table_prefix, _tables=self._tables)

    def open_namespace(self, name: str, *, create: bool = True) -> MemoryKvStore:
        table = namespace_table(self.table_prefix, name)
        with self._lock:
            if table not in self._tables:
                if not create:
                    raise errors.TableNotFoundError(
                        "no such namespace", table=table, operation="OpenNamespace"
                    )
                self._tables[table] = _Table()
            return MemoryKvStore(self._tables[table], table, self.user_id)

    def list_namespaces(self) -> list[str]:
        lead = self.table_prefix + "-"
        with self._lock:
            return sorted(t[len(lead) :] for t in self._tables)

    def delete_namespace(self, name: str) -> bool:
        table = namespace_table(self.table_prefix, name)
        with self._lock:
            return self._tables.pop(table, None) is not None


def _conforms(memory: MemoryKvStore, dynamo: DynamoKvStore) -> tuple[KvStore, KvStore]:
    """Never called: mypy checks here that both stores implement the ``KvStore`` protocol."""
    return memory, dynamo
