"""Layer 1 of the retry layers: one DynamoDB call, classified by error code and retried.

"Should we retry?" is :func:`classify` (error code → branch of the error tree; never a search in
message text). "How long do we wait?" is :class:`FullJitter` (capped full-jitter exponential
backoff). :class:`RetryPolicy` composes them with tenacity, bounded both in attempts and in total
time, and counts every retry in ``datafold_dynamodb_retries_total``. botocore's own retries are
switched off in :mod:`storage.client` so the two layers never multiply.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import botocore.exceptions as bex
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
)
from tenacity.stop import stop_base

from storage import errors
from storage.metrics import RETRIES

T = TypeVar("T")

# What botocore's own retry data retries (its standard mode's throttle and transient codes,
# the codes its legacy retry policy names for DynamoDB, the errors DynamoDB's model marks
# retryable), plus TransactionConflictException, which DynamoDB documents as worth retrying.
# Throttles are throttles as botocore counts them; the rest is transient. A unit test compares
# these sets with the installed botocore's data, so an upgrade cannot drift from them silently.
THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "EC2ThrottledException",
        "TransactionInProgressException",
        "PriorRequestNotComplete",
    }
)
THROTTLE_STATUSES = frozenset({429, 509})
TRANSIENT_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ReplicatedWriteConflictException",
        "TransactionConflictException",
        # botocore counts it a throttle; for DynamoDB it is too many table operations at once
        # (or the account's table quota): not a reason to slow down writes.
        "LimitExceededException",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException"})
CONDITION_CODES = frozenset({"ConditionalCheckFailedException"})
VALIDATION_CODES = frozenset({"ValidationException", "SerializationException"})
ACCESS_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}
)


def error_code(exc: BaseException) -> str:
    """The DynamoDB error code of a botocore exception, or a stable name for network errors."""
    if isinstance(exc, bex.ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    if isinstance(exc, (bex.ReadTimeoutError, bex.ConnectTimeoutError)):
        return "Timeout"
    if isinstance(exc, bex.NoCredentialsError):
        return "NoCredentials"
    if isinstance(exc, (bex.ConnectionError, bex.HTTPClientError)):
        return "ConnectionError"
    return type(exc).__name__


def throttling_reasons(response: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``reason`` of each entry of a ClientError response's throttling reasons, in order.

    botocore puts the modeled list at the top of ``exc.response``: ``ThrottlingReasons`` for
    ProvisionedThroughputExceededException and RequestLimitExceeded, ``throttlingReasons`` for
    ThrottlingException (its model's spelling); entries are ``{"reason", "resource"}``.
    Anything malformed is skipped, never raised.
    """
    out: list[str] = []
    for name in ("ThrottlingReasons", "throttlingReasons"):
        entries = response.get(name)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            reason = entry.get("reason") if isinstance(entry, Mapping) else None
            if isinstance(reason, str) and reason and reason not in out:
                out.append(reason)
    return tuple(out)


def classify(
    exc: BaseException, *, operation: str, table: str | None, key: bytes | str | None = None
) -> errors.StorageError:
    """Translate a botocore exception into the project's error tree, with full context."""
    if isinstance(exc, errors.StorageError):
        return exc
    code = error_code(exc)
    ctx: dict[str, Any] = {"operation": operation, "table": table, "key": key, "code": code}
    if isinstance(exc, bex.ClientError):
        message = str(exc.response.get("Error", {}).get("Message") or code)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLE_CODES or status in THROTTLE_STATUSES:
            reasons = throttling_reasons(exc.response)
            return errors.ThrottledError(message, reasons=reasons, **ctx)
        if code in TRANSIENT_CODES or status >= 500:
            return errors.TransientError(message, **ctx)
        if code in NOT_FOUND_CODES:
            return errors.TableNotFoundError(message, **ctx)
        if code in CONDITION_CODES:
            item = exc.response.get("Item")  # ReturnValuesOnConditionCheckFailure=ALL_OLD
            return errors.ConditionFailedError(
                "the condition of the write was false",
                item=item if isinstance(item, dict) else None,
                **ctx,
            )
        if code in VALIDATION_CODES:
            return errors.ValidationError(message, **ctx)
        if code in ACCESS_CODES:
            return errors.AccessDeniedError(message, **ctx)
        return errors.PermanentError(message, **ctx)
    if isinstance(exc, bex.ParamValidationError):
        return errors.ValidationError(str(exc).replace("\n", " "), **ctx)
    if code in ("Timeout", "ConnectionError"):
        return errors.TransientError(type(exc).__name__, **ctx)
    if code == "NoCredentials":
        return errors.ConfigError("no AWS credentials found in the default chain", **ctx)
    return errors.PermanentError(f"{type(exc).__name__}: {exc}", **ctx)


class FullJitter:
    """Capped full-jitter exponential backoff: uniform(0, min(cap, base * 2**n)) seconds.

    Full jitter spreads competing clients apart, which is what resolving contention needs.
    ``rng`` is injected so tests are deterministic.
    """

    def __init__(self, base: float = 0.05, cap: float = 5.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        return self.rng.uniform(0.0, min(self.cap, self.base * (2 ** (attempt - 1))))

    def __call__(self, state: RetryCallState) -> float:
        return self.delay(state.attempt_number)


class StopBeforeBudget(stop_base):
    """Stop when the coming backoff would end past ``max_seconds`` after ``start``.

    tenacity computes the wait before asking stop, so ``upcoming_sleep`` is what this retry
    would cost. tenacity's own ``stop_after_delay`` reads ``time.monotonic`` (not injectable)
    and ignores the coming sleep, overrunning the budget by up to the backoff cap.
    """

    def __init__(self, max_seconds: float, start: float, clock: Callable[[], float]) -> None:
        self.max_seconds = max_seconds
        self.start = start
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = self.clock() - self.start
        return elapsed + retry_state.upcoming_sleep > self.max_seconds


class RetryPolicy:
    """Run one call, retrying :class:`~storage.errors.RetryableError` only.

    Bounded by ``max_attempts`` tries and ``max_seconds`` of total time, whichever comes first:
    a retry whose backoff would end past ``max_seconds`` after the first try is not made, so a
    call never spends longer than that in retrying (plus its last attempt). Permanent errors
    are raised at once. Each retry increments ``datafold_dynamodb_retries_total{operation,
    table,code}``. ``clock`` and ``sleep`` are injected so tests never really wait.
    """

    def __init__(
        self,
        max_attempts: int = 8,
        max_seconds: float = 30.0,
        backoff: FullJitter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_seconds = max_seconds
        self.backoff = backoff or FullJitter()
        self.sleep = sleep
        self.clock = clock

    def run(
        self,
        fn: Callable[[], T],
        *,
        operation: str,
        table: str | None,
        throttles: bool = True,
    ) -> T:
        """``fn`` retried on retryable errors; with ``throttles`` False a throttle is raised at
        once (the caller paces itself: the batch writer hands it to the rate limiter)."""
        retryable = (
            retry_if_exception_type(errors.RetryableError)
            if throttles
            else retry_if_exception(
                lambda e: (
                    isinstance(e, errors.RetryableError)
                    and not isinstance(e, errors.ThrottledError)
                )
            )
        )
        out_of_time = StopBeforeBudget(self.max_seconds, self.clock(), self.clock)

        def count_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            code = getattr(exc, "code", None) or "Unknown"
            RETRIES.labels(operation, table or "-", code).inc()

        retrying = Retrying(
            retry=retryable,
            stop=stop_any(stop_after_attempt(self.max_attempts), out_of_time),
            wait=self.backoff,
            sleep=self.sleep,
            before_sleep=count_retry,
            reraise=True,
        )
        return retrying(fn)
