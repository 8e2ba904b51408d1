"""`TlsFront`: terminates TLS with a certificate of a CA of its own, forwards the clear bytes.

Put it before DynamoDB Local or a `FaultProxy` to have an ``https`` endpoint whose certificate
no default trust store knows, as behind a TLS-inspecting proxy: a client trusts it only with the
CA's certificate as its bundle (`ca_bundle`, for ``AWS_CA_BUNDLE`` / ``ca_bundle`` / ``verify``).
The CA and the certificate are made by ``trustme``; the certificate names ``localhost`` and
``127.0.0.1`` by default. `stats` counts the handshakes that failed (a client that does not
trust the CA) apart from the connections relayed (kind ``tls``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import trustme

from .relay import Relay


class TlsFront(Relay):
    """TLS on ``host:port`` (0 = any free port) in front of the ``http`` ``upstream_url``."""

    def __init__(
        self,
        upstream_url: str,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        ca: trustme.CA | None = None,
        names: Sequence[str] = ("localhost", "127.0.0.1"),
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream_url must be http://host[:port], got {upstream_url!r}")
        super().__init__(port, host=host, timeout=timeout)
        self.upstream = (parts.hostname, parts.port or 80)
        self.ca = ca or trustme.CA()
        self.names = tuple(names)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*self.names).configure_cert(self.context)

    def start(self) -> TlsFront:
        super().start()
        return self

    def __enter__(self) -> TlsFront:
        return self.start()

    @property
    def endpoint_url(self) -> str:
        """``https://<first name>:port``, for the client's ``endpoint_url``."""
        return f"https://{self.names[0]}:{self.port}"

    def ca_bundle(self, directory: Path) -> Path:
        """Write the CA's certificate (PEM) into ``directory``; its path."""
        path = directory / "tls-front-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def serve(self, client: socket.socket) -> None:
        try:
            tls = self.track(self.context.wrap_socket(client, server_side=True))
        except (ssl.SSLError, OSError):
            self.failed("handshake")
            return
        try:
            try:
                upstream = self.connect(*self.upstream)
            except OSError:
                self.failed("upstream")
                return
            self.relaying("tls")
            self.pipe(tls, upstream)
        finally:
            with contextlib.suppress(OSError):
                tls.close()
