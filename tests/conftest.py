"""Shared fixtures for every test directory: DynamoDB Local, with names unique to this session.

DynamoDB Local is shared (other sessions use it at the same time), so every table this session
creates starts with ``SESSION_PREFIX`` and only those are deleted at the end. Redis and worker
fixtures belong in the conftest files of the directories that need them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import botocore.exceptions as bex
import pytest

# Defaults for `make services` (the Makefile exports the same); set variables win.
os.environ.setdefault("DATAFOLD_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
os.environ.setdefault("DATAFOLD_DYNAMODB_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")  # dummies: DynamoDB Local takes any
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")

from storage import DynamoConfig, create_schema_table, make_client

SESSION_PREFIX = f"t{uuid.uuid4().hex[:8]}"
"""Every table this session creates starts with this (namespaces, schema tables, races)."""


def _session_tables(client: Any) -> list[str]:
    names: list[str] = []
    params: dict[str, str] = {}
    while True:
        page = client.list_tables(**params)
        names += [n for n in page.get("TableNames", []) if n.startswith(SESSION_PREFIX)]
        if not page.get("LastEvaluatedTableName"):
            return names
        params = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}


@pytest.fixture(scope="session")
def dynamo_config() -> Iterator[DynamoConfig]:
    """Config for DynamoDB Local: namespace tables ``{SESSION_PREFIX}-{ns}``, schema table
    ``{SESSION_PREFIX}_schemas``. Fails (never skips) with a hint when DynamoDB Local is down;
    deletes this session's tables at the end."""
    config = replace(
        DynamoConfig.from_env(),
        table_prefix=SESSION_PREFIX,
        schema_table=f"{SESSION_PREFIX}_schemas",
    )
    client = make_client(config)
    try:
        client.list_tables(Limit=1)
    except (bex.BotoCoreError, bex.ClientError) as exc:
        pytest.fail(
            f"DynamoDB is not reachable at {config.where} ({exc}); "
            "start it with `make services` or `scripts/dynamodb-local start`"
        )
    yield config
    for name in _session_tables(client):
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=name)


@pytest.fixture(scope="session")
def schema_config(dynamo_config: DynamoConfig) -> DynamoConfig:
    """``dynamo_config`` with its schema table created (once per session, with its GSI)."""
    create_schema_table(dynamo_config)
    return dynamo_config


@pytest.fixture
def unique() -> str:
    """A short name unique to this test (namespace names, user ids)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session", autouse=True)
def _never_a_scan() -> Iterator[None]:
    """Runtime half of "no Scan anywhere": at the end of the session, no DynamoDB call the
    storage layer timed in this process was a Scan."""
    yield
    from storage.metrics import REQUEST_SECONDS

    scans = [
        s
        for m in REQUEST_SECONDS.collect()
        for s in m.samples
        if s.labels.get("operation") == "Scan"
    ]
    assert not scans, f"the storage layer issued Scan calls: {scans}"
