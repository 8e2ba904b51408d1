"""Helpers of the operations tests: scraping ``/metrics``, reading the dashboard's queries,
headless Chromium, and Flower / exporter processes.

Chromium and docker-compose are Debian packages (``scripts/system-deps`` installs them); a test
that needs one fails with that hint when it is missing, never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.pipeline import ROOT, PipelineEnv

REDIS_DB = 14
"""The Redis database of the operations tests (broker, ledger and limiter)."""
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "datafold.json"
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself: a dashboard may query them, no exporter serves them."""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    path = shutil.which(binary)
    assert path, f"{binary} is not installed: run scripts/system-deps (or make services)"
    return path


@dataclass(frozen=True)
class Samples:
    """One scrape: sample name -> list of (labels, value)."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(
            v
            for lab, v in self.by_name.get(name, [])
            if all(lab.get(k) == x for k, x in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            all(lab.get(k) == x for k, x in labels.items()) for lab, _ in self.by_name.get(name, [])
        )

    def label_names(self, name: str) -> set[str]:
        return {k for lab, _ in self.by_name.get(name, []) for k in lab}


def scrape(port: int, timeout: float = 10.0) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode("utf-8")
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            by_name.setdefault(s.name, []).append((dict(s.labels), s.value))
    return Samples(by_name)


def wait_http(url: str, timeout: float = 30.0, ok: tuple[int, ...] = (200,)) -> int:
    """Poll ``url`` until it answers with a status in ``ok``; returns the status."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                last = resp.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:
            last = exc
        if last in ok:
            return int(last)  # type: ignore[call-overload]
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {ok} in {timeout}s (last: {last!r})")


# -- the dashboard's queries -------------------------------------------------------------------
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_KEYWORDS = frozenset(
    {
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "increase",
        "irate",
        "histogram_quantile",
        "by",
        "without",
        "on",
        "ignoring",
        "le",
        "bool",
    }
)


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every ``expr`` of every panel (nested rows included) of a Grafana dashboard JSON."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return found


@dataclass(frozen=True)
class Ref:
    """A series selector of a PromQL expression: metric name and its label matchers."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]


def refs(expr: str) -> tuple[list[Ref], set[str]]:
    """The selectors of ``expr`` and the labels it groups by (PromQL subset the dashboard uses:
    functions, aggregations with by(), range vectors, label matchers, numbers)."""
    grouping = {lab.strip() for g in _GROUPING.findall(expr) for lab in g.split(",") if lab.strip()}
    body = _GROUPING.sub(" ", re.sub(r"\[[^\]]*\]", " ", expr))
    out: list[Ref] = []
    for m in _SELECTOR.finditer(body):
        name, braces = m.group(1), m.group(2)
        end = m.end()
        if name in _KEYWORDS or body[end : end + 1] == "(" or re.fullmatch(r"[0-9.e]+", name):
            continue
        out.append(Ref(name, tuple(_MATCHER.findall(braces or ""))))
    return out, grouping


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """The text of each cell of each ``<tbody>`` row of an HTML page."""
    parser = _Rows()
    parser.feed(html)
    return [r for r in parser.rows if r]


# -- processes ---------------------------------------------------------------------------------
class Proc:
    """A child process with its output in a log file; ``stop()`` sends SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def start_flower(penv: PipelineEnv, port: int, auth: str) -> Proc:
    """Flower on 127.0.0.1:``port`` with basic auth ``user:password``, ready to serve."""
    p = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--basic-auth={auth}",
        ],
        penv.env(),
        penv.logs / f"flower-{port}.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", ok=(401,))
    except AssertionError:
        p.stop()
        raise AssertionError(f"Flower did not start: {p.log_tail()}") from None
    return p


def start_exporter(penv: PipelineEnv, port: int) -> Proc:
    """``python -m worker.exporter`` on 127.0.0.1:``port``, ready to serve."""
    p = Proc(
        [sys.executable, "-m", "worker.exporter", "--port", str(port), "--addr", "127.0.0.1"],
        penv.env(),
        penv.logs / f"exporter-{port}.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
    except AssertionError:
        p.stop()
        raise AssertionError(f"exporter did not start: {p.log_tail()}") from None
    return p


def chromium(
    url: str, profile: Path, *, screenshot: Path | None = None, budget_ms: int = 5000
) -> str:
    """Load ``url`` in headless Chromium with a fresh profile; return the DOM after scripts
    ran for ``budget_ms`` of virtual time, or write a PNG to ``screenshot`` (returns "")."""
    args = [
        need("chromium"),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
    ]
    if screenshot is not None:
        args += ["--hide-scrollbars", "--window-size=1280,900", f"--screenshot={screenshot}"]
    else:
        args.append("--dump-dom")
    proc = subprocess.run([*args, url], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    return proc.stdout.decode("utf-8", "replace")


def until(timeout: float, interval: float = 0.5) -> Iterator[int]:
    """Yields attempt numbers, ``interval`` apart, until ``timeout`` seconds have passed (the
    first at once): ``for _ in until(10): if ok(): break``."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        yield n
        n += 1
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
