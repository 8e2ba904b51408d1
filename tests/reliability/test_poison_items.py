"""Poison items among 10k good ones: exactly the poison is dead-lettered, with key and reason.

Three items are over DynamoDB's 400 KB (the storage layer's pre-flight check refuses them
before any call). A fourth passes every pre-flight check, but DynamoDB refuses any batch holding
it with ``ValidationException`` (the proxy plays DynamoDB here): the batch writer must split the
refused batches in halves until that item stands alone, dead-letter it, and write its 24
neighbours. (The file reader refuses oversize lines itself, so the items go in through
``Producer.load`` as bytes.)
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from storage.limits import MAX_ITEM_BYTES
from tests.faults import FaultProxy
from tests.faults.engine import Plan
from tests.faults.protocol import ERROR_PREFIX, json_response
from tests.reliability.conftest import Fleet, assert_exact, producer, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N = 10_000
OVERSIZE = {b"k%05d" % i for i in (17, 4321, 9998)}
REFUSED = b"k05555"


class Refuse:
    """Makes the proxy answer ValidationException to any BatchWriteItem naming ``key``."""

    def __init__(self, proxy: FaultProxy, key: bytes) -> None:
        self.needle = base64.b64encode(key)  # botocore sends B attributes base64-encoded
        self.refused = 0
        self._lock = threading.Lock()
        plan = proxy.engine.plan

        def refusing(operation: str, body: bytes) -> Any:
            if operation == "BatchWriteItem" and self.needle in body:
                with self._lock:
                    self.refused += 1
                return Plan(
                    operation,
                    body,
                    response=json_response(
                        400,
                        {
                            "__type": ERROR_PREFIX + "ValidationException",
                            "message": "One or more parameter values were invalid: refused by test",
                        },
                    ),
                )
            return plan(operation, body)

        proxy.engine.plan = refusing  # type: ignore[method-assign]


def test_three_oversize_and_one_refused_item_among_10k(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    refuse = Refuse(proxy, REFUSED)
    fleet.start(1, prefix="poison")
    ns, user = f"poison{unique}", f"user-{unique}"
    want = {b"k%05d" % i: b"value %d" % i for i in range(N)}
    for key in OVERSIZE:
        want[key] = b"x" * (MAX_ITEM_BYTES + 1)
    job = producer(fleet.penv).load(ns, want.items(), user)
    st = job.wait(timeout=120)

    dead = {key: f"over the {MAX_ITEM_BYTES}-byte limit" for key in OVERSIZE}
    dead[REFUSED] = "refused by test"
    assert (st.state, st.items, st.written) == ("partial", N, N - len(dead)), st
    assert_exact(st, job, read_back(fleet.penv, user, ns), want, dead=dead)
    letters = {d.key: d for d in job.dead_letters()}
    for key in OVERSIZE:
        assert letters[key].value == want[key]  # kept, so it can be fixed and replayed
        assert repr(key.decode()) in letters[key].reason  # the reason names the key
    assert letters[REFUSED].code == "ValidationException"
    # Halving 25 items down to the one refused takes at least log2(25) ~ 5 refusals.
    assert refuse.refused >= 5
    print(
        f"\n{N} items: {st.written} written, dead letters "
        f"{ {k.decode(): (d.code, d.reason[:70]) for k, d in letters.items()} }"
    )


def test_items_dead_lettered_after_requeues_name_their_input_lines(
    fleet: Fleet, proxy: FaultProxy, unique: str, tmp_path: Path
) -> None:
    """Every batch comes back unprocessed: the segments are requeued (the children carry their
    items' refs) until the bound, then each letter names its file and line; of a key read
    twice, the line that was to be written (the last)."""
    proxy.configure(partial_batch_rate=1.0, partial_batch_fraction=1.0)
    fleet.start(1, prefix="unwritten", DATAFOLD_MAX_REQUEUES="2")
    lines = [json.dumps({"key": f"k{i}", "value": i}) for i in range(40)]
    lines[19] = json.dumps({"key": "k3", "value": "again"})  # line 20 replaces line 4
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ns, user = f"unwritten{unique}", f"user-{unique}"

    st = producer(fleet.penv, DATAFOLD_SEGMENT_SIZE="10").load_file(path, ns, user).wait(90)

    assert (st.written, st.superseded, st.dead_lettered) == (0, 1, 39), st
    assert st.requeues > 0, st
    want = {f"k{i}".encode(): (str(path), i + 1) for i in range(40) if i != 19}
    want[b"k3"] = (str(path), 20)
    letters = list(producer(fleet.penv).job(st.id).dead_letters())
    assert {d.key: (d.source, d.line) for d in letters} == want
    assert all("after 2 requeues" in d.reason for d in letters), letters[0].reason
