"""Segment payloads: a binary framing that round-trips any bytes and refuses anything else;
messages that name a stored payload instead of carrying the items."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.messages import Op, Segment
from pipeline.payloads import MAGIC, PayloadError, decode, encode
from pipeline.segmenter import Segmenter


def test_any_bytes_round_trip_deletes_included() -> None:
    rng = random.Random(5)
    ops: list[tuple[bytes, bytes | None]] = [
        (
            rng.randbytes(rng.randint(1, 1024)),
            None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 5000)),
        )
        for _ in range(300)
    ]
    ops += [(b"\xff\xff\xff\xff", b""), (b"k", b"\xff\xff\xff\xff" * 3)]
    assert decode(encode(ops)) == ops
    assert decode(encode([])) == []


def test_bytes_are_carried_as_they_are_not_inflated() -> None:
    value = bytes(range(256)) * 16
    blob = encode([(b"k", value)] * 500)
    assert len(blob) == 4 + 500 * (8 + 1 + len(value))  # base64 in JSON would be > 4/3 of it


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"XXXX",
        b"DFP0" + encode([(b"k", b"v")])[4:],
        encode([(b"k", b"value")])[:-1],
        encode([(b"k", b"v")]) + b"\x00",
        MAGIC + b"\x00\x00\x00\x05\x00\x00",
        MAGIC + b"\x00\x00\x00\x01\x00\x00\x00\x09kvalue",
    ],
)
def test_anything_else_is_refused(blob: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(blob)


def test_a_message_names_its_payload_and_other_versions_are_refused() -> None:
    seg = Segment(
        job="j",
        seg="s",
        target="kv",
        ns="ns",
        user="u",
        ops=[(b"a", b"1"), (b"b", None)],
        part="p",
        idx=2,
    )
    named = json.loads(json.dumps(seg.without_ops().to_message()))
    assert "ops" not in named and named["n"] == 2 and named["v"] == 2
    back = Segment.from_message(named)
    assert back.ops is None and back.n == 2 and back.without_ops() == back
    assert (back.job, back.seg, back.part, back.idx) == ("j", "s", "p", 2)
    assert "ops" not in seg.to_message()  # items never travel in the message
    for version in (1, 3):  # version 1 carried items inline: no longer read
        with pytest.raises(ValueError, match=f"version {version}"):
            Segment.from_message({**named, "v": version})


def test_a_segment_counts_against_the_budget_exactly_what_its_payload_stores() -> None:
    sizes: list[tuple[list[Op], int]] = []

    class Gate:
        def plan(self, cutter: Segmenter, p: int, seg: Segment, size: int) -> None:
            assert seg.ops is not None
            sizes.append((seg.ops, size))

    class Sink:
        def segment(self, seg: Segment, countdown: float = 0.0) -> None:
            pass

    s = Segmenter(
        job="j",
        ns="ns",
        user="u",
        ledger=None,
        enqueue=Sink(),
        segment_size=3,  # type: ignore[arg-type]
        partitions=2,
        gate=Gate(),
    )
    s.add_all([(b"k%d" % i, b"v" * i) for i in range(10)] + [(b"gone", None)])
    s.close()
    assert sizes and all(size == len(encode(ops)) for ops, size in sizes)
