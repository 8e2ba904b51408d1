"""Refs (the input and line of each item of a segment loaded from files): the stored form, the
mapping from dead-lettered items back to their lines, and dead letters that carry them."""

from __future__ import annotations

import json

import pytest

from pipeline.messages import Op, Segment
from pipeline.refs import MAGIC, Refs, RefsError, decode, encode, placed, ref, used
from pipeline.segmenter import Segmenter
from pipeline.status import DeadLetter


def test_refs_round_trip_with_the_names_of_their_inputs() -> None:
    refs = [ref(0, 1), ref(0, 7), ref(3, 1), ref(3, 2**40 - 1), ref(2**23, 5)]
    names = {0: "a.jsonl", 3: "s3://b/exports/part-2.json.gz", 2**23: "-"}
    back = decode(encode(names, refs))
    assert list(back.refs) == refs and back.names == names
    assert [back.where(r) for r in back.refs] == [
        ("a.jsonl", 1),
        ("a.jsonl", 7),
        ("s3://b/exports/part-2.json.gz", 1),
        ("s3://b/exports/part-2.json.gz", 2**40 - 1),
        ("-", 5),
    ]
    assert back.where(None) == (None, None)
    assert len(encode({0: "x"}, [ref(0, 1)] * 500)) < 40 + 8 * 500  # 8 bytes an item
    assert list(decode(encode({}, [])).refs) == []


def test_no_credential_value_is_stored_in_a_name() -> None:
    blob = encode({0: "s3://b/k?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP/x"}, [ref(0, 1)])
    assert b"AKIA" not in blob and b"<redacted>" in blob


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"DFP1\x00\x00\x00\x00",
        MAGIC + b"\x00\x00\x00\x09{}",  # names shorter than said
        MAGIC + b"\x00\x00\x00\x02{}" + b"\x00" * 7,  # a ref cut short
        MAGIC + b"\x00\x00\x00\x02[]",  # names not an object
        MAGIC + b"\x00\x00\x00\x02{x",
    ],
)
def test_anything_else_is_refused(blob: bytes) -> None:
    with pytest.raises(RefsError):
        decode(blob)


def test_used_names_only_the_inputs_the_refs_use() -> None:
    inputs = ["a", "b", "c", "d"]
    assert used(inputs, [ref(1, 5), ref(1, 9)]) == {1: "b"}
    assert used(inputs, [ref(0, 5), ref(2, 1), ref(3, 1)]) == {0: "a", 2: "c", 3: "d"}
    assert used(inputs, []) == {}


def test_a_key_written_once_takes_the_line_of_its_last_occurrence() -> None:
    ops: list[Op] = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", None), (b"a", b"3")]
    refs = [ref(0, n) for n in (10, 11, 12, 13, 14)]
    # After de-duplication the item of "a" is its last line (14), whatever its value was before.
    assert placed(ops, refs, [(b"a", b"3"), (b"c", None), (b"b", b"2")]) == [
        ref(0, 14),
        ref(0, 13),
        ref(0, 11),
    ]
    assert placed(ops, refs, [(b"zz", b"1"), (b"a", b"9")]) == [None, None]


def test_items_refused_once_per_occurrence_take_each_their_line() -> None:
    big = b"x" * 10
    ops: list[Op] = [(b"k", big), (b"j", b"1"), (b"k", b"small"), (b"k", big), (b"k", b"small")]
    refs = [ref(1, n) for n in (1, 2, 3, 4, 5)]
    # Both oversize occurrences of "k" are letters of their own; "k" small was written.
    assert placed(ops, refs, [(b"k", big), (b"k", big)]) == [ref(1, 1), ref(1, 4)]
    assert placed(ops, refs, [(b"k", big)]) == [ref(1, 4)]  # deduped: the last one


def test_dead_letters_round_trip_their_input_and_line_and_old_ones_still_read() -> None:
    d = DeadLetter(b"k", b"v", "why", "Invalid", "ns", "s3://b/part-2.json.gz", 42)
    assert DeadLetter.from_json(d.to_json()) == d
    plain = DeadLetter(b"k", None, "why", "Invalid", None)
    assert DeadLetter.from_json(plain.to_json()) == plain
    assert "source" not in json.loads(plain.to_json())
    old = json.dumps({"key": "6b", "value": "76", "reason": "r", "code": "c", "namespace": "n"})
    back = DeadLetter.from_json(old)
    assert (back.key, back.namespace, back.source, back.line) == (b"k", "n", None, None)
    leaky = DeadLetter(b"k", None, "r", "c", "n", "s3://b/k?Signature=abcdef", 1)
    assert "abcdef" not in leaky.to_json()


class _Sink:
    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        self.segments.append(seg)


class _Gate:
    def plan(self, cutter: Segmenter, p: int, seg: Segment, size: int) -> None:
        pass


def _segmenter(sink: _Sink, inputs: list[str] | None) -> Segmenter:
    return Segmenter(
        job="j",
        ns="ns",
        user="u",
        ledger=None,  # type: ignore[arg-type]
        enqueue=sink,  # type: ignore[arg-type]
        segment_size=3,
        partitions=2,
        gate=_Gate(),
        inputs=inputs,
    )


def test_segments_cut_from_inputs_carry_the_ref_of_each_item() -> None:
    sink, inputs = _Sink(), ["one.jsonl"]
    s = _segmenter(sink, inputs)
    lines: dict[bytes, tuple[str, int]] = {}
    for index, name in enumerate(["one.jsonl", "two.jsonl"]):
        if index:
            inputs.append(name)
        for line in range(1, 8):
            key = b"%s-%d" % (name.encode(), line)
            s.add_to(s.partition_of(key), key, b"v", ref(index, line))
            lines[key] = (name, line)
    s.close()
    seen = 0
    for seg in sink.segments:
        assert seg.ops is not None and seg.refs is not None
        got = decode(seg.refs)
        assert len(got.refs) == len(seg.ops)
        for (key, _), r in zip(seg.ops, got.refs, strict=True):
            assert got.where(r) == lines[key]
            seen += 1
        assert seg.without_ops().refs is None  # never in the message
    assert seen == 14


def test_segments_not_from_inputs_carry_no_refs() -> None:
    sink = _Sink()
    s = _segmenter(sink, None)
    s.add_all([(b"k%d" % i, b"v") for i in range(7)])
    s.close()
    assert sink.segments and all(seg.refs is None for seg in sink.segments)


def test_a_requeued_child_carries_the_refs_it_is_given() -> None:
    seg = Segment(job="j", seg="s", target="kv", ns="ns", user="u", ops=[(b"a", b"1")])
    blob = Refs({0: "f"}, [ref(0, 3)]).encode()
    child = seg.child([(b"a", b"1")], refs=blob)
    assert child.refs == blob and child.parent == "s"
    assert seg.child([(b"a", b"1")]).refs is None
