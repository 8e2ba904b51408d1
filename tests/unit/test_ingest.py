"""Ingest without services: DynamoDB-JSON lines, compression by extension, input expansion,
the plan's arithmetic, refusing to resume several inputs, and the progress bar's ETA."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pipeline.status import JobStatus
from producers.cli import main
from producers.ddb_json import read_ddb_json
from producers.inputs import BadLine, Record, read_records
from producers.multi_load import key_field
from producers.plan import LoadPlan, plan_load
from producers.progress import ProgressBar, eta
from producers.sources import close_source, codec, expand_sources, open_source
from storage.errors import InputError
from storage.limits import kv_item_size, write_units


def _ddb(item: dict[str, Any]) -> bytes:
    return (json.dumps({"Item": item}) + "\n").encode()


# -- ddb-json --------------------------------------------------------------------------------
def test_ddb_json_keys_of_type_s_n_and_b_and_the_value_is_the_whole_item() -> None:
    s_item = {"PK": {"S": "user#1"}, "age": {"N": "42"}}
    n_item = {"PK": {"N": "-12.50"}}
    b_item = {"PK": {"B": base64.b64encode(b"\x00\xff").decode()}, "l": {"L": [{"S": "x"}]}}
    stream = io.BytesIO(_ddb(s_item) + b"\n" + _ddb(n_item) + _ddb(b_item))

    recs = list(read_ddb_json(stream))

    assert recs == [
        Record(1, b"user#1", json.dumps(s_item, separators=(",", ":")).encode()),
        Record(3, b"-12.50", json.dumps(n_item, separators=(",", ":")).encode()),
        Record(4, b"\x00\xff", json.dumps(b_item, separators=(",", ":")).encode()),
    ]


def test_ddb_json_key_attribute_is_chosen_by_name() -> None:
    stream = io.BytesIO(_ddb({"PK": {"S": "a"}, "id": {"N": "7"}}))
    (rec,) = read_records(stream, "ddb-json", "id")
    assert isinstance(rec, Record) and rec.key == b"7"


def test_ddb_json_bad_lines_are_rejected_with_their_line_numbers() -> None:
    lines = [
        _ddb({"PK": {"S": "ok"}}),
        b"not json\n",
        b'{"key": "x", "value": 1}\n',
        _ddb({"other": {"S": "x"}}),
        _ddb({"PK": {"BOOL": True}}),
        _ddb({"PK": {"B": "***"}}),
        _ddb({"PK": {"N": "NaN"}}),
        _ddb({"PK": {"S": "x"}, "bad": {"Q": 1}}),
        _ddb({"PK": {"S": ""}}),
        b"\xff\xfe\n",
        _ddb({"PK": {"S": "last"}}),
    ]
    recs = list(read_ddb_json(io.BytesIO(b"".join(lines))))

    bad = [(r.line, r.reason) for r in recs if isinstance(r, BadLine)]
    assert [r.key for r in recs if isinstance(r, Record)] == [b"ok", b"last"]
    assert bad == [
        (2, "not valid JSON (Expecting value at column 1)"),
        (3, 'not a DynamoDB-JSON line (expected {"Item": {...}})'),
        (4, "no key attribute 'PK'"),
        (5, "key attribute 'PK' is of type BOOL; a key is S, N or B"),
        (6, "key attribute 'PK' is not valid base64"),
        (7, "key attribute 'PK' is not a number: 'NaN'"),
        (8, "attribute 'bad' has unknown type 'Q'"),
        (9, "empty key"),
        (10, "not UTF-8"),
    ]


def test_key_options_belong_to_their_format() -> None:
    assert key_field("ddb-json", None, None) == "PK"
    assert key_field("ddb-json", None, "id") == "id"
    assert key_field("csv", "c", None) == "c"
    with pytest.raises(InputError, match="key attribute applies only"):
        key_field("jsonl", None, "id")
    with pytest.raises(InputError, match="not a key column"):
        key_field("ddb-json", "c", None)
    with pytest.raises(InputError, match="unknown input format 'xml'"):
        key_field("xml", None, None)


# -- compression -----------------------------------------------------------------------------
PAYLOAD = b'{"key":"a","value":1}\n' * 1000

COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("ext", [".gz", ".bz2", ".zst"])
def test_compressed_files_are_read_by_their_extension(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"in.jsonl{ext}"
    path.write_bytes(COMPRESSORS[ext](PAYLOAD))
    stream = open_source(str(path))
    try:
        assert stream.read() == PAYLOAD
    finally:
        close_source(str(path), stream)


def test_compression_by_option_and_none(tmp_path: Path) -> None:
    path = tmp_path / "in.data"
    path.write_bytes(gzip.compress(PAYLOAD))
    assert codec(str(path)) is None
    assert codec(str(path), "gz") == ".gz"
    assert codec("x.jsonl.GZ") == ".gz" and codec("x.jsonl.gz", "none") is None
    stream = open_source(str(path), "gz")
    assert stream.read() == PAYLOAD
    stream.close()
    with pytest.raises(InputError, match="unknown compression 'lz'"):
        codec("x", "lz")


def test_missing_local_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file: .*nope\.jsonl\.gz"):
        open_source(str(tmp_path / "nope.jsonl.gz"))


# -- expansion -------------------------------------------------------------------------------
def test_patterns_expand_sorted_and_paths_stay_in_the_order_given(tmp_path: Path) -> None:
    for name in ("b.jsonl.gz", "a.jsonl.gz", "c.csv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.jsonl.gz").mkdir()  # a directory is not an input
    z = str(tmp_path / "c.csv")

    got = expand_sources([z, str(tmp_path / "*.jsonl.gz")])

    assert got == [z, str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl.gz")]
    with pytest.raises(InputError, match="nothing matches"):
        expand_sources([str(tmp_path / "*.zst")])
    with pytest.raises(InputError, match="standard input"):
        expand_sources(["-", z])


class _Pages:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.asked: dict[str, str] = {}

    def get_paginator(self, name: str) -> _Pages:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
        self.asked = {"Bucket": Bucket, "Prefix": Prefix}
        found = [{"Key": k} for k in self.keys if k.startswith(Prefix)]
        return [{"Contents": found[:2]}, {"Contents": found[2:]}, {}]


def test_s3_prefixes_and_patterns_expand_to_the_objects_they_name() -> None:
    keys = ["ex/", "ex/p-2.json.gz", "ex/p-1.json.gz", "ex/manifest.json", "ex/sub/p-3.json.gz"]
    client = _Pages(keys)

    assert expand_sources(["s3://b/ex/"], client=client) == [
        "s3://b/ex/manifest.json",
        "s3://b/ex/p-1.json.gz",
        "s3://b/ex/p-2.json.gz",
        "s3://b/ex/sub/p-3.json.gz",
    ]
    assert expand_sources(["s3://b/ex/p-*.json.gz"], client=client) == [
        "s3://b/ex/p-1.json.gz",
        "s3://b/ex/p-2.json.gz",
    ]
    assert client.asked == {"Bucket": "b", "Prefix": "ex/p-"}
    assert expand_sources(["s3://b/one.json"], client=client) == ["s3://b/one.json"]


def test_several_inputs_refuse_resume_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b""), b.write_bytes(b"")
    rc = main(["load", str(a), str(b), "-n", "ns", "--resume", "0123456789abcdef"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == "error: Resume: 2 inputs: only a load of one input resumes (load them again)\n"


# -- plan ------------------------------------------------------------------------------------
def _plan(tmp_path: Path, lines: list[dict[str, Any]], **kw: Any) -> LoadPlan:
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join((json.dumps(x) + "\n").encode() for x in lines)))
    return plan_load(
        [str(path)],
        "ns",
        "alice",
        "jsonl",
        None,
        partitions=kw.get("partitions", 1),
        segment_size=kw.get("segment_size", 500),
        namespace_problem=lambda ns: None,
    )


def test_plan_counts_units_per_started_kb_of_each_written_item(tmp_path: Path) -> None:
    # Item size = 9 + len("alice") + key + value; value "x"*n is stored as the JSON '"xx…"'.
    sizes = [1, 1006, 1007, 3000]  # items of 19, 1024, 1025 and 3018 bytes
    lines = [{"key": f"k{i}", "value": "x" * n} for i, n in enumerate(sizes)]
    plan = _plan(tmp_path, lines)

    expected = sum(write_units(kv_item_size("alice", 2, n + 2)) for n in sizes)
    assert [write_units(kv_item_size("alice", 2, n + 2)) for n in sizes] == [1, 1, 2, 3]
    assert plan.wcu == expected == 7
    assert (plan.items, plan.rejected, plan.inputs, plan.lines) == (4, 0, 1, 4)
    assert plan.bytes == sum(len(json.dumps(x)) + 1 for x in lines)


def test_plan_counts_a_key_once_per_segment_as_the_worker_writes_it(tmp_path: Path) -> None:
    lines = [{"key": "same", "value": i} for i in range(5)]
    one_segment = _plan(tmp_path, lines, segment_size=10)
    two_segments = _plan(tmp_path, lines, segment_size=3)  # 3 + 2: written once in each
    assert (one_segment.wcu, one_segment.items, one_segment.segments) == (1, 5, 1)
    assert (two_segments.wcu, two_segments.segments) == (2, 2)


def test_plan_rejects_what_the_load_rejects(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"key":"a","value":1}\nbroken\n{"key":"","value":1}\n')
    plan = plan_load(
        [str(path)],
        "ns",
        "alice",
        "jsonl",
        None,
        partitions=32,
        segment_size=500,
        namespace_problem=lambda ns: None,
    )
    assert (plan.items, plan.rejected, plan.wcu) == (1, 2, 1)
    assert [n for n, _ in plan.shown] == [2, 3]


def test_plan_cost_and_time_arithmetic() -> None:
    plan = LoadPlan(wcu=2_000_000, rate=1000.0)
    assert plan.cost == pytest.approx(1.25)  # 2 million units at $0.625 per million
    assert plan.seconds == 2000.0
    text = plan.render()
    assert "2,000,000 WCU" in text and "$1.2500" in text and "0:33:20 at 1,000 WCU/s" in text
    assert "as published 2024-11-01" in text
    assert plan.as_dict()["cost_usd"] == 1.25


# -- progress --------------------------------------------------------------------------------
def test_progress_bar_shows_speed_limiter_rate_and_eta() -> None:
    now = [100.0]
    bar = ProgressBar(io.StringIO(), rate=lambda: 2500.0, clock=lambda: now[0])
    st = JobStatus("j", "running", items=1000, written=100, sealed=True)
    bar.render(st)
    now[0] += 2.0
    st2 = JobStatus("j", "running", items=1000, written=300, sealed=True)
    text = bar.render(st2)
    assert "100/s" in text and "limiter 2,500 WCU/s" in text and "ETA 0:07 " in text
    unsealed = JobStatus("j", "running", items=1000, written=300)
    assert "ETA 0:07+" in bar.render(unsealed)
    assert eta(None) == "?" and eta(3725) == "1:02:05"
