"""Child process of the memory benchmark: ``python -m bench.memory_child FILE NAMESPACE``.

Streams FILE through ``Producer.load_file`` (settings from the environment) and prints one JSON
line: ``{"peak_rss_mb": ..., "seconds": ..., "items": ..., "job": ...}``. Peak RSS is the
process's own ``ru_maxrss`` (kilobytes on Linux).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from producers import Producer


def main(argv: list[str]) -> int:
    path, namespace = argv[1], argv[2]
    producer = Producer.from_env()
    t = time.perf_counter()
    job = producer.load_file(path, namespace)
    seconds = time.perf_counter() - t
    st = job.status()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"peak_rss_mb": peak, "seconds": seconds, "items": st.items, "job": job.id}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
