"""A plan before a load (:func:`plan_load`): read the input once, as the load would, and say
what the load will cost — items, bytes, rejected lines, write capacity units, the on-demand
price and the time at a given rate. Nothing is enqueued and nothing written.

The WCU figure is the load's own: records are cut into segments by the same
:class:`~pipeline.segmenter.Segmenter` (same partitions, segment size and bytes), a key
repeated within one segment counts once (the worker writes only its last line), and every item
costs ``write_units(kv_item_size(...))`` — the size and rounding the batch writer charges the
limiter and reports as consumed (``storage.limits``). The job's ``consumed_wcu`` then matches
it, unless items are dead-lettered or DynamoDB reports its own figure differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.messages import Segment
from pipeline.segmenter import SEGMENT_MAX_BYTES, Segmenter
from producers.inputs import BadLine, Record
from producers.multi_load import SourceChain, chained_records
from storage.limits import kv_item_size, write_units

PRICE_PER_MILLION_WRU = 0.625
"""USD per million write request units, DynamoDB on-demand, Standard table class, us-east-1."""
PRICE_SOURCE = "on-demand Standard us-east-1, as published 2024-11-01"
ASSUMED_WCU_PER_SECOND = 4000.0
"""A new on-demand table's initial write throughput (its warm throughput), WCU/s."""
MAX_SHOWN = 5


@dataclass
class LoadPlan:
    """What a load of the input will do. ``rate`` (WCU/s) and where it comes from."""

    inputs: int = 0
    lines: int = 0
    bytes: int = 0
    items: int = 0
    rejected: int = 0
    segments: int = 0
    wcu: int = 0
    price: float = PRICE_PER_MILLION_WRU
    price_source: str = PRICE_SOURCE
    rate: float = ASSUMED_WCU_PER_SECOND
    rate_source: str = ""
    shown: tuple[tuple[int, str], ...] = ()

    @property
    def cost(self) -> float:
        """USD on demand: one write request unit per WCU of a standard write."""
        return self.wcu / 1e6 * self.price

    @property
    def seconds(self) -> float:
        return self.wcu / self.rate if self.rate > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shown"] = [list(x) for x in self.shown]
        return {**d, "cost_usd": round(self.cost, 6), "seconds": round(self.seconds, 1)}

    def render(self) -> str:
        m, s = divmod(round(self.seconds), 60)
        h, m = divmod(m, 60)
        lines = [
            f"inputs         {self.inputs}",
            f"input bytes    {self.bytes:,} (decompressed), {self.lines:,} lines",
            f"items          {self.items:,} in {self.segments:,} segments",
            f"rejected lines {self.rejected:,}",
            f"write units    {self.wcu:,} WCU (1 per started KB of each item written)",
            f"on-demand cost ${self.cost:,.4f} at ${self.price:g} per million write request "
            f"units ({self.price_source})",
            f"time           {h:d}:{m:02d}:{s:02d} at {self.rate:,.0f} WCU/s ({self.rate_source})",
        ]
        lines += [f"  rejected line {n}: {why}" for n, why in self.shown]
        return "\n".join(lines)


class _Counting:
    """Counts the bytes and lines read through it."""

    def __init__(self, raw: SourceChain) -> None:
        self.raw, self.bytes, self.lines = raw, 0, 0
        self._partial = False  # read part of a line its input may end without a newline

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.bytes += len(data)
        self.lines += data.count(b"\n") + (not data and self._partial)
        self._partial = bool(data) and not data.endswith(b"\n")
        return data


class _Tally:
    """Stands in for the enqueuer and the plan gate: sums each cut segment's WCU."""

    def __init__(self, user: str) -> None:
        self.user, self.wcu, self.segments = user, 0, 0

    def plan(self, cutter: Segmenter, p: int, seg: Segment, size: int) -> None:
        """Nothing to plan: nothing is enqueued."""

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        last = {key: value for key, value in seg.ops or []}  # the worker writes each key once
        self.wcu += sum(
            write_units(kv_item_size(self.user, len(k), len(v or b""))) for k, v in last.items()
        )
        self.segments += 1


def plan_load(
    specs: list[str],
    namespace: str | None,
    user: str,
    format: str,
    key_column: str | None,
    *,
    partitions: int,
    segment_size: int,
    namespace_problem: Callable[[str | None], str | None],
    compression: str = "auto",
    client: Any = None,
) -> LoadPlan:
    """Read ``specs`` once as ``Producer.load_file`` would (``key_column``: the CSV column or
    ddb-json attribute) and count. ``namespace_problem(ns)`` says why a record's namespace
    cannot be loaded (such records are rejected lines, as in the load). The price and rate
    fields are left at their defaults for the caller to set."""
    chain = SourceChain()
    src = _Counting(chain)
    tally = _Tally(user)
    segs: dict[str, Segmenter] = {}
    plan = LoadPlan(inputs=len(specs))
    shown: list[tuple[int, str]] = []

    def reject(line: int, why: str) -> None:
        plan.rejected += 1
        if len(shown) < MAX_SHOWN:
            shown.append((line, why))

    records = chained_records(
        specs, src, chain, format, key_column, compression=compression, client=client
    )
    for rec in records:
        if isinstance(rec, BadLine):
            reject(rec.line, rec.reason)
        elif isinstance(rec, Record):
            ns = namespace or rec.namespace
            why = namespace_problem(ns)
            if why is not None or ns is None:
                reject(rec.line, why or "no namespace")
                continue
            if ns not in segs:
                segs[ns] = Segmenter(
                    job="plan",
                    ns=ns,
                    user=user,
                    ledger=None,  # type: ignore[arg-type]  # the gate plans; never called
                    enqueue=tally,  # type: ignore[arg-type]  # only ``segment`` is called
                    partitions=partitions,
                    segment_size=segment_size,
                    segment_bytes=SEGMENT_MAX_BYTES,
                    gate=tally,
                )
            segs[ns].add(rec.key, rec.value)
            plan.items += 1
    for s in segs.values():
        s.close()
    plan.bytes, plan.lines = src.bytes, src.lines
    plan.wcu, plan.segments, plan.shown = tally.wcu, tally.segments, tuple(shown)
    return plan
