"""Per-request decisions of the fault proxy, free of any socket code (the proxy does the I/O).

For each DynamoDB call `FaultEngine.plan` sleeps the injected latency, draws one uniform
number to pick at most one fault kind, and applies the capacity model to writes (table and
partition key limits; a call refused whole names the limit in ``ThrottlingReasons``). The
result is a `Plan`: answer with a ready response, reset the connection, or forward a (possibly
rewritten) body and pass the upstream's answer through `FaultEngine.finish`.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .capacity import PARTITION, CapacityModel, partition_of, request_units
from .config import BATCH_WRITE, FAULT_ORDER, FaultConfig, FaultKind
from .protocol import (
    EDGE_ANSWERS,
    ERRORS,
    WRITE_OPERATIONS,
    Response,
    WriteRequest,
    batch_requests,
    edge_answer,
    error_response,
    group,
    json_response,
    merge_unprocessed,
    request_kind,
    unprocessed_count,
    with_body,
)
from .stats import Stats
from .throttle import throttle_response, throttling_reasons


@dataclass
class Plan:
    """What to do with one request: `response` (answer now), `reset`, or forward `body`.

    `reset_after_forward`: drop the connection instead of sending the (forwarded or planned)
    response, so the client never learns whether the write happened.
    """

    operation: str
    body: bytes
    fault: FaultKind | None = None
    response: Response | None = None
    reset: bool = False
    reset_after_forward: bool = False
    kept_back: list[WriteRequest] = field(default_factory=list)


class FaultEngine:
    """Config, randomness, clock, capacity buckets and counters shared by all connections."""

    def __init__(
        self,
        config: FaultConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()
        self._sleep = sleep
        self.stats = Stats(clock)
        self.capacity = CapacityModel(config, clock)
        self._drops: dict[str, int] = {}

    @property
    def config(self) -> FaultConfig:
        """The configuration in force (immutable; replaced as a whole)."""
        return self._config

    def set_config(self, config: FaultConfig) -> None:
        """Swap the configuration; capacity buckets keep their levels."""
        self._config = config
        self.capacity.configure(config)

    def drop_answers(self, operation: str, count: int = 1) -> None:
        """Forward the next ``count`` calls of ``operation`` and drop their answers (RST), ahead
        of any random fault: deterministic "the write landed, its answer was lost"."""
        if not operation or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"drop_answers needs an operation and a count >= 0, got {count!r}")
        with self._rng_lock:
            self._drops[operation] = count

    def pending_drops(self) -> dict[str, int]:
        """Answers still to drop, per operation (only those armed and not used up)."""
        with self._rng_lock:
            return {op: n for op, n in self._drops.items() if n > 0}

    def _take_drop(self, operation: str) -> FaultKind | None:
        with self._rng_lock:
            if self._drops.get(operation, 0) <= 0:
                return None
            self._drops[operation] -= 1
        return FaultKind.RESET_AFTER

    def plan(self, operation: str, body: bytes) -> Plan:
        """Decide the fate of one request (sleeps the injected latency first)."""
        config = self._config
        self.stats.count(operation, "requests")
        self._add_latency(operation, config)
        plan = Plan(operation, body)
        if not operation:
            return plan
        plan.fault = self._take_drop(operation) or self._draw(operation, config)
        if plan.fault is not None and plan.fault is not FaultKind.PARTIAL_BATCH:
            self.stats.count(operation, plan.fault.value)
        if plan.fault in ERRORS:
            plan.response = error_response(plan.fault)
        elif plan.fault in EDGE_ANSWERS:
            plan.response = edge_answer(plan.fault)
        elif plan.fault is FaultKind.RESET:
            plan.reset = True
        else:
            plan.reset_after_forward = plan.fault is FaultKind.RESET_AFTER
            if operation == BATCH_WRITE:
                self._plan_batch(plan, config)
            elif operation in WRITE_OPERATIONS:
                self._plan_write(plan)
        return plan

    def finish(self, plan: Plan, response: Response) -> Response:
        """The response to send for a forwarded request: merges kept-back batch writes."""
        self.stats.count(plan.operation, "forwarded")
        if plan.operation != BATCH_WRITE or response.status != 200:
            return response
        payload = _json_body(response)
        if payload is None:
            return response
        self.stats.count(plan.operation, "items_unprocessed_upstream", unprocessed_count(payload))
        if not plan.kept_back:
            return response
        return with_body(response, merge_unprocessed(payload, plan.kept_back))

    def _add_latency(self, operation: str, config: FaultConfig) -> None:
        delay_ms = config.latency_for(operation)
        if config.latency_jitter_ms > 0 and config.latency_applies(operation):
            with self._rng_lock:
                delay_ms += self._rng.uniform(0.0, config.latency_jitter_ms)
        if delay_ms > 0:
            self.stats.count(operation, "latency_ms", round(delay_ms))
            self._sleep(delay_ms / 1000.0)

    def _draw(self, operation: str, config: FaultConfig) -> FaultKind | None:
        with self._rng_lock:
            u = self._rng.random()
        cumulative = 0.0
        for kind in FAULT_ORDER:
            cumulative += config.rate(kind, operation)
            if u < cumulative:
                return kind
        return None

    def _plan_write(self, plan: Plan) -> None:
        payload = _parse(plan.body)
        table = payload.get("TableName") if payload else None
        if payload is None or not isinstance(table, str) or not self.capacity.limited(table):
            return
        units = request_units(plan.operation, payload)
        pk = partition_of(payload, self._config.partition_attribute)
        limit = self.capacity.decide([(table, pk, units)])[0]
        if limit is None:
            self._count_admitted(table, pk, units)
        else:
            self._throttle(plan, [(table, pk, limit)])

    def _throttle(self, plan: Plan, refusals: list[tuple[str, str | None, str]]) -> None:
        """Refuse the whole call: `refusals` holds (table, partition key, limit) per write."""
        config = self._config
        self.stats.count(plan.operation, "capacity_throttled")
        for table in {table for table, _, _ in refusals}:
            self.stats.count_table(table, "requests_throttled")
        for table, pk in {(table, pk) for table, pk, _ in refusals if pk is not None}:
            self.stats.count_partition(table, pk, "requests_throttled")
        named = [(table, limit) for table, _, limit in refusals]
        for entry in throttling_reasons(named, config):
            self.stats.count_reason(entry["reason"])
        plan.response = throttle_response(named, config)

    def _count_admitted(self, table: str, pk: str | None, units: int) -> None:
        self.stats.count_table(table, "wcu_admitted", units)
        self.stats.count_table(table, "items_admitted")
        if pk is not None:
            self.stats.count_partition(table, pk, "wcu_admitted", units)
            self.stats.count_partition(table, pk, "items_admitted")

    def _count_unprocessed(self, table: str, pk: str | None, units: int, limit: str) -> None:
        self.stats.count_table(table, "items_unprocessed")
        self.stats.count_table(table, "wcu_unprocessed", units)
        if limit == PARTITION:
            self.stats.count_table(table, "items_unprocessed_partition")
        if pk is not None:
            self.stats.count_partition(table, pk, "items_unprocessed")
            self.stats.count_partition(table, pk, "wcu_unprocessed", units)

    def _plan_batch(self, plan: Plan, config: FaultConfig) -> None:
        payload = _parse(plan.body)
        requests = batch_requests(payload) if payload else []
        if payload is None or not requests:
            return
        self.stats.count(plan.operation, "items", len(requests))
        kept: set[int] = set()
        if plan.fault is FaultKind.PARTIAL_BATCH:
            self.stats.count(plan.operation, FaultKind.PARTIAL_BATCH.value)
            k = max(1, round(len(requests) * config.partial_batch_fraction))
            with self._rng_lock:
                kept = set(self._rng.sample(range(len(requests)), k))
            self.stats.count(plan.operation, "items_kept_back", len(kept))
        candidates = [i for i in range(len(requests)) if i not in kept]
        units = {i: _units(requests[i][1]) for i in candidates}
        pks = {i: _partition(requests[i][1], config.partition_attribute) for i in candidates}
        limits = self.capacity.decide([(requests[i][0], pks[i], units[i]) for i in candidates])
        admitted = [i for i, limit in zip(candidates, limits, strict=True) if limit is None]
        refused = {i: lim for i, lim in zip(candidates, limits, strict=True) if lim is not None}
        if refused and not admitted and config.refuse_whole:
            self._throttle(plan, [(requests[i][0], pks[i], lim) for i, lim in refused.items()])
            return
        for i in admitted:
            if self.capacity.limited(requests[i][0]):
                self._count_admitted(requests[i][0], pks[i], units[i])
        for i, limit in refused.items():
            self._count_unprocessed(requests[i][0], pks[i], units[i], limit)
        self.stats.count(plan.operation, "items_unprocessed_capacity", len(refused))
        plan.kept_back = [requests[i] for i in sorted(kept | set(refused))]
        if not admitted:
            plan.response = _all_unprocessed(payload, plan.kept_back)
            return
        self.stats.count(plan.operation, "items_forwarded", len(admitted))
        if plan.kept_back:
            payload["RequestItems"] = group([requests[i] for i in admitted])
            plan.body = json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _partition(request: dict[str, Any], attribute: str) -> str | None:
    return partition_of(request_kind(request)[1], attribute)


def _units(request: dict[str, Any]) -> int:
    kind, inner = request_kind(request)
    return request_units(kind, inner)


def _all_unprocessed(payload: dict[str, Any], kept_back: list[WriteRequest]) -> Response:
    """A 200 BatchWriteItem answer that wrote nothing, as DynamoDB would shape it."""
    body: dict[str, Any] = {"UnprocessedItems": group(kept_back)}
    if payload.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        tables = sorted({table for table, _ in kept_back})
        body["ConsumedCapacity"] = [{"TableName": t, "CapacityUnits": 0.0} for t in tables]
    if payload.get("ReturnItemCollectionMetrics") == "SIZE":
        body["ItemCollectionMetrics"] = {}
    return json_response(200, body)


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _json_body(response: Response) -> dict[str, Any] | None:
    body = response.body
    encoding = next((v for k, v in response.headers if k.lower() == "content-encoding"), "")
    if encoding.lower() == "gzip":
        body = gzip.decompress(body)
    return _parse(body)
