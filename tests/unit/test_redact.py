"""No credential value in any message kept or logged: errors, dead letters, ledger reasons,
worker logs (both the client's and the wire path's errors go through the same classifier)."""

from __future__ import annotations

import io
import logging

from pipeline.status import DeadLetter
from storage.redact import ScrubFilter, scrub
from storage.retry import classify
from tests.doubles import client_error

TOKEN = "IQoJb3JpZ2luX2VjEBAaCXVzLWVhc3QtMSJHMEUCIQD/secret+token=="
KEY_ID = "ASIAEXAMPLEKEY123456"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
CANONICAL = (
    "The request signature we calculated does not match the signature you provided. "
    "The Canonical String for this request should have been 'POST\n/\n\n"
    "host:dynamodb.us-east-1.amazonaws.com\n"
    f"x-amz-security-token:{TOKEN}\n"
    "x-amz-target:DynamoDB_20120810.BatchWriteItem' "
    f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/20261202/us-east-1/dynamodb/"
    f"aws4_request, SignedHeaders=host;x-amz-date, Signature={SIGNATURE} "
    f"?X-Amz-Security-Token={TOKEN}&X-Amz-Credential={KEY_ID}"
)
SECRETS = (TOKEN, KEY_ID, SIGNATURE, "secret+token")


def _clean(text: str) -> bool:
    return not any(s in text for s in SECRETS)


def test_scrub_removes_tokens_key_ids_and_signatures_and_keeps_the_rest() -> None:
    out = scrub(CANONICAL)
    assert _clean(out), out
    assert "x-amz-target:DynamoDB_20120810.BatchWriteItem" in out
    assert "signature we calculated does not match" in out
    assert (
        scrub("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG")
        == "aws_secret_access_key = <redacted>"
    )


def test_an_error_quoting_the_canonical_request_keeps_no_credential() -> None:
    err = classify(
        client_error("InvalidSignatureException", "BatchWriteItem", message=CANONICAL),
        operation="BatchWriteItem",
        table="T",
    )
    assert _clean(str(err)) and _clean(err.message)
    assert "BatchWriteItem on table 'T'" in str(err)


def test_dead_letters_store_scrubbed_reasons() -> None:
    letter = DeadLetter(b"k", b"v", f"gave up: {CANONICAL}", "InvalidSignatureException")
    assert _clean(letter.to_json())


def test_worker_log_lines_are_scrubbed_tracebacks_included() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubFilter())
    log = logging.getLogger("test-redact")
    log.addHandler(handler)
    try:
        log.warning("batch failed: %s", CANONICAL)
        try:
            raise RuntimeError(CANONICAL)
        except RuntimeError:
            log.exception("segment failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "batch failed" in text and "segment failed" in text and "RuntimeError" in text
    assert _clean(text), text


def test_celerys_log_handlers_get_the_filter_once() -> None:
    from worker.observability import _scrub_logs

    log = logging.getLogger("test-redact-celery")
    handler = logging.StreamHandler(io.StringIO())
    log.addHandler(handler)
    try:
        _scrub_logs(logger=log)
        _scrub_logs(logger=log)
        assert [type(f) for f in handler.filters] == [ScrubFilter]
    finally:
        log.removeHandler(handler)


def test_scrub_knows_the_forms_botocore_and_sts_print() -> None:
    forms = [
        f"{{'X-Amz-Security-Token': b'{TOKEN}', 'Content-Type': b'application/json'}}",
        f"<SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey><SessionToken>{TOKEN}"
        "</SessionToken>",
        f'{{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "SessionToken": "{TOKEN}"}}',
        f"ReadOnlyCredentials(access_key='{KEY_ID}', secret_key='wJalrXUtnFEMI/K7MDENG', "
        f"token='{TOKEN}')",
    ]
    for form in forms:
        out = scrub(form)
        assert _clean(out) and "wJalrXUtnFEMI" not in out, out
    assert scrub("NextToken and ExclusiveStartKey stay") == "NextToken and ExclusiveStartKey stay"


def test_a_badly_formatted_log_call_does_not_raise_through_the_filter() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert ScrubFilter().filter(record) is True
