"""Layer 1: classify by error code / exception type, capped full-jitter backoff, bounded retries."""

from __future__ import annotations

import random

import botocore.exceptions as bex
import pytest

from storage import errors
from storage.retry import FullJitter, RetryPolicy, classify
from tests.doubles import FakeClock, client_error, metric

THROTTLING = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
]
TRANSIENT = ["InternalServerError", "ServiceUnavailable"]
PERMANENT = [
    ("ValidationException", errors.ValidationError),
    ("ConditionalCheckFailedException", errors.ConditionFailedError),
    ("ResourceNotFoundException", errors.TableNotFoundError),
]


def ctx() -> dict[str, str]:
    return {"operation": "PutItem", "table": "T", "key": "k"}


@pytest.mark.parametrize("code", THROTTLING)
def test_throttling_codes_are_throttled_errors(code: str) -> None:
    err = classify(client_error(code), **ctx())
    assert isinstance(err, errors.ThrottledError)
    assert err.code == code


@pytest.mark.parametrize("code", TRANSIENT)
def test_transient_codes_are_transient_errors(code: str) -> None:
    err = classify(client_error(code, status=500), **ctx())
    assert type(err) is errors.TransientError
    assert err.code == code


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_any_5xx_is_transient_whatever_its_code(status: int) -> None:
    err = classify(client_error("SomethingNew", status=status), **ctx())
    assert type(err) is errors.TransientError


@pytest.mark.parametrize(("code", "cls"), PERMANENT)
def test_permanent_codes(code: str, cls: type[errors.StorageError]) -> None:
    err = classify(client_error(code), **ctx())
    assert type(err) is cls
    assert isinstance(err, errors.PermanentError)
    assert err.code == code


def test_an_unknown_4xx_code_is_permanent() -> None:
    assert type(classify(client_error("BrandNewError"), **ctx())) is errors.PermanentError


def test_classification_reads_the_code_never_the_message() -> None:
    lying = client_error("ValidationException", message="ThrottlingException: rate exceeded")
    assert type(classify(lying, **ctx())) is errors.ValidationError
    vague = client_error("ThrottlingException", message="One or more parameter values invalid")
    assert isinstance(classify(vague, **ctx()), errors.ThrottledError)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (bex.ReadTimeoutError(endpoint_url="http://x"), "Timeout"),
        (bex.ConnectTimeoutError(endpoint_url="http://x"), "Timeout"),
        (bex.EndpointConnectionError(endpoint_url="http://x"), "ConnectionError"),
        (bex.ConnectionClosedError(endpoint_url="http://x"), "ConnectionError"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(exc: Exception, code: str) -> None:
    err = classify(exc, **ctx())
    assert type(err) is errors.TransientError
    assert err.code == code


def test_a_bad_parameter_is_a_validation_error() -> None:
    exc = bex.ParamValidationError(report="Invalid type for parameter Key")
    assert type(classify(exc, **ctx())) is errors.ValidationError


def test_classified_errors_carry_their_context() -> None:
    err = classify(
        client_error("ThrottlingException", message="Rate exceeded"),
        operation="GetItem",
        table="Tbl",
        key=b"\xff\x00",
    )
    assert (err.operation, err.table, err.code) == ("GetItem", "Tbl", "ThrottlingException")
    assert str(err) == "GetItem on table 'Tbl', key 0xff00: [ThrottlingException] Rate exceeded"


def test_a_failed_condition_carries_the_item_it_was_checked_against() -> None:
    item = {"PK": {"S": "u"}, "Seq": {"N": "7"}}
    exc = client_error("ConditionalCheckFailedException")
    exc.response["Item"] = item  # type: ignore[typeddict-unknown-key]
    err = classify(exc, **ctx())
    assert isinstance(err, errors.ConditionFailedError) and err.item == item
    bare = classify(client_error("ConditionalCheckFailedException"), **ctx())
    assert isinstance(bare, errors.ConditionFailedError) and bare.item is None


# -- backoff ------------------------------------------------------------------------------------
def test_full_jitter_stays_within_the_capped_exponential_bound() -> None:
    backoff = FullJitter(base=0.1, cap=2.0, rng=random.Random(1234))
    for attempt in range(1, 12):
        bound = min(2.0, 0.1 * 2 ** (attempt - 1))
        delays = [backoff.delay(attempt) for _ in range(300)]
        assert all(0.0 <= d <= bound for d in delays)
        # full jitter: spread over the whole [0, bound] range, not only near the top
        assert min(delays) < 0.1 * bound
        assert max(delays) > 0.9 * bound


def test_full_jitter_is_deterministic_with_a_seeded_rng() -> None:
    a = FullJitter(rng=random.Random(42))
    b = FullJitter(rng=random.Random(42))
    assert [a.delay(n) for n in range(1, 10)] == [b.delay(n) for n in range(1, 10)]


# -- the policy ---------------------------------------------------------------------------------
class Script:
    """A call that raises the given errors in turn, then returns "ok"."""

    def __init__(
        self, *outcomes: Exception, clock: FakeClock | None = None, takes: float = 0.0
    ) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.clock = clock
        self.takes = takes

    def __call__(self) -> str:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.outcomes:
            raise self.outcomes.pop(0)
        return "ok"


def retries(table: str, code: str, operation: str = "PutItem") -> float:
    return metric("datafold_dynamodb_retries_total", operation=operation, table=table, code=code)


def policy(clock: FakeClock, **kwargs: float) -> RetryPolicy:
    return RetryPolicy(
        backoff=FullJitter(base=0.1, cap=1.0, rng=random.Random(5)),
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )  # type: ignore[arg-type]


def throttled(table: str) -> errors.ThrottledError:
    return errors.ThrottledError(
        "slow", operation="PutItem", table=table, code="ThrottlingException"
    )


def test_a_retryable_error_is_retried_then_succeeds() -> None:
    clock = FakeClock()
    before = retries("t-retry-ok", "ThrottlingException")
    fn = Script(throttled("t-retry-ok"), errors.TransientError("5xx", code="InternalServerError"))
    assert policy(clock).run(fn, operation="PutItem", table="t-retry-ok") == "ok"
    assert fn.calls == 3
    assert len(clock.sleeps) == 2
    assert 0.0 <= clock.sleeps[0] <= 0.1 and 0.0 <= clock.sleeps[1] <= 0.2
    assert retries("t-retry-ok", "ThrottlingException") == before + 1
    assert retries("t-retry-ok", "InternalServerError") == 1


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    fn = Script(*[throttled("t-attempts") for _ in range(10)])
    with pytest.raises(errors.ThrottledError):
        policy(clock, max_attempts=4).run(fn, operation="PutItem", table="t-attempts")
    assert fn.calls == 4
    assert len(clock.sleeps) == 3
    assert retries("t-attempts", "ThrottlingException") == 3


def test_stops_on_total_time_before_overrunning_the_budget() -> None:
    clock = FakeClock()
    start = clock()
    fn = Script(*[throttled("t-time") for _ in range(1000)], clock=clock, takes=0.5)
    p = RetryPolicy(
        max_attempts=1000,
        max_seconds=10.0,
        backoff=FullJitter(base=1.0, cap=4.0, rng=random.Random(3)),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(errors.ThrottledError):
        p.run(fn, operation="PutItem", table="t-time")
    # every retry began within the budget, and the sleeps never pushed past it
    assert 3 <= fn.calls < 1000
    assert sum(clock.sleeps) + 0.5 * (fn.calls - 1) <= 10.0
    assert clock() - start <= 10.0 + 0.5
    assert retries("t-time", "ThrottlingException") == fn.calls - 1


@pytest.mark.parametrize(
    "exc",
    [
        errors.ValidationError("bad", code="ValidationException"),
        errors.ConditionFailedError("no", code="ConditionalCheckFailedException"),
        errors.TableNotFoundError("gone", code="ResourceNotFoundException"),
        errors.AccessDeniedError("no", code="AccessDeniedException"),
        ValueError("a bug, not an AWS error"),
    ],
)
def test_never_retries_a_permanent_error(exc: Exception) -> None:
    clock = FakeClock()
    fn = Script(exc)
    with pytest.raises(type(exc)):
        policy(clock).run(fn, operation="PutItem", table="t-permanent")
    assert fn.calls == 1
    assert clock.sleeps == []
    assert retries("t-permanent", getattr(exc, "code", None) or "Unknown") == 0


def _botocore_retry_data() -> tuple[set[str], set[str], set[int]]:
    """(throttle codes, every retried code, retried HTTP statuses) of the installed botocore
    for DynamoDB: standard mode's checkers, the legacy policy file, the service model."""
    import json
    from pathlib import Path

    import botocore
    import botocore.session
    from botocore.retries import standard

    throttles = set(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
    codes = throttles | set(standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES)
    statuses = set(standard.TransientRetryableChecker._TRANSIENT_STATUS_CODES) | {429}
    model = botocore.session.get_session().get_service_model("dynamodb")
    codes |= {n for n in model.shape_names if "retryable" in model.shape_for(n).metadata}
    data = json.loads((Path(botocore.__file__).parent / "data" / "_retry.json").read_text())
    policies = {
        **data["definitions"],
        **data["retry"]["__default__"].get("policies", {}),
        **data["retry"].get("dynamodb", {}).get("policies", {}),
    }
    for policy in policies.values():
        answer = policy.get("applies_when", {}).get("response", {})
        if "service_error_code" in answer:
            codes.add(answer["service_error_code"])
        elif "http_status_code" in answer:
            statuses.add(answer["http_status_code"])
    return throttles, codes, statuses


def test_every_code_and_status_botocore_retries_is_retryable_here() -> None:
    throttles, codes, statuses = _botocore_retry_data()
    assert {"ReplicatedWriteConflictException", "ProvisionedThroughputExceededException"} <= codes
    for code in sorted(codes | {"TransactionConflictException"}):
        err = classify(client_error(code), **ctx())
        assert isinstance(err, errors.RetryableError), code
        assert err.code == code
    for code in sorted(throttles - {"LimitExceededException"}):  # table operations: transient
        assert isinstance(classify(client_error(code), **ctx()), errors.ThrottledError), code
    for status in sorted(statuses):
        err = classify(client_error("SomethingNew", status=status), **ctx())
        assert isinstance(err, errors.RetryableError), status
