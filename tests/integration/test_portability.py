"""Data portability against DynamoDB Local and real workers: export everything a user owns,
erase it with ``reset_user``, load the export back, and get the same bytes — items and schemas
(timestamps and version included) — while another user's data is never read or touched."""

from __future__ import annotations

import base64
import io
import json
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from producers import Producer
from storage import DynamoNamespacedStore, DynamoSchemaStore, Schema, errors, make_client
from tests.support.pipeline import ROOT, PipelineEnv, Worker

BIG = 409_400  # value bytes: with a 3-byte key, just under the 400 KiB item limit


def _fill(penv: PipelineEnv, user: str, nss: list[str], marker: bytes, n_schemas: int) -> None:
    """Items in three namespaces (binary, non-UTF-8, unicode, one near 400 KB, a tombstone) and
    ``n_schemas`` schemas with distinct timestamps and versions."""
    rng = random.Random(user)
    store = penv.store(user)
    a, b, c = (store.open_namespace(ns) for ns in nss)
    a.batch_put([(b"k%04d" % i, marker + rng.randbytes(rng.randrange(0, 64))) for i in range(300)])
    a.put(b"big", marker + rng.randbytes(BIG - len(marker)))
    a.put(b"gone", b"x", seq=1)
    a.delete(b"gone", seq=2)  # a tombstone: absent, so never exported
    b.batch_put(
        [
            (
                bytes([0, 0xFF, 0xFE, i % 256]) + rng.randbytes(i % 40),
                marker + bytes([i % 256]) + b"\x80\xc3(\xff",
            )
            for i in range(200)
        ]
    )
    b.put(bytes(range(1, 256)), marker + bytes(range(256)))
    c.batch_put([(f"ключ-😀-{i}".encode(), marker + f"значение ☃ {i}".encode()) for i in range(50)])
    t = iter(range(1_600_000_000, 1_700_000_000, 7))
    ss = DynamoSchemaStore(penv.dynamo, user, clock=lambda: float(next(t)))
    for i in range(n_schemas):
        body = {"name": f"S{i}", "fields": {"ключ": ["π", i, 1.5, None, True]}, "owner": user}
        s = ss.put_schema(Schema(f"schema-{i:04d}", body, {"m": f"v{i}"}))
        for _ in range(i % 3):  # versions 1 to 3, UpdatedAt after CreatedAt
            s = ss.put_schema(Schema(s.name, {**body, "rev": s.version}))


def _items(penv: PipelineEnv, user: str, nss: list[str]) -> dict[str, dict[bytes, bytes]]:
    store = penv.store(user)
    return {ns: dict(store.open_namespace(ns).scan_prefix(b"")) for ns in nss}


def _schema_rows(penv: PipelineEnv, user: str) -> dict[str, dict[str, Any]]:
    """The user's schema items exactly as DynamoDB holds them: every attribute but the token
    of the write that put it there (``WriteId``, for retries; a restore is no put)."""
    pages = (
        make_client(penv.dynamo)
        .get_paginator("query")
        .paginate(
            TableName=penv.dynamo.schema_table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": user}},
            ConsistentRead=True,
        )
    )
    return {
        i["SK"]["S"]: {k: v for k, v in i.items() if k != "WriteId"}
        for p in pages
        for i in p["Items"]
    }


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def _cli(
    penv: PipelineEnv, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=penv.env(),
        input=stdin,
        capture_output=True,
        timeout=300,
    )


def _jobs(penv: PipelineEnv) -> int:
    return int(penv.redis().zcard("datafold:jobs"))


@pytest.fixture(scope="module")
def exported(
    penv: PipelineEnv, tmp_path_factory: pytest.TempPathFactory, producer: Producer
) -> dict[str, Any]:
    """Alice (3 namespaces, 300 schemas) and Bob (same namespaces and schema names, other
    values) filled once; Alice exported once to a file."""
    tag = random.Random().randbytes(4).hex()
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    nss = [f"p{tag}a", f"p{tag}b", f"p{tag}c"]
    _fill(penv, alice, nss, b"ALICE", 300)
    _fill(penv, bob, nss, b"BOB-SECRET", 20)
    path = tmp_path_factory.mktemp("export") / "alice.jsonl"
    with path.open("wb") as f:
        counts = producer.export(alice, f)
    return {
        "alice": alice,
        "bob": bob,
        "nss": nss,
        "path": path,
        "counts": counts,
        "items": _items(penv, alice, nss),
        "schemas": _schema_rows(penv, alice),
        "bob_items": _items(penv, bob, nss),
        "bob_schemas": _schema_rows(penv, bob),
    }


def test_export_holds_exactly_alices_data(exported: dict[str, Any]) -> None:
    items, counts = exported["items"], exported["counts"]
    assert len(items[exported["nss"][0]][b"big"]) == BIG
    assert counts.items == {ns: len(kv) for ns, kv in items.items()}
    assert counts.schemas == 300
    lines = _lines(exported["path"].read_bytes())
    assert lines[-1]["kind"] == "trailer" and lines[-1]["sha256"] == counts.sha256
    seen: dict[str, dict[bytes, bytes]] = {ns: {} for ns in exported["nss"]}
    for rec in lines:
        if rec["kind"] == "item":
            key, value = base64.b64decode(rec["key_b64"]), base64.b64decode(rec["value_b64"])
            seen[rec["namespace"]][key] = value
        elif rec["kind"] == "schema":
            assert rec["body"]["owner"] == exported["alice"]
    assert seen == items  # every line is Alice's, and all of Alice's is there: no Bob
    assert b"gone" not in seen[exported["nss"][0]]
    assert b"BOB-SECRET" not in exported["path"].read_bytes()


def test_erase_then_reimport_restores_every_byte(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, exported: dict[str, Any]
) -> None:
    alice, nss = exported["alice"], exported["nss"]
    st = producer.reset_user(alice).wait(timeout=180)
    assert st.state == "succeeded", st
    assert _items(penv, alice, nss) == {ns: {} for ns in nss}
    assert _schema_rows(penv, alice) == {}

    job = producer.load_file(exported["path"], user_id=alice)
    st = job.wait(timeout=180)
    assert (st.state, st.rejected, st.dead_lettered) == ("succeeded", 0, 0), st
    assert st.extra == {"schemas": "300", "file": str(exported["path"])}, (
        st.extra
    )  # no export_problem
    assert _items(penv, alice, nss) == exported["items"]
    assert _schema_rows(penv, alice) == exported["schemas"]  # CreatedAt/UpdatedAt/Version too
    assert _items(penv, exported["bob"], nss) == exported["bob_items"]
    assert _schema_rows(penv, exported["bob"]) == exported["bob_schemas"]


def test_cli_export_to_stdout_and_load_from_stdin_as_another_user(
    penv: PipelineEnv, workers: list[Worker], exported: dict[str, Any], unique: str
) -> None:
    alice, nss, carol = exported["alice"], exported["nss"], f"carol-{unique}"
    out = _cli(penv, "export", "--user", alice, "-n", nss[2], "-n", nss[1], "--output", "-")
    assert out.returncode == 0, out.stderr
    assert b"exported 251 items in 2 namespaces and 300 schemas" in out.stderr
    assert {r["namespace"] for r in _lines(out.stdout) if r["kind"] == "item"} == set(nss[1:])

    load = _cli(penv, "load", "-", "--user", carol, "--wait", stdin=out.stdout)
    assert load.returncode == 0, load.stderr
    assert b"300 schemas restored" in load.stderr
    got = _items(penv, carol, nss)
    assert got == {nss[0]: {}, nss[1]: exported["items"][nss[1]], nss[2]: exported["items"][nss[2]]}
    moved = _schema_rows(penv, carol)
    assert {k: {**v, "PK": {"S": alice}} for k, v in moved.items()} == exported["schemas"]


def test_cli_export_to_a_file_and_a_missing_namespace(
    penv: PipelineEnv, exported: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "out.jsonl"
    out = _cli(penv, "export", "--user", exported["alice"], "-n", "nosuchns", "-o", str(target))
    assert out.returncode == 1 and b"does not exist" in out.stderr
    assert b"Traceback" not in out.stderr and not list(tmp_path.iterdir())
    ok = _cli(
        penv, "export", "--user", exported["bob"], "-n", exported["nss"][1], "-o", str(target)
    )
    assert ok.returncode == 0, ok.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert sum(r["kind"] == "item" for r in _lines(target.read_bytes())) == 201


def _damaged(data: bytes, how: str) -> bytes:
    lines = data.splitlines(keepends=True)
    if how == "truncated mid-line":
        return data[: len(data) - len(lines[-1]) - 40]
    if how == "trailer cut off":
        return b"".join(lines[:-1])
    if how == "value byte flipped":
        i = data.index(b'"value_b64":"') + 20
        return data[:i] + (b"A" if data[i : i + 1] != b"A" else b"B") + data[i + 1 :]
    trailer = json.loads(lines[-1])
    trailer["schemas"] += 1
    return b"".join(lines[:-1]) + json.dumps(trailer).encode() + b"\n"


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("truncated mid-line", "truncated: trailer missing"),
        ("trailer cut off", "truncated: trailer missing"),
        ("value byte flipped", "checksum mismatch"),
        ("trailer count edited", "schema count mismatch"),
    ],
)
def test_damaged_export_is_refused_before_anything_is_written(
    penv: PipelineEnv,
    producer: Producer,
    exported: dict[str, Any],
    tmp_path: Path,
    unique: str,
    how: str,
    reason: str,
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_damaged(exported["path"].read_bytes(), how))
    dave, before = f"dave-{unique}", _jobs(penv)
    with pytest.raises(errors.InputError, match=f"export file refused, nothing written: {reason}"):
        producer.load_file(bad, user_id=dave)
    cli = _cli(penv, "load", "-", "--user", dave, stdin=bad.read_bytes())
    assert cli.returncode == 2
    assert cli.stderr.decode().count("\n") == 1 and reason in cli.stderr.decode()
    assert _jobs(penv) == before
    assert _items(penv, dave, exported["nss"]) == {ns: {} for ns in exported["nss"]}
    assert _schema_rows(penv, dave) == {}


def test_force_loads_up_to_the_damage_and_reports_it(
    penv: PipelineEnv,
    workers: list[Worker],
    producer: Producer,
    exported: dict[str, Any],
    tmp_path: Path,
    unique: str,
) -> None:
    data = _damaged(exported["path"].read_bytes(), "truncated mid-line")
    intact = [r for r in _lines(data.rsplit(b"\n", 1)[0]) if r["kind"] == "item"]
    erin = f"erin-{unique}"
    cli = _cli(penv, "load", "-", "--user", erin, "--force", "--wait", stdin=data)
    assert cli.returncode == 3, cli.stderr
    assert b"damaged export loaded with --force (truncated: trailer missing)" in cli.stderr
    job_id = next(
        line.split()[-1]
        for line in cli.stderr.decode().splitlines()
        if line.startswith("load: job")
    )
    st = producer.job(job_id).status()
    assert st.extra["export_problem"] == "truncated: trailer missing"
    assert (st.state, st.written, st.rejected) == ("partial", len(intact), 1)
    got = _items(penv, erin, exported["nss"])
    assert sum(map(len, got.values())) == len(intact)
    for r in intact:
        ns, key = r["namespace"], base64.b64decode(r["key_b64"])
        assert got[ns][key] == exported["items"][ns][key]
    assert _schema_rows(penv, erin).keys() == exported["schemas"].keys()


class _Sink(io.RawIOBase):
    """Counts what is written and keeps none of it."""

    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.n += len(b)
        return len(b)


def test_export_memory_stays_flat(penv: PipelineEnv, producer: Producer, unique: str) -> None:
    user, ns, n = f"mem-{unique}", f"mem{unique}", 20_000
    store = DynamoNamespacedStore(penv.dynamo, user, batch_threads=4)
    store.open_namespace(ns).batch_put((b"m%06d" % i, random.randbytes(200)) for i in range(n))
    producer.export(f"warm-{unique}", _Sink(), [ns])  # client and tables warmed up
    sink = _Sink()
    tracemalloc.start()
    try:
        counts = producer.export(user, sink, [ns])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.items == {ns: n} and counts.bytes == sink.n > 6_000_000
    # Holding the items would take more than their export's bytes; the export keeps a page.
    assert peak < sink.n / 4, f"peak {peak} bytes for a {sink.n}-byte export"
