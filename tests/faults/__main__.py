"""Command line of the fault proxy.

Serve (until Ctrl-C / SIGTERM; prints the endpoint on the first line, the stats at exit)::

    python -m tests.faults --upstream http://127.0.0.1:8000 --port 8001 --seed 7 \\
        --throttle-rate 0.1 --partial-batch-rate BatchWriteItem=0.3 --capacity-wcu 200

Change a running proxy (only the flags given), show its config and stats, or reset them::

    python -m tests.faults --control http://127.0.0.1:8001 --throttle-rate 0
    python -m tests.faults --control http://127.0.0.1:8001 --reset
    python -m tests.faults --control http://127.0.0.1:8001 --drop-answers UpdateItem=1

Rates are a number or ``OP=N,OP=N,*=N``; ``--capacity-wcu`` and ``--partition-wcu`` are a
number or ``TABLE=N,*=N``; ``--refuse-whole`` and ``--on-demand`` take true/false; ``--config``
takes a JSON object (or ``@file.json``) of `FaultConfig` fields, flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .config import FaultConfig, parse_bool, parse_rate
from .proxy import CONTROL_PATH, FaultProxy

_FLOAT_FIELDS = {"partial_batch_fraction", "latency_jitter_ms", "burst_seconds"}
_BOOL_FIELDS = {"refuse_whole", "on_demand"}
_STR_FIELDS = {"partition_attribute", "region"}


def _parser_of(name: str) -> tuple[Callable[[str], Any], str]:
    """How the flag of config field `name` parses its value, and its metavar."""
    if name in _FLOAT_FIELDS:
        return float, "N"
    if name in _BOOL_FIELDS:
        return parse_bool, "BOOL"
    if name in _STR_FIELDS:
        return str, "TEXT"
    return parse_rate, "RATE"


def build_parser() -> argparse.ArgumentParser:
    """Flags: serving/control options plus one flag per `FaultConfig` field."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--upstream", help="serve: the real endpoint, e.g. http://127.0.0.1:8000")
    mode.add_argument("--control", metavar="PROXY_URL", help="talk to a running proxy instead")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free)")
    parser.add_argument("--seed", type=int, help="seed of the random faults (repeatable runs)")
    parser.add_argument("--config", help="JSON object of config fields, or @path to one")
    parser.add_argument("--reset", action="store_true", help="control: zero stats, refill buckets")
    parser.add_argument(
        "--drop-answers",
        metavar="OP=N",
        action="append",
        default=[],
        help="control: forward the next N calls of OP and drop their answers (repeatable)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="control: replace the whole config (unset fields = defaults)",
    )
    faults = parser.add_argument_group("faults (FaultConfig fields)")
    for f in dataclasses.fields(FaultConfig):
        parse, metavar = _parser_of(f.name)
        faults.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=parse, metavar=metavar
        )
    return parser


def config_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set by `--config` and the fault flags (flags win)."""
    changes: dict[str, Any] = {}
    if args.config:
        text = args.config
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise SystemExit("--config must be a JSON object")
        changes.update(loaded)
    for f in dataclasses.fields(FaultConfig):
        value = getattr(args, f.name)
        if value is not None:
            changes[f.name] = value
    return changes


def _request(url: str, method: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def control(args: argparse.Namespace) -> int:
    """Apply flags to a running proxy, then print its config and stats."""
    base = args.control.rstrip("/") + CONTROL_PATH
    changes = config_changes(args)
    if args.replace:
        _request(base + "/config", "PUT", changes)
    elif changes:
        _request(base + "/config", "POST", changes)
    if args.reset:
        _request(base + "/reset", "POST", {})
    for spec in args.drop_answers:
        op, sep, count = spec.partition("=")
        if not sep or not op.strip():
            raise ValueError(f"--drop-answers {spec!r}: expected OP=N")
        _request(base + "/drop", "POST", {"operation": op.strip(), "count": int(count)})
    print(json.dumps(_request(base, "GET"), indent=2))
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run a proxy until SIGINT or SIGTERM."""
    config = FaultConfig.from_dict(config_changes(args))
    rng = random.Random(args.seed) if args.seed is not None else None
    proxy = FaultProxy(args.upstream, args.port, config, host=args.host, rng=rng)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with proxy:
        print(f"fault proxy listening on {proxy.endpoint_url} -> {args.upstream}", flush=True)
        print(json.dumps(config.to_dict()), flush=True)
        while not done.wait(0.5):
            pass
        print(json.dumps(proxy.stats().to_dict(), indent=2), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.faults``."""
    args = build_parser().parse_args(argv)
    try:
        return control(args) if args.control else serve(args)
    except ValueError as exc:  # bad config values
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
