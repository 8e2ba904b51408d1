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


def _layout(desc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Key attribute -> (key type, attribute type) of a table description or spec."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
    return {
        k["AttributeName"]: (k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in desc["KeySchema"]
    }


def check_layout(desc: dict[str, Any], spec: dict[str, Any], table: str) -> None:
    """IncompatibleTableError, naming the layout found, unless the table's primary key is the
    one ``spec`` creates (a description without a key schema is not DynamoDB's: not checked)."""
    if "KeySchema" not in desc:
        return
    found, want = _layout(desc), _layout(spec)
    if found == want:
        return

    def show(layout: dict[str, tuple[str, str]]) -> str:
        return ", ".join(f"{n} ({t} {k})" for n, (k, t) in layout.items())

    hint = ""
    if "SchemaName" in found:
        hint = ": a schema table keyed by SchemaName, as datafold's Rust backend writes it"
    elif found.get("SK", ("", ""))[1] == "S" and want.get("SK", ("", ""))[1] == "B":
        hint = ": a string sort key, as datafold's Rust backend writes its namespaces"
    raise errors.IncompatibleTableError(
        f"table has key {show(found)}, this project needs {show(want)}{hint}; "
        "use another table name or prefix",
        operation="DescribeTable",
        table=table,
        code="IncompatibleTable",
    )


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
    if desc is not None:
        check_layout(desc, spec, table)
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
            # In use after an attempt whose answer was lost: that attempt created it, and no
            # one else will switch its TTL on.
            created = exc.after_unknown
    elif desc.get("TableStatus") == "ACTIVE":
        return False
    wait_active(dynamo, table, sleep=sleep)
    if created and ttl_attribute:
        enable_ttl(dynamo, table, ttl_attribute)
    return created


def enable_ttl(dynamo: Dynamo, table: str, attribute: str) -> None:
    """Switch TTL on for ``attribute``. Refused as already on (a retry whose first attempt
    landed, or another creator's) is success when DescribeTimeToLive shows it on for that
    attribute; any other refusal is raised."""
    try:
        dynamo.call(
            "UpdateTimeToLive",
            table,
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
    except errors.ValidationError:
        ttl = dynamo.call("DescribeTimeToLive", table, TableName=table)
        desc = ttl.get("TimeToLiveDescription") or {}
        on = desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        if not (on and desc.get("AttributeName") == attribute):
            raise


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
        except errors.TableNotFoundError as exc:
            return exc.after_unknown  # gone after an attempt whose answer was lost: ours
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


def require_table(dynamo: Dynamo, table: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Raise :class:`TableNotFoundError` naming table and endpoint/region if it is missing, and
    :class:`IncompatibleTableError` if its key is not the one ``spec`` creates."""
    desc = describe(dynamo, table)
    if desc is None:
        raise errors.TableNotFoundError(
            f"table does not exist at {dynamo.where()} (create it with "
            "storage.create_schema_table or `datafold schemas init`)",
            operation="DescribeTable",
            table=table,
            code="ResourceNotFoundException",
        )
    if spec is not None:
        check_layout(desc, spec, table)
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
