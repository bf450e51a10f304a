"""Retry policy for exchange calls: exponential backoff with jitter inside a bounded budget.

Retried (transient): ccxt's ``OperationFailed`` family, i.e. ``NetworkError`` and its subclasses
(``RequestTimeout``, ``RateLimitExceeded``, ``DDoSProtection``, ``ExchangeNotAvailable``,
``InvalidNonce``), plus the exchanges' "internal error, please try again" answers that ccxt maps
to ``OperationFailed`` itself (Binance -1000/-1001). A ``Retry-After`` the exchange sent
stretches the wait.

Never retried: every ``ExchangeError`` — ``InvalidOrder``, ``InsufficientFunds``,
``AuthenticationError``, ``PermissionDenied``, ``BadRequest``, ... — the request was understood
and refused, so sending it again cannot help.

Re-sending an *order* after an ambiguous failure is the caller's business: ``bot.trading.executor``
looks the order up by its client id first. ``retry_call`` is for calls that are safe to repeat
(reads, cancels, leverage and margin-mode changes).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ccxt.base.errors import AuthenticationError, OperationFailed

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
RetryAfter = Callable[[BaseException], float | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    The n-th retry (n = 0, 1, ...) waits ``min(max_delay_s, base_s * factor**n)`` scaled by a
    random factor in ``[1 - jitter, 1]`` ("equal jitter" for ``jitter = 0.5``), or the server's
    ``Retry-After`` if that is longer. At most ``attempts`` tries in all, and no wait that would
    end later than ``budget_s`` after the first try.
    """

    attempts: int = 5
    base_s: float = 0.25
    factor: float = 2.0
    max_delay_s: float = 8.0
    jitter: float = 0.5
    budget_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.base_s < 0 or self.factor < 1 or self.max_delay_s < 0 or self.budget_s < 0:
            raise ValueError("delays and budget must be non-negative, factor at least 1")

    def backoff(self, retry: int) -> float:
        """The un-jittered wait before retry number ``retry`` (0-based)."""
        return float(min(self.max_delay_s, self.base_s * self.factor**retry))

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The jittered wait before retry number ``retry``, at least ``retry_after``."""
        cap = self.backoff(retry)
        wait = cap * (1.0 - self.jitter * rng.random())
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return wait


NO_RETRY = RetryPolicy(attempts=1, budget_s=0.0)


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures worth another try (see the module docstring)."""
    return isinstance(exc, OperationFailed)


def is_auth_error(exc: BaseException) -> bool:
    """True for refused credentials or permissions: trading must stop."""
    return isinstance(exc, AuthenticationError)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for log fields."""
    return f"{type(exc).__name__}: {exc}"


class Backoff:
    """The retry state of one operation: ``await backoff.wait(exc)`` before each retry."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        retry_after: RetryAfter | None = None,
    ) -> None:
        self.policy = policy
        self.retries = 0
        self.waited = 0.0
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._retry_after = retry_after
        self._start = clock()

    def next_delay(self, exc: BaseException) -> float | None:
        """The wait before the next try, or None when the attempts or the budget are spent."""
        policy = self.policy
        if self.retries + 1 >= policy.attempts:
            return None
        hint = self._retry_after(exc) if self._retry_after is not None else None
        wait = policy.delay(self.retries, self._rng, hint)
        if self._clock() - self._start + wait > policy.budget_s:
            return None
        return wait

    async def wait(self, exc: BaseException) -> bool:
        """Sleep before the next try; False (no sleep) when the budget is spent."""
        wait = self.next_delay(exc)
        if wait is None:
            return False
        self.retries += 1
        self.waited += wait
        await self._sleep(wait)
        return True


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    op: str,
    policy: RetryPolicy,
    log: Any = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    retry_after: RetryAfter | None = None,
) -> T:
    """Await ``fn()``, retrying transient failures under ``policy``; re-raise anything else."""
    backoff = Backoff(policy, sleep=sleep, clock=clock, rng=rng, retry_after=retry_after)
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            wait = backoff.next_delay(exc)
            if wait is None:
                if log is not None:
                    log.error(
                        "exchange_retry_exhausted",
                        op=op,
                        attempts=backoff.retries + 1,
                        error=describe(exc),
                    )
                raise
            if log is not None:
                log.warning(
                    "exchange_retry",
                    op=op,
                    attempt=backoff.retries + 1,
                    wait_s=round(wait, 3),
                    error=describe(exc),
                )
            backoff.retries += 1
            backoff.waited += wait
            await sleep(wait)
