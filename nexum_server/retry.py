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
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from .errors import RequestRejected, ServerUnavailable

T = TypeVar("T")

FIRST_SECONDS = 0.1
"""Pause before the first retry: 0.05 s fixed plus up to 0.05 s at random."""
MAX_SECONDS = 2.0
"""Cap of the pause between two attempts."""


def _backoff(first: float) -> wait_base:
    """Pause n: half of `first * 2**(n-1)` fixed, up to as much again at random; at most `MAX_SECONDS`."""
    return wait_exponential(multiplier=first / 2, max=MAX_SECONDS / 2) + wait_random_exponential(
        multiplier=first / 2, max=MAX_SECONDS / 2
    )


WAIT = _backoff(FIRST_SECONDS)
_WAIT_AFTER_FIRST = _backoff(2 * FIRST_SECONDS)
"""`WAIT` one step on: the first attempt is made before tenacity's loop starts (see `_first_failed`)."""


def retryable(error: BaseException) -> bool:
    """The server is away or failing: the same request may well succeed a little later."""
    return isinstance(error, ServerUnavailable) or (isinstance(error, RequestRejected) and error.status >= 500)


QUIET_SECONDS = 30.0
"""While the server stays away, a retrying caller says so again at most this often."""


class _Outage:
    """One logger's view of the server being away: said when it starts, when its error changes, every
    `QUIET_SECONDS` while it lasts, and once when the server answers again, however many calls are
    retrying meanwhile."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.since: float | None = None
        self.said = 0.0
        self.error = ""

    def failed(self, error: BaseException, pause: float) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = self.said = now
            self.log.warning(
                "%s; retrying in %.1fs (and saying so again every %g s while it lasts)", error, pause, QUIET_SECONDS
            )
        elif now - self.said >= QUIET_SECONDS or str(error) != self.error:
            self.said = now
            self.log.warning("%s; still retrying, %.0f s so far", error, now - self.since)
        self.error = str(error)

    def answered(self) -> None:
        if self.since is not None:
            self.log.warning("the server answers again, after %.1f s", time.monotonic() - self.since)
            self.since = None


_OUTAGES: dict[str, _Outage] = {}


def _outage(log: logging.Logger) -> _Outage:
    return _OUTAGES.setdefault(log.name, _Outage(log))


def _first_failed(
    error: Exception, deadline: float | None, stopping: Callable[[], bool] | None, log: logging.Logger | None
) -> float:
    """After a failed first attempt: the pause before the second, or re-raise `error` as tenacity would.

    The first attempt runs outside tenacity because building a retry loop costs ~25 µs, a third of
    what a cached call adds to a bare round trip; the loop takes over from the second attempt.
    """
    pause = FIRST_SECONDS / 2 + random.uniform(0, FIRST_SECONDS / 2)
    if (
        not retryable(error)
        or (stopping is not None and stopping())
        or (deadline is not None and time.monotonic() + pause >= deadline)
    ):
        raise error
    if log is not None:
        _outage(log).failed(error, pause)
    return pause


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
        _outage(log).failed(error or RuntimeError("failed"), state.upcoming_sleep)

    return before_sleep


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    deadline: float | None = None,
    stopping: asyncio.Event | None = None,
    log: logging.Logger | None = None,
) -> T:
    """`await call()`, again under the policy while the error is `retryable`; the last error is raised.

    `stopping` also cuts a pause short, so a worker asked to stop does not sit out its backoff.
    """

    async def sleep(seconds: float) -> None:
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    try:
        return await call()
    except Exception as e:
        pause = _first_failed(e, deadline, stopping.is_set if stopping else None, log)
    await sleep(pause)

    async def attempt() -> T:
        # Awaited here: tenacity runs a callable that is not a coroutine function without awaiting it.
        return await call()

    # A new policy object per call: tenacity keeps the state of a retry loop on the object.
    policy = AsyncRetrying(
        sleep=sleep,
        wait=_WAIT_AFTER_FIRST,
        retry=retry_if_exception(retryable),
        reraise=True,
        stop=_stop(deadline, stopping.is_set if stopping else None),
        before_sleep=_logger(log),
    )
    result = await policy(attempt)
    if log is not None:
        _outage(log).answered()
    return result


def retry_sync(call: Callable[[], T], *, deadline: float | None = None, log: logging.Logger | None = None) -> T:
    """The blocking twin of `retry_async`, for threads."""
    try:
        return call()
    except Exception as e:
        pause = _first_failed(e, deadline, None, log)
    time.sleep(pause)
    policy = Retrying(
        sleep=time.sleep,
        wait=_WAIT_AFTER_FIRST,
        retry=retry_if_exception(retryable),
        reraise=True,
        stop=_stop(deadline, None),
        before_sleep=_logger(log),
    )
    result = policy(call)
    if log is not None:
        _outage(log).answered()
    return result
