"""A local S3 for the tests: moto's server mode (``moto[server]``, a [dev] extra) on a free
port of 127.0.0.1, started and stopped by the session fixture ``s3_endpoint``. It fails, never
skips, when moto is not installed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(logs: Path) -> Iterator[str]:
    """Run ``moto_server`` until the block ends; yields its endpoint URL."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.fail("moto_server is missing: install the dev extras (pip install -e '.[dev]')")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (logs / f"moto-{port}.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on {url}; see {log.name}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
