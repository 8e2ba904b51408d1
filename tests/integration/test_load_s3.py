"""Loads from a local S3 (moto's server), compressed, several objects as one job, DynamoDB-JSON
lines, and a plan whose WCU the load then consumes: each through the real queue and workers,
compared with the store."""

from __future__ import annotations

import base64
import bz2
import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard

from producers import Producer
from storage.errors import InputError
from tests.support.pipeline import ROOT, PipelineEnv, Worker


def _compact(v: object) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _cli(penv: PipelineEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _job_of(proc: subprocess.CompletedProcess[str]) -> str:
    return next(x.split()[-1] for x in proc.stderr.splitlines() if x.startswith("load: job"))


def _stored(penv: PipelineEnv, user: str, ns: str) -> dict[bytes, bytes]:
    kv = penv.store(user).open_namespace(ns, create=False)
    return dict(kv.scan_prefix(b""))


def test_gzip_jsonl_object_loads_through_the_queue(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    expected = {f"k{i:05d}".encode(): _compact({"i": i, "s": "é" * (i % 50)}) for i in range(3000)}
    lines = [json.dumps({"key": k.decode(), "value": json.loads(v)}) for k, v in expected.items()]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    client.put_object(Bucket=bucket, Key="in/items.jsonl.gz", Body=body)
    ns, user = f"s3gz{unique}", f"u-{unique}"

    proc = _cli(
        penv, "load", f"s3://{bucket}/in/items.jsonl.gz", "-n", ns, "--user", user, "--wait"
    )

    assert proc.returncode == 0, proc.stderr
    assert _stored(penv, user, ns) == expected


def test_zstd_csv_object_loads_through_the_api(
    penv: PipelineEnv,
    workers: list[Worker],
    producer: Producer,
    s3_bucket: tuple[Any, str],
    unique: str,
) -> None:
    client, bucket = s3_bucket
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "name", "city"])
    rows = [[f"id-{i}", f"name {i}", "Zürich"] for i in range(1500)]
    w.writerows(rows)
    body = zstandard.ZstdCompressor().compress(out.getvalue().encode())
    client.put_object(Bucket=bucket, Key="people.csv.zst", Body=body)
    ns, user = f"s3zst{unique}", f"u-{unique}"

    job = producer.load_file(
        f"s3://{bucket}/people.csv.zst", ns, user, format="csv", key_column="id"
    )
    st = job.wait(timeout=180)

    assert st.state == "succeeded" and st.items == 1500
    expected = {r[0].encode(): _compact({"id": r[0], "name": r[1], "city": r[2]}) for r in rows}
    assert _stored(penv, user, ns) == expected


def test_a_prefix_of_three_objects_is_one_job_last_line_wins_in_listed_order(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    parts = {
        "exports/part-1.jsonl.gz": [{"key": f"a{i}", "value": 1} for i in range(400)],
        "exports/part-2.jsonl.bz2": [{"key": f"b{i}", "value": 2} for i in range(400)]
        + [{"key": "a7", "value": "from part 2"}],
        "exports/part-3.jsonl": [{"key": f"c{i}", "value": 3} for i in range(400)]
        + [{"key": "a7", "value": "from part 3"}],
    }
    for key, recs in parts.items():
        text = "\n".join(json.dumps(r) for r in recs) + "\n"
        if key == "exports/part-2.jsonl.bz2":
            text = text.replace('{"key": "b3", "value": 2}', "{broken")  # line 4 of part 2
        raw = text.encode()
        body = gzip.compress(raw) if key.endswith(".gz") else raw
        body = bz2.compress(raw) if key.endswith(".bz2") else body
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key="other/ignored.jsonl", Body=b'{"key":"x","value":0}\n')
    ns, user = f"s3pre{unique}", f"u-{unique}"

    proc = _cli(penv, "load", f"s3://{bucket}/exports/", "-n", ns, "--user", user, "--wait")

    assert proc.returncode == 3, proc.stderr  # finished, with a rejected line
    job = _job_of(proc)
    status = json.loads(_cli(penv, "status", job, "--json").stdout)
    assert status["items"] == 400 + 400 + 400 + 2 - 1
    assert status["rejected"] == 1
    assert status["rejected_lines"] == [
        [4, f"s3://{bucket}/exports/part-2.jsonl.bz2: not valid JSON "
         "(Expecting property name enclosed in double quotes at column 2)"]
    ]  # fmt: skip
    stored = _stored(penv, user, ns)
    assert len(stored) == 1199
    assert stored[b"a7"] == _compact("from part 3")
    assert stored[b"a8"] == b"1" and stored[b"c0"] == b"3" and b"b3" not in stored

    again = _cli(penv, "load", f"s3://{bucket}/exports/", "-n", ns, "--resume", job)
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        .splitlines()[0]
        .startswith("error: Resume: 3 inputs: only a load of one")
    )


def _ddb_export(n: int) -> bytes:
    lines = []
    for i in range(n):
        item = {
            "PK": {"S": f"user#{i}"},
            "n": {"N": str(i * 7)},
            "blob": {"B": base64.b64encode(bytes([i % 256]) * 3).decode()},
            "tags": {"SS": ["a", "b"]},
            "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}},
        }
        lines.append(json.dumps({"Item": item}))
    return ("\n".join(lines) + "\n").encode()


def test_a_dynamodb_json_export_file_loads_whole_items(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    body = gzip.compress(_ddb_export(800))
    client.put_object(Bucket=bucket, Key="AWSDynamoDB/0001/data/abc.json.gz", Body=body)
    ns, user = f"s3ddb{unique}", f"u-{unique}"

    proc = _cli(
        penv,
        "load",
        f"s3://{bucket}/AWSDynamoDB/0001/data/*.json.gz",
        "-n",
        ns,
        "--user",
        user,
        "--format",
        "ddb-json",
        "--wait",
    )

    assert proc.returncode == 0, proc.stderr
    stored = _stored(penv, user, ns)
    assert len(stored) == 800
    item = json.loads(stored[b"user#5"])
    assert item == {
        "PK": {"S": "user#5"},
        "n": {"N": "35"},
        "blob": {"B": base64.b64encode(b"\x05" * 3).decode()},
        "tags": {"SS": ["a", "b"]},
        "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}},
    }


def test_plan_wcu_equals_the_wcu_the_load_consumed(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    # Values from a few bytes to ~5 KB, and keys repeated within and across segments.
    recs = [{"key": f"k{i % 2500}", "value": "v" * ((i * 37) % 5000)} for i in range(4000)]
    body = gzip.compress(("\n".join(json.dumps(r) for r in recs) + "\n").encode())
    client.put_object(Bucket=bucket, Key="plan/items.jsonl.gz", Body=body)
    url = f"s3://{bucket}/plan/items.jsonl.gz"
    ns, user = f"s3plan{unique}", f"u-{unique}"

    planned = _cli(penv, "plan", url, "-n", ns, "--user", user, "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    loaded = _cli(penv, "load", url, "-n", ns, "--user", user, "--wait")
    assert loaded.returncode == 0, loaded.stderr
    status = json.loads(_cli(penv, "status", _job_of(loaded), "--json").stdout)

    assert plan["items"] == status["items"] == 4000
    assert plan["wcu"] > 4000  # sizes over 1 KB count more than one unit
    assert abs(status["consumed_wcu"] - plan["wcu"]) <= 0.01 * plan["wcu"]
    assert plan["cost_usd"] == round(plan["wcu"] / 1e6 * 0.625, 6)


def test_a_many_input_load_that_stops_ends_incomplete_never_succeeded(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, s3_bucket: tuple[Any, str],
    unique: str,
) -> None:  # fmt: skip
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="p1.jsonl", Body=b'{"key":"a","value":1}\n' * 3)
    ns, user = f"s3stop{unique}", f"u-{unique}"

    with pytest.raises(InputError) as info:
        producer.load_file([f"s3://{bucket}/p1.jsonl", f"s3://{bucket}/gone.jsonl"], ns, user)

    assert "cannot open s3://" in str(info.value) and "gone.jsonl" in str(info.value)
    (note,) = info.value.__notes__
    assert "does not resume" in note
    job = producer.job(note.split()[1])
    st = job.wait(timeout=60)
    assert st.state == "incomplete" and "gone.jsonl" in st.stopped


def test_dead_letters_of_a_many_input_load_name_their_input_and_line(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, s3_bucket: tuple[Any, str],
    unique: str, tmp_path: Path,
) -> None:  # fmt: skip
    """A local file and two S3 objects as one job: items the worker must dead-letter (the
    reader lets them by: a long user id makes them too big only as DynamoDB items) name their
    input and line, in the CLI's listing and the API; a replay of them reads them whole."""
    client, bucket = s3_bucket
    user = f"u-{unique}-" + "x" * 1000  # 1 KB of partition key on every item
    poison = "y" * 409_000  # under the reader's bound, over 400 KB with that partition key
    first = tmp_path / "part-1.jsonl"
    first.write_text("".join(json.dumps({"key": f"a{i}", "value": i}) + "\n" for i in range(50)))
    for name, prefix, bad in (("part-2.jsonl.gz", "b", {9, 30}), ("part-3.jsonl", "c", {4})):
        recs = [{"key": f"{prefix}{i}", "value": poison if i in bad else i} for i in range(50)]
        raw = "".join(json.dumps(r) + "\n" for r in recs).encode()
        body = gzip.compress(raw) if name.endswith(".gz") else raw
        client.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
    part2, part3 = f"s3://{bucket}/in/part-2.jsonl.gz", f"s3://{bucket}/in/part-3.jsonl"
    ns = f"s3dead{unique}"

    proc = _cli(penv, "load", str(first), part2, part3, "-n", ns, "--user", user, "--wait")

    assert proc.returncode == 3, proc.stderr  # finished, with dead letters
    job = _job_of(proc)
    listed = _cli(penv, "dead-letters", job)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(x) for x in listed.stdout.splitlines()]
    assert {r["key"]: (r["source"], r["line"]) for r in rows} == {
        "b9": (part2, 10),
        "b30": (part2, 31),
        "c4": (part3, 5),
    }
    assert all(r["code"] == "Invalid" and "409600-byte limit" in r["reason"] for r in rows)
    letters = {d.key: d for d in producer.job(job).dead_letters()}
    assert (letters[b"c4"].source, letters[b"c4"].line) == (part3, 5)
    assert len(_stored(penv, user, ns)) == 147
    refs_left = penv.redis().scan_iter(match=f"datafold:job:{{{job}}}:refs:*")
    assert list(refs_left) == []  # deleted with the payloads

    replay = producer.replay_dead_letters(job)  # read back whole: keys and values kept
    st = replay.wait(timeout=120)
    assert (st.items, st.dead_lettered) == (3, 3)
    assert {(d.key, d.value, d.source, d.line) for d in replay.dead_letters()} == {
        (k, d.value, None, None)
        for k, d in letters.items()  # a replay reads no file
    }


def test_dead_letters_of_standard_input_name_it_and_their_line(
    penv: PipelineEnv, workers: list[Worker], unique: str
) -> None:
    user = f"u-{unique}-" + "x" * 1000
    recs = [{"key": f"k{i}", "value": "y" * 409_000 if i == 6 else i} for i in range(20)]
    ns = f"stdindead{unique}"
    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", "load", "-", "-n", ns, "--user", user, "--wait"],
        cwd=ROOT,
        env=penv.env(),
        input="".join(json.dumps(r) + "\n" for r in recs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    listed = _cli(penv, "dead-letters", _job_of(proc))
    (row,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert (row["key"], row["source"], row["line"]) == ("k6", "-", 7)
