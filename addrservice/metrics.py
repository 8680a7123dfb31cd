"""Prometheus metrics of the service: requests, storage, entries stored.

Served by `GET /metrics` in Prometheus's text format:

- `addrservice_http_requests_total` and
  `addrservice_http_request_duration_seconds`, by `handler` (the handler
  class), `method` and `status`: never by path or id, so that the label
  sets stay few. A method outside HTTP's own is counted as `OTHER`.
- `addrservice_http_requests_in_flight`: requests being served, those a
  shutdown waits for.
- `addrservice_storage_operation_duration_seconds`, by `engine` and
  `operation` (create, read, update, delete, list, count, ping), measured
  below the HTTP layer by `addrservice.database.timed`.
- `addrservice_entries_stored`: counted when scraped, at most once every
  `ENTRIES_TTL` seconds per process, so that frequent scrapes do not list
  a large store each time.

The metric objects belong to a `Metrics`, one per app, made when the app
is built; none is made at import. That matters with several processes:

- One process: a `Metrics` keeps its metrics in a registry of its own; the
  in-flight gauge reads the request gate's count when scraped.
- Several processes (`--workers N`): the supervisor forks the workers in
  `shared_directory()`, which sets `PROMETHEUS_MULTIPROC_DIR` to a fresh
  temporary directory (or keeps the one the user set) before forking, and
  removes the directory it made once the workers have exited (if it is
  killed, the workers remove it as they stop). Each worker
  writes its figures to files of its own there, and a scrape of any
  worker merges the files of all (prometheus_client's multiprocess mode):
  counts and histograms add up, in-flight requests are summed over live
  workers, and entries stored is the most recent count of any worker.
  The gate tells the in-flight gauge of each change of its count.

prometheus_client chooses how it keeps values, in this process or in such
files, from `PROMETHEUS_MULTIPROC_DIR` when it is first imported, which is
before the supervisor sets the variable. So each `Metrics` makes that
choice again, from the variable as it is when the app is built (after the
fork), before it makes its metrics. A server of one process started with
the variable set uses the files in that directory as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Awaitable, Callable, Iterator, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import (
    MultiProcessCollector,
    mark_process_dead,
)

from addrservice import LOGGER_NAME
from addrservice.database.timed import Observe
from addrservice.utils import logutils

MULTIPROC_ENV = 'PROMETHEUS_MULTIPROC_DIR'

# Seconds a count of the entries stored is reused for.
ENTRIES_TTL = 5.0
# Seconds a scrape waits for that count before it gives the last one.
COUNT_TIMEOUT = 2.0

# Requests take from a few hundred microseconds (a read from memory or
# SQLite's cache) to seconds (a large listing, a slow database).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Storage operations from microseconds (memory) to an fsync or a network
# round trip, and seconds when a database struggles.
STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                   0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Methods counted by name; any other (a client can send any token) is
# counted as OTHER, so that the label values stay few.
HTTP_METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH',
                          'OPTIONS', 'TRACE', 'CONNECT'})
OTHER_METHOD = 'OTHER'

_RequestKey = tuple[str, str, int]


class InFlight(Protocol):
    """What counts the requests in flight (the server's request gate)."""

    @property
    def in_flight(self) -> int: ...

    def watch(self, on_change: Callable[[int], None]) -> None: ...


class Metrics:
    """The service's metrics, in this process alone or shared by the
    processes of `PROMETHEUS_MULTIPROC_DIR` (see the module docstring).

    `entries_ttl` is how long, in seconds, a count of the entries stored
    is reused for.
    """

    def __init__(self, entries_ttl: float = ENTRIES_TTL) -> None:
        self.entries_ttl = entries_ttl
        self.directory = os.environ.get(MULTIPROC_ENV) or None
        _choose_value_class(self.directory)
        # The metrics are in `own` registry, or, with a directory, in
        # files there that `registry` reads for every process.
        own: CollectorRegistry | None = None
        if self.directory is None:
            self.registry = own = CollectorRegistry()
        else:
            self.registry = _merging_registry(self.directory)
        self._requests = Counter(
            'addrservice_http_requests', 'HTTP requests answered.',
            ('handler', 'method', 'status'), registry=own)
        self._latency = Histogram(
            'addrservice_http_request_duration_seconds',
            'Time from request to response.',
            ('handler', 'method', 'status'), buckets=REQUEST_BUCKETS,
            registry=own)
        self._in_flight = Gauge(
            'addrservice_http_requests_in_flight',
            'Requests being served.', registry=own,
            multiprocess_mode='livesum')
        self._storage = Histogram(
            'addrservice_storage_operation_duration_seconds',
            'Time the storage engine took for one operation.',
            ('engine', 'operation'), buckets=STORAGE_BUCKETS, registry=own)
        self._entries = Gauge(
            'addrservice_entries_stored', 'Entries in the address book.',
            registry=own, multiprocess_mode='livemostrecent')
        self._by_request: dict[_RequestKey, tuple[Callable[[], None],
                                                  Observe]] = {}
        self._entries_counted_at = -math.inf

    def observe_request(
        self, handler: str, method: str, status: int, seconds: float
    ) -> None:
        """Count one answered request and its duration."""
        if method not in HTTP_METHODS:
            method = OTHER_METHOD
        key = (handler, method, status)
        try:
            count, observe = self._by_request[key]
        except KeyError:
            count, observe = self._by_request[key] = self._children(key)
        count()
        observe(seconds)

    def _children(
        self, key: _RequestKey
    ) -> tuple[Callable[[], None], Observe]:
        # prometheus_client's labels() costs more than the rest of the
        # update: each label set is looked up once.
        handler, method, status = key
        labels = (handler, method, str(status))
        return (self._requests.labels(*labels).inc,
                self._latency.labels(*labels).observe)

    def follow_in_flight(self, gate: InFlight) -> None:
        """Report `gate`'s count of requests in flight."""
        if self.directory is None:
            self._in_flight.set_function(lambda: gate.in_flight)
        else:
            # Other processes read the figure from this one's file.
            gate.watch(self._in_flight.set)

    def storage_observer(self, engine: str) -> Callable[[str], Observe]:
        """For `TimedAddressBookDB`: where one engine's operations go."""
        return lambda operation: (
            self._storage.labels(engine, operation).observe)

    async def count_entries(
        self, count: Callable[[], Awaitable[int]]
    ) -> None:
        """Update entries stored with `count()`, unless counted within
        `entries_ttl` seconds. A store that fails or is slow to answer
        leaves the last figure: a scrape answers whatever the store does,
        and the failure shows in the storage metrics and `/readyz`."""
        now = time.monotonic()
        if now - self._entries_counted_at < self.entries_ttl:
            return
        self._entries_counted_at = now  # concurrent scrapes count once
        try:
            self._entries.set(await asyncio.wait_for(count(), COUNT_TIMEOUT))
        except Exception as e:  # whatever the engine raises, see above
            logutils.log(logging.getLogger(LOGGER_NAME), logging.DEBUG,
                         message='ENTRIES NOT COUNTED',
                         error=str(e) or type(e).__name__)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format `accept` asks for (Prometheus text
        by default, or OpenMetrics), and its content type."""
        encode, content_type = choose_encoder(accept or '')
        return encode(self.registry), content_type


def _choose_value_class(directory: str | None) -> None:
    """Make prometheus_client keep values as `directory` says: in files
    there, or in this process if None (see the module docstring)."""
    # The library's own tests set `values.ValueClass` the same way.
    if directory is None:
        if values.ValueClass._multiprocess:
            values.ValueClass = values.MutexValue
    elif not values.ValueClass._multiprocess:
        values.ValueClass = (
            values.MultiProcessValue())  # type: ignore[no-untyped-call]


def _merging_registry(directory: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    # Untyped in prometheus_client, as are the other calls ignored here.
    MultiProcessCollector(  # type: ignore[no-untyped-call]
        registry, _checked(directory))
    return registry


def _checked(directory: str) -> str:
    if not os.path.isdir(directory):
        raise ValueError(f'{MULTIPROC_ENV} {directory!r} is not a directory')
    return directory


@dataclasses.dataclass(frozen=True)
class SharedDirectory:
    """Where the processes of one server share their metrics. `made_by`
    is the pid of the process that made it for them; None if it is the
    user's own."""

    path: str
    made_by: int | None = None

    def remove_if_orphaned(self) -> None:
        """In a forked process that is ending: remove the directory if the
        process that made it is gone (killed), as it cannot any more."""
        if self.made_by is not None and os.getppid() != self.made_by:
            shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def shared_directory() -> Iterator[SharedDirectory]:
    """Give the processes forked in the block one directory to share their
    metrics in: `PROMETHEUS_MULTIPROC_DIR` if set, else a fresh temporary
    directory, set there and removed when the block ends in this process
    (not in a forked one leaving it)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield SharedDirectory(_checked(given))
        return
    made = SharedDirectory(tempfile.mkdtemp(prefix='addrservice-metrics-'),
                           made_by=os.getpid())
    os.environ[MULTIPROC_ENV] = made.path
    try:
        yield made
    finally:
        if os.getpid() == made.made_by:
            del os.environ[MULTIPROC_ENV]
            shutil.rmtree(made.path, ignore_errors=True)


def forget_this_process() -> None:
    """Drop the in-flight and entries figures of this process, which is
    ending, from the shared directory (counts and durations stay)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(  # type: ignore[no-untyped-call]
            os.getpid(), directory)
