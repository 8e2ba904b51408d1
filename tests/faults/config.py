"""What the fault proxy injects: an immutable `FaultConfig`, validated on construction.

Rates are probabilities per request. Each rate field takes either one number (every operation)
or a map from DynamoDB operation name to rate, where ``"*"`` is the fallback for operations not
named (an operation neither named nor covered by ``"*"`` gets 0). So
``throttle_rate={"BatchWriteItem": 0.3, "*": 0.1}`` throttles 30 % of BatchWriteItem calls and
10 % of everything else, and ``throttle_rate={"PutItem": 0.5}`` throttles PutItem only.

The fault kinds are mutually exclusive: the proxy draws one uniform number per request and walks
the kinds in `FAULT_ORDER`, so each kind happens at exactly its configured rate, and the rates
applying to one operation must add up to at most 1.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Rate = float | Mapping[str, float]
"""A probability for every operation, or a map operation → probability (``"*"`` = others)."""

BATCH_WRITE = "BatchWriteItem"


class FaultKind(enum.StrEnum):
    """A fault the proxy injects instead of (or around) the real upstream call."""

    THROTTLING = "throttling"  # 400 ThrottlingException
    PROVISIONED = "provisioned_throughput_exceeded"  # 400 ProvisionedThroughputExceededException
    REQUEST_LIMIT = "request_limit_exceeded"  # 400 RequestLimitExceeded
    INTERNAL_ERROR = "internal_server_error"  # 500 InternalServerError
    UNAVAILABLE = "service_unavailable"  # 503 ServiceUnavailable
    RESET = "connection_reset"  # RST before forwarding: upstream never sees the request
    RESET_AFTER = "connection_reset_after_forward"  # forwarded (write applied), response lost
    PARTIAL_BATCH = "partial_batch"  # BatchWriteItem: some writes kept back as UnprocessedItems
    # Answers that are not DynamoDB's, the request never forwarded (nothing written):
    EMPTY_ANSWER = "empty_answer"  # 200 with an empty body
    NON_OBJECT_ANSWER = "non_object_answer"  # 200 with JSON that is not an object
    BAD_CRC32 = "malformed_crc32"  # 200, a plausible body, an x-amz-crc32 that is no number


FAULT_ORDER: tuple[FaultKind, ...] = tuple(FaultKind)
"""The order in which the single per-request draw is matched against the rates."""

RATE_FIELDS: dict[FaultKind, str] = {
    FaultKind.THROTTLING: "throttle_rate",
    FaultKind.PROVISIONED: "provisioned_rate",
    FaultKind.REQUEST_LIMIT: "request_limit_rate",
    FaultKind.INTERNAL_ERROR: "internal_error_rate",
    FaultKind.UNAVAILABLE: "unavailable_rate",
    FaultKind.RESET: "reset_rate",
    FaultKind.RESET_AFTER: "reset_after_rate",
    FaultKind.PARTIAL_BATCH: "partial_batch_rate",
    FaultKind.EMPTY_ANSWER: "empty_answer_rate",
    FaultKind.NON_OBJECT_ANSWER: "non_object_answer_rate",
    FaultKind.BAD_CRC32: "bad_crc32_rate",
}


def lookup(spec: Rate, operation: str) -> float:
    """The value of a rate spec for one operation (map: exact name, else ``"*"``, else 0)."""
    if isinstance(spec, Mapping):
        if operation in spec:
            return float(spec[operation])
        return float(spec.get("*", 0.0))
    return float(spec)


def _normalise(name: str, spec: Any, upper: float | None) -> Rate:
    """Copy a spec into a plain float or dict[str, float], checking each value's range."""
    values: Iterable[tuple[str, Any]]
    if isinstance(spec, Mapping):
        values = spec.items()
    elif isinstance(spec, int | float) and not isinstance(spec, bool):
        values = [("*", spec)]
    else:
        raise ValueError(f"{name}: expected a number or a map operation -> number, got {spec!r}")
    checked: dict[str, float] = {}
    for op, value in values:
        if not isinstance(op, str) or isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: bad entry {op!r}: {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0 or (upper is not None and number > upper):
            bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
            raise ValueError(f"{name}[{op}] = {number!r} is outside {bound}")
        checked[op] = number
    return checked if isinstance(spec, Mapping) else checked["*"]


@dataclass(frozen=True)
class FaultConfig:
    """Everything the proxy injects; every field defaults to "no fault".

    Attributes:
        throttle_rate .. reset_after_rate: per-request probability of each fault kind (`Rate`).
        partial_batch_rate: probability that a BatchWriteItem is partly kept back.
        empty_answer_rate, non_object_answer_rate, bad_crc32_rate: probability of an answer
            that is not DynamoDB's (`FaultKind.EMPTY_ANSWER` ...); the request is not forwarded.
        partial_batch_fraction: share of a partial batch's write requests kept back and
            returned as UnprocessedItems (rounded, at least one; 1.0 = all, nothing forwarded).
        latency_ms: fixed delay added before each request is handled (number or map per op).
        latency_jitter_ms: plus a uniform random delay in [0, jitter] wherever latency applies
            (every operation when `latency_ms` is a number, even 0; else the ops it maps).
        capacity_wcu: simulated write capacity, WCU per second per table: a number (every table
            its own bucket of that rate) or a map table → WCU/s with ``"*"`` for others.
            None (or 0 for a table) = unlimited.
        burst_seconds: unused capacity retained, in seconds of the table's or partition key's
            rate (DynamoDB: 300 for a table; about 1 for a partition).
        partition_wcu: simulated write limit of one partition key value (DynamoDB: about 1,000
            WCU/s per key range), per table like `capacity_wcu`; None (or 0) = unlimited. A write
            must fit both its table's and its partition key's bucket.
        partition_attribute: the attribute holding the partition key (``PK`` in this project);
            a write without it is limited by its table only.
        refuse_whole: a write call of which nothing fits is refused whole with an error naming
            the limit (`ThrottlingReasons`), as DynamoDB does; False = a BatchWriteItem of which
            nothing fits comes back 200 with every item unprocessed (single writes are refused).
        on_demand: refusals by the table limit say ``TableWriteMaxOnDemandThroughputExceeded``
            (ThrottlingException) instead of ``TableWriteProvisionedThroughputExceeded``.
        region: the region in the ARNs of `ThrottlingReasons` (account 123456789012).
    """

    throttle_rate: Rate = 0.0
    provisioned_rate: Rate = 0.0
    request_limit_rate: Rate = 0.0
    internal_error_rate: Rate = 0.0
    unavailable_rate: Rate = 0.0
    reset_rate: Rate = 0.0
    reset_after_rate: Rate = 0.0
    partial_batch_rate: Rate = 0.0
    empty_answer_rate: Rate = 0.0
    non_object_answer_rate: Rate = 0.0
    bad_crc32_rate: Rate = 0.0
    partial_batch_fraction: float = 0.5
    latency_ms: Rate = 0.0
    latency_jitter_ms: float = 0.0
    capacity_wcu: Rate | None = field(default=None)
    burst_seconds: float = 1.0
    partition_wcu: Rate | None = field(default=None)
    partition_attribute: str = "PK"
    refuse_whole: bool = True
    on_demand: bool = False
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        for name in RATE_FIELDS.values():
            object.__setattr__(self, name, _normalise(name, getattr(self, name), 1.0))
        object.__setattr__(self, "latency_ms", _normalise("latency_ms", self.latency_ms, None))
        for name in ("capacity_wcu", "partition_wcu"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _normalise(name, getattr(self, name), None))
        for name in ("refuse_whole", "on_demand"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("partition_attribute", "region"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("partial_batch_fraction", "latency_jitter_ms", "burst_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.burst_seconds <= 0:
            raise ValueError("burst_seconds must be > 0")
        if not 0.0 < self.partial_batch_fraction <= 1.0:
            raise ValueError("partial_batch_fraction must be in (0, 1]")
        for op in self._named_operations():
            total = sum(self.rate(kind, op) for kind in FAULT_ORDER)
            if total > 1.0 + 1e-9:
                raise ValueError(f"fault rates for {op} add up to {total:g} > 1")

    def _named_operations(self) -> set[str]:
        ops = {"*", BATCH_WRITE}
        for name in RATE_FIELDS.values():
            spec = getattr(self, name)
            if isinstance(spec, Mapping):
                ops.update(spec)
        return ops

    def rate(self, kind: FaultKind, operation: str) -> float:
        """Probability of `kind` per call of `operation` (partial_batch: BatchWriteItem only)."""
        if kind is FaultKind.PARTIAL_BATCH and operation != BATCH_WRITE:
            return 0.0
        spec: Rate = getattr(self, RATE_FIELDS[kind])
        return lookup(spec, operation)

    def latency_for(self, operation: str) -> float:
        """Fixed latency in milliseconds for `operation` (jitter not included)."""
        return lookup(self.latency_ms, operation)

    def latency_applies(self, operation: str) -> bool:
        """Whether latency (and so jitter) is injected for `operation`: a number applies to every
        operation, a map to the operations it names (all of them if it has ``"*"``)."""
        spec = self.latency_ms
        return not isinstance(spec, Mapping) or operation in spec or "*" in spec

    def wcu_for(self, table: str) -> float | None:
        """Simulated WCU/s of `table`, or None when capacity is unlimited for it."""
        if self.capacity_wcu is None:
            return None
        wcu = lookup(self.capacity_wcu, table)
        return wcu if wcu > 0 else None

    def partition_wcu_for(self, table: str) -> float | None:
        """Simulated WCU/s of one partition key of `table`, or None when unlimited."""
        if self.partition_wcu is None:
            return None
        wcu = lookup(self.partition_wcu, table)
        return wcu if wcu > 0 else None

    def replace(self, **changes: Any) -> FaultConfig:
        """A copy with `changes` applied (validated); unknown names raise ValueError."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (maps copied)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from a (JSON) dict; fields not given keep their defaults."""
        _check_names(data)
        return cls(**data)


def _check_names(names: Iterable[str]) -> None:
    valid = {f.name for f in dataclasses.fields(FaultConfig)}
    unknown = sorted(set(names) - valid)
    if unknown:
        raise ValueError(f"unknown fault config field(s) {unknown}; valid: {sorted(valid)}")


def parse_bool(text: str) -> bool:
    """Parse a command-line flag value: ``true``/``false`` (also 1/0, yes/no, on/off)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_rate(text: str) -> Rate:
    """Parse a command-line rate: ``0.3`` or ``BatchWriteItem=0.3,*=0.1``."""
    if "=" not in text:
        return float(text)
    rates: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad rate entry {part!r}: expected NAME=NUMBER")
        rates[name.strip()] = float(value)
    return rates
