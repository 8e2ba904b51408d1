"""`ConnectProxy`: an HTTP proxy that tunnels ``CONNECT`` and counts what passes through it.

Point ``HTTPS_PROXY`` (or botocore's ``proxies``) at `ConnectProxy.url`: an ``https`` endpoint is
reached through a ``CONNECT host:port`` tunnel, its TLS passing through untouched. A request in
absolute form (``POST http://host:port/ HTTP/1.1``, what clients send through ``HTTP_PROXY`` to an
``http`` endpoint) is forwarded too: the connection is opened to that host, the first request
line rewritten to origin form, and the rest of the connection piped as it is (later requests keep
their absolute form, which HTTP/1.1 servers accept). `stats` says how many tunnels and forwards,
to which targets, and the bytes each way. ``allow`` restricts the targets (others get 403).
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from .relay import Relay

MAX_HEAD = 65536
_HOP_BY_HOP = (b"proxy-connection:", b"proxy-authorization:")


class ConnectProxy(Relay):
    """An HTTP proxy on ``host:port`` (0 = any free port); see the module docstring."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        allow: Collection[str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(port, host=host, timeout=timeout)
        self.allow = set(allow) if allow is not None else None

    def start(self) -> ConnectProxy:
        super().start()
        return self

    def __enter__(self) -> ConnectProxy:
        return self.start()

    @property
    def url(self) -> str:
        """``http://host:port``, for ``HTTPS_PROXY`` / ``HTTP_PROXY``."""
        return f"http://{self.host}:{self.port}"

    def serve(self, client: socket.socket) -> None:
        head, rest = _read_head(client)
        if head is None:
            self.failed("bad-request")
            return
        line, _, headers = head.partition(b"\r\n")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self._refuse(client, 400, "bad-request")
            return
        method, target = parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            where, first = (host.strip("[]"), int(port) if port.isdigit() else 0), rest
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                self._refuse(client, 400, "bad-request")
                return
            where = (url.hostname, url.port or 80)
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            kept = [
                h for h in headers.split(b"\r\n") if h and not h.lower().startswith(_HOP_BY_HOP)
            ]
            first = b"\r\n".join(
                [b" ".join((parts[0], path.encode("ascii"), parts[2])), *kept, b"", b""]
            )
            first += rest
        if self.allow is not None and f"{where[0]}:{where[1]}" not in self.allow:
            self._refuse(client, 403, "not-allowed")
            return
        try:
            upstream = self.connect(*where)
        except OSError:
            self._refuse(client, 502, "upstream")
            return
        if method == "CONNECT":
            self.relaying("CONNECT")
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            self.relaying("forward")
        self.pipe(client, upstream, first)

    def _refuse(self, client: socket.socket, status: int, why: str) -> None:
        self.failed(why)
        client.sendall(
            f"HTTP/1.1 {status} {why}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """The request head (without its blank line) and the bytes read past it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > MAX_HEAD:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
