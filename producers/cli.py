"""The ``datafold`` command line. Writes go through the queue; reads are direct.

Exit codes: 0 all written; 3 finished with dead letters or rejected lines; 2 bad usage or input;
1 anything else. Errors are one line on stderr, never a traceback (``DATAFOLD_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from pipeline.ledger import JobStatus
from pipeline.states import JobState
from producers.api import Producer
from producers.export import ExportCounts, export_to_path
from producers.job import Job
from producers.progress import summary
from storage import errors
from storage.schema import DynamoSchemaStore, Schema, create_schema_table

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
USAGE_ERRORS = (
    errors.InputError,
    errors.ValidationError,
    errors.ConfigError,
    errors.JobNotFoundError,
)


class UsageError(Exception):
    """Bad usage found after parsing (exit 2)."""


def _job_exit(st: JobStatus) -> int:
    if st.state is JobState.SUCCEEDED:
        return EXIT_OK
    return EXIT_INCOMPLETE if st.state in (JobState.PARTIAL, JobState.FAILED) else EXIT_ERROR


def _started(job: Job, what: str, wait: bool) -> int:
    if not wait:
        print(job.id)
        print(
            f"{what}: job {job.id} queued; follow it with `datafold wait {job.id}`", file=sys.stderr
        )
        return EXIT_OK
    print(f"{what}: job {job.id}", file=sys.stderr)
    return _job_exit(job.wait(progress=True))


def _key_arg(text: str, is_b64: bool) -> bytes:
    try:
        return base64.b64decode(text, validate=True) if is_b64 else text.encode("utf-8")
    except ValueError:
        raise UsageError(f"key {text!r} is not valid base64") from None


def _render(key: bytes, value: bytes) -> str:
    out: dict[str, Any] = {}
    try:
        out["key"] = key.decode("utf-8")
    except UnicodeDecodeError:
        out["key_b64"] = base64.b64encode(key).decode()
    try:
        parsed = json.loads(value)
        if json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode() != value:
            raise ValueError
        out["value"] = parsed
    except ValueError:
        out["value_b64"] = base64.b64encode(value).decode()
    return json.dumps(out, ensure_ascii=False)


def cmd_load(p: Producer, a: argparse.Namespace) -> int:
    job = p.load_file(
        a.file,
        a.namespace,
        a.user,
        format=a.format,
        key_column=a.key_column,
        strict=a.strict,
        force=a.force,
    )
    st = job.status()
    if st.rejected:
        print(
            f"{st.rejected} input lines rejected (see `datafold status {job.id}`)", file=sys.stderr
        )
    problem = st.extra.get("export_problem")
    if problem:
        print(
            f"warning: damaged export loaded with --force ({problem}): its intact lines only",
            file=sys.stderr,
        )
    if st.extra.get("schemas", "0") != "0":
        print(f"{st.extra['schemas']} schemas restored", file=sys.stderr)
    rc = _started(job, "load", a.wait)
    return EXIT_INCOMPLETE if problem and rc == EXIT_OK else rc


def cmd_export(p: Producer, a: argparse.Namespace) -> int:
    bar = sys.stderr if sys.stderr.isatty() else None

    def write(out: Any) -> ExportCounts:
        return p.export(a.user, out, a.namespace, progress=bar)

    if a.output == "-":
        counts = write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        counts = export_to_path(a.output, write)
    print(
        f"exported {counts.total_items} items in {len(counts.items)} namespaces and "
        f"{counts.schemas} schemas ({counts.bytes} bytes, sha256 {counts.sha256})",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_status(p: Producer, a: argparse.Namespace) -> int:
    job = p.job(a.job)
    st = job.status()
    if a.json:
        print(json.dumps({**st.as_dict(), "rejected_lines": job.rejected_lines()[:20]}))
    else:
        print(summary(st))
        for line, reason in job.rejected_lines()[:20]:
            print(f"  rejected line {line}: {reason}")
    return _job_exit(st) if st.finished else EXIT_OK


def cmd_wait(p: Producer, a: argparse.Namespace) -> int:
    return _job_exit(p.job(a.job).wait(timeout=a.timeout, progress=True))


def cmd_get(p: Producer, a: argparse.Namespace) -> int:
    value = p.get(a.namespace, _key_arg(a.key, a.b64), a.user)
    if value is None:
        print(f"error: key {a.key!r} not found in namespace {a.namespace!r}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.buffer.write(value)
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    return EXIT_OK


def cmd_scan(p: Producer, a: argparse.Namespace) -> int:
    prefix = _key_arg(a.prefix, a.b64) if a.prefix else b""
    for key, value in p.scan(a.namespace, prefix, a.user, limit=a.limit):
        print(_render(key, value))
    return EXIT_OK


def cmd_delete(p: Producer, a: argparse.Namespace) -> int:
    from producers.inputs import open_input

    stream = open_input(a.keys)
    keys = (line.rstrip(b"\r\n") for line in stream)
    job = p.delete_keys(a.namespace, (k for k in keys if k), a.user)
    return _started(job, "delete", a.wait)


def cmd_schemas(p: Producer, a: argparse.Namespace) -> int:
    cfg = p.dynamo_config
    if a.action == "init":
        created = create_schema_table(cfg)
        print(f"schema table {cfg.schema_table} {'created' if created else 'already exists'}")
        return EXIT_OK
    if a.action == "clear":
        return _started(p.clear_all_schemas(a.user), "clear schemas", a.wait)
    store = DynamoSchemaStore(cfg, a.user)
    if a.action == "list":
        for name in store.list_schema_names():
            print(name)
        return EXIT_OK
    if not a.name:
        raise UsageError(f"`datafold schemas {a.action}` needs a schema NAME")
    if a.action == "get":
        s = store.get_schema(a.name)
        if s is None:
            print(f"error: schema {a.name!r} not found", file=sys.stderr)
            return EXIT_ERROR
        print(
            json.dumps(
                {
                    "name": s.name,
                    "body": s.body,
                    "mutation_mappers": s.mutation_mappers,
                    "created_at": s.created_at,
                    "updated_at": s.updated_at,
                    "version": s.version,
                },
                ensure_ascii=False,
            )
        )
        return EXIT_OK
    if not a.file:
        raise UsageError("`datafold schemas put NAME FILE` needs a JSON FILE")
    from producers.inputs import open_input

    with open_input(a.file) as f:
        try:
            body = json.loads(f.read())
        except ValueError as exc:
            raise UsageError(f"{a.file}: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise UsageError(f"{a.file}: a schema body must be a JSON object")
    s = store.put_schema(Schema(a.name, body))
    print(f"schema {s.name} stored, version {s.version}")
    return EXIT_OK


def cmd_reset_user(p: Producer, a: argparse.Namespace) -> int:
    return _started(p.reset_user(a.user_id), f"reset user {a.user_id}", a.wait)


def cmd_dead_letters(p: Producer, a: argparse.Namespace) -> int:
    if a.replay:
        return _started(p.replay_dead_letters(a.job), "replay", a.wait)
    for d in p.job(a.job).dead_letters():
        rec = json.loads(_render(d.key, b""))
        rec.pop("value_b64", None)
        rec.update(namespace=d.namespace, code=d.code, reason=d.reason)
        print(json.dumps(rec, ensure_ascii=False))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="datafold", description="datafold-dynamo: bulk writes through the queue, direct reads."
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def user(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--user", help="user id (default: DATAFOLD_DYNAMODB_USER_ID)")

    def wait(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--wait", action="store_true", help="show progress until finished")

    sp = sub.add_parser("load", help="enqueue a bulk load of a JSONL or CSV file")
    sp.add_argument("file", help="file to load, or - for standard input")
    sp.add_argument("--namespace", "-n", help="target namespace (export files carry their own)")
    sp.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    sp.add_argument("--key-column", help="CSV column holding the key")
    sp.add_argument(
        "--strict",
        action="store_true",
        help="refuse the whole file if any line is bad (nothing enqueued)",
    )
    sp.add_argument(
        "--force",
        action="store_true",
        help="load a truncated or altered export file anyway (its intact lines)",
    )
    user(sp)
    wait(sp)
    sp.set_defaults(fn=cmd_load)

    sp = sub.add_parser(
        "export",
        help="write every item and schema of a user as JSONL (direct reads; `load` takes it back)",
    )
    sp.add_argument(
        "--namespace",
        "-n",
        action="append",
        help="export only this namespace (repeatable; default: every one)",
    )
    sp.add_argument(
        "--output",
        "-o",
        default="-",
        help="file to write (appears only once complete), or - for standard output",
    )
    user(sp)
    sp.set_defaults(fn=cmd_export)

    sp = sub.add_parser("status", help="state and totals of a job")
    sp.add_argument("job")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_status)

    sp = sub.add_parser("wait", help="wait for a job with a progress bar")
    sp.add_argument("job")
    sp.add_argument("--timeout", type=float)
    sp.set_defaults(fn=cmd_wait)

    sp = sub.add_parser("get", help="read one value (direct)")
    sp.add_argument("namespace")
    sp.add_argument("key")
    sp.add_argument("--b64", action="store_true", help="KEY is base64")
    user(sp)
    sp.set_defaults(fn=cmd_get)

    sp = sub.add_parser("scan", help="list items by key prefix as JSONL (direct)")
    sp.add_argument("namespace")
    sp.add_argument("prefix", nargs="?", default="")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--b64", action="store_true", help="PREFIX is base64")
    user(sp)
    sp.set_defaults(fn=cmd_scan)

    sp = sub.add_parser("delete", help="enqueue deletes of keys, one per line")
    sp.add_argument("namespace")
    sp.add_argument("--keys", required=True, help="file of keys, one per line, or -")
    user(sp)
    wait(sp)
    sp.set_defaults(fn=cmd_delete)

    sp = sub.add_parser("schemas", help="list, get, put, clear schemas; init the table")
    sp.add_argument("action", choices=["list", "get", "put", "clear", "init"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("file", nargs="?")
    user(sp)
    wait(sp)
    sp.set_defaults(fn=cmd_schemas)

    sp = sub.add_parser("reset-user", help="erase every item and schema of a user")
    sp.add_argument("user_id")
    wait(sp)
    sp.set_defaults(fn=cmd_reset_user)

    sp = sub.add_parser("dead-letters", help="list a job's dead letters, or --replay them")
    sp.add_argument("job")
    sp.add_argument("--replay", action="store_true")
    wait(sp)
    sp.set_defaults(fn=cmd_dead_letters)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(Producer.from_env(), args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, *USAGE_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # the CLI's promise: one line, never a traceback
        if os.environ.get("DATAFOLD_DEBUG"):
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
