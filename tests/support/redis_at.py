"""Where the tests' shared Redis is: ``127.0.0.1:$REDIS_PORT`` (6379 unless set), the port
``scripts/redis-local`` starts it on. Two test runs at once each need their own
(``REDIS_PORT=6390 make test``): they use the same database numbers, and one run's workers
would take the other's messages."""

from __future__ import annotations

import os

PORT = int(os.environ.get("REDIS_PORT") or 6379)
ADDRESS = f"127.0.0.1:{PORT}"


def redis_url(db: int) -> str:
    return f"redis://{ADDRESS}/{db}"
