"""The one exception hierarchy of datafold-dynamo (storage, worker and producers alike).

::

    StorageError                      every error this project raises
    ├── ConfigError                   a setting is missing or malformed (names the variable)
    ├── RetryableError                worth trying again later; the retry layers do so
    │   ├── ThrottledError            ProvisionedThroughputExceeded, Throttling, RequestLimit
    │   ├── TransientError            5xx, timeouts, dropped connections, write conflicts
    │   ├── BackendUnavailableError   Redis (broker, ledger, limiter) unreachable: fail loudly
    │   └── StoppedError              the caller's deadline passed or it lost its right to write
    └── PermanentError                trying again gives the same answer
        ├── TableNotFoundError        the table does not exist (names table and endpoint/region)
        ├── IncompatibleTableError    the table's key is not this project's (names what it is)
        ├── ValidationError           DynamoDB refused the request (ValidationException)
        │   ├── ItemTooLargeError     item over 400 KB as DynamoDB counts it
        │   ├── InvalidKeyError       empty key, sort key over 1024 bytes
        │   └── InvalidNamespaceError namespace name that makes no valid table name
        ├── ConditionFailedError      a conditional write's condition was false
        ├── CorruptItemError          an item read from DynamoDB that does not decode
        ├── BatchIncompleteError      items still unwritten after the bounded rounds (carries them)
        ├── AccessDeniedError         the credentials may not do this
        ├── InputError                a bad input line or file (names line and reason)
        ├── JobNotFoundError          no such job in the ledger (or it expired)
        ├── NotResumableError         a load that cannot resume (finished, fed, another file)
        └── ProducerFencedError       a producer that no longer holds its job (abandoned, taken)

Every error carries its context — ``operation``, ``table``, ``key`` (shortened) and the DynamoDB
error ``code`` — and its message names them, so a log line alone tells what failed where.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.redact import scrub

KEY_PREVIEW = 48


def short_key(key: bytes | str | None) -> str | None:
    """A printable, bounded rendering of a key for messages (never the value)."""
    if key is None:
        return None
    if isinstance(key, bytes):
        try:
            text = key.decode("utf-8")
            shown = repr(text)
        except UnicodeDecodeError:
            shown = "0x" + key[: KEY_PREVIEW // 2].hex()
            if len(key) > KEY_PREVIEW // 2:
                shown += f"…({len(key)} bytes)"
            return shown
    else:
        shown = repr(key)
    if len(shown) > KEY_PREVIEW:
        shown = shown[: KEY_PREVIEW - 1] + "…"
    return shown


class StorageError(Exception):
    """Root of every error; ``str()`` is one line naming operation, table, key and code, and
    never a credential value (the message is scrubbed: :mod:`storage.redact`)."""

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        table: str | None = None,
        key: bytes | str | None = None,
        code: str | None = None,
    ) -> None:
        self.message = scrub(message)
        self.operation = operation
        self.table = table
        self.key = short_key(key)
        self.code = code
        super().__init__(self._render())

    def locate(self, table: str | None, key: bytes | str | None = None) -> StorageError:
        """Fill in the table and key where the error did not know them; returns itself."""
        if self.table is None and table is not None:
            self.table = table
        if self.key is None and key is not None:
            self.key = short_key(key)
        self.args = (self._render(),)
        return self

    def _render(self) -> str:
        # "PutItem on table 'T', key 'k': [Code] message" — with whatever parts are known.
        where = self.operation or ""
        if self.table:
            where += (" on " if where else "") + f"table '{self.table}'"
        if self.key is not None:
            where += (", " if where else "") + f"key {self.key}"
        code = f"[{self.code}] " if self.code else ""
        return f"{where}: {code}{self.message}" if where else f"{code}{self.message}"


class ConfigError(StorageError):
    """A setting is missing or malformed; the message names the variable."""


class RetryableError(StorageError):
    """A failure that may pass: retry with backoff."""


class ThrottledError(RetryableError):
    """DynamoDB refused for capacity reasons; slow down (the rate limiter cuts its rate).

    ``reasons`` names the limits that refused, as DynamoDB's ``ThrottlingReasons`` say them
    (``TableWriteKeyRangeThroughputExceeded`` = one partition key is hot,
    ``TableWriteProvisionedThroughputExceeded`` = the table, ...); empty when DynamoDB gave none
    (an older endpoint, DynamoDB Local, a batch only partly refused). They end the message."""

    def __init__(self, message: str, *, reasons: Sequence[str] = (), **context: Any) -> None:
        self.reasons = tuple(reasons)
        if self.reasons:
            message = f"{message} (reasons: {', '.join(self.reasons)})"
        super().__init__(message, **context)


class TransientError(RetryableError):
    """5xx, timeouts and dropped connections."""


class BackendUnavailableError(RetryableError):
    """Redis (broker, ledger or rate limiter) cannot be reached; the pipeline never fails open."""


class StoppedError(RetryableError):
    """A bounded run stopped before its items were sent: its deadline passed (no capacity in
    time) or its ``stop`` check said so. The items are handed back, never dropped."""


class PermanentError(StorageError):
    """Trying again gives the same answer; fix the request or the environment.

    ``after_unknown`` is True when an earlier attempt of the same call ended with its outcome
    unknown (timeout, dropped connection, 5xx): that attempt may have landed, and this answer
    may be about it (:meth:`storage.client.Dynamo.call` sets it) — a CreateTable refused as
    in use, a DeleteTable refused as not found, a condition that fails on one's own write."""

    after_unknown = False


class TableNotFoundError(PermanentError):
    """The table does not exist where the config points."""


class IncompatibleTableError(PermanentError):
    """A table of the expected name whose primary key is not the one this project creates
    (another program's table, datafold's Rust backend's): names the layout found."""


class ValidationError(PermanentError):
    """DynamoDB (or our pre-flight checks) refused the request as invalid."""


class ItemTooLargeError(ValidationError):
    """The item is over DynamoDB's 400 KB as DynamoDB counts it (names + values)."""


class InvalidKeyError(ValidationError):
    """The key is empty or too long for DynamoDB."""


class InvalidNamespaceError(ValidationError):
    """The namespace name does not make a valid table name."""


class ConditionFailedError(PermanentError):
    """A conditional write's condition was false (exists already, version moved, newer write).

    ``item`` is the item as it stood when the condition was checked, when the write asked for
    it (``ReturnValuesOnConditionCheckFailure=ALL_OLD``) and there was one; else None. It is
    how a retried write recognises that its own earlier attempt landed (with
    ``after_unknown``)."""

    def __init__(self, message: str, *, item: dict[str, Any] | None = None, **context: Any):
        self.item = item
        super().__init__(message, **context)


class CorruptItemError(PermanentError):
    """An item read from DynamoDB is not what this project writes (missing or mistyped
    attributes, bad JSON): names table and key."""


class AccessDeniedError(PermanentError):
    """The credentials in use may not perform this action."""


class InputError(PermanentError):
    """A bad input line or file; ``line`` is the 1-based line number when known."""

    def __init__(self, message: str, *, line: int | None = None, **context: Any) -> None:
        self.line = line
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message, **context)


class JobNotFoundError(PermanentError):
    """No job with this id in the ledger (never existed, or its results expired)."""


class NotResumableError(PermanentError):
    """A load cannot be resumed: the job is finished or still fed, the file is not the same."""


class ProducerFencedError(PermanentError):
    """This producer no longer holds its job: it was marked abandoned (no heartbeat in time),
    or another producer resumed it. It must stop without writing anything more."""


class BatchIncompleteError(PermanentError):
    """Some items of a batch were still unwritten after the bounded retry rounds.

    ``items`` holds exactly what is left (put items as ``(key, value)``, deletes as ``key``) so a
    caller can requeue or dead-letter them: nothing is ever dropped silently.
    """

    def __init__(self, message: str, *, items: Sequence[Any], **context: Any) -> None:
        self.items = list(items)
        super().__init__(f"{message} ({len(self.items)} items left)", **context)
