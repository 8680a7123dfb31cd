"""Health checks and Prometheus metrics, over HTTP."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import tempfile
from typing import Any

import tornado.httpclient
import tornado.web
from prometheus_client.parser import text_string_to_metric_families

from addrservice import LOGGER_NAME
from addrservice.database.base import StoredJSON
from addrservice.database.memory import InMemoryAddressBookDB
from addrservice.errors import StorageUnavailableError
from addrservice.metrics import HTTP_METHODS, MULTIPROC_ENV, Metrics
from addrservice.tornado.app import make_addrservice_app
from addrservice.tornado.gate import RequestGate
from addrservice.tornado.ops import READY_TIMEOUT
from tests.support import (
    TEST_CONFIG,
    AddressServiceTornadoAppTestSetup,
    LogCapture,
    fs_config,
    memory_config,
    parse_logfmt,
    sqlite_config,
    tokens_file,
)

TEXT_FORMAT = 'text/plain; version=0.0.4; charset=utf-8'
REQUESTS = 'addrservice_http_requests_total'
LATENCY = 'addrservice_http_request_duration_seconds'
STORAGE = 'addrservice_storage_operation_duration_seconds'
IN_FLIGHT = 'addrservice_http_requests_in_flight'
ENTRIES = 'addrservice_entries_stored'
TOKEN = 'ops-token-0123456789abcdef'

Labels = tuple[tuple[str, str], ...]


class UnreachableDB(InMemoryAddressBookDB):
    """A store whose database has gone away."""

    async def ping(self) -> None:
        raise StorageUnavailableError('connection to db.example:5432 lost')


class HungDB(InMemoryAddressBookDB):
    """A store that never answers."""

    async def ping(self) -> None:
        await asyncio.sleep(3600)


class HeldDB(InMemoryAddressBookDB):
    """A store whose reads wait until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        await self.release.wait()
        return await super().read_entry_json(nickname)


class OpsTestSetup(AddressServiceTornadoAppTestSetup):
    """The app as the server builds it: with a request gate."""

    serve_traceback = False

    def get_app(self) -> tornado.web.Application:
        # No user's multiprocess directory: metrics of this process only.
        self.assertNotIn(MULTIPROC_ENV, os.environ)
        logging.config.dictConfig(TEST_CONFIG['logging'])
        self.gate = RequestGate()
        self.service, self.app = make_addrservice_app(
            config=self.make_config(), debug=self.serve_traceback,
            logger=logging.getLogger(LOGGER_NAME), gate=self.gate)
        self.io_loop.run_sync(self.service.open)
        return self.app

    @property
    def metrics(self) -> Metrics:
        metrics: Metrics = self.app.settings['metrics']
        return metrics

    def scrape(self, **kwargs: Any) -> dict[str, dict[Labels, float]]:
        """GET /metrics, parsed: metric name -> labels -> value."""
        r = self.fetch('/metrics', **kwargs)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.headers['Content-Type'], TEXT_FORMAT)
        return parse_metrics(r.body.decode())

    def assert_not_ready(
        self, r: tornado.httpclient.HTTPResponse, detail: str
    ) -> None:
        self.assertEqual(self.assert_error(r, 503, 'Not Ready'), {
            'method': 'GET', 'uri': '/readyz', 'code': 503,
            'message': 'Not Ready', 'detail': detail})


def parse_metrics(text: str) -> dict[str, dict[Labels, float]]:
    parsed: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            parsed.setdefault(sample.name, {})[labels] = sample.value
    return parsed


def request_labels(handler: str, method: str, status: int) -> Labels:
    return (('handler', handler), ('method', method),
            ('status', str(status)))


def storage_labels(engine: str, operation: str) -> Labels:
    return (('engine', engine), ('operation', operation))


def increase(
    before: dict[Labels, float], after: dict[Labels, float]
) -> dict[Labels, float]:
    """The series that grew, by how much."""
    grown = {labels: value - before.get(labels, 0.0)
             for labels, value in after.items()}
    return {labels: value for labels, value in grown.items() if value}


class HealthTest(OpsTestSetup):
    def test_healthz_is_200(self) -> None:
        """GET /healthz answers 200 with a small JSON body."""
        r = self.fetch('/healthz')
        self.assertEqual((r.code, self.json_of(r)), (200, {'status': 'ok'}))
        self.assertNotIn('Etag', r.headers)

    def test_readyz_is_200_when_the_store_answers(self) -> None:
        """GET /readyz answers 200 while the store answers."""
        r = self.fetch('/readyz')
        self.assertEqual((r.code, self.json_of(r)), (200, {'status': 'ok'}))

    def test_head(self) -> None:
        """HEAD gives the same status without a body."""
        for path in ('/healthz', '/readyz', '/metrics'):
            with self.subTest(path=path):
                r = self.fetch(path, method='HEAD')
                self.assertEqual((r.code, r.body), (200, b''))

    def test_other_methods_are_405(self) -> None:
        """Only GET and HEAD are allowed, with the JSON error body."""
        r = self.request('POST', '/healthz', b'{}')
        body = self.assert_error(r, 405, 'Method Not Allowed')
        self.assertEqual(body['uri'], '/healthz')
        self.assertEqual(r.headers['Allow'], 'GET, HEAD')

    def test_readyz_is_503_when_the_store_is_unreachable(self) -> None:
        """A store whose ping fails makes /readyz 503 'Not Ready' saying
        so, without the store's own message; /healthz stays 200."""
        self.service.addr_db = UnreachableDB()
        with LogCapture() as logs:
            r = self.fetch('/readyz')
        self.assert_not_ready(r, 'storage unreachable')
        [line] = logs.fields()
        self.assertEqual((line['status'], line['reason']),
                         ('503', 'Not Ready'))
        self.assertIn('db.example:5432 lost', line['trace'])
        self.assertEqual(self.fetch('/healthz').code, 200)

    def test_readyz_is_503_when_the_store_does_not_answer(self) -> None:
        """A store that does not answer within the timeout is not ready."""
        self.service.addr_db = HungDB()
        r = self.fetch('/readyz', request_timeout=READY_TIMEOUT + 5)
        self.assert_not_ready(r, 'storage did not answer within 2 s')

    def test_draining(self) -> None:
        """While the server drains, /readyz is 503 'shutting down', the
        address book refuses requests, and /healthz and /metrics answer."""
        self.gate.close()
        self.assert_not_ready(self.fetch('/readyz'), 'shutting down')
        self.assert_error(self.fetch('/addresses'), 503, 'Shutting Down')
        self.assertEqual(self.fetch('/healthz').code, 200)
        self.assertEqual(self.fetch('/metrics').code, 200)

    def test_probes_are_not_in_flight(self) -> None:
        """Probes and scrapes pass by the gate: a drain never waits for
        them, and they are not counted in flight."""
        self.fetch('/healthz')
        scraped = self.scrape()
        self.assertEqual(scraped[IN_FLIGHT], {(): 0.0})
        self.assertEqual(self.gate.in_flight, 0)

    def test_lines_are_at_debug(self) -> None:
        """Their RESPONSE lines are at DEBUG, successes and failures alike;
        the address book's are at INFO."""
        with LogCapture() as logs:
            self.fetch('/healthz')
            self.fetch('/readyz')
            self.fetch('/metrics')
            self.request('POST', '/metrics', b'')
            self.service.addr_db = UnreachableDB()
            self.fetch('/readyz')
            self.fetch('/addresses')
        responses = [(record.levelname, fields['uri'])
                     for record in logs.records
                     for fields in [parse_logfmt(record.getMessage())]
                     if fields['message'] == 'RESPONSE']
        self.assertEqual(responses, [
            ('DEBUG', '/healthz'), ('DEBUG', '/readyz'),
            ('DEBUG', '/metrics'), ('DEBUG', '/metrics'),
            ('DEBUG', '/readyz'), ('INFO', '/addresses')])


class AuthOnTest(OpsTestSetup):
    """With auth on, the address book needs a token and these do not."""

    def make_config(self) -> dict[str, Any]:
        return {**memory_config(), 'auth': {
            'tokens_file': tokens_file(self, f'ops:{TOKEN}\n')}}

    def test_no_token_needed(self) -> None:
        """/healthz, /readyz and /metrics answer 200 without a token, or
        with a wrong one, while /addresses is 401."""
        self.assertEqual(self.fetch('/addresses').code, 401)
        for path in ('/healthz', '/readyz', '/metrics'):
            for headers in ({}, {'Authorization': 'Bearer wrong'}):
                with self.subTest(path=path, headers=headers):
                    r = self.fetch(path, headers=headers)
                    self.assertEqual(r.code, 200, r.body)
                    self.assertNotIn('WWW-Authenticate', r.headers)


class MetricsTest(OpsTestSetup):
    def test_text_format(self) -> None:
        """/metrics is Prometheus's text format, listing every metric."""
        scraped = self.scrape()
        for name in (IN_FLIGHT, ENTRIES, STORAGE + '_count',
                     STORAGE + '_bucket'):
            self.assertIn(name, scraped)

    def test_openmetrics_when_asked(self) -> None:
        """A scraper that asks for OpenMetrics gets it."""
        r = self.fetch('/metrics', headers={
            'Accept': 'application/openmetrics-text; version=1.0.0'})
        self.assertEqual(r.code, 200)
        self.assertTrue(r.headers['Content-Type'].startswith(
            'application/openmetrics-text; version=1.0.0'))
        self.assertTrue(r.body.endswith(b'# EOF\n'))

    def test_requests_are_counted_exactly(self) -> None:
        """Each request adds one to its handler, method and status, and
        one observation to the same latency series."""
        before = self.scrape()
        entry_id = self.create(self.addr0)
        self.create(self.addr1)
        self.fetch('/addresses')
        self.fetch(f'/addresses/{entry_id}')
        self.fetch('/addresses/nobody')
        self.request('PUT', f'/addresses/{entry_id}', self.addr1,
                     headers=self.headers)
        self.request('DELETE', f'/addresses/{entry_id}')
        self.request('DELETE', f'/addresses/{entry_id}')
        self.fetch('/nowhere')
        self.fetch('/healthz')
        after = self.scrape()
        book = 'AddressBookRequestHandler'
        entry = 'AddressBookEntryRequestHandler'
        expected = {
            request_labels(book, 'POST', 201): 2,
            request_labels(book, 'GET', 200): 1,
            request_labels(entry, 'GET', 200): 1,
            request_labels(entry, 'GET', 404): 1,
            request_labels(entry, 'PUT', 204): 1,
            request_labels(entry, 'DELETE', 204): 1,
            request_labels(entry, 'DELETE', 404): 1,
            request_labels('DefaultRequestHandler', 'GET', 404): 1,
            request_labels('HealthzHandler', 'GET', 200): 1,
            # The first scrape, counted once answered.
            request_labels('MetricsHandler', 'GET', 200): 1,
        }
        self.assertEqual(increase(before.get(REQUESTS, {}), after[REQUESTS]),
                         expected)
        self.assertEqual(
            increase(before.get(LATENCY + '_count', {}),
                     after[LATENCY + '_count']),
            expected)

    def test_latency_buckets(self) -> None:
        """Latency buckets are cumulative and end with every request."""
        self.fetch('/addresses')
        buckets = self.scrape()[LATENCY + '_bucket']
        series = sorted(
            (float(dict(labels)['le']), value)
            for labels, value in buckets.items()
            if dict(labels)['handler'] == 'AddressBookRequestHandler')
        values = [value for _, value in series]
        self.assertEqual(values, sorted(values))
        self.assertEqual(series[-1], (float('inf'), 1.0))

    def test_labels_stay_bounded(self) -> None:
        """Ids and unknown methods never become label values: requests
        for many ids add no series beyond their first."""
        ids = [self.create({'full_name': f'P{i}'}) for i in range(5)]
        for entry_id in ids + [f'missing{i}' for i in range(5)]:
            self.fetch(f'/addresses/{entry_id}')
        for method in ('FROB', 'BREW', 'PROPFIND'):
            self.request(method, '/nowhere')
        scraped = self.scrape()
        values = {value for labels in scraped[REQUESTS]
                  for _, value in labels}
        self.assertFalse({v for v in values if any(i in v for i in ids)})
        methods = {dict(labels)['method'] for labels in scraped[REQUESTS]}
        self.assertLessEqual(methods, HTTP_METHODS | {'OTHER'})
        self.assertEqual(
            scraped[REQUESTS][request_labels(
                'DefaultRequestHandler', 'OTHER', 404)], 3)
        self.assertEqual(
            scraped[REQUESTS][request_labels(
                'AddressBookEntryRequestHandler', 'GET', 404)], 5)

    def test_requests_in_flight(self) -> None:
        """A request being served counts in flight until it is answered."""
        held = HeldDB()
        self.service.addr_db = held

        async def scrape_while_held() -> str:
            pending = self.http_client.fetch(self.get_url('/addresses/x'),
                                             raise_error=False)
            while self.gate.in_flight == 0:
                await asyncio.sleep(0.005)
            during = await self.http_client.fetch(self.get_url('/metrics'))
            held.release.set()
            await pending
            return during.body.decode()

        during = parse_metrics(self.io_loop.run_sync(scrape_while_held))
        self.assertEqual(during[IN_FLIGHT], {(): 1.0})
        self.assertEqual(self.scrape()[IN_FLIGHT], {(): 0.0})

    def test_entries_stored(self) -> None:
        """Entries stored is the store's count, counted again only once
        it is older than the metrics' entries_ttl."""
        self.assertEqual(self.scrape()[ENTRIES], {(): 0.0})
        for i in range(3):
            self.create({'full_name': f'P{i}'})
        self.assertEqual(self.scrape()[ENTRIES], {(): 0.0})  # reused
        self.metrics.entries_ttl = 0.0
        self.assertEqual(self.scrape()[ENTRIES], {(): 3.0})
        counted = self.scrape()[STORAGE + '_count']
        self.assertEqual(counted[storage_labels('memory', 'count')], 3)

    def test_entries_stored_survives_a_failing_store(self) -> None:
        """A store that cannot count leaves the last figure, and the scrape
        still answers."""
        self.create(self.addr0)
        self.assertEqual(self.scrape()[ENTRIES], {(): 1.0})
        self.metrics.entries_ttl = 0.0
        self.service.addr_db = BrokenCountDB()
        self.assertEqual(self.scrape()[ENTRIES], {(): 1.0})


class BrokenCountDB(InMemoryAddressBookDB):
    async def count_addresses(self) -> int:
        raise StorageUnavailableError('database is locked')


class StorageMetricsContract(OpsTestSetup):
    """Storage operations timed by engine and operation. Subclasses name
    the engine and give its config."""

    engine = 'memory'

    def test_each_operation_is_timed(self) -> None:
        """Each storage operation a request makes is one observation,
        labelled with the engine's name and the operation."""
        entry_id = self.create(self.addr0)
        self.fetch(f'/addresses/{entry_id}')
        self.request('PUT', f'/addresses/{entry_id}', self.addr1,
                     headers=self.headers)
        self.fetch('/addresses')
        self.fetch('/readyz')
        self.request('DELETE', f'/addresses/{entry_id}')
        scraped = self.scrape()
        counts = scraped[STORAGE + '_count']
        self.assertEqual(counts, {
            storage_labels(self.engine, operation): 1.0
            for operation in ('create', 'read', 'update', 'list', 'ping',
                              'delete', 'count')})
        self.assertEqual(scraped[ENTRIES], {(): 0.0})
        sums = scraped[STORAGE + '_sum']
        self.assertTrue(all(value > 0 for value in sums.values()), sums)


class MemoryStorageMetricsTest(StorageMetricsContract):
    pass


class SqliteStorageMetricsTest(StorageMetricsContract):
    engine = 'sqlite'

    def make_config(self) -> dict[str, Any]:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-test-')
        self.addCleanup(tmp.cleanup)
        return sqlite_config(os.path.join(tmp.name, 'book.sqlite3'))


class FsStorageMetricsTest(StorageMetricsContract):
    engine = 'fs'

    def make_config(self) -> dict[str, Any]:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-test-')
        self.addCleanup(tmp.cleanup)
        return fs_config(tmp.name)
