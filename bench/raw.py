"""The baselines: what a user would write with plain boto3 instead of this project.

* :func:`parallel_batch_write` - BatchWriteItem of 25 from ``threads`` threads sharing one
  client (the raw ceiling; the caller sweeps ``threads`` and keeps the best).
* :func:`batch_writer_load` - boto3's ``Table.batch_writer()``: one thread, 25 per call.
* :func:`parallel_delete_all` - a paginated key-only Query feeding batched deletes in threads.

Every baseline writes the same item layout as the project (``PK`` S, ``SK`` B, ``Value`` B), and
resends ``UnprocessedItems`` (DynamoDB Local never returns any, a throttled table would).
Items are ``(key, value)`` byte pairs made by :func:`make_items` to an exact DynamoDB size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from boto3.dynamodb.types import Binary

Item = tuple[bytes, bytes]
BATCH = 25


def make_items(n: int, size: int, user: str, tag: str = "") -> list[Item]:
    """``n`` distinct pairs whose item is exactly ``size`` bytes as DynamoDB counts it
    (``PK`` + user, ``SK`` + key, ``Value`` + value)."""
    out: list[Item] = []
    for i in range(n):
        key = f"{tag}k{i:08d}".encode()
        fill = size - (2 + len(user.encode()) + 2 + len(key) + 5)
        if fill < 1:
            raise ValueError(f"item size {size} is too small for its key")
        out.append((key, (b"%08d" % i + b"v" * fill)[:fill]))
    return out


def _put(user: str, key: bytes, value: bytes) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"PK": {"S": user}, "SK": {"B": key}, "Value": {"B": value}}}}


def send_batch(client: Any, table: str, requests: list[dict[str, Any]]) -> int:
    """One BatchWriteItem, resending unprocessed items until none are left; returns calls."""
    calls = 0
    while requests:
        resp = client.batch_write_item(RequestItems={table: requests})
        calls += 1
        requests = (resp.get("UnprocessedItems") or {}).get(table) or []
    return calls


def chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def parallel_batch_write(
    client: Any, table: str, user: str, items: Sequence[Item], threads: int
) -> None:
    """Write ``items`` 25 per BatchWriteItem from ``threads`` threads (requests built in the
    threads, as a user's loader would)."""

    def one(chunk: Sequence[Item]) -> int:
        return send_batch(client, table, [_put(user, k, v) for k, v in chunk])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, chunks(items)))


def batch_writer_load(
    table: str, user: str, items: Sequence[Item], endpoint: str, region: str
) -> None:
    """Write ``items`` with boto3's ``Table.batch_writer()`` (the resource API, one thread)."""
    t = (
        boto3.session.Session()
        .resource("dynamodb", endpoint_url=endpoint, region_name=region)
        .Table(table)
    )
    with t.batch_writer() as bw:
        for k, v in items:
            bw.put_item(Item={"PK": user, "SK": Binary(k), "Value": Binary(v)})


def query_keys(
    client: Any, table: str, pk: str, sk_type: str = "B", consistent: bool = True
) -> Iterator[list[dict[str, Any]]]:
    """Pages of keys of partition ``pk`` (a paginated Query projecting the key only)."""
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ProjectionExpression": "PK, SK",
        "ConsistentRead": consistent,
    }
    while True:
        page = client.query(**params)
        yield page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def parallel_delete_all(client: Any, table: str, pk: str, threads: int) -> int:
    """Delete every item of partition ``pk``: one thread pages through a key-only Query and
    feeds 25-key batches to ``threads`` deleting threads. Returns the items deleted."""
    work: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=threads * 4)
    deleted = [0]
    lock = threading.Lock()

    def deleter() -> None:
        while (batch := work.get()) is not None:
            send_batch(client, table, [{"DeleteRequest": {"Key": k}} for k in batch])
            with lock:
                deleted[0] += len(batch)

    pool = [threading.Thread(target=deleter, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    try:
        for page in query_keys(client, table, pk):
            for chunk in chunks(page):
                work.put(list(chunk))
    finally:
        for _ in pool:
            work.put(None)
        for t in pool:
            t.join()
    return deleted[0]
