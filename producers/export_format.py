"""The export file format: JSONL lines with a ``"kind"``, ending in a checksummed trailer.

::

    {"kind": "item", "namespace": "ns", "key_b64": "...", "value_b64": "..."}
    {"kind": "schema", "name": "s", "body": {...}, "mutation_mappers": {...},
     "created_at": 1, "updated_at": 2, "version": 3}
    {"kind": "trailer", "items": {"ns": 1}, "schemas": 1, "sha256": "<64 hex digits>"}

The trailer's ``sha256`` is taken over the exact bytes of every line before it, each with its
trailing ``"\\n"``; ``items`` counts item lines per namespace and ``schemas`` the schema lines.
A file that stops before its trailer was truncated; one whose bytes hash differently, or whose
counts differ, was altered. :class:`ExportVerifier` checks both while the file streams
(``producers.inputs.read_jsonl`` parses the lines and feeds it their raw bytes).

This module parses schema and trailer lines; item lines share the key/value rules of plain lines
and are parsed in ``producers.inputs``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeGuard

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """One schema line of an export file (``line`` is 1-based)."""

    line: int
    name: str
    body: dict[str, Any]
    mutation_mappers: dict[str, Any]
    created_at: int | None
    updated_at: int | None
    version: int | None


@dataclass(frozen=True, slots=True)
class Trailer:
    """The last line of an export file: counts and the sha256 (lowercase hex) of the lines
    before it."""

    line: int
    items: dict[str, int]
    schemas: int
    sha256: str


def _is_count(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def parse_schema(line: int, obj: dict[str, Any]) -> SchemaRecord | str:
    """A :class:`SchemaRecord` from a decoded ``kind: schema`` line, or the reason it is bad.

    ``name`` (non-empty string) and ``body`` (object) are required; a missing or null
    ``mutation_mappers`` is ``{}``; ``created_at``/``updated_at``/``version`` are integers or null.
    """
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return "schema has no name"
    body = obj.get("body")
    if not isinstance(body, dict):
        return f"schema {name!r}: body is not a JSON object"
    mappers = obj.get("mutation_mappers")
    if mappers is None:
        mappers = {}
    if not isinstance(mappers, dict):
        return f"schema {name!r}: mutation_mappers is not a JSON object"
    stamps: list[int | None] = []
    for attr in ("created_at", "updated_at", "version"):
        v = obj.get(attr)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            return f"schema {name!r}: {attr} is not an integer"
        stamps.append(v)
    return SchemaRecord(line, name, body, mappers, stamps[0], stamps[1], stamps[2])


def parse_trailer(line: int, obj: dict[str, Any]) -> Trailer | str:
    """A :class:`Trailer` from a decoded ``kind: trailer`` line, or the reason it is bad."""
    items = obj.get("items")
    if not isinstance(items, dict) or not all(_is_count(n) for n in items.values()):
        return "trailer: items is not an object of namespace counts"
    schemas = obj.get("schemas")
    if not _is_count(schemas):
        return "trailer: schemas is not a count"
    sha = obj.get("sha256")
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        return "trailer: sha256 is not 64 hex digits"
    return Trailer(line, {str(k): int(n) for k, n in items.items()}, schemas, sha.lower())


@dataclass(slots=True)
class ExportVerifier:
    """Running sha256 and counts of an export file, checked against its trailer.

    Use::

        verifier = ExportVerifier()
        trailer = None
        for rec in read_jsonl(stream, on_line=verifier.feed):
            verifier.count(rec)
            if isinstance(rec, Trailer):
                trailer = rec
            ...
        problem = verifier.check(trailer)   # None when the file is whole and unaltered

    ``feed`` takes raw bytes in file order; a line may come in several pieces (``read_jsonl``
    passes an over-long line in bounded chunks), which hashes the same. Memory is constant.
    """

    _sha: Any = field(default_factory=hashlib.sha256, repr=False)
    items: Counter[str] = field(default_factory=Counter)
    schemas: int = 0

    def feed(self, raw: bytes) -> None:
        """Hash ``raw`` (bytes of a line before the trailer, newline included)."""
        self._sha.update(raw)

    def count(self, rec: object) -> None:
        """Tally a parsed record: export items (a ``Record`` with a namespace) and schemas.

        Plain records (no namespace), bad lines and trailers are not counted.
        """
        if isinstance(rec, SchemaRecord):
            self.schemas += 1
            return
        namespace = getattr(rec, "namespace", None)
        if isinstance(namespace, str):
            self.items[namespace] += 1

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything fed so far."""
        return str(self._sha.hexdigest())

    def check(self, trailer: Trailer | None) -> str | None:
        """``None`` if the file matches ``trailer``; else a one-line reason.

        Reasons: "truncated: trailer missing", "checksum mismatch (...)", "item count mismatch
        (...)", "schema count mismatch (...)". The checksum is checked first: if it matches, the
        bytes are the exporter's, and a count mismatch means lines were rejected while reading.
        """
        if trailer is None:
            return "truncated: trailer missing"
        got = self.sha256
        if got != trailer.sha256:
            return f"checksum mismatch (trailer {trailer.sha256[:12]}…, file {got[:12]}…)"
        want = {ns: n for ns, n in trailer.items.items() if n}
        have = {ns: n for ns, n in self.items.items() if n}
        if want != have:
            diff = sorted(ns for ns in want.keys() | have.keys() if want.get(ns) != have.get(ns))
            shown = ", ".join(
                f"{ns!r}: trailer {want.get(ns, 0)}, read {have.get(ns, 0)}" for ns in diff[:5]
            )
            return f"item count mismatch ({shown})"
        if trailer.schemas != self.schemas:
            return f"schema count mismatch (trailer {trailer.schemas}, read {self.schemas})"
        return None
