"""The package layout holds: storage <- pipeline <- {producers, worker}, no cycle anywhere,
producers never build a Celery worker app, modules stay small, and every file the project
cites exists."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("storage", "pipeline", "worker", "producers")
ALLOWED = {
    "storage": set(),
    "pipeline": {"storage"},
    "worker": {"storage", "pipeline"},
    "producers": {"storage", "pipeline"},
}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its body (function-level included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import sub`` imports the submodule; ``from mod import name``, the module.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in known] or [node.module]
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = [
        f"{mod} imports {dep}"
        for mod, deps in _graph().items()
        for dep in deps
        if (top := dep.split(".")[0]) != mod.split(".")[0] and top not in ALLOWED[mod.split(".")[0]]
    ]
    assert wrong == []


def test_only_the_redis_boundary_imports_redis() -> None:
    importers = set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            if any(m == "redis" or m.startswith("redis.") for m in mods):
                importers.add(name)
    assert importers == {"pipeline.redis_boundary"}


def test_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(node)

    for mod in sorted(graph):
        if mod not in done:
            visit(mod, [mod])
    assert cycles == []


def test_producers_and_pipeline_never_build_the_worker_app() -> None:
    code = (
        "import sys, pipeline, pipeline.broker, pipeline.enqueue, producers, producers.cli\n"
        "from producers import Producer\n"
        "from pipeline.broker import sender_app\n"
        "from pipeline.config import PipelineConfig\n"
        "app = sender_app(PipelineConfig())\n"
        "bad = sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.'))\n"
        "assert not bad, bad\n"
        "assert not [t for t in app.tasks if t.startswith('datafold.')], list(app.tasks)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_importing_a_worker_submodule_builds_no_app() -> None:
    code = (
        "import sys, worker.limiter, worker.segments; assert 'worker.celery_app' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_no_module_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_cited_file_exists() -> None:
    cited = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.(?:md|lua))\b")
    sources = [
        p
        for pkg in (*PACKAGES, "tests", "bench", "docs")
        for p in (ROOT / pkg).rglob("*")
        if p.suffix in (".py", ".md", ".lua")
    ]
    sources += [ROOT / "README.md", ROOT / "BENCHMARKS.md"]
    names = {p.name for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    missing = set()
    for src in sources:
        for ref in cited.findall(src.read_text(encoding="utf-8")):
            if not ((ROOT / ref).exists() or (src.parent / ref).exists() or ref in names):
                missing.add(f"{src.relative_to(ROOT)} cites {ref}")
    assert missing == set()
