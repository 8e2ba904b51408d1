"""`Relay`: a threaded TCP server whose connections are byte pipes to somewhere else, counted.

The base of `ConnectProxy` (an HTTP proxy: CONNECT tunnels and absolute-URI requests) and
`TlsFront` (terminates TLS, forwards the clear bytes). A subclass implements `serve`, which
gets the accepted socket and usually ends in `pipe`. `stats` counts connections, where they
went, the bytes each way and the failures (standard library only).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

CHUNK = 65536


@dataclass
class RelayStats:
    """What passed through a relay so far (a snapshot: `Relay.stats`)."""

    connections: int = 0
    targets: Counter[str] = field(default_factory=Counter)
    """``host:port`` -> connections relayed to it."""
    bytes_up: int = 0
    """Client -> upstream, as the relay forwarded them (clear text for `TlsFront`)."""
    bytes_down: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    """Why connections ended before relaying (``handshake``, ``bad-request``, ``upstream``)."""
    kinds: Counter[str] = field(default_factory=Counter)
    """Connections relayed, by kind (``CONNECT`` tunnels, ``forward``-ed requests, ``tls``)."""

    @property
    def tunnels(self) -> int:
        return self.kinds["CONNECT"]


class Relay:
    """Listens on ``host:port`` (0 = any free port) and serves each connection in a thread."""

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", timeout: float = 60.0):
        self.host = host
        self.timeout = timeout
        self._requested_port = port
        self._lock = threading.Lock()
        self._stats = RelayStats()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Any:
        if self._listener is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        listener = socket.create_server((self.host, self._requested_port))
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept, args=(listener,), name=f"relay-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection, release the port (idempotent)."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Any:
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
        if self._listener is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return int(self._listener.getsockname()[1])

    def stats(self) -> RelayStats:
        with self._lock:
            s = self._stats
            return RelayStats(
                s.connections,
                Counter(s.targets),
                s.bytes_up,
                s.bytes_down,
                Counter(s.failures),
                Counter(s.kinds),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = RelayStats()

    # -- for subclasses -------------------------------------------------------------------
    def serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def failed(self, why: str) -> None:
        with self._lock:
            self._stats.failures[why] += 1

    def relaying(self, kind: str) -> None:
        with self._lock:
            self._stats.kinds[kind] += 1

    def track(self, sock: socket.socket) -> socket.socket:
        """Remember ``sock`` so `stop` can cut it; returns it."""
        with self._lock:
            self._sockets.add(sock)
        return sock

    def connect(self, host: str, port: int) -> socket.socket:
        """A tracked connection to the upstream, counted as a target."""
        upstream = self.track(socket.create_connection((host, port), timeout=self.timeout))
        with self._lock:
            self._stats.targets[f"{host}:{port}"] += 1
        return upstream

    def pipe(self, client: socket.socket, upstream: socket.socket, first: bytes = b"") -> None:
        """Copy bytes both ways, in this one thread (TLS sockets are not for two threads), until
        either side closes or stays silent for ``timeout``; then close ``upstream``. ``first``
        goes upstream first. HTTP needs no half-closed connections, so none are kept."""
        try:
            # Counted before sending: once the other side has them, `stats` shows them.
            if first:
                self._count(len(first), up=True)
                upstream.sendall(first)
            while True:
                ready: list[socket.socket] = [
                    s for s in (client, upstream) if isinstance(s, ssl.SSLSocket) and s.pending()
                ]
                if not ready:
                    ready, _, _ = select.select([client, upstream], [], [], self.timeout)
                    if not ready:
                        return
                for src in ready:
                    data = src.recv(CHUNK)
                    if not data:
                        return
                    self._count(len(data), up=src is client)
                    (upstream if src is client else client).sendall(data)
        except (OSError, ValueError):
            return  # a side went away, or was cut by `stop`
        finally:
            with self._lock:
                self._sockets.discard(upstream)
            upstream.close()

    # -- internals ------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._stats.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.track(client)
        client.settimeout(self.timeout)
        try:
            self.serve(client)
        except OSError:
            pass  # a side went away: the other one sees its connection close
        finally:
            with self._lock:
                self._sockets.discard(client)
            client.close()

    def _count(self, n: int, *, up: bool) -> None:
        with self._lock:
            if up:
                self._stats.bytes_up += n
            else:
                self._stats.bytes_down += n
