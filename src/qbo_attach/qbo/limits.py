"""QBO's per-company limits, kept on the client side so the server never has to.

QBO allows 500 requests a minute and about 10 in flight per company (realm).
The gate paces every request of a realm (uploads and queries alike) evenly
rather than in bursts: a burst of a minute's allowance followed by a steady
flow can put more than the limit into one sliding minute. When QBO throttles
anyway, the whole realm pauses, not just the request that was refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

DEFAULT_RATE_PER_MINUTE = 500
DEFAULT_MAX_IN_FLIGHT = 10
# Intuit's advice after a 429 that names no Retry-After.
THROTTLE_WAIT_S = 60.0
# Requests arrive at the server a little unevenly; pacing 1% under the limit
# keeps a sliding-window counter there from seeing one request too many.
PACING_MARGIN = 1.01

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


async def pause(seconds: float) -> None:
    """How the gate waits; tests replace it, and ``now``, so nothing sleeps."""
    await asyncio.sleep(seconds)


def now() -> float:
    """The gate's clock."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class RealmLimits:
    """How fast the client may talk to one realm; None lifts a limit."""

    rate_per_minute: int | None = DEFAULT_RATE_PER_MINUTE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    throttle_wait_s: float = THROTTLE_WAIT_S


class RealmGate:
    """Admits requests to one realm within its limits."""

    def __init__(
        self,
        limits: RealmLimits,
        *,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.limits = limits
        self.sleep = sleep or pause
        self._clock = clock or now
        self._in_flight = asyncio.Semaphore(limits.max_in_flight)
        self._pacer = (
            AsyncLimiter(1, 60.0 * PACING_MARGIN / limits.rate_per_minute)
            if limits.rate_per_minute
            else None
        )
        self._resume_at = 0.0
        self.throttled_count = 0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place in flight for one request, once the realm may be called."""
        await self._wait_out_pause()
        async with self._in_flight:
            if self._pacer is not None:
                await self._pacer.acquire()
            # A 429 may have paused the realm while this request waited its
            # turn; checking only before the pacer would let it through.
            await self._wait_out_pause()
            yield

    async def _wait_out_pause(self) -> None:
        while (delay := self._resume_at - self._clock()) > 0:
            await self.sleep(delay)

    def throttled(self, retry_after: float | None) -> float:
        """Pause the realm after a 429; return how long the pause lasts."""
        self.throttled_count += 1
        wait = self.limits.throttle_wait_s if retry_after is None else retry_after
        self._resume_at = max(self._resume_at, self._clock() + wait)
        return wait
