"""Bounded batch writes: a ``stop`` reason ends the run before the next call and every item not
sent is handed back; a batch too big for the capacity left before the deadline is split until
its parts fit, so a slow table still makes progress; nothing is ever dropped."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from storage.errors import BackendUnavailableError, StoppedError
from tests.unit.test_batch import FakeTable, items, setup


class Pacer:
    """Grants at most ``fits`` WCU per acquire before the deadline; refuses bigger ones."""

    def __init__(self, fits: float) -> None:
        self.fits = fits
        self.granted: list[float] = []

    def acquire(
        self,
        table: str,
        units: float,
        deadline: float | None = None,
        partition: Any = None,
        **more: Any,
    ) -> float:
        if deadline is not None and units > self.fits:
            raise StoppedError("no capacity in time", table=table, code="CapacityDeadline")
        self.granted.append(units)
        return 0.0

    def admit(self, *args: Any) -> float:
        return 0.0

    def feedback(self, table: str, *, units: float, throttled: bool, **more: Any) -> None:
        pass


def test_a_stop_reason_hands_back_everything_not_yet_sent() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table)
    calls = []

    def stop() -> str | None:
        calls.append(1)
        return "lease lost" if len(calls) > 2 else None

    ops = [kv.put_op(k, v) for k, v in items(100)]
    result = writer.write(kv.table, ops, stop=stop)
    assert len(table.batches) == 2 and result.written == 50
    assert len(result.unprocessed) == 50 and isinstance(result.last_error, StoppedError)
    assert result.last_error.code == "Stopped" and "lease lost" in str(result.last_error)


def test_a_batch_too_big_for_the_deadline_is_split_until_it_fits() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table)
    writer.pacer = Pacer(fits=7.0)
    ops = [kv.put_op(k, v) for k, v in items(25)]
    result = writer.write(kv.table, ops, deadline=1.0)
    assert result.written == 25 and not result.unprocessed
    assert max(len(b) for b in table.batches) <= 7


def test_an_item_that_can_never_fit_is_handed_back_not_dropped() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table)
    writer.pacer = Pacer(fits=0.5)  # not even one 1-WCU item
    ops = [kv.put_op(k, v) for k, v in items(3)]
    result = writer.write(kv.table, ops, deadline=1.0)
    assert result.written == 0 and len(result.unprocessed) == 3 and table.batches == []
    assert result.last_error is not None and result.last_error.code == "CapacityDeadline"


def test_capacity_is_not_taken_for_a_run_already_stopped() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table)
    writer.pacer = pacer = Pacer(fits=1000.0)
    ops = [kv.put_op(k, v) for k, v in items(50)]
    result = writer.write(kv.table, ops, stop=lambda: "lease lost", deadline=1.0)
    assert pacer.granted == [] and table.batches == [] and len(result.unprocessed) == 50


def test_a_poison_batch_split_still_asks_stop() -> None:
    table = FakeTable(poison={b"k003"})
    kv, writer, _ = setup(table)
    asked = []

    def stop() -> str | None:
        asked.append(1)
        return "lease lost" if len(asked) > 2 else None

    ops = [kv.put_op(k, v) for k, v in items(8)]
    result = writer.write(kv.table, ops, stop=stop)
    assert result.written + len(result.unprocessed) + len(result.rejected) == 8
    assert result.unprocessed and len(table.batches) <= 2  # the split stopped when told


def test_a_chunk_that_raises_waits_for_the_others_before_the_write_returns() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table, threads=4)
    ended: list[float] = []

    class Failing(Pacer):
        def acquire(
            self,
            table: str,
            units: float,
            deadline: float | None = None,
            partition: Any = None,
            **more: Any,
        ) -> float:
            if not self.granted:
                self.granted.append(units)
                raise BackendUnavailableError("Redis gone", operation="RateLimiter.acquire")
            time.sleep(0.2)
            ended.append(time.monotonic())
            return 0.0

    writer.pacer = Failing(fits=1000.0)
    ops = [kv.put_op(k, v) for k, v in items(100)]
    with pytest.raises(BackendUnavailableError):
        writer.write(kv.table, ops)
    raised, written = time.monotonic(), len(table.batches)
    time.sleep(0.4)
    # Every other chunk had ended, and written, before the write raised: none writes after.
    assert len(ended) == 3 and max(ended) <= raised and len(table.batches) == written == 3


class Admitting(Pacer):
    """Admits ``admits`` chunks in the caller's thread, then refuses (``error``)."""

    def __init__(self, admits: int, error: Exception) -> None:
        super().__init__(fits=1000.0)
        self.admits, self.error = admits, error
        self.threads: list[str] = []
        self.acquired: list[bool] = []

    def admit(self, *args: Any) -> float:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) > self.admits:
            raise self.error
        return 0.0

    def acquire(self, table: str, units: float, *args: Any, **more: Any) -> float:
        self.acquired.append(bool(more.get("admitted")))
        time.sleep(0.1)
        return 0.0


def test_shares_are_taken_in_the_callers_thread_and_a_refusal_hands_back_the_rest() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table, threads=4)
    writer.pacer = pacer = Admitting(2, StoppedError("no share in time", code="CapacityDeadline"))
    ops = [kv.put_op(k, v) for k, v in items(100)]
    result = writer.write(kv.table, ops, deadline=1.0)
    assert set(pacer.threads) == {"MainThread"}  # never in the shared batch threads
    assert pacer.acquired == [True, True]  # the table's capacity: in them, share already taken
    assert result.written == 50 and len(result.unprocessed) == 50
    assert result.last_error is not None and result.last_error.code == "CapacityDeadline"


def test_redis_gone_while_admitting_waits_for_the_chunks_already_handed_over() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table, threads=4)
    writer.pacer = Admitting(2, BackendUnavailableError("Redis gone", operation="admit"))
    ops = [kv.put_op(k, v) for k, v in items(100)]
    with pytest.raises(BackendUnavailableError):
        writer.write(kv.table, ops)
    written = len(table.batches)
    time.sleep(0.3)
    assert written == len(table.batches) == 2  # both had written before the write raised
