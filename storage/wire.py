"""BatchWriteItem on the wire: the one call that carries every bulk item, without botocore's
generic request machinery, but through the botocore client's own transport.

For each call botocore walks the service model to serialize the request, fires a dozen event
hooks, signs, sends, and walks the model again to parse the answer: about 60 % of a worker's CPU
in a bulk load (BENCHMARKS.md, "Where the time goes"). :class:`WireWriter` does the same work for
``BatchWriteItem`` alone, with the request already in DynamoDB's JSON shape:

* the body is DynamoDB's JSON, joined from base64 text and ``json`` quoted strings;
* Signature Version 4 is computed by :class:`storage.sigv4.Signer`, with the day's signing key
  cached; a unit test checks it against botocore's own signer byte for byte. botocore's
  ``SigV4Auth`` would cost a real share of a call's client CPU (BENCHMARKS.md, "SigV4 signing");
* credentials are the client's own credentials object, frozen per call
  (``get_frozen_credentials()``), so assumed-role and SSO credentials refresh as the client's do;
* the HTTP exchange goes to the client's own endpoint URL through the client's own HTTP session
  (``client._endpoint.http_session``): the same proxies (``HTTPS_PROXY``, ``proxies``,
  ``proxies_config``), CA bundle (``AWS_CA_BUNDLE``, ``ca_bundle``, ``verify``), client
  certificate, timeouts, connection pool and socket options as every other call.
  :meth:`WireWriter.from_client` refuses a client without them (:class:`storage.client.Dynamo`
  then sends BatchWriteItem through the client itself, with a warning);
* the response's ``x-amz-crc32`` is checked (a mismatch is a retryable error, as in botocore);
  an answer that is not DynamoDB's — an empty 200, a body that is not a JSON object, a
  malformed ``x-amz-crc32`` — is a retryable error naming the table, never "all written";
* errors become the same botocore exceptions the client raises, with the throttling reasons
  (``ThrottlingReasons`` / ``throttlingReasons``) where botocore puts them, so
  :func:`storage.retry.classify` sorts them exactly as before.

``DATAFOLD_DYNAMODB_FAST_WRITES=0`` switches this path off.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions as bex
from botocore.awsrequest import AWSPreparedRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from storage import answers, errors
from storage.sigv4 import CONTENT_TYPE, SERVICE, TARGET, Signer

__all__ = [
    "CONTENT_TYPE",
    "SERVICE",
    "TARGET",
    "Signer",
    "WireWriter",
    "decode_unprocessed",
    "encode_body",
]


THROTTLING_MEMBERS = ("ThrottlingReasons", "throttlingReasons")
"""The error members naming the limits that refused (botocore's DynamoDB model spells both)."""

_quote: Callable[[str], str] = encode_basestring_ascii  # a JSON string literal (C)


def _jsonable(value: object) -> str:
    """``json.dumps`` hook: binary attribute values travel as base64 text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"a {type(value).__name__} cannot be sent to DynamoDB")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable, separators=(",", ":"))


def _attr(value: dict[str, Any]) -> str:
    """One attribute value. Base64 text never needs escaping, so binary values are joined in
    as they are: ``json.dumps`` scanning every character of them cost a worker a quarter of its
    CPU with 4 KB items (bench/)."""
    if len(value) == 1:
        ((kind, v),) = value.items()
        if kind == "B" and isinstance(v, (bytes, bytearray)):
            return '{"B":"' + base64.b64encode(v).decode("ascii") + '"}'
        if (kind == "S" or kind == "N") and isinstance(v, str):
            return '{"' + kind + '":' + _quote(v) + "}"
    return _dumps(value)


def _request(request: dict[str, Any]) -> str:
    """One WriteRequest (``{"PutRequest": {"Item": {...}}}`` or a DeleteRequest's Key)."""
    if len(request) == 1:
        ((kind, body),) = request.items()
        if isinstance(body, dict) and len(body) == 1:
            ((field, attrs),) = body.items()
            if isinstance(attrs, dict):
                inner = ",".join([_quote(n) + ":" + _attr(v) for n, v in attrs.items()])
                return "".join(('{"', kind, '":{"', field, '":{', inner, "}}}"))
    return _dumps(request)


def encode_body(params: dict[str, Any]) -> bytes:
    """The JSON body of a low-level request (``B`` values as bytes, like boto3's client)."""
    parts = []
    for name, value in params.items():
        if name == "RequestItems" and isinstance(value, dict):
            tables = [
                _quote(t) + ":[" + ",".join([_request(r) for r in reqs]) + "]"
                for t, reqs in value.items()
            ]
            parts.append('"RequestItems":{' + ",".join(tables) + "}")
        else:
            parts.append(_quote(name) + ":" + _dumps(value))
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def _binary(attr: Any) -> Any:
    """A wire attribute value back to the client's shape (``B``/``BS`` as bytes, nested too)."""
    if not isinstance(attr, dict) or len(attr) != 1:
        return attr
    ((kind, v),) = attr.items()
    if kind == "B":
        return {"B": base64.b64decode(v)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x) for x in v]}
    if kind == "M":
        return {"M": {k: _binary(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_binary(x) for x in v]}
    return attr


def decode_unprocessed(items: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``UnprocessedItems`` as botocore would return them (binary values as bytes)."""
    out: dict[str, Any] = {}
    for table, requests in items.items():
        out[table] = []
        for req in requests:
            ((kind, body),) = req.items()
            field = "Item" if kind == "PutRequest" else "Key"
            attrs = {k: _binary(v) for k, v in body[field].items()}
            out[table].append({kind: {field: attrs}})
    return out


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class WireWriter:
    """Sends ``BatchWriteItem`` requests; thread-safe; one per :class:`storage.client.Dynamo`.

    ``http`` is a botocore HTTP session (``send(AWSPreparedRequest) -> AWSResponse``); build
    one from a client with :meth:`from_client`, which uses the client's own.
    """

    def __init__(
        self,
        endpoint_url: str,
        http: Any,
        credentials: Credentials | None,
        region: str,
        *,
        service: str = SERVICE,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.http = http
        self.credentials = credentials
        self.signer = Signer(region, parts.netloc, service)
        self.now = now

    @classmethod
    def from_client(cls, client: Any) -> WireWriter:
        """A writer on ``client``'s endpoint URL, HTTP session and credentials object.

        Raises :class:`~storage.errors.ConfigError` when the client lacks them (another botocore
        version, a stub) or does not sign with SigV4: never a transport of its own, which would
        go around the client's proxies and CA bundle."""
        endpoint = getattr(client, "_endpoint", None)
        url = getattr(endpoint, "host", None)
        http = getattr(endpoint, "http_session", None)
        signer = getattr(client, "_request_signer", None)
        region = getattr(signer, "region_name", None)
        missing = [
            name
            for name, ok in (
                ("_endpoint.host", isinstance(url, str) and "://" in url),
                ("_endpoint.http_session.send", callable(getattr(http, "send", None))),
                ("_request_signer._credentials", hasattr(signer, "_credentials")),
                ("_request_signer.region_name", isinstance(region, str) and bool(region)),
            )
            if not ok
        ]
        if missing:
            raise errors.ConfigError(
                f"the botocore client has no {', '.join(missing)} to send it through",
                operation="BatchWriteItem",
                code="WireUnavailable",
            )
        version = getattr(signer, "signature_version", None)
        if version != "v4":
            raise errors.ConfigError(
                f"the botocore client signs with {version!r}, not SigV4 ('v4')",
                operation="BatchWriteItem",
                code="WireUnavailable",
            )
        service = getattr(signer, "signing_name", None) or SERVICE
        credentials: Credentials | None = getattr(signer, "_credentials", None)
        return cls(str(url), http, credentials, str(region), service=str(service))

    def _creds(self) -> ReadOnlyCredentials:
        if self.credentials is None:
            raise bex.NoCredentialsError()
        # Thread-safe; refreshable credentials (roles, SSO) refresh themselves here.
        return self.credentials.get_frozen_credentials()

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        """One BatchWriteItem; the answer shaped as boto3's client returns it."""
        body = encode_body(params)
        headers: Any = self.signer.headers(body, self._creds(), self.now())
        resp = self.http.send(AWSPreparedRequest("POST", self.url, headers, body, False))
        content: bytes = resp.content
        table = next(iter(params.get("RequestItems") or {}), None)

        status = int(resp.status_code)
        # Not DynamoDB's whole answer (a proxy, a cut connection): nothing is known written.
        parsed = answers.parse(
            status, resp.headers, content, operation="BatchWriteItem", table=table
        )
        data: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        meta: Any = {
            "HTTPStatusCode": status,
            "RequestId": resp.headers.get("x-amzn-requestid", ""),
        }
        if status != 200:
            code = str(data.get("__type") or f"HTTP{status}").rpartition("#")[2]
            message = str(
                data.get("message")
                or data.get("Message")
                or content[:200].decode("utf-8", "replace")
                or f"HTTP {status}"
            )
            error: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}
            for name in THROTTLING_MEMBERS:  # where botocore's parser would put them too
                if isinstance(data.get(name), list):
                    error[name] = data[name]
            raise bex.ClientError(error, "BatchWriteItem")
        if data.get("UnprocessedItems"):
            data["UnprocessedItems"] = decode_unprocessed(data["UnprocessedItems"])
        data["ResponseMetadata"] = meta
        return data
