"""Child-process body of the table-creation race test (importable under the spawn method)."""

from __future__ import annotations

from typing import Any

from storage import DynamoConfig, DynamoNamespacedStore


def open_and_write(
    config: DynamoConfig, namespace: str, user: str, barrier: Any, results: Any
) -> None:
    """Open ``namespace`` the moment every sibling is ready, write one key at once, and report
    (user, outcome, value read back, CreateTable calls, ResourceInUse answers)."""
    from prometheus_client import REGISTRY

    try:
        store = DynamoNamespacedStore(config, user)
        table = store.table_name(namespace)
        barrier.wait(timeout=60)
        kv = store.open_namespace(namespace)
        kv.put(b"first", user.encode())
        labels = {"operation": "CreateTable", "table": table}
        creates = REGISTRY.get_sample_value("datafold_dynamodb_request_seconds_count", labels)
        in_use = REGISTRY.get_sample_value(
            "datafold_dynamodb_errors_total", {**labels, "code": "ResourceInUseException"}
        )
        results.put((user, "ok", kv.get(b"first"), creates or 0.0, in_use or 0.0))
    except BaseException as exc:  # report everything: the parent asserts on it
        results.put((user, "error", repr(exc), 0.0, 0.0))
