"""Streaming input readers: JSONL, CSV and the export format (no services)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from producers.inputs import (
    ITEM_OVERHEAD_BYTES,
    MAX_LINE_BYTES,
    BadLine,
    ExportVerifier,
    Parsed,
    Record,
    SchemaRecord,
    Trailer,
    open_input,
    read_csv,
    read_jsonl,
    read_records,
)
from storage.errors import InputError
from storage.limits import MAX_ITEM_BYTES, item_size


def jsonl(*lines: str | bytes, **kw: Any) -> list[Parsed]:
    raw = b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines)
    return list(read_jsonl(io.BytesIO(raw), **kw))


def line(**obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- JSONL: good lines ----------------------------------------------------------------------


def test_text_key_and_json_value_become_utf8_and_compact_json() -> None:
    out = jsonl(line(key="a", value={"x": [1, 2.5, None], "y": "é"}), line(key="b", value="s"))
    assert out == [Record(1, b"a", '{"x":[1,2.5,null],"y":"é"}'.encode()), Record(2, b"b", b'"s"')]


def test_unicode_key_round_trips_to_its_utf8_bytes() -> None:
    (rec,) = jsonl(line(key="ключ🔑", value=1))
    assert rec == Record(1, "ключ🔑".encode(), b"1")
    (rec,) = jsonl(json.dumps({"key": "ключ🔑", "value": 1}))  # \u escapes in the file
    assert isinstance(rec, Record) and rec.key == "ключ🔑".encode()


def test_base64_round_trips_arbitrary_bytes() -> None:
    data = bytes(range(256)) + b"\xff\xfe\x80"
    out = jsonl(
        line(key_b64=b64(b"\xc3\x28key"), value_b64=b64(data)),
        line(key="k", value_b64=b64(b"")),
        line(key_b64=b64(b"\x00"), value=[1]),
    )
    assert out == [
        Record(1, b"\xc3\x28key", data),
        Record(2, b"k", b""),
        Record(3, b"\x00", b"[1]"),
    ]


def test_duplicate_keys_are_all_yielded_in_order() -> None:
    out = jsonl(line(key="k", value=1), line(key="k", value=2))
    assert out == [Record(1, b"k", b"1"), Record(2, b"k", b"2")]


def test_empty_file_and_blank_lines() -> None:
    assert list(read_jsonl(io.BytesIO(b""))) == []
    out = list(read_jsonl(io.BytesIO(b"\n  \n" + line(key="k", value=1).encode() + b"\n\n")))
    assert out == [Record(3, b"k", b"1")]


def test_crlf_bom_and_missing_final_newline() -> None:
    raw = b"\xef\xbb\xbf" + line(key="a", value=1).encode() + b"\r\n" + b'{"key":"b","value":2}'
    assert list(read_jsonl(io.BytesIO(raw))) == [Record(1, b"a", b"1"), Record(2, b"b", b"2")]


def test_item_overhead_covers_the_stored_item_layout() -> None:
    ref: dict[str, dict[str, Any]] = {
        "PK": {"S": "u" * 64},
        "SK": {"B": b""},
        "Value": {"B": b""},
        "Seq": {"N": "9" * 20},
    }
    assert item_size(ref) <= ITEM_OVERHEAD_BYTES


# -- JSONL: bad lines -----------------------------------------------------------------------

BIG = "v" * (MAX_ITEM_BYTES + 10)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not valid JSON (Expecting value at column 1)"),
        ('{"key": "a", "value": 1', "not valid JSON (Expecting ',' delimiter at column 24)"),
        ("[1, 2]", "not a JSON object (got list)"),
        ('"s"', "not a JSON object (got str)"),
        (line(value=1), "no key"),
        (line(key="a"), "no value"),
        (line(key="", value=1), "empty key"),
        (line(key_b64="", value=1), "empty key"),
        (line(key="k" * 2000, value=1), "key is 2000 bytes, over the 1024-byte limit"),
        (
            line(key="k", value_b64=b64(b"v" * 500_000)),
            "value is 500000 bytes, item over the 409600-byte limit",
        ),
        (
            line(key="k", value=BIG),
            f"value is {len(BIG) + 2} bytes, item over the 409600-byte limit",
        ),
        (line(key=5, value=1), "key is not a string (use key_b64 for raw bytes)"),
        (line(key_b64="!!notbase64", value=1), "key_b64 is not valid base64"),
        (line(key="k", value_b64="abc"), "value_b64 is not valid base64"),
        (line(key="k", value_b64="ключ"), "value_b64 is not valid base64"),
        (line(key="k", value_b64=5), "value_b64 is not a string"),
        (line(key="k", key_b64="aw==", value=1), "both key and key_b64"),
        ('{"key": "k", "value": NaN}', "not valid JSON (NaN is not allowed)"),
        ('{"key": "\\ud800", "value": 1}', "key is not valid Unicode (lone surrogate)"),
        ('{"key": "k", "value": "\\udfff"}', "value is not valid Unicode (lone surrogate)"),
        (
            '{"key": "k", "value": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "not valid JSON (nested too deeply)",
        ),
    ],
)
def test_bad_line_reasons(text: str, reason: str) -> None:
    out = jsonl(line(key="ok", value=0), text, line(key="ok2", value=0))
    assert out == [Record(1, b"ok", b"0"), BadLine(2, reason), Record(3, b"ok2", b"0")]


def test_not_utf8_line_is_bad_and_reading_goes_on() -> None:
    out = jsonl(b'{"key": "\xff\xfe", "value": 1}', line(key="k", value=1))
    assert out == [BadLine(1, "not UTF-8"), Record(2, b"k", b"1")]


def test_line_limit_is_exact_and_reading_goes_on() -> None:
    at_limit = line(key="k", value="x" * 30)
    limit = len(at_limit.encode())
    over = line(key="k", value="x" * 31)
    out = jsonl(at_limit, over, line(key="z", value=1), max_line=limit)
    assert out == [
        Record(1, b"k", _json("x" * 30)),
        BadLine(2, f"line is over {limit} bytes"),
        Record(3, b"z", b"1"),
    ]
    # an over-long last line without a newline
    out = list(read_jsonl(io.BytesIO(b"\n" + over.encode()), max_line=limit))
    assert out == [BadLine(2, f"line is over {limit} bytes")]


def _json(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def test_50mb_line_is_rejected_without_loading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    chunk = b"x" * (1024 * 1024)
    with path.open("wb") as f:
        f.write(b'{"key": "big", "value": "')
        for _ in range(50):
            f.write(chunk)
        f.write(b'"}\n' + line(key="after", value=1).encode() + b"\n")
    del chunk
    with open_input(path) as stream:
        tracemalloc.start()
        try:
            out = list(read_jsonl(stream))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert out == [BadLine(1, f"line is over {MAX_LINE_BYTES} bytes"), Record(2, b"after", b"1")]
    assert peak < 10 * 1024 * 1024, f"peak {peak} bytes"


# -- open_input and read_records ------------------------------------------------------------


def test_open_input_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=f"^no such file: {missing}$"):
        open_input(missing)
    with pytest.raises(InputError, match="is a directory"):
        open_input(str(tmp_path))


def test_open_input_dash_is_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"{}\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert open_input("-") is fake.buffer


def test_read_records_dispatches_and_rejects_misuse() -> None:
    data = line(key="k", value=1).encode() + b"\n"
    assert list(read_records(io.BytesIO(data))) == [Record(1, b"k", b"1")]
    assert list(read_records(io.BytesIO(b"id,v\n1,a\n"), "csv", "id")) == [
        Record(2, b"1", b'{"id":"1","v":"a"}')
    ]
    with pytest.raises(InputError, match="unknown input format 'xml'"):
        read_records(io.BytesIO(data), "xml")
    with pytest.raises(InputError, match="needs a key column"):
        read_records(io.BytesIO(data), "csv")
    with pytest.raises(InputError, match="only to the csv"):
        read_records(io.BytesIO(data), "jsonl", "id")


# -- CSV ------------------------------------------------------------------------------------


def csv_rows(text: str | bytes, key_column: str = "id", **kw: Any) -> list[Record | BadLine]:
    raw = text.encode() if isinstance(text, str) else text
    return list(read_csv(io.BytesIO(raw), key_column=key_column, **kw))


def test_csv_happy_path() -> None:
    out = csv_rows('name,id\nAnn,ключ🔑\n\n"Bo, ""B""","2"\n"multi\nline",3\r\n')
    assert out == [
        Record(2, "ключ🔑".encode(), '{"name":"Ann","id":"ключ🔑"}'.encode()),
        Record(4, b"2", b'{"name":"Bo, \\"B\\"","id":"2"}'),
        Record(5, b"3", b'{"name":"multi\\nline","id":"3"}'),
    ]


def test_csv_without_key_column_raises_at_once() -> None:
    with pytest.raises(InputError, match=r"CSV has no column 'id' \(columns: a, b, c\)"):
        read_csv(io.BytesIO(b"a,b,c\n1,2,3\n"), key_column="id")


def test_csv_header_problems() -> None:
    assert csv_rows("") == []
    with pytest.raises(InputError, match="repeats column 'id'"):
        csv_rows("id,a,id\n")
    with pytest.raises(InputError, match="not UTF-8"):
        csv_rows(b"id,\xff\n")
    assert csv_rows(b"\xef\xbb\xbf\nid\n1\n") == [Record(3, b"1", b'{"id":"1"}')]


def test_csv_bad_rows_carry_line_and_reason() -> None:
    out = csv_rows(b"id,v\n1\n1,2,3\n,x\n\xff,x\n" + b"k" * 2000 + b",x\n5,ok\n")
    assert out == [
        BadLine(2, "row has 1 fields, header has 2"),
        BadLine(3, "row has 3 fields, header has 2"),
        BadLine(4, "empty key"),
        BadLine(5, "not UTF-8"),
        BadLine(6, "key is 2000 bytes, over the 1024-byte limit"),
        Record(7, b"5", b'{"id":"5","v":"ok"}'),
    ]


def test_csv_over_long_line_and_runaway_quote_are_bounded() -> None:
    out = csv_rows("id,v\n1," + "x" * 100 + "\n2,ok\n", max_line=50)
    assert out == [BadLine(2, "line is over 50 bytes"), Record(3, b"2", b'{"id":"2","v":"ok"}')]
    # an unclosed quote swallows lines until the row is over the limit
    out = csv_rows(
        'id,v\n1,"open\n' + "x" * 20 + "\n" + "y" * 20 + "\n" + "z" * 20 + "\n", max_line=50
    )
    assert out[0] == BadLine(2, "row is over 50 bytes (lines 2-5)")


# -- export format --------------------------------------------------------------------------


def export_file(trailer: dict[str, Any] | None = None, **fix: Any) -> tuple[bytes, list[bytes]]:
    """An export file and its lines; the trailer is computed unless given."""
    lines = [
        line(
            kind="schema",
            name="User",
            body={"fields": ["a"]},
            mutation_mappers={"m": 1},
            created_at=1,
            updated_at=2,
            version=3,
        ),
        line(kind="item", namespace="ns1", key_b64=b64(b"\xffk"), value_b64=b64(b"\x00v")),
        line(kind="item", namespace="ns1", key_b64=b64(b"k2"), value_b64=b64(b"v2")),
        line(kind="item", namespace="ns.2", key="text", value={"a": 1}),
    ]
    raw = [x.encode() + b"\n" for x in lines]
    if trailer is None:
        trailer = {
            "kind": "trailer",
            "items": {"ns1": 2, "ns.2": 1},
            "schemas": 1,
            "sha256": hashlib.sha256(b"".join(raw)).hexdigest(),
            **fix,
        }
    return b"".join(raw) + json.dumps(trailer).encode() + b"\n", raw


def verify(data: bytes) -> tuple[list[Parsed], str | None]:
    verifier = ExportVerifier()
    out, trailer = [], None
    for rec in read_jsonl(io.BytesIO(data), on_line=verifier.feed):
        verifier.count(rec)
        if isinstance(rec, Trailer):
            trailer = rec
        out.append(rec)
    return out, verifier.check(trailer)


def test_export_lines_trailer_and_verifier_good() -> None:
    data, raw = export_file()
    out, problem = verify(data)
    assert problem is None
    assert out == [
        SchemaRecord(1, "User", {"fields": ["a"]}, {"m": 1}, 1, 2, 3),
        Record(2, b"\xffk", b"\x00v", "ns1"),
        Record(3, b"k2", b"v2", "ns1"),
        Record(4, b"text", b'{"a":1}', "ns.2"),
        Trailer(5, {"ns1": 2, "ns.2": 1}, 1, hashlib.sha256(b"".join(raw)).hexdigest()),
    ]


def test_export_truncated() -> None:
    data, raw = export_file()
    assert verify(b"".join(raw))[1] == "truncated: trailer missing"
    assert verify(data[: len(raw[0]) + 10])[1] == "truncated: trailer missing"


def test_export_tampered_or_appended() -> None:
    data, _ = export_file()
    tampered = data.replace(b'"a": 1', b'"a": 2')  # the value of the last item
    assert tampered != data
    out, problem = verify(tampered)
    assert problem is not None and problem.startswith("checksum mismatch")
    assert Record(4, b"text", b'{"a":2}', "ns.2") in out
    out, problem = verify(data + line(key="late", value=1).encode() + b"\n\n")
    assert out[-1] == BadLine(6, "line after the export trailer")
    assert problem is not None and problem.startswith("checksum mismatch")


def test_export_count_mismatches() -> None:
    data, _ = export_file(items={"ns1": 3, "ns.2": 1})
    assert verify(data)[1] == "item count mismatch ('ns1': trailer 3, read 2)"
    data, _ = export_file(schemas=0)
    assert verify(data)[1] == "schema count mismatch (trailer 0, read 1)"


def test_on_line_gets_every_line_but_the_trailer_even_bad_and_over_long() -> None:
    body = (
        b"\n"
        + line(key="k", value=1).encode()
        + b"\nnot json\n"
        + line(key="big", value="x" * 200_000).encode()
        + b"\n"
    )
    trailer = line(kind="trailer", items={}, schemas=0, sha256=hashlib.sha256(body).hexdigest())
    seen: list[bytes] = []
    out = list(
        read_jsonl(io.BytesIO(body + trailer.encode() + b"\n"), max_line=200, on_line=seen.append)
    )
    assert b"".join(seen) == body
    assert [type(r) for r in out] == [Record, BadLine, BadLine, Trailer]
    assert out[2] == BadLine(4, "line is over 200 bytes")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"kind": "thing"}, "unknown kind 'thing'"),
        ({"kind": "item", "key": "k", "value": 1}, "invalid namespace None"),
        ({"kind": "item", "namespace": "a b", "key": "k", "value": 1}, "invalid namespace 'a b'"),
        ({"kind": "item", "namespace": "ns", "key_b64": "", "value_b64": ""}, "empty key"),
        ({"kind": "schema", "body": {}}, "schema has no name"),
        ({"kind": "schema", "name": "S", "body": []}, "schema 'S': body is not a JSON object"),
        (
            {"kind": "schema", "name": "S", "body": {}, "version": "3"},
            "schema 'S': version is not an integer",
        ),
        (
            {"kind": "trailer", "items": {"a": -1}, "schemas": 0, "sha256": "0" * 64},
            "trailer: items is not an object of namespace counts",
        ),
        (
            {"kind": "trailer", "items": {}, "schemas": True, "sha256": "0" * 64},
            "trailer: schemas is not a count",
        ),
        (
            {"kind": "trailer", "items": {}, "schemas": 0, "sha256": "xyz"},
            "trailer: sha256 is not 64 hex digits",
        ),
    ],
)
def test_bad_export_lines(obj: dict[str, Any], reason: str) -> None:
    assert jsonl(json.dumps(obj)) == [BadLine(1, reason)]


def test_schema_optional_fields_default() -> None:
    assert jsonl(line(kind="schema", name="S", body={})) == [
        SchemaRecord(1, "S", {}, {}, None, None, None)
    ]


def test_the_tracked_input_keeps_memory_bounded_over_a_huge_line_and_hashes_every_byte() -> None:
    import hashlib
    import io

    from producers.checkpoint import TrackedInput
    from producers.inputs import read_jsonl

    data = b"x" * (12 * 2**20) + b"\n" + b'{"key": "a", "value": 1}\n'
    tracker = TrackedInput(io.BytesIO(data))
    records = read_jsonl(tracker)
    first = next(records)
    assert isinstance(first, BadLine) and first.line == 1
    assert sum(map(len, tracker._chunks)) <= TrackedInput.PENDING_MAX + 2**20
    tracker.commit()
    rest = list(records)
    tracker.commit()
    assert [type(x).__name__ for x in rest] == ["Record"]
    mark = tracker.mark()
    assert (mark.offset, mark.line) == (len(data), 2)
    assert mark.digest.hexdigest() == hashlib.blake2b(data, digest_size=20).hexdigest()
