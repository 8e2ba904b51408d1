"""Test doubles for the storage layer: a recording wrapper around a real boto3 client, a
scripted fake client, botocore errors, and a fake clock whose sleep advances it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from prometheus_client import REGISTRY


def client_error(
    code: str, operation: str = "PutItem", status: int = 400, message: str | None = None
) -> ClientError:
    """A botocore ClientError as DynamoDB would produce it."""
    response: Any = {
        "Error": {"Code": code, "Message": message or f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def metric(name: str, **labels: str) -> float:
    """Current value of one Prometheus sample (0 when never incremented)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def calls_of(operation: str, table: str) -> float:
    """How many DynamoDB calls (attempts) of ``operation`` on ``table`` storage has timed."""
    return metric("datafold_dynamodb_request_seconds_count", operation=operation, table=table)


class RecordingClient:
    """Wraps a real boto3 client: each API call is recorded as ``(Operation, params)`` and then
    made. ``tweak`` maps an operation to a function rewriting its params (e.g. adding Limit)."""

    def __init__(
        self,
        client: Any,
        tweak: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ):
        self._client = client
        self._tweak = tweak or {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        operation = self._client.meta.method_to_api_mapping.get(name)
        if operation is None:
            return attr

        def call(**params: Any) -> Any:
            if operation in self._tweak:
                params = self._tweak[operation](dict(params))
            with self._lock:
                self.calls.append((operation, params))
            return attr(**params)

        return call

    def ops(self) -> list[str]:
        with self._lock:
            return [op for op, _ in self.calls]

    def params(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for op, p in self.calls if op == operation]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


class FakeClient:
    """A scripted stand-in for the boto3 client: ``handlers`` maps an operation name
    (``"BatchWriteItem"``) to a function of the call's params that returns the response or
    raises a ClientError. Every call is recorded."""

    def __init__(self, handlers: dict[str, Callable[..., dict[str, Any]]]):
        self.handlers = handlers
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        operation = "".join(part.capitalize() for part in name.split("_"))
        if operation not in self.handlers:
            raise AttributeError(name)

        def call(**params: Any) -> dict[str, Any]:
            with self._lock:
                self.calls.append((operation, params))
            return self.handlers[operation](**params)

        return call

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [p for op, p in self.calls if op == operation]


class FakeClock:
    """Monotonic time that only moves when slept on (or advanced): tests never wait."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
