"""Table lifecycle: race-safe creation that waits for ACTIVE, validation, deletion.

Creation tolerates other processes creating the same table at the same moment
(``ResourceInUseException`` is success) and always waits until the table is ACTIVE, so the
first write after :func:`ensure_table` returns never meets a CREATING table. Tables are
PAY_PER_REQUEST, encrypted at rest with the key ``DATAFOLD_SSE`` chooses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from storage import errors
from storage.client import Dynamo

WAIT_SECONDS = 120.0


def describe(dynamo: Dynamo, table: str) -> dict[str, Any] | None:
    """The table's description, or None if it does not exist."""
    try:
        return dynamo.call("DescribeTable", table, TableName=table)["Table"]  # type: ignore[no-any-return]
    except errors.TableNotFoundError:
        return None


def wait_active(
    dynamo: Dynamo,
    table: str,
    *,
    timeout: float = WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll DescribeTable until the table is ACTIVE (and its indexes too)."""
    deadline = clock() + timeout
    delay = 0.05
    while True:
        desc = describe(dynamo, table)
        if (
            desc
            and desc.get("TableStatus") == "ACTIVE"
            and all(
                g.get("IndexStatus") == "ACTIVE" for g in desc.get("GlobalSecondaryIndexes", [])
            )
        ):
            return
        if clock() > deadline:
            state = desc.get("TableStatus") if desc else "missing"
            raise errors.TransientError(
                f"table not ACTIVE after {timeout:.0f}s (state {state})",
                operation="CreateTable",
                table=table,
                code="Timeout",
            )
        sleep(delay)
        delay = min(delay * 2, 2.0)


def ensure_table(
    dynamo: Dynamo,
    table: str,
    spec: dict[str, Any],
    *,
    ttl_attribute: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Create ``table`` from ``spec`` unless it exists; wait for ACTIVE. True if we created it.

    Cost: one DescribeTable when the table exists; otherwise CreateTable plus polling."""
    desc = describe(dynamo, table)
    created = False
    if desc is None:
        try:
            params: dict[str, Any] = {"BillingMode": "PAY_PER_REQUEST", **spec}
            sse = dynamo.config.sse_specification()
            if sse:
                params["SSESpecification"] = sse
            dynamo.call("CreateTable", table, TableName=table, **params)
            created = True
        except errors.PermanentError as exc:
            if exc.code != "ResourceInUseException":
                raise
    elif desc.get("TableStatus") == "ACTIVE":
        return False
    wait_active(dynamo, table, sleep=sleep)
    if created and ttl_attribute:
        dynamo.call(
            "UpdateTimeToLive",
            table,
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )
    return created


def delete_table(
    dynamo: Dynamo,
    table: str,
    *,
    timeout: float = WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Delete ``table`` and wait until it is gone. False if it did not exist.

    A table still CREATING (or UPDATING) refuses DeleteTable with ``ResourceInUseException``:
    wait until it is ACTIVE and ask again, within ``timeout``."""
    deadline = clock() + timeout
    delay = 0.05
    while True:
        try:
            dynamo.call("DeleteTable", table, TableName=table)
            break
        except errors.TableNotFoundError:
            return False
        except errors.PermanentError as exc:
            if exc.code != "ResourceInUseException":
                raise
        desc = describe(dynamo, table)
        if desc is None:
            return True  # someone else deleted it meanwhile
        if desc.get("TableStatus") == "DELETING":
            break
        if clock() > deadline:
            raise errors.TransientError(
                f"table still {desc.get('TableStatus')} after {timeout:.0f}s",
                operation="DeleteTable",
                table=table,
                code="Timeout",
            )
        sleep(delay)
        delay = min(delay * 2, 2.0)
    while describe(dynamo, table) is not None:
        if clock() > deadline:
            raise errors.TransientError(
                f"table still exists after {timeout:.0f}s",
                operation="DeleteTable",
                table=table,
                code="Timeout",
            )
        sleep(delay)
        delay = min(delay * 2, 2.0)
    return True


def require_table(dynamo: Dynamo, table: str) -> dict[str, Any]:
    """Raise :class:`TableNotFoundError` naming table and endpoint/region if it is missing."""
    desc = describe(dynamo, table)
    if desc is None:
        raise errors.TableNotFoundError(
            f"table does not exist at {dynamo.where()} (create it with "
            "storage.create_schema_table or `datafold schemas init`)",
            operation="DescribeTable",
            table=table,
            code="ResourceNotFoundException",
        )
    return desc


KV_TABLE_SPEC: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "PK", "AttributeType": "S"},
        {"AttributeName": "SK", "AttributeType": "B"},
    ],
    "KeySchema": [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ],
}

UPDATED_INDEX = "ByUpdatedAt"
SCHEMA_TABLE_SPEC: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "PK", "AttributeType": "S"},
        {"AttributeName": "SK", "AttributeType": "S"},
        {"AttributeName": "UpdatedAt", "AttributeType": "N"},
    ],
    "KeySchema": [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": UPDATED_INDEX,
            "KeySchema": [
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "UpdatedAt", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ],
}
