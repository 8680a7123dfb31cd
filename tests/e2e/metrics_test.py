"""End-to-end tests of /metrics: one process, and several workers whose
figures add up whichever worker is scraped.

Each server runs as in workers_test.py, on the SQLite engine, with its
TMPDIR in the test's temporary directory, so that the test sees the
metrics directory the supervisor makes there.
"""

from __future__ import annotations

import glob
import os
import signal

from prometheus_client.parser import text_string_to_metric_families

from addrservice.metrics import MULTIPROC_ENV
from tests.e2e.server_test import STOP_S, ServerProcess, free_port
from tests.e2e.workers_test import WorkersTestCase, wait_until_none_running
from tests.support import environment

ENTRIES = 12
# Scrapes go on until each worker has answered some; each takes a new
# connection, which the kernel gives to either worker.
MAX_SCRAPES = 200

Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Figures:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples}


def requests(figures: Figures, handler: str) -> dict[tuple[str, str], float]:
    """(method, status) -> count of the requests `handler` answered."""
    counts = {}
    for (name, labels), value in figures.items():
        fields = dict(labels)
        if name == 'addrservice_http_requests_total' \
                and fields['handler'] == handler:
            counts[fields['method'], fields['status']] = value
    return counts


class MetricsTestCase(WorkersTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.server_tmp = os.path.join(self.tmp, 'server-tmp')
        os.mkdir(self.server_tmp)
        given = os.environ.pop(MULTIPROC_ENV, None)
        if given is not None:  # the tests choose for the server
            self.addCleanup(os.environ.__setitem__, MULTIPROC_ENV, given)
        self.enterContext(environment(TMPDIR=self.server_tmp))

    def store(self) -> dict[str, str]:
        return {'sqlite': os.path.join(self.tmp, 'addresses.db')}

    def metrics_dirs(self) -> list[str]:
        return glob.glob(os.path.join(self.server_tmp,
                                      'addrservice-metrics-*'))

    def make_requests(self, server: ServerProcess) -> None:
        """ENTRIES creates and ENTRIES reads, each on a connection of
        its own."""
        uris = [self.create(server, b'{"full_name": "P%d"}' % i)
                for i in range(ENTRIES)]
        for uri in uris:
            self.assertEqual(server.request('GET', uri).status, 200)

    def scrape(self, server: ServerProcess) -> Figures:
        r = server.request('GET', '/metrics')
        self.assertEqual(r.status, 200, r.body)
        return parse(r.body.decode())

    def assert_totals(self, figures: Figures) -> None:
        """Every request made is counted once, every entry stored."""
        self.assertEqual(requests(figures, 'AddressBookRequestHandler'),
                         {('POST', '201'): ENTRIES})
        self.assertEqual(
            requests(figures, 'AddressBookEntryRequestHandler'),
            {('GET', '200'): ENTRIES})
        storage = ('addrservice_storage_operation_duration_seconds_count',
                   (('engine', 'sqlite'), ('operation', 'create')))
        self.assertEqual(figures[storage], ENTRIES)
        self.assertEqual(figures['addrservice_entries_stored', ()], ENTRIES)
        self.assertEqual(
            figures['addrservice_http_requests_in_flight', ()], 0)

    def scrape_every_worker(self, server: ServerProcess) -> set[str]:
        """Scrape until each worker has answered; assert each scrape gives
        the totals; the pids of the workers that answered."""
        for _ in range(MAX_SCRAPES):
            self.assert_totals(self.scrape(server))
            answered = {f['process'] for f in self.log_lines()
                        if f['uri'] == '/metrics'}
            if len(answered) == 2:
                break
        return answered


class WorkersMetricsTest(MetricsTestCase):
    def test_any_worker_reports_the_total(self) -> None:
        """With two workers, /metrics from either counts the requests that
        both answered; the supervisor's directory for them is removed
        when the server stops."""
        server = self.start_workers(2)
        [shared] = self.metrics_dirs()
        self.make_requests(server)
        book = {f['process'] for f in self.log_lines()
                if f['uri'].startswith('/addresses')}
        self.assertEqual(len(book), 2)  # both workers served requests
        self.assertEqual(self.scrape_every_worker(server), book)
        self.assertTrue(glob.glob(os.path.join(shared, 'counter_*.db')))
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)
        self.assertEqual(server.stderr, '')
        self.assertFalse(os.path.exists(shared))
        self.assertEqual(os.listdir(self.server_tmp), [])

    def test_directory_of_the_user(self) -> None:
        """PROMETHEUS_MULTIPROC_DIR, when set, is the directory used; it
        is kept, but for the figures of live processes only."""
        given = os.path.join(self.tmp, 'prometheus')
        os.mkdir(given)
        with environment(**{MULTIPROC_ENV: given}):
            server = self.start_workers(2)
        self.make_requests(server)
        self.assertEqual(len(self.scrape_every_worker(server)), 2)
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)
        self.assertEqual(self.metrics_dirs(), [])
        self.assertTrue(glob.glob(os.path.join(given, 'counter_*.db')))
        self.assertEqual(glob.glob(os.path.join(given, 'gauge_live*')), [])

    def test_directory_of_the_user_must_exist(self) -> None:
        """A PROMETHEUS_MULTIPROC_DIR that is not a directory stops the
        server with one line, before any worker starts."""
        missing = os.path.join(self.tmp, 'missing')
        with environment(**{MULTIPROC_ENV: missing}):
            result = self.run_failing(self.argv(free_port(), 2))
        self.assertEqual(
            (result.returncode, result.stderr),
            (1, f'addrservice: {MULTIPROC_ENV} {missing!r} is not a '
                'directory\n'))
        self.assertEqual(self.log_lines('STARTING'), [])

    def test_directory_removed_when_the_supervisor_is_killed(self) -> None:
        """Workers whose supervisor was killed remove its directory as
        they stop."""
        self.start_workers(2)
        [shared] = self.metrics_dirs()
        self.supervisor.kill()
        self.supervisor.wait(STOP_S)
        self.assertEqual(wait_until_none_running(self.tmp, STOP_S), [])
        self.assertFalse(os.path.exists(shared))

    def test_directory_removed_when_a_worker_fails(self) -> None:
        """A worker killed stops the server; the directory goes too."""
        self.start_workers(2)
        [shared] = self.metrics_dirs()
        os.kill(self.worker_pids()[1], signal.SIGKILL)
        self.assertEqual(self.supervisor.wait(STOP_S), 1)
        self.assertEqual(wait_until_none_running(self.tmp, STOP_S), [])
        self.assertFalse(os.path.exists(shared))


class SingleProcessMetricsTest(MetricsTestCase):
    def test_single_process(self) -> None:
        """One process counts in its own memory: the same totals, and no
        directory."""
        server = self.start_workers(1)
        self.make_requests(server)
        self.assert_totals(self.scrape(server))
        self.assertEqual(self.metrics_dirs(), [])
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)
