"""The HTTP side of the fault proxy: one thread per client connection, forwarding upstream.

`Handler` reads each request, asks the proxy's `FaultEngine` for a `Plan`, and carries it out:
answer at once, abort the connection with a TCP RST, or forward to the upstream over the
connection's own keep-alive upstream connection and send back what `FaultEngine.finish` makes of
the answer. Paths under ``/__faults__`` go to `FaultProxy.control` instead.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .protocol import Response, operation_of

if TYPE_CHECKING:
    from .proxy import FaultProxy

log = logging.getLogger(__name__)

CONTROL_PATH = "/__faults__"
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)


def json_reply(status: int, payload: Any) -> Response:
    """A plain JSON response (control endpoint, proxy errors)."""
    body = json.dumps(payload, indent=1).encode("utf-8")
    return Response(status, "", [("Content-Type", "application/json")], body)


class Server(ThreadingHTTPServer):
    """One thread per client connection; tracks connections so `stop` can drop them."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        super().__init__(address, Handler)
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, sock: socket.socket, live: bool) -> None:
        with self._connections_lock:
            if live:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """Serves one client connection (many requests with keep-alive)."""

    protocol_version = "HTTP/1.1"
    timeout = 300  # seconds an idle keep-alive connection is kept
    server: Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without NODELAY, Nagle + delayed ACK cost 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._upstream: http.client.HTTPConnection | None = None
        self.server.track(self.connection, live=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
            self.server.track(self.connection, live=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_DELETE = do_POST

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy = self.server.proxy
        if self.path.startswith(CONTROL_PATH):
            self._send(proxy.control(self.command, self.path, body))
            return
        engine = proxy.engine
        plan = engine.plan(operation_of(self.headers.get("X-Amz-Target")), body)
        if plan.reset:
            self._reset()
            return
        response = plan.response
        if response is None:
            upstream = self._forward(plan.body)
            if upstream is None:
                engine.stats.count(plan.operation, "upstream_errors")
                response = json_reply(
                    502,
                    {
                        "__type": "FaultProxyUpstreamError",
                        "message": f"upstream {proxy.upstream_url} unreachable",
                    },
                )
            else:
                response = engine.finish(plan, upstream)
        if plan.reset_after_forward:
            self._reset()
            return
        self._send(response)

    def _forward(self, body: bytes) -> Response | None:
        """Send the request upstream; a dead reused connection is retried once on a new one."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED]
        for attempt in range(2):
            if self._upstream is None:
                self._upstream = self.server.proxy.upstream_connection()
            conn = self._upstream
            reused = conn.sock is not None
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                return Response(resp.status, resp.reason, resp.getheaders(), data)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._upstream = None
                stale = isinstance(exc, ConnectionError | http.client.BadStatusLine)
                if not (reused and stale and attempt == 0):
                    log.warning("upstream request failed: %r", exc)
                    return None
        return None

    def _send(self, response: Response) -> None:
        self.send_response_only(response.status, response.reason or None)
        for name, value in response.headers:
            if name.lower() not in _NOT_FORWARDED:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes the close send RST, not a response or FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
