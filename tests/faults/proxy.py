"""`FaultProxy`: an HTTP/1.1 keep-alive proxy in front of DynamoDB (Local) that injects faults.

Point a boto3 client's ``endpoint_url`` at `FaultProxy.endpoint_url`. Requests are forwarded
byte for byte with all their headers (``Authorization`` included, so SigV4 signatures made for
the proxy's host reach the upstream unchanged; DynamoDB Local does not check them), except
rewritten BatchWriteItem bodies. Each client connection gets its own upstream connection, reused
while the client keeps its connection open (botocore's pool does).

Control endpoint on the same port (JSON in and out):

- ``GET /__faults__`` → ``{"config": {...}, "stats": {...}, "drops": {...}}``;
  ``GET /__faults__/config``, ``GET /__faults__/stats`` → one of them.
- ``POST /__faults__`` or ``/__faults__/config`` with ``{"throttle_rate": 0.2, ...}`` → changes
  those fields, keeps the others; answers the new config.
- ``PUT /__faults__/config`` with a whole config → replaces it (missing fields = defaults).
- ``POST /__faults__/reset`` → zeroes the counters, refills the capacity buckets and disarms
  pending answer drops.
- ``POST /__faults__/drop`` with ``{"operation": "UpdateItem", "count": 1}`` → forwards the next
  ``count`` calls of that operation and drops their answers; answers the pending drops.

A bad control request gets HTTP 400 ``{"error": "..."}``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .config import FaultConfig
from .engine import FaultEngine
from .handler import CONTROL_PATH, Server, json_reply
from .protocol import Response
from .stats import StatsSnapshot

__all__ = ["CONTROL_PATH", "FaultProxy"]


class FaultProxy:
    """A fault-injecting DynamoDB proxy on ``host:port`` (port 0 = any free port).

    Args:
        upstream_url: the real endpoint, e.g. ``http://127.0.0.1:8000`` (http or https).
        port: port to listen on; 0 picks a free one (read `port` after `start`).
        config: faults to inject; default none (a transparent proxy).
        host: address to bind, 127.0.0.1 by default.
        clock: monotonic seconds, for the capacity buckets and stats.
        rng: source of every random choice; pass ``random.Random(seed)`` for repeatable runs
            (the sequence is repeatable when requests arrive one at a time).
        sleep: used to inject latency.
        upstream_timeout: socket timeout of upstream connections, seconds.
    """

    def __init__(
        self,
        upstream_url: str,
        port: int = 0,
        config: FaultConfig | None = None,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        upstream_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be http(s)://host[:port], got {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream = (parts.scheme, parts.hostname, parts.port, upstream_timeout)
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self.engine = FaultEngine(config or FaultConfig(), clock=clock, rng=rng, sleep=sleep)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = Server((self._host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open client connections and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        if self._server is None:
            raise RuntimeError("FaultProxy not started")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the proxy, for boto3's ``endpoint_url``."""
        return f"http://{self._host}:{self.port}"

    @property
    def config(self) -> FaultConfig:
        """The configuration in force."""
        return self.engine.config

    def configure(self, **changes: Any) -> FaultConfig:
        """Change some config fields while running (validated as a whole); returns the result."""
        with self._lock:
            config = self.engine.config.replace(**changes)
            self.engine.set_config(config)
            return config

    def set_config(self, config: FaultConfig) -> None:
        """Replace the whole configuration while running."""
        with self._lock:
            self.engine.set_config(config)

    def drop_answers(self, operation: str, count: int = 1) -> None:
        """Forward the next ``count`` calls of ``operation`` (e.g. ``"UpdateItem"``) and drop
        their answers with a connection reset: each such write lands, its caller never learns
        it. Deterministic, unlike ``reset_after_rate``; 0 disarms."""
        self.engine.drop_answers(operation, count)

    def pending_drops(self) -> dict[str, int]:
        """Answers still to be dropped, per operation."""
        return self.engine.pending_drops()

    def stats(self) -> StatsSnapshot:
        """Counters per operation and per table (see `tests.faults.stats`)."""
        return self.engine.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero every counter."""
        self.engine.stats.reset()

    def reset_capacity(self) -> None:
        """Refill every table's capacity bucket."""
        self.engine.capacity.reset()

    def upstream_connection(self) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to the upstream."""
        scheme, host, port, timeout = self._upstream
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def control(self, method: str, path: str, body: bytes) -> Response:
        """Serve one control-endpoint request (see the module docstring)."""
        sub = path[len(CONTROL_PATH) :].split("?", 1)[0].strip("/")
        try:
            if method == "GET" and sub == "":
                return json_reply(
                    200,
                    {
                        "config": self.config.to_dict(),
                        "stats": self.stats().to_dict(),
                        "drops": self.pending_drops(),
                    },
                )
            if method == "GET" and sub == "config":
                return json_reply(200, self.config.to_dict())
            if method == "GET" and sub == "stats":
                return json_reply(200, self.stats().to_dict())
            if method in ("POST", "PUT") and sub in ("", "config"):
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                if method == "PUT":
                    self.set_config(FaultConfig.from_dict(data))
                else:
                    self.configure(**data)
                return json_reply(200, self.config.to_dict())
            if method == "POST" and sub == "reset":
                self.reset_stats()
                self.reset_capacity()
                for op in self.pending_drops():
                    self.drop_answers(op, 0)
                return json_reply(200, {"reset": True})
            if method == "POST" and sub == "drop":
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                self.drop_answers(str(data.get("operation") or ""), data.get("count", 1))
                return json_reply(200, self.pending_drops())
        except (ValueError, TypeError) as exc:
            return json_reply(400, {"error": str(exc)})
        return json_reply(404, {"error": f"no control route {method} {path}"})
