"""The DynamoDB client and the one place every call goes through.

:func:`make_client` builds one low-level boto3 client per store with the connection pool, the
timeouts and botocore's retries set *explicitly*: botocore makes a single attempt
(``total_max_attempts=1``) and :class:`~storage.retry.RetryPolicy` owns retrying, so the layers
never multiply. :class:`Dynamo` wraps the client: each call is timed, its errors are classified
with operation/table/key/code, and retryable ones are retried under the policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions as bex

from storage import answers, errors
from storage.metrics import ERRORS, REQUEST_SECONDS, THROTTLES
from storage.retry import FullJitter, RetryPolicy, classify
from storage.settings import DynamoConfig
from storage.wire import WireWriter

log = logging.getLogger(__name__)

_NO_TABLE_NAME = frozenset({"BatchWriteItem", "BatchGetItem", "ListTables"})


def make_client(config: DynamoConfig, session: boto3.session.Session | None = None) -> Any:
    """A DynamoDB client for ``config``; credentials come from boto3's default chain."""
    bc = botocore.config.Config(
        region_name=config.region,
        max_pool_connections=config.max_connections,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        tcp_keepalive=True,
        # Every request is built by this package from checked keys and sizes, and DynamoDB
        # validates it again (ValidationException, a permanent error): botocore's client-side
        # check only cost ~20 % of a worker's CPU per BatchWriteItem (bench/, BENCHMARKS.md).
        parameter_validation=False,
    )
    session = session or boto3.session.Session()
    client = session.client("dynamodb", endpoint_url=config.endpoint_url, config=bc)
    answers.install(client)  # an answer that is not DynamoDB's is never taken for one
    return client


class Dynamo:
    """A client plus the retry policy and metrics: ``call("GetItem", table, key, **params)``.

    BatchWriteItem goes through :class:`~storage.wire.WireWriter` when ``config.fast_writes`` is
    on and the client is the one built here (an injected client, e.g. a stubbed one, is used for
    every call); the writer sends through that client's own endpoint, HTTP session and
    credentials.

    Thread-safe (boto3 clients are); share one per process and store.
    """

    def __init__(
        self,
        config: DynamoConfig,
        client: Any | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        backoff: FullJitter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.wire: WireWriter | None = None
        if client is None:
            client = make_client(config)
            if config.fast_writes:
                try:
                    self.wire = WireWriter.from_client(client)
                except errors.ConfigError as exc:
                    log.warning("fast BatchWriteItem is off, the botocore client sends it: %s", exc)
        self.client = client
        self.sleep = sleep
        self.policy = RetryPolicy(
            max_attempts=config.max_attempts,
            max_seconds=config.retry_max_seconds,
            backoff=backoff,
            sleep=sleep,
            clock=clock,
        )
        self._methods: dict[str, Callable[..., Any]] = {}

    def _method(self, operation: str) -> Callable[..., Any]:
        m = self._methods.get(operation)
        if m is None:
            snake = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
            m = getattr(self.client, snake)
            self._methods[operation] = m
        return m

    def once(
        self, operation: str, table: str | None, key: bytes | str | None = None, **params: Any
    ) -> dict[str, Any]:
        """One attempt, timed and classified (no retry). Raises a :class:`StorageError`."""
        method = (
            self.wire.batch_write_item
            if self.wire is not None and operation == "BatchWriteItem"
            else self._method(operation)
        )
        if table is not None and operation not in _NO_TABLE_NAME:
            params.setdefault("TableName", table)
        label_table = table or "-"
        start = time.perf_counter()
        try:
            result: dict[str, Any] = method(**params)
        except (bex.BotoCoreError, bex.ClientError, errors.StorageError) as exc:
            err = classify(exc, operation=operation, table=table, key=key).locate(table, key)
            ERRORS.labels(operation, label_table, err.code or "Unknown").inc()
            if isinstance(err, errors.ThrottledError):
                THROTTLES.labels(operation, label_table).inc()
            raise err from None
        finally:
            REQUEST_SECONDS.labels(operation, label_table).observe(time.perf_counter() - start)
        return result

    def call(
        self,
        operation: str,
        table: str | None,
        key: bytes | str | None = None,
        *,
        retry_throttles: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """One call with retries: throttling, 5xx and timeouts are retried with capped
        full-jitter backoff up to ``max_attempts`` / ``retry_max_seconds``; permanent errors
        are raised at once.

        Every attempt sends the same request, so a write is only safe to retry if a second
        landing is harmless or recognisable: a :class:`PermanentError` after an attempt whose
        outcome is unknown (a :class:`TransientError`: it may have landed) has
        ``after_unknown`` set; a :class:`ConditionFailedError` also carries the item it was
        checked against if the request asked for it."""
        unknown = False

        def attempt() -> dict[str, Any]:
            nonlocal unknown
            try:
                return self.once(operation, table, key, **params)
            except errors.TransientError:
                unknown = True
                raise
            except errors.PermanentError as exc:
                exc.after_unknown = unknown
                raise

        return self.policy.run(attempt, operation=operation, table=table, throttles=retry_throttles)

    def where(self) -> str:
        return self.config.where
