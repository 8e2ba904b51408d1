"""Credential values out of every message this project keeps or logs.

An AWS error can quote what was sent: a signature mismatch answers with the canonical request
(``x-amz-security-token:...``) and the string to sign; a proxy or a misrouted call may echo the
``Authorization`` header (``Credential=AKIA.../...``, ``Signature=...``). :func:`scrub` replaces
every such value, so it never reaches a dead letter, the ledger, a log line or a metric.
:class:`StorageError <storage.errors.StorageError>` scrubs its message; the pipeline scrubs what
it stores (dead letters, failure reasons); the worker's log handlers carry a
:class:`ScrubFilter`.
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"

_PATTERNS = (
    # the session token, as a header line, a query parameter or a JSON field
    re.compile(r"(?i)(x-amz-security-token[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]+"),
    # Authorization: AWS4-HMAC-SHA256 Credential=KEYID/scope, SignedHeaders=..., Signature=hex
    re.compile(r"(?i)(Credential=)[^\s,\"'&]+"),
    re.compile(r"(?i)(Signature=)[^\s,\"'&]+"),
    re.compile(r"(?i)(aws_secret_access_key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"(?i)(aws_session_token[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
)
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def scrub(text: str) -> str:
    """``text`` with every credential value it quotes replaced by ``<redacted>``."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return _KEY_ID.sub(REDACTED, text)


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs each record's message and traceback before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True
