"""The one retry policy of every Nexum client (submit_task, the CLI, the worker), built on tenacity.

What is retried: the server cannot be reached (`ServerUnavailable`: a refused connection, a
restart, a proxy's 502/503/504) or it answered any 5xx itself (a busy database, a bug). The same
request may succeed a little later, so it is sent again; only requests that are safe to repeat go
through here (a keyed start, a read, a poll, a registration, a lease-guarded report). A 4xx is an
answer, never retried.

How long to wait: capped exponential backoff with jitter. The pause before retry n is half fixed,
`FIRST_SECONDS/2 * 2**(n-1)`, half random up to the same amount, and never more than `MAX_SECONDS`,
so many clients that lost the same server do not come back in lockstep.

When to stop: at a `time.monotonic()` deadline (the caller's timeout), when `stopping()` becomes
true (a worker shutting down), or never (a worker's report, which the server's lease guards).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception
from tenacity.wait import wait_exponential, wait_random_exponential

from .errors import RequestRejected, ServerUnavailable

T = TypeVar("T")

FIRST_SECONDS = 0.1
"""Pause before the first retry: 0.05 s fixed plus up to 0.05 s at random."""
MAX_SECONDS = 2.0
"""Cap of the pause between two attempts."""

WAIT = (wait_exponential(multiplier=FIRST_SECONDS / 2, max=MAX_SECONDS / 2)
        + wait_random_exponential(multiplier=FIRST_SECONDS / 2, max=MAX_SECONDS / 2))


def retryable(error: BaseException) -> bool:
    """The server is away or failing: the same request may well succeed a little later."""
    return isinstance(error, ServerUnavailable) or (isinstance(error, RequestRejected) and error.status >= 500)


def _stop(deadline: float | None, stopping: Callable[[], bool] | None) -> Callable[[RetryCallState], bool]:
    def stop(state: RetryCallState) -> bool:
        if stopping is not None and stopping():
            return True
        return deadline is not None and time.monotonic() + state.upcoming_sleep >= deadline
    return stop


def _logger(log: logging.Logger | None) -> Callable[[RetryCallState], None] | None:
    if log is None:
        return None

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s; retrying in %.1fs", error, state.upcoming_sleep)
    return before_sleep


async def retry_async(call: Callable[[], Awaitable[T]], *, deadline: float | None = None,
                      stopping: asyncio.Event | None = None, log: logging.Logger | None = None) -> T:
    """`await call()`, again under the policy while the error is `retryable`; the last error is raised.

    `stopping` also cuts a pause short, so a worker asked to stop does not sit out its backoff.
    """
    try:
        # Outside tenacity while all is well: building a retry loop costs ~25 µs, a third of what a
        # cached call adds to a bare round trip. After a failure it begins with one more attempt.
        return await call()
    except Exception as e:
        if not retryable(e):
            raise

    async def sleep(seconds: float) -> None:
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except TimeoutError:
            pass

    # A new policy object per call: tenacity keeps the state of a retry loop on the object.
    policy = AsyncRetrying(sleep=sleep, wait=WAIT, retry=retry_if_exception(retryable), reraise=True,
                           stop=_stop(deadline, stopping.is_set if stopping else None),
                           before_sleep=_logger(log))
    async def attempt() -> T:
        # Awaited here: tenacity runs a callable that is not a coroutine function without awaiting it.
        return await call()

    return await policy(attempt)


def retry_sync(call: Callable[[], T], *, deadline: float | None = None, log: logging.Logger | None = None) -> T:
    """The blocking twin of `retry_async`, for threads."""
    try:
        return call()
    except Exception as e:
        if not retryable(e):
            raise
    policy = Retrying(sleep=time.sleep, wait=WAIT, retry=retry_if_exception(retryable), reraise=True,
                      stop=_stop(deadline, None), before_sleep=_logger(log))
    return policy(call)
