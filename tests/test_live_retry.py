"""Retry policy: which errors are retried, exponential backoff with jitter, budget, Retry-After."""

from __future__ import annotations

import random
from typing import Any

import pytest
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    DDoSProtection,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidOrder,
    NetworkError,
    OperationFailed,
    OrderNotFound,
    PermissionDenied,
    RateLimitExceeded,
    RequestTimeout,
)
from hypothesis import given
from hypothesis import strategies as st

from bot.exchange.retry import Backoff, RetryPolicy, is_auth_error, is_retryable, retry_call


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Raises the given exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


TRANSIENT = [
    NetworkError("net"),
    RequestTimeout("timeout"),
    RateLimitExceeded("429"),
    ExchangeNotAvailable("503"),
    DDoSProtection("418"),
    OperationFailed("-1001 internal error"),
]
FINAL = [
    InvalidOrder("bad"),
    InsufficientFunds("poor"),
    AuthenticationError("key"),
    PermissionDenied("perm"),
    BadRequest("bad request"),
    OrderNotFound("gone"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_are_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", FINAL, ids=lambda e: type(e).__name__)
def test_refusals_are_never_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_only_credential_errors_stop_trading() -> None:
    assert is_auth_error(AuthenticationError("x"))
    assert is_auth_error(PermissionDenied("x"))
    assert not is_auth_error(InvalidOrder("x"))
    assert not is_auth_error(RequestTimeout("x"))


def test_backoff_doubles_up_to_the_cap() -> None:
    # base 0.25 s doubling: 0.25, 0.5, 1, 2, 4, then capped at 8 (0.25 * 2**5 = 8, 2**6 -> 16)
    policy = RetryPolicy(base_s=0.25, factor=2.0, max_delay_s=8.0)
    assert [policy.backoff(n) for n in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@given(
    retry=st.integers(min_value=0, max_value=20),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_jittered_delay_stays_within_its_band(retry: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(base_s=0.1, factor=2.0, max_delay_s=5.0, jitter=jitter)
    cap = min(5.0, 0.1 * 2.0**retry)
    wait = policy.delay(retry, random.Random(seed))
    assert cap * (1.0 - jitter) - 1e-12 <= wait <= cap + 1e-12


def test_jitter_spreads_the_waits() -> None:
    policy = RetryPolicy(base_s=1.0, jitter=0.5)
    rng = random.Random(7)
    waits = {round(policy.delay(0, rng), 6) for _ in range(20)}
    assert len(waits) > 10  # not a fixed schedule: clients do not retry in lock-step


@given(hint=st.floats(min_value=0.0, max_value=100.0))
def test_retry_after_is_a_floor(hint: float) -> None:
    policy = RetryPolicy(base_s=0.5, max_delay_s=2.0)
    assert policy.delay(0, random.Random(1), hint) >= hint


async def test_transient_failures_are_retried_until_success() -> None:
    t = FakeTime()
    fn = Flaky(RequestTimeout("t"), ExchangeNotAvailable("503"))
    policy = RetryPolicy(attempts=5, base_s=0.1, jitter=0.0)
    result = await retry_call(fn, op="x", policy=policy, sleep=t.sleep, clock=t.clock)
    assert result == "ok"
    assert fn.calls == 3
    assert t.sleeps == [0.1, 0.2]  # no jitter: base, then doubled


@pytest.mark.parametrize("exc", FINAL, ids=lambda e: type(e).__name__)
async def test_refusals_raise_at_once(exc: BaseException) -> None:
    t = FakeTime()
    fn = Flaky(exc)
    with pytest.raises(type(exc)):
        await retry_call(fn, op="x", policy=RetryPolicy(), sleep=t.sleep, clock=t.clock)
    assert fn.calls == 1
    assert t.sleeps == []


async def test_attempts_are_bounded() -> None:
    t = FakeTime()
    fn = Flaky(*[NetworkError("down")] * 10)
    with pytest.raises(NetworkError):
        await retry_call(
            fn, op="x", policy=RetryPolicy(attempts=3, jitter=0.0), sleep=t.sleep, clock=t.clock
        )
    assert fn.calls == 3


async def test_budget_stops_retrying_before_the_attempts_run_out() -> None:
    # waits 1, 2, 4 (no jitter): after 1 + 2 = 3 s the next wait of 4 s would end at 7 s > 5 s
    t = FakeTime()
    fn = Flaky(*[NetworkError("down")] * 10)
    policy = RetryPolicy(attempts=10, base_s=1.0, jitter=0.0, budget_s=5.0)
    with pytest.raises(NetworkError):
        await retry_call(fn, op="x", policy=policy, sleep=t.sleep, clock=t.clock)
    assert t.sleeps == [1.0, 2.0]
    assert fn.calls == 3


async def test_retry_after_stretches_the_wait() -> None:
    t = FakeTime()
    fn = Flaky(RateLimitExceeded("429"))

    def hint(exc: BaseException) -> float | None:
        return 3.0 if isinstance(exc, RateLimitExceeded) else None

    policy = RetryPolicy(base_s=0.1, jitter=0.0)
    await retry_call(fn, op="x", policy=policy, sleep=t.sleep, clock=t.clock, retry_after=hint)
    assert t.sleeps == [3.0]


async def test_retry_after_beyond_the_budget_gives_up() -> None:
    t = FakeTime()
    fn = Flaky(RateLimitExceeded("429"))
    policy = RetryPolicy(base_s=0.1, budget_s=2.0)
    with pytest.raises(RateLimitExceeded):
        await retry_call(
            fn, op="x", policy=policy, sleep=t.sleep, clock=t.clock, retry_after=lambda e: 60.0
        )
    assert t.sleeps == []


async def test_backoff_object_counts_and_stops() -> None:
    t = FakeTime()
    backoff = Backoff(RetryPolicy(attempts=3, base_s=0.5, jitter=0.0), sleep=t.sleep, clock=t.clock)
    exc = NetworkError("x")
    assert await backoff.wait(exc)
    assert await backoff.wait(exc)
    assert not await backoff.wait(exc)  # third retry would be the fourth try
    assert t.sleeps == [0.5, 1.0]
    assert backoff.retries == 2


def test_policy_rejects_nonsense() -> None:
    bad: list[dict[str, Any]] = [{"attempts": 0}, {"jitter": 1.5}, {"factor": 0.5}]
    for kwargs in bad:
        with pytest.raises(ValueError):
            RetryPolicy(**kwargs)
