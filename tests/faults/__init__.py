"""A fault-injecting DynamoDB HTTP proxy for tests and benchmarks (standard library only).

    from tests.faults import FaultConfig, FaultProxy

    with FaultProxy("http://127.0.0.1:8000", config=FaultConfig(throttle_rate=0.1)) as proxy:
        client = boto3.client("dynamodb", endpoint_url=proxy.endpoint_url, ...)
        proxy.configure(partial_batch_rate={"BatchWriteItem": 0.3}, capacity_wcu=100)
        print(proxy.stats().op("PutItem", "throttling"))

A table as DynamoDB limits it: ``FaultConfig(capacity_wcu=3000, partition_wcu=1000)`` gives the
table 3,000 WCU/s and each of its partition key (``PK``) values 1,000 WCU/s, both with
``burst_seconds`` of burst; a call of which nothing fits is refused with the limit named in
``ThrottlingReasons`` (``refuse_whole=False``: a batch comes back all unprocessed instead), and
``proxy.stats().reason("TableWriteKeyRangeThroughputExceeded")`` counts those refusals.

Command line: ``python -m tests.faults --help``.

Transport pieces, to put before DynamoDB Local or a `FaultProxy`: `ConnectProxy` (an HTTP proxy
for ``HTTPS_PROXY``, counting its ``CONNECT`` tunnels and bytes) and `TlsFront` (TLS with a
certificate of a CA of its own, ``trustme``).
"""

from .capacity import item_size, write_units
from .config import FaultConfig, FaultKind, Rate
from .proxy import CONTROL_PATH, FaultProxy
from .relay import RelayStats
from .stats import StatsSnapshot
from .tls import TlsFront
from .tunnel import ConnectProxy

__all__ = [
    "CONTROL_PATH",
    "ConnectProxy",
    "FaultConfig",
    "FaultKind",
    "FaultProxy",
    "Rate",
    "RelayStats",
    "StatsSnapshot",
    "TlsFront",
    "item_size",
    "write_units",
]
