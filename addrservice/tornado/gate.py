"""The requests in flight, so that a shutdown can wait for them.

Tornado's `HTTPServer.close_all_connections()` closes connections whether
or not a request is being served on them. The server closes the gate
instead: new requests are refused, and it waits (up to a bound) until the
requests already in flight have finished, then closes the connections.
"""

from __future__ import annotations

import asyncio
from typing import Callable


class RequestGate:
    """Counts requests in flight; once closed, admits no new ones."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_change: Callable[[int], None] | None = None

    @property
    def closed(self) -> bool:
        """True once shutting down: the service is no longer ready."""
        return self._closed

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def watch(self, on_change: Callable[[int], None]) -> None:
        """Call `on_change` with the new count of requests in flight each
        time it changes (for a metric that other processes read)."""
        self._on_change = on_change

    def enter(self) -> None:
        """A request has started (admitted or not: it runs until it ends)."""
        self._in_flight += 1
        self._idle.clear()
        if self._on_change is not None:
            self._on_change(self._in_flight)

    def leave(self) -> None:
        """A request that entered has ended: answered, or its client gone."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()
        if self._on_change is not None:
            self._on_change(self._in_flight)

    def close(self) -> None:
        self._closed = True

    async def drain(
        self, timeout: float, interrupted: asyncio.Event | None = None
    ) -> int:
        """Wait until no request is in flight, for at most `timeout`
        seconds, or until `interrupted` is set; return how many are left."""
        waits = [asyncio.ensure_future(self._idle.wait())]
        if interrupted is not None:
            waits.append(asyncio.ensure_future(interrupted.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._in_flight
