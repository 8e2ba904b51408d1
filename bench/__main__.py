"""``python -m bench [--quick] [--only NAME ...] [--out BENCHMARKS.md] [--chart PNG]``.

Runs the comparisons against DynamoDB Local (``DATAFOLD_DYNAMODB_ENDPOINT``, default
127.0.0.1:8000) and Redis database 13, then writes the report and the chart. A section that
fails is reported as failed (with its error) and the run exits 1; the others still run.
Everything the run created (tables, worker processes, Redis keys) is removed at the end, also
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from bench import (
    bulk_load,
    clear_schemas,
    fairness,
    limiter,
    memory,
    overhead,
    put_wait,
    reads,
    recovery,
    report,
    scaling,
    signing,
)
from bench.env import BenchEnv
from bench.model import Section

SECTIONS: dict[str, Callable[[BenchEnv], Section]] = {
    "bulk_load": bulk_load.run,
    "reads": reads.run,
    "clear_schemas": clear_schemas.run,
    "limiter": limiter.run,
    "scaling": scaling.run,
    "memory": memory.run,
    "overhead": overhead.run,
    "recovery": recovery.run,
    "signing": signing.run,
    "put_wait": put_wait.run,
    "fairness": fairness.run,
}
ROOT = Path(__file__).resolve().parents[1]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one round: a smoke run of a minute or less (CI)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        metavar="NAME",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="report path")
    p.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG path (default: bench/benchmarks.png for the repository's "
        "BENCHMARKS.md, else next to --out)",
    )
    return p.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.out.resolve()
    chart: Path = (
        args.chart
        or (
            ROOT / "bench" / "benchmarks.png"
            if out == ROOT / "BENCHMARKS.md"
            else out.with_suffix(".png")
        )
    ).resolve()
    names = args.only or list(SECTIONS)
    signal.signal(signal.SIGTERM, _terminate)
    command = (
        "python -m bench"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(args.only)}" if args.only else "")
    )
    start = time.perf_counter()
    sections: list[Section] = []
    with BenchEnv(quick=args.quick) as env:
        for name in names:
            t = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                sec = SECTIONS[name](env)
            except Exception:
                sec = Section(name, name, error=traceback.format_exc(limit=6))
                env.stop_workers()
            sec.seconds = time.perf_counter() - t
            print(
                f"[bench] {name}: {sec.seconds:.0f} s"
                + (f", missed: {[g.text for g in sec.missed]}" if sec.missed else "")
                + (" FAILED" if sec.error else ""),
                file=sys.stderr,
                flush=True,
            )
            sections.append(sec)
    report.chart(sections, chart)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        report.markdown(
            sections,
            command=command,
            chart=chart,
            out=out,
            seconds=time.perf_counter() - start,
            quick=args.quick,
        ),
        encoding="utf-8",
    )
    print(f"[bench] wrote {out} and {chart}", file=sys.stderr)
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
