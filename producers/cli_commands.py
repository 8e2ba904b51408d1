"""What each ``datafold`` sub-command does: ``cmd_*(producer, args)`` returns the exit code.

The parser, and the mapping of errors to exit codes, are in :mod:`producers.cli`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import Any

from pipeline.limiter_view import current_rate
from pipeline.states import JobState
from pipeline.status import JobStatus
from producers.api import Producer
from producers.export import ExportCounts, export_to_path
from producers.job import Job
from producers.progress import EnqueueProgress, summary
from storage.limits import namespace_table
from storage.schema import DynamoSchemaStore, create_schema_table
from storage.schema_item import Schema

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad usage found after parsing (exit 2)."""


def _job_exit(st: JobStatus) -> int:
    """0 succeeded; 3 partial or failed items; 1 anything else (a stopped load included)."""
    if st.state is JobState.SUCCEEDED:
        return EXIT_OK
    return EXIT_INCOMPLETE if st.state in (JobState.PARTIAL, JobState.FAILED) else EXIT_ERROR


def _limiter(p: Producer, job: Job) -> Callable[[], float | None] | None:
    """The limiter's current rate for the job's table (None: a job of no one namespace)."""
    ns = job.status().namespace
    if not ns:
        return None
    table = namespace_table(p.dynamo_config.table_prefix, ns)
    return lambda: current_rate(p.redis, table)


def _started(job: Job, what: str, wait: bool, p: Producer | None = None) -> int:
    if not wait:
        print(job.id)
        print(
            f"{what}: job {job.id} queued; follow it with `datafold wait {job.id}`", file=sys.stderr
        )
        return EXIT_OK
    print(f"{what}: job {job.id}", file=sys.stderr)
    return _job_exit(job.wait(progress=True, rate=_limiter(p, job) if p else None))


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
    shown = EnqueueProgress(sys.stderr)
    try:
        job = p.load_file(
            a.file,
            a.namespace,
            a.user,
            format=a.format,
            key_column=a.key_column,
            key_attribute=a.key_attribute,
            compression=a.compression,
            strict=a.strict,
            force=a.force,
            resume=a.resume,
            on_progress=shown,
        )
    finally:
        shown.close()
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
    rc = _started(job, "load", a.wait, p)
    return EXIT_INCOMPLETE if problem and rc == EXIT_OK else rc


def cmd_plan(p: Producer, a: argparse.Namespace) -> int:
    from producers.plan_run import plan_for

    plan = plan_for(
        p,
        a.file,
        a.namespace,
        a.user,
        a.format,
        a.key_column,
        a.key_attribute,
        compression=a.compression,
        price=a.price,
        wcu=a.wcu,
    )
    print(json.dumps(plan.as_dict()) if a.json else plan.render())
    return EXIT_OK


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
    job = p.job(a.job)
    return _job_exit(job.wait(timeout=a.timeout, progress=True, rate=_limiter(p, job)))


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
    shown = EnqueueProgress(sys.stderr)
    try:
        job = p.delete_keys(a.namespace, (k for k in keys if k), a.user, on_progress=shown)
    finally:
        shown.close()
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
        if d.source is not None or d.line is not None:
            rec.update(source=d.source, line=d.line)  # the input line it was read from
        print(json.dumps(rec, ensure_ascii=False))
    return EXIT_OK
