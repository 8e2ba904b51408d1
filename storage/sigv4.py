"""Signature Version 4 for DynamoDB's JSON POSTs, the wire path's signer (:mod:`storage.wire`).

botocore's ``SigV4Auth`` builds, signs and prepares a request for several times the CPU this
takes, a real share of a BatchWriteItem call's client CPU (BENCHMARKS.md, "SigV4 signing";
``python -m bench.signing``), so the wire path signs here; a unit test checks the signature
against botocore's byte for byte, with and without a session token.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

from botocore.credentials import ReadOnlyCredentials

TARGET = "DynamoDB_20120810.BatchWriteItem"
CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE = "dynamodb"


class Signer:
    """AWS Signature Version 4 for POSTs of JSON to ``/`` of one host (what DynamoDB takes)."""

    def __init__(self, region: str, host: str, service: str = SERVICE) -> None:
        self.region = region
        self.host = host
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        k = self._keys.get((secret, day))
        if k is None:
            k = ("AWS4" + secret).encode("utf-8")
            for part in (day, self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode("utf-8"), hashlib.sha256).digest()
            self._keys = {(secret, day): k}  # one day, one secret: the old key is dropped
        return k

    def headers(
        self, body: bytes, creds: ReadOnlyCredentials, now: datetime.datetime, target: str = TARGET
    ) -> dict[str, str]:
        """The request's headers, ``Authorization`` included."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        headers = {
            "content-type": CONTENT_TYPE,
            "host": self.host,
            "x-amz-date": stamp,
            "x-amz-target": target,
        }
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                *(f"{n}:{headers[n]}" for n in names),
                "",
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                stamp,
                scope,
                hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
            ]
        )
        sig = hmac.new(
            self._key(creds.secret_key or "", day), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={sig}"
        )
        return headers
