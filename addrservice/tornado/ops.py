"""Endpoints for operators: liveness, readiness and Prometheus metrics.

- `GET /healthz`: 200 while the process serves requests (liveness).
- `GET /readyz`: 200 when the store answers a trivial query within
  `READY_TIMEOUT` seconds; 503 `Not Ready` with the JSON error body when
  it does not, or while the server drains for shutdown (readiness).
- `GET /metrics`: the metrics of `addrservice.metrics`, in Prometheus's
  text format (or OpenMetrics, if the scraper asks for it).

None of them needs a token when auth is on, none is refused or waited for
by the drain on shutdown, and their RESPONSE lines are at DEBUG, whatever
the status: orchestrators and scrapers call them every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from addrservice.config import AddressBookConfig
from addrservice.database.timed import TimedAddressBookDB
from addrservice.metrics import Metrics
from addrservice.service import AddressBookService
from addrservice.tornado.app import BaseRequestHandler
from addrservice.tornado.errors import NotReadyError
from addrservice.tornado.gate import RequestGate

HEALTHZ_URI = '/healthz'
READYZ_URI = '/readyz'
METRICS_URI = '/metrics'

# Seconds the store has to answer a readiness check: well within the
# probe timeouts orchestrators use (Kubernetes: 1 s by default, often
# raised), so that a slow store reads as not ready rather than a timeout.
READY_TIMEOUT = 2.0

_OK = {'status': 'ok'}


def instrument(
    service: AddressBookService, gate: RequestGate | None
) -> Metrics:
    """The metrics of the app of `service`: its store's operations are
    timed from now on, and `gate` (if any) counts requests in flight."""
    metrics = Metrics()
    [engine] = service.config.addr_db
    service.addr_db = TimedAddressBookDB(
        service.addr_db, metrics.storage_observer(str(engine)))
    if gate is not None:
        metrics.follow_in_flight(gate)
    return metrics


def ops_routes(
    handler_args: dict[str, Any],
) -> list[tuple[str, type[OpsRequestHandler], dict[str, Any]]]:
    """The routes of this module; `handler_args` as for `OpsRequestHandler`."""
    return [
        (HEALTHZ_URI, HealthzHandler, handler_args),
        (READYZ_URI, ReadyzHandler, handler_args),
        (METRICS_URI, MetricsHandler, handler_args),
    ]


class OpsRequestHandler(BaseRequestHandler):
    """No token, no drain, lines at DEBUG (see the module docstring)."""

    SUPPORTED_METHODS = ('GET', 'HEAD')
    success_log_level = logging.DEBUG
    error_log_level = logging.DEBUG

    def initialize(  # type: ignore[override]  # tokens are never checked
        self,
        service: AddressBookService,
        config: AddressBookConfig,
        logger: logging.Logger,
        metrics: Metrics,
        gate: RequestGate | None = None,
    ) -> None:
        # Without the gate: held back, a probe would keep the drain
        # waiting; refused, it could not say why the server is not ready.
        super().initialize(service, config, logger)
        self.metrics = metrics
        self.serving_gate = gate

    def compute_etag(self) -> None:
        # Answers that change from one call to the next: no validator,
        # and no digest of every scrape.
        return None


class HealthzHandler(OpsRequestHandler):
    """Liveness: answering at all is the check."""

    async def get(self) -> None:
        self.write_json(_OK)

    head = get  # Tornado sends the headers without the body


class ReadyzHandler(OpsRequestHandler):
    """Readiness: the store answers, and the server is not draining."""

    async def get(self) -> None:
        if self.serving_gate is not None and self.serving_gate.closed:
            raise NotReadyError('shutting down')
        await _ping(self.service)
        self.write_json(_OK)

    head = get


async def _ping(service: AddressBookService) -> None:
    """`NotReadyError` unless the store answers within READY_TIMEOUT."""
    try:
        await asyncio.wait_for(service.addr_db.ping(), READY_TIMEOUT)
    except TimeoutError:
        raise NotReadyError(
            f'storage did not answer within {READY_TIMEOUT:g} s') from None
    except Exception as e:  # any failure of the engine, whatever its type
        # Why it failed goes to the log (the trace), as it may name the
        # store's file or server.
        raise NotReadyError('storage unreachable') from e


class MetricsHandler(OpsRequestHandler):
    """The metrics, for Prometheus to scrape."""

    async def get(self) -> None:
        await self.metrics.count_entries(self.service.addr_db.count_addresses)
        body, content_type = self.metrics.render(
            self.request.headers.get('Accept'))
        self.set_header('Content-Type', content_type)
        self.write(body)

    head = get
