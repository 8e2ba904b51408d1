"""``NamespacedStore``: one DynamoDB table per namespace, ``{prefix}-{namespace}``.

One client (one connection pool) and one batch writer serve every namespace the store opens;
opened tables are remembered, so ``open_namespace`` costs one DescribeTable the first time and
nothing after.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from storage.batch import BatchWriter
from storage.client import Dynamo
from storage.kv import DynamoKvStore
from storage.limits import check_partition, namespace_table
from storage.pacer import Pacer
from storage.settings import DynamoConfig
from storage.tables import KV_TABLE_SPEC, delete_table, ensure_table, require_table


class DynamoNamespacedStore:
    """Namespaces of one user (``user_id``, else the config's) on DynamoDB."""

    def __init__(
        self,
        config: DynamoConfig,
        user_id: str | None = None,
        *,
        dynamo: Dynamo | None = None,
        pacer: Pacer | None = None,
        batch_threads: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.user_id = user_id if user_id is not None else config.user_id
        check_partition(self.user_id, table=config.table_prefix, operation="OpenNamespace")
        self.dynamo = dynamo or Dynamo(config, sleep=sleep)
        self.sleep = sleep
        self.writer = BatchWriter(
            self.dynamo, rounds=config.batch_rounds, threads=batch_threads, pacer=pacer, sleep=sleep
        )
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def for_user(self, user_id: str) -> DynamoNamespacedStore:
        """The same store (same client and writer) seen as another user."""
        other = object.__new__(DynamoNamespacedStore)
        other.__dict__.update(self.__dict__)
        other.user_id = user_id
        check_partition(user_id, table=self.config.table_prefix, operation="OpenNamespace")
        return other

    def table_name(self, name: str) -> str:
        """Validated table name of namespace ``name`` (InvalidNamespaceError otherwise)."""
        return namespace_table(self.config.table_prefix, name)

    def open_namespace(self, name: str, *, create: bool = True) -> DynamoKvStore:
        """The ``KvStore`` of namespace ``name``, creating its table if missing.

        Safe when many processes open the same new namespace at once: creation races are
        tolerated and the call returns only once the table is ACTIVE. With ``create=False`` a
        missing namespace raises :class:`TableNotFoundError` (naming table and endpoint)."""
        table = self.table_name(name)
        if table not in self._ready:
            if create:
                ensure_table(
                    self.dynamo, table, KV_TABLE_SPEC, ttl_attribute="ExpiresAt", sleep=self.sleep
                )
            else:
                require_table(self.dynamo, table, KV_TABLE_SPEC)
            with self._lock:
                self._ready.add(table)
        return DynamoKvStore(self.dynamo, table, self.user_id, self.writer)

    def list_namespaces(self) -> list[str]:
        """Names of every namespace table under the prefix (ListTables, paginated), sorted."""
        lead = self.config.table_prefix + "-"
        names: list[str] = []
        params: dict[str, Any] = {}
        while True:
            page = self.dynamo.call("ListTables", None, **params)
            names += [t[len(lead) :] for t in page.get("TableNames", []) if t.startswith(lead)]
            last = page.get("LastEvaluatedTableName")
            if not last:
                return sorted(names)
            params = {"ExclusiveStartTableName": last}

    def delete_namespace(self, name: str) -> bool:
        """Drop namespace ``name`` — its table, for *every* user — and wait until it is gone.

        An operator action; to erase one user's data use the pipeline's ``reset_user``.
        Returns False if it did not exist."""
        table = self.table_name(name)
        with self._lock:
            self._ready.discard(table)
        return delete_table(self.dynamo, table, sleep=self.sleep)
