"""The ``datafold`` command line. Writes go through the queue; reads are direct.

Exit codes: 0 all written; 3 finished with dead letters or rejected lines; 2 bad usage or input;
1 anything else. Errors are one line on stderr, never a traceback (``DATAFOLD_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from producers.api import Producer
from producers.cli_commands import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    cmd_dead_letters,
    cmd_delete,
    cmd_export,
    cmd_get,
    cmd_load,
    cmd_plan,
    cmd_reset_user,
    cmd_scan,
    cmd_schemas,
    cmd_status,
    cmd_wait,
)
from producers.inputs import FORMATS
from producers.plan import PRICE_PER_MILLION_WRU, PRICE_SOURCE
from producers.sources import CHOICES
from storage import errors

__all__ = [
    "EXIT_ERROR",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "USAGE_ERRORS",
    "UsageError",
    "build_parser",
    "main",
]

USAGE_ERRORS = (
    errors.InputError,
    errors.ValidationError,
    errors.ConfigError,
    errors.JobNotFoundError,
    errors.NotResumableError,
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="datafold", description="datafold-dynamo: bulk writes through the queue, direct reads."
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def user(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--user", help="user id (default: DATAFOLD_DYNAMODB_USER_ID)")

    def wait(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--wait", action="store_true", help="show progress until finished")

    def inputs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "file",
            nargs="+",
            help="file, - (standard input), s3://bucket/key, a pattern (*.json.gz) or an S3 "
            "prefix ending in /; several load as one job, in the order given",
        )
        sp.add_argument("--namespace", "-n", help="target namespace (export files carry theirs)")
        sp.add_argument("--format", choices=list(FORMATS), default="jsonl")
        sp.add_argument("--key-column", help="CSV column holding the key")
        sp.add_argument(
            "--key-attribute", help="ddb-json attribute holding the key (S, N or B; default PK)"
        )
        sp.add_argument(
            "--compression",
            choices=list(CHOICES),
            default="auto",
            help="auto: by extension (.gz, .bz2, .zst)",
        )

    sp = sub.add_parser("load", help="enqueue a bulk load of JSONL, CSV or DynamoDB-JSON input")
    inputs(sp)
    sp.add_argument(
        "--strict",
        action="store_true",
        help="refuse the whole file, before any job exists, if anything in it would be "
        "rejected (a bad line, a missing or invalid namespace)",
    )
    sp.add_argument(
        "--force",
        action="store_true",
        help="load a truncated or altered export file anyway (its intact lines)",
    )
    user(sp)
    wait(sp)
    sp.add_argument(
        "--resume",
        metavar="JOB",
        help="go on with an incomplete or abandoned load of the same FILE from its checkpoint",
    )
    sp.set_defaults(fn=cmd_load)

    sp = sub.add_parser("plan", help="read the input once: items, WCU, cost and time of its load")
    inputs(sp)
    user(sp)
    sp.add_argument(
        "--price",
        type=float,
        help=f"USD per million write request units (default {PRICE_PER_MILLION_WRU}, "
        f"{PRICE_SOURCE})",
    )
    sp.add_argument(
        "--wcu", type=float, help="write rate to time it at, WCU/s (default: the table's)"
    )
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_plan)

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


def _say(text: str, exc: BaseException) -> None:
    """The one-line error, then its notes (a stopped load: its job and how to go on)."""
    print(text, file=sys.stderr)
    for note in getattr(exc, "__notes__", ()):
        print(f"  {note}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(Producer.from_env(), args))
    except KeyboardInterrupt as exc:
        _say("interrupted", exc)
        return 130
    except (UsageError, *USAGE_ERRORS) as exc:
        _say(f"error: {exc}", exc)
        return EXIT_USAGE
    except errors.StorageError as exc:
        _say(f"error: {exc}", exc)
        return EXIT_ERROR
    except Exception as exc:  # the CLI's promise: one line, never a traceback
        if os.environ.get("DATAFOLD_DEBUG"):
            traceback.print_exc()
        _say(f"error: {type(exc).__name__}: {exc}", exc)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
