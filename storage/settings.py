"""The storage layer's settings, and the one reader of the environment the project uses.

Each group of settings is a frozen dataclass validated when built (the pipeline's group,
``pipeline.config.PipelineConfig``, reads its variables with :func:`env_value` too).
``from_env()`` reads the process environment (or a mapping passed in for tests); a malformed
value raises :class:`~storage.errors.ConfigError` naming the variable. Credentials are *not*
settings: they come from boto3's default chain, and nothing here reads, stores or prints them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from storage.errors import ConfigError

T = TypeVar("T")

DEFAULT_SCHEMA_TABLE = "DataFoldSchemas"
DEFAULT_TABLE_PREFIX = "DataFoldStorage"
DEFAULT_USER_ID = "default"


def env_value(
    env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T, check: str = ""
) -> T:
    """``parse`` of variable ``name`` (``default`` when unset or blank); ConfigError naming the
    variable when it does not parse or fails ``check`` ("positive" or "non-negative")."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {parse.__name__} value") from None
    if check == "positive" and not value > 0:  # type: ignore[operator]
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    if check == "non-negative" and value < 0:  # type: ignore[operator]
        raise ConfigError(f"{name}={raw!r} must be 0 or more")
    return value


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_bool.__name__ = "boolean"
env_bool = _bool
"""Parses 1/true/yes/on and 0/false/no/off, for :func:`env_value`."""


def _optional_bool(raw: str) -> bool | None:
    return None if raw.lower() == "auto" else _bool(raw)


_optional_bool.__name__ = "boolean (or auto)"


def _sse(raw: str) -> str:
    """``owned`` and ``kms`` in any case; a key ARN as it is."""
    text = raw.strip()
    return text.lower() if text.lower() in ("owned", "kms") else text


TABLE_WORD = re.compile(r"[A-Za-z0-9_.]{1,200}")
"""A table prefix or the schema table's name: a table name's characters but ``-``, which
separates prefix and namespace (``{prefix}-{namespace}``), so every namespace table belongs to the
one prefix before its first ``-`` and no schema table looks like a namespace table."""

KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_+=.@-]+")
"""A KMS key (or alias) ARN, as ``DATAFOLD_SSE`` may name one."""


@dataclass(frozen=True)
class DynamoConfig:
    """Where DynamoDB is and how the client talks to it.

    ``max_attempts`` is the number of tries of *one* call by storage's retry policy (botocore's
    own retries are switched off so the layers never multiply); ``retry_max_seconds`` bounds the
    total time one call may spend retrying. ``fast_writes`` sends BatchWriteItem, the call that
    carries every bulk item, through :mod:`storage.wire` instead of botocore's generic path.
    ``consumed_capacity`` (None = auto): see :attr:`wants_consumed_capacity`.
    """

    region: str
    endpoint_url: str | None = None
    schema_table: str = DEFAULT_SCHEMA_TABLE
    user_id: str = DEFAULT_USER_ID
    table_prefix: str = DEFAULT_TABLE_PREFIX
    max_connections: int = 50
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 8
    retry_max_seconds: float = 30.0
    batch_rounds: int = 6
    fast_writes: bool = True
    consumed_capacity: bool | None = None
    sse: str = "owned"

    def __post_init__(self) -> None:
        if not self.region:
            raise ConfigError("a DynamoDB region is required")
        for name in ("max_connections", "max_attempts", "batch_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DynamoConfig.{name} must be at least 1")
        for name in ("connect_timeout", "read_timeout", "retry_max_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"DynamoConfig.{name} must be greater than 0")
        if self.sse not in ("owned", "kms") and not KMS_KEY_ARN.fullmatch(self.sse):
            raise ConfigError(
                "DATAFOLD_SSE must be owned (an AWS-owned key, free), kms (the AWS-managed KMS "
                "key) or a KMS key ARN"
            )
        if not self.user_id:
            raise ConfigError("DATAFOLD_DYNAMODB_USER_ID must not be empty")
        for variable, name in (
            ("DATAFOLD_TABLE_PREFIX", self.table_prefix),
            ("DATAFOLD_DYNAMODB_TABLE", self.schema_table),
        ):
            if not TABLE_WORD.fullmatch(name) or (variable.endswith("TABLE") and len(name) < 3):
                raise ConfigError(
                    f"{variable}={name!r}: use letters, digits, '_' and '.' (no '-': it separates "
                    "prefix and namespace in table names, so prefix 'X' would list the tables of "
                    "a prefix 'X-staging' as its own namespaces)"
                )

    def sse_specification(self) -> dict[str, str | bool] | None:
        """``SSESpecification`` of new tables: none for ``owned`` (DynamoDB encrypts every table
        with an AWS-owned key, at no charge), KMS with the AWS-managed key for ``kms``, or KMS
        with the customer key ``sse`` names (both billed per KMS request)."""
        if self.sse == "owned":
            return None
        spec: dict[str, str | bool] = {"Enabled": True, "SSEType": "KMS"}
        if self.sse != "kms":
            spec["KMSMasterKeyId"] = self.sse
        return spec

    @property
    def wants_consumed_capacity(self) -> bool:
        """Whether batch writes ask DynamoDB for the capacity they consumed. Unset: yes against
        AWS (it costs nothing there), no against a custom endpoint such as DynamoDB Local, which
        spends ~30 % more CPU per item computing it (bench/: sizes are estimated instead)."""
        if self.consumed_capacity is None:
            return self.endpoint_url is None
        return self.consumed_capacity

    @property
    def where(self) -> str:
        """Human description of the endpoint, for error messages (no credentials in it)."""
        return f"endpoint {self.endpoint_url}" if self.endpoint_url else f"region {self.region}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DynamoConfig:
        e = os.environ if env is None else env
        region = (
            e.get("DATAFOLD_DYNAMODB_REGION") or e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION")
        )
        if not region:
            raise ConfigError(
                "no DynamoDB region: set DATAFOLD_DYNAMODB_REGION "
                "(or AWS_REGION / AWS_DEFAULT_REGION)"
            )
        return cls(
            region=region.strip(),
            endpoint_url=(e.get("DATAFOLD_DYNAMODB_ENDPOINT") or "").strip() or None,
            schema_table=env_value(e, "DATAFOLD_DYNAMODB_TABLE", str, DEFAULT_SCHEMA_TABLE),
            user_id=env_value(e, "DATAFOLD_DYNAMODB_USER_ID", str, DEFAULT_USER_ID),
            table_prefix=env_value(e, "DATAFOLD_TABLE_PREFIX", str, DEFAULT_TABLE_PREFIX),
            max_connections=env_value(e, "DATAFOLD_DYNAMODB_MAX_CONNECTIONS", int, 50, "positive"),
            connect_timeout=env_value(
                e, "DATAFOLD_DYNAMODB_CONNECT_TIMEOUT", float, 3.0, "positive"
            ),
            read_timeout=env_value(e, "DATAFOLD_DYNAMODB_READ_TIMEOUT", float, 10.0, "positive"),
            max_attempts=env_value(e, "DATAFOLD_DYNAMODB_MAX_ATTEMPTS", int, 8, "positive"),
            retry_max_seconds=env_value(
                e, "DATAFOLD_DYNAMODB_RETRY_SECONDS", float, 30.0, "positive"
            ),
            batch_rounds=env_value(e, "DATAFOLD_BATCH_ROUNDS", int, 6, "positive"),
            fast_writes=env_value(e, "DATAFOLD_DYNAMODB_FAST_WRITES", _bool, True),
            consumed_capacity=env_value(
                e, "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY", _optional_bool, None
            ),
            sse=_sse(env_value(e, "DATAFOLD_SSE", str, "owned")),
        )
