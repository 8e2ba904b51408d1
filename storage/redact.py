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

_VALUE = r"[^\s\"',;&<]+"
_SEP = r"[\"']?\s*[:=>]\s*b?[\"']?"  # header line, query, JSON, XML, repr of bytes
_PATTERNS = (
    # the session token, as a header line, a query parameter, a JSON or XML field
    re.compile(rf"(?i)((?:x-amz-security-token|session_?token|aws_session_token){_SEP}){_VALUE}"),
    # Authorization: AWS4-HMAC-SHA256 Credential=KEYID/scope, SignedHeaders=..., Signature=hex
    re.compile(rf"(?i)(Credential=){_VALUE}"),
    re.compile(rf"(?i)(Signature=){_VALUE}"),
    # secret keys: config files, STS answers (XML), JSON, a Credentials repr
    re.compile(rf"(?i)((?:aws_secret_access_key|secret_?access_?key|secret_key){_SEP}){_VALUE}"),
    re.compile(rf"(?i)(\btoken{_SEP}){_VALUE}"),
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
        # Never raise: logging's own error handling does not cover filters, and a badly
        # formatted log call must not fail the task that made it.
        try:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
        except Exception:  # leave the record as it was
            pass
        return True
