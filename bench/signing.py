"""9. SigV4 signing on the BatchWriteItem wire path: the project's signer against botocore's.

``python -m bench.signing [--quick]`` prints this section (it needs DynamoDB Local for the
per-call figure, nothing else: no Redis, no workers); ``python -m bench --only signing`` puts it
in the report with the others.

Both signers turn the same body into the same signed request ready for the HTTP session (a unit
test checks their signatures are equal byte for byte): ours is :class:`storage.sigv4.Signer` plus
an ``AWSPreparedRequest``; botocore's is an ``AWSRequest``, ``SigV4Auth.add_auth`` and
``prepare()``, what the wire path would run with botocore's signer. Credentials are frozen per
signature on both sides. The per-call figure is the client CPU of one
``WireWriter.batch_write_item`` of the same 25 items against DynamoDB Local (CPU time of the
calling thread: encoding, signing, the HTTP exchange through the client's own session,
parsing).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials

from bench import report
from bench.env import DEFAULTS, BenchEnv
from bench.model import Section, Table
from storage import DynamoConfig, DynamoNamespacedStore
from storage.kv import DynamoKvStore
from storage.sigv4 import CONTENT_TYPE, TARGET, Signer
from storage.wire import encode_body

SIZES = (200, 4096)
ITEMS = 25
THRESHOLD = 3.0
"""Percent of a call's client CPU above which the cheaper signer is kept."""


def request(kv: DynamoKvStore, size: int, rng: random.Random) -> dict[str, Any]:
    ops = [kv.put_op(b"sig%02d" % i, rng.randbytes(size)) for i in range(ITEMS)]
    return {"RequestItems": {kv.table: [op.request for op in ops]}}


def signers(url: str, region: str, creds: Credentials) -> dict[str, Callable[[bytes], Any]]:
    """Body -> signed request, both ways; the same URL, region and credentials."""
    host = url.split("://", 1)[1].rstrip("/")
    own = Signer(region, host)

    def ours(body: bytes) -> Any:
        headers: Any = own.headers(body, creds.get_frozen_credentials(), time_now())
        return AWSPreparedRequest("POST", url, headers, body, False)

    def botocores(body: bytes) -> Any:
        req = AWSRequest(
            "POST", url, data=body, headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
        )
        SigV4Auth(creds.get_frozen_credentials(), "dynamodb", region).add_auth(req)
        return req.prepare()

    return {"own": ours, "botocore": botocores}


def time_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def cpu_us(fn: Callable[..., object], n: int, *args: Any, **kwargs: Any) -> float:
    """CPU µs of this thread per call of ``fn(*args, **kwargs)``, over ``n`` calls."""
    t = time.thread_time()
    for _ in range(n):
        fn(*args, **kwargs)
    return (time.thread_time() - t) / n * 1e6


def measure(config: DynamoConfig, store: DynamoNamespacedStore, quick: bool) -> Section:
    n, rounds, calls = (200, 3, 20) if quick else (2000, 7, 300)
    ns = f"sig{uuid.uuid4().hex[:6]}"
    kv = store.open_namespace(ns)
    wire = kv.dynamo.wire
    if wire is None:
        raise RuntimeError("the wire path is off (DATAFOLD_DYNAMODB_FAST_WRITES=0?)")
    creds = Credentials("AKIDBENCHEXAMPLE", "bench-secret-example", "bench-session-token")
    sign = signers(wire.url, wire.signer.region, creds)
    table = Table(
        [
            "items (25 per call)",
            "body KB",
            "own µs / signature",
            "botocore µs / signature",
            "client CPU µs / call (own)",
            "own share",
            "botocore share",
            "botocore extra",
        ]
    )
    extras: list[float] = []
    rng = random.Random(5)
    try:
        for size in SIZES:
            params = request(kv, size, rng)
            body = encode_body(params)
            per: dict[str, list[float]] = {"own": [], "botocore": []}
            for _ in range(rounds):  # interleaved, medians: the machine is shared
                for name, fn in sign.items():
                    per[name].append(cpu_us(fn, n, body))
            own = statistics.median(per["own"])
            theirs = statistics.median(per["botocore"])
            call = statistics.median(
                [cpu_us(wire.batch_write_item, 1, **params) for _ in range(calls)]
            )
            with_theirs = call - own + theirs
            extras.append((theirs - own) / call * 100)
            table.add(
                f"{size:,} B",
                len(body) / 1024,
                own,
                theirs,
                call,
                f"{own / call * 100:.1f} %",
                f"{theirs / with_theirs * 100:.1f} %",
                f"{extras[-1]:.1f} %",
            )
    finally:
        store.delete_namespace(ns)
    worst = min(extras)
    verdict = (
        f"botocore's signer would add {worst:.1f} % or more of a call's client CPU (over "
        f"{THRESHOLD:.0f} %): the wire path keeps its own signer"
        if worst > THRESHOLD
        else f"botocore's signer adds at most {max(extras):.1f} % of a call's client CPU (at most "
        f"{THRESHOLD:.0f} %): it would be the one to use"
    )
    return Section(
        "signing",
        "9. SigV4 signing",
        intro=(
            f"CPU µs per signature of a BatchWriteItem body of {ITEMS} items, the project's "
            "own signer (`storage.sigv4.Signer`, signing key cached per day) against botocore's "
            "`SigV4Auth` (request built, signed and prepared), medians of "
            f"{rounds} interleaved rounds of {n:,}; client CPU per call: median of {calls} "
            "`WireWriter.batch_write_item` calls of the same request against DynamoDB Local "
            "(the calling thread's CPU). Shares are of the call's client CPU with that signer. "
            "Command: `python -m bench.signing`."
        ),
        tables=[table],
        notes=[verdict + "."],
    )


def run(env: BenchEnv) -> Section:
    return measure(env.dynamo_config, env.store(), env.quick)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = p.parse_args(argv)
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
    config = replace(DynamoConfig.from_env(), table_prefix=f"bench{uuid.uuid4().hex[:6]}")
    t = time.perf_counter()
    section = measure(config, DynamoNamespacedStore(config, "bench-user"), args.quick)
    section.seconds = time.perf_counter() - t
    section.notes.append(
        f"Measured on its own by `python -m bench.signing` ({time.strftime('%Y-%m-%d %H:%M %Z')}"
        f"; {report.machine()}), not in the run the rest of this report comes from."
    )
    print("\n".join(report.section_lines(section)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
