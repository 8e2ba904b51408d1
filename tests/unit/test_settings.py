"""DynamoConfig: read from the environment in one place, validated when built, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from storage import DynamoConfig
from storage.errors import ConfigError

REGION = {"DATAFOLD_DYNAMODB_REGION": "eu-west-3"}


def test_defaults_from_a_minimal_environment() -> None:
    config = DynamoConfig.from_env(REGION)
    assert config == DynamoConfig(region="eu-west-3")
    # The documented defaults (docs/design.md, "Data model and defaults": upstream names, knobs).
    assert config.endpoint_url is None
    assert config.schema_table == "DataFoldSchemas"
    assert config.table_prefix == "DataFoldStorage"
    assert config.user_id == "default"
    assert (config.max_connections, config.connect_timeout, config.read_timeout) == (50, 3.0, 10.0)
    assert (config.max_attempts, config.retry_max_seconds, config.batch_rounds) == (8, 30.0, 6)
    assert config.where == "region eu-west-3"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFOLD_DYNAMODB_REGION", "ap-south-1")
    monkeypatch.setenv("DATAFOLD_DYNAMODB_TABLE", "FromProcess")
    config = DynamoConfig.from_env()
    assert (config.region, config.schema_table) == ("ap-south-1", "FromProcess")


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        (
            "DATAFOLD_DYNAMODB_ENDPOINT",
            "http://127.0.0.1:8000",
            "endpoint_url",
            "http://127.0.0.1:8000",
        ),
        ("DATAFOLD_DYNAMODB_TABLE", "Schemas2", "schema_table", "Schemas2"),
        ("DATAFOLD_DYNAMODB_USER_ID", "alice", "user_id", "alice"),
        ("DATAFOLD_TABLE_PREFIX", "Pfx", "table_prefix", "Pfx"),
        ("DATAFOLD_DYNAMODB_MAX_CONNECTIONS", "128", "max_connections", 128),
        ("DATAFOLD_DYNAMODB_CONNECT_TIMEOUT", "1.5", "connect_timeout", 1.5),
        ("DATAFOLD_DYNAMODB_READ_TIMEOUT", " 42 ", "read_timeout", 42.0),
        ("DATAFOLD_DYNAMODB_MAX_ATTEMPTS", "3", "max_attempts", 3),
        ("DATAFOLD_DYNAMODB_RETRY_SECONDS", "7.5", "retry_max_seconds", 7.5),
        ("DATAFOLD_BATCH_ROUNDS", "2", "batch_rounds", 2),
        ("DATAFOLD_DYNAMODB_FAST_WRITES", "off", "fast_writes", False),
        ("DATAFOLD_DYNAMODB_CONSUMED_CAPACITY", "yes", "consumed_capacity", True),
        ("DATAFOLD_DYNAMODB_CONSUMED_CAPACITY", "0", "consumed_capacity", False),
        ("DATAFOLD_DYNAMODB_CONSUMED_CAPACITY", "auto", "consumed_capacity", None),
    ],
)
def test_each_knob(variable: str, raw: str, field: str, expected: object) -> None:
    config = DynamoConfig.from_env({**REGION, variable: raw})
    assert getattr(config, field) == expected
    others = {f.name for f in dataclasses.fields(DynamoConfig)} - {field, "region"}
    default = DynamoConfig(region="eu-west-3")
    assert all(getattr(config, name) == getattr(default, name) for name in others)


def test_consumed_capacity_is_asked_of_aws_not_of_a_local_endpoint() -> None:
    local = {**REGION, "DATAFOLD_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000"}
    assert DynamoConfig.from_env(REGION).wants_consumed_capacity
    assert not DynamoConfig.from_env(local).wants_consumed_capacity
    assert DynamoConfig.from_env(
        {**local, "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY": "1"}
    ).wants_consumed_capacity
    assert not DynamoConfig.from_env(
        {**REGION, "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY": "off"}
    ).wants_consumed_capacity
    with pytest.raises(ConfigError, match="DATAFOLD_DYNAMODB_CONSUMED_CAPACITY='maybe'"):
        DynamoConfig.from_env({**REGION, "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY": "maybe"})


NUMERIC = [
    "DATAFOLD_DYNAMODB_MAX_CONNECTIONS",
    "DATAFOLD_DYNAMODB_CONNECT_TIMEOUT",
    "DATAFOLD_DYNAMODB_READ_TIMEOUT",
    "DATAFOLD_DYNAMODB_MAX_ATTEMPTS",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS",
    "DATAFOLD_BATCH_ROUNDS",
]


@pytest.mark.parametrize("variable", NUMERIC)
@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1e"])
def test_a_malformed_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        DynamoConfig.from_env({**REGION, variable: raw})
    assert variable in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    "variable",
    [
        "DATAFOLD_DYNAMODB_MAX_CONNECTIONS",
        "DATAFOLD_DYNAMODB_MAX_ATTEMPTS",
        "DATAFOLD_BATCH_ROUNDS",
    ],
)
def test_counts_must_be_integers(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        DynamoConfig.from_env({**REGION, variable: "2.5"})


def test_missing_region_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        DynamoConfig.from_env({"DATAFOLD_DYNAMODB_TABLE": "x"})
    assert "DATAFOLD_DYNAMODB_REGION" in str(info.value)
    assert "region" in str(info.value)


def test_region_falls_back_to_the_aws_variables() -> None:
    assert DynamoConfig.from_env({"AWS_REGION": "us-west-2"}).region == "us-west-2"
    assert DynamoConfig.from_env({"AWS_DEFAULT_REGION": "sa-east-1"}).region == "sa-east-1"
    both = {"DATAFOLD_DYNAMODB_REGION": "eu-north-1", "AWS_REGION": "us-west-2"}
    assert DynamoConfig.from_env(both).region == "eu-north-1"


def test_endpoint_describes_where_errors_happen() -> None:
    config = DynamoConfig.from_env({**REGION, "DATAFOLD_DYNAMODB_ENDPOINT": "http://h:1"})
    assert config.where == "endpoint http://h:1"


def test_config_is_frozen() -> None:
    config = DynamoConfig(region="us-east-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_attempts = 99  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": ""},
        {"region": "r", "max_connections": 0},
        {"region": "r", "max_attempts": 0},
        {"region": "r", "batch_rounds": 0},
        {"region": "r", "connect_timeout": 0},
        {"region": "r", "read_timeout": -1.0},
        {"region": "r", "retry_max_seconds": 0},
        {"region": "r", "user_id": ""},
    ],
)
def test_direct_construction_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DynamoConfig(**kwargs)  # type: ignore[arg-type]


def test_the_config_carries_no_credentials() -> None:
    names = {f.name for f in dataclasses.fields(DynamoConfig)}
    assert not {n for n in names if "secret" in n or "key" in n or "password" in n}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("owned", True),
        ("kms", True),
        ("KMS", True),
        ("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("arn:aws:kms:us-east-1:123456789012:alias/datafold", True),
        ("on", False),
        ("arn:aws:s3:::bucket", False),
    ],
)
def test_datafold_sse_is_owned_kms_or_a_key_arn(value: str, ok: bool) -> None:
    env = {"DATAFOLD_DYNAMODB_REGION": "eu-west-1", "DATAFOLD_SSE": value}
    if ok:
        want = value.lower() if value.lower() in ("owned", "kms") else value
        assert DynamoConfig.from_env(env).sse == want
    else:
        with pytest.raises(ConfigError, match="DATAFOLD_SSE"):
            DynamoConfig.from_env(env)
    assert DynamoConfig.from_env({"DATAFOLD_DYNAMODB_REGION": "eu-west-1"}).sse == "owned"


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("DATAFOLD_TABLE_PREFIX", "DataFold-staging"),
        ("DATAFOLD_TABLE_PREFIX", "bad prefix"),
        ("DATAFOLD_DYNAMODB_TABLE", "DataFoldStorage-schemas"),
        ("DATAFOLD_DYNAMODB_TABLE", "ab"),
    ],
)
def test_table_names_that_could_collide_are_refused(variable: str, raw: str) -> None:
    # With '-' in a prefix, prefix "DataFold" would list "DataFold-staging-notes" (namespace
    # "notes" of prefix "DataFold-staging") as its own namespace "staging-notes"; with '-' in
    # the schema table, some prefix would list the schema table as a namespace.
    env = {"DATAFOLD_DYNAMODB_REGION": "us-east-1", variable: raw}
    with pytest.raises(ConfigError) as info:
        DynamoConfig.from_env(env)
    assert variable in str(info.value) and "'-'" in str(info.value)


def test_prefixes_without_a_dash_map_every_table_to_one_deployment() -> None:
    ok = DynamoConfig.from_env(
        {
            "DATAFOLD_DYNAMODB_REGION": "us-east-1",
            "DATAFOLD_TABLE_PREFIX": "DataFold_staging.v2",
            "DATAFOLD_DYNAMODB_TABLE": "DataFold_staging.schemas",
        }
    )
    assert ok.table_prefix == "DataFold_staging.v2"
