"""End-to-end tests of `--workers N`: several processes serving one port.

The server runs as in server_test.py, on a free port of 127.0.0.1 with a
config in a temporary directory. The log file's format starts with the
pid of the process that wrote each line (`process=PID`), which shows
which worker answered each request; the workers' pids come from their
STARTING lines.
Every process whose command line names the test's temporary directory
is killed when the test ends, whatever happened.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from tests.e2e.server_test import (
    SERVER_PY,
    START_S,
    STOP_S,
    ServerProcess,
    ServerTestCase,
    free_port,
    read_text,
)
from tests.pg import fresh_schema, pg_config, skip_unless_pg
from tests.support import parse_logfmt

WORKERS = 3
# Each request opens a new connection: the main test makes 3 * ENTRIES.
# The chance that the kernel gives none of 90 to one of 3 workers is
# 3 * (2/3)**90, under 1e-15.
ENTRIES = 30


class WorkersProcess(ServerProcess):
    """A server with several workers: ready once each has logged STARTING."""

    def __init__(self, argv: list[str], port: int, workdir: str,
                 workers: int) -> None:
        super().__init__(argv, port, workdir)
        self.workers = workers

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + START_S
        while self.stdout.count('message="STARTING"') < self.workers:
            if time.monotonic() > deadline:
                raise AssertionError(f'workers not ready in {START_S} s: '
                                     f'{self.stdout}')
            time.sleep(0.05)


def running(marker: str) -> list[int]:
    """Pids of the live processes whose command line contains `marker`."""
    pids = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/cmdline', 'rb') as f:
                cmdline = f.read()  # empty for a zombie
        except OSError:  # gone meanwhile
            continue
        if marker.encode() in cmdline:
            pids.append(int(name))
    return pids


def parent_pid(pid: int) -> int:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
        # "pid (command) state ppid ...": the command may hold spaces.
        return int(f.read().rsplit(')', 1)[1].split()[1])


def wait_until_none_running(marker: str, timeout: float) -> list[int]:
    """Wait for the processes named by `marker` to end; those left."""
    deadline = time.monotonic() + timeout
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running(marker)


class WorkersTestCase(ServerTestCase):
    """Servers with workers on the fs engine, unless `store()` says else."""

    def setUp(self) -> None:
        super().setUp()
        self.config['addr-db'] = self.store()
        detailed = self.config['logging']['formatters']['detailed']
        detailed['format'] = 'process=%(process)d ' + detailed['format']
        self.config_path = self.write_config(self.config)
        # Registered first, so it runs after every server's own cleanup.
        self.addCleanup(self.kill_leftovers)

    def store(self) -> dict[str, Any]:
        return {'fs': os.path.join(self.tmp, 'store')}

    def kill_leftovers(self) -> None:
        for pid in running(self.tmp):
            os.kill(pid, signal.SIGKILL)

    def argv(self, port: int, workers: int,
             config: str | None = None) -> list[str]:
        return [sys.executable, SERVER_PY, '--port', str(port),
                '--config', config or self.config_path,
                '--workers', str(workers)]

    def start_workers(self, workers: int = WORKERS) -> WorkersProcess:
        port = free_port()
        server = WorkersProcess(self.argv(port, workers), port, self.tmp,
                                workers)
        self.addCleanup(server.close)
        server.start()
        assert server.proc is not None
        self.supervisor = server.proc
        return server

    def worker_pids(self) -> dict[int, int]:
        """Worker number -> pid, from the STARTING lines of the log file."""
        return {int(f['worker']): int(f['pid'])
                for f in self.log_lines('STARTING')}

    def assert_nothing_left(self) -> None:
        self.assertEqual(running(self.tmp), [])


class SharedPortContract:
    """Workers on one engine serve one port and stop together.

    A mixin, kept out of `TestCase`: each engine's subclass of
    `WorkersTestCase` provides `store()`.
    """

    def test_workers_serve_one_port_and_one_store(
        self: Any,  # a WorkersTestCase
    ) -> None:
        """Every worker answers requests, and each sees every entry."""
        server = self.start_workers()
        pids = self.worker_pids()
        self.assertEqual(sorted(pids), list(range(1, WORKERS + 1)))
        self.assertEqual(len(set(pids.values())), WORKERS)
        for pid in pids.values():
            self.assertEqual(parent_pid(pid), self.supervisor.pid)

        entries = {}
        for i in range(ENTRIES):
            uri = self.create(server, b'{"full_name": "Person %d"}' % i)
            entries[uri] = {'full_name': f'Person {i}'}
        for uri, entry in entries.items():
            r = server.request('GET', uri)
            self.assertEqual((r.status, r.json()), (200, entry))
        listing = {uri.rsplit('/', 1)[1]: entry
                   for uri, entry in entries.items()}
        for _ in range(ENTRIES):
            r = server.request('GET', '/addresses')
            self.assertEqual((r.status, r.json()), (200, listing))
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)

        responses = self.log_lines()
        self.assertEqual(len(responses), 3 * ENTRIES)
        self.assertEqual({int(f['process']) for f in responses},
                         set(pids.values()))
        self.assertEqual(server.stderr, '')
        self.assert_nothing_left()

    def test_conditional_updates_across_workers(
        self: Any,  # a WorkersTestCase
    ) -> None:
        """Clients on separate connections (so, workers) each read, change
        and PUT one entry with If-Match, retrying on 412: every update
        is in the final entry; the checks hold across processes."""
        server = self.start_workers()
        uri = self.create(server, b'{"full_name": "start"}')
        clients = 20

        def client(mark: str) -> None:
            while True:
                r = server.request('GET', uri)
                entry = r.json()
                entry['full_name'] += f' {mark}'
                r = server.request('PUT', uri, json.dumps(entry).encode(),
                                   {'If-Match': r.headers['ETag']})
                if r.status == 204:
                    return
                self.assertEqual(r.status, 412, r.body)

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, [f'c{i}' for i in range(clients)]))
        final = server.request('GET', uri).json()
        self.assertEqual(sorted(final['full_name'].split()[1:]),
                         sorted(f'c{i}' for i in range(clients)))
        applied = [f['process'] for f in self.log_lines()
                   if f['method'] == 'PUT' and f['status'] == '204']
        self.assertEqual(len(applied), clients)
        self.assertGreater(len(set(applied)), 1)  # by several workers


class FsWorkersTest(SharedPortContract, WorkersTestCase):
    pass


class SqliteWorkersTest(SharedPortContract, WorkersTestCase):
    def store(self) -> dict[str, Any]:
        return {'sqlite': os.path.join(self.tmp, 'addresses.db')}


@skip_unless_pg
class PostgresWorkersTest(SharedPortContract, WorkersTestCase):
    def store(self) -> dict[str, Any]:
        return pg_config(fresh_schema(self))


class SignalTest(WorkersTestCase):
    def test_sigterm_stops_every_worker(self) -> None:
        """SIGTERM to the supervisor stops every worker; it exits 0."""
        self.check_signal_stops_every_worker(signal.SIGTERM)

    def test_sigint_stops_every_worker(self) -> None:
        """SIGINT to the supervisor stops every worker; it exits 0."""
        self.check_signal_stops_every_worker(signal.SIGINT)

    def check_signal_stops_every_worker(self, signum: int) -> None:
        server = self.start_workers()
        self.assertEqual(server.request('GET', '/addresses').status, 200)
        started = time.monotonic()
        self.assertEqual(server.stop(signum), 0, server.stderr)
        self.assertLess(time.monotonic() - started, STOP_S)
        self.assert_each_worker_stopped()
        self.assertEqual(server.stderr, '')
        self.assert_nothing_left()

    def test_signal_to_the_whole_group(self) -> None:
        """SIGINT to every process at once, as Ctrl-C sends it, stops them
        all; the supervisor exits 0."""
        server = self.start_workers()
        for pid in [self.supervisor.pid, *self.worker_pids().values()]:
            os.kill(pid, signal.SIGINT)
        self.assertEqual(self.supervisor.wait(STOP_S), 0, server.stderr)
        self.assert_each_worker_stopped()
        self.assertEqual(server.stderr, '')
        self.assert_nothing_left()

    def assert_each_worker_stopped(self) -> None:
        """Each worker logged its three lines once, in order, and is gone;
        the supervisor logged nothing."""
        pids = set(self.worker_pids().values())
        by_pid: dict[int, list[str]] = {}
        for fields in self.log_lines_of_every_kind():
            if 'req_id' not in fields:  # not a line about a request
                by_pid.setdefault(int(fields['process']), []).append(
                    fields['message'])
        self.assertEqual(by_pid, {
            pid: ['STARTING', 'SHUTTING DOWN', 'STOPPED'] for pid in pids})
        for pid in pids:
            self.assertFalse(os.path.exists(f'/proc/{pid}'), pid)

    def log_lines_of_every_kind(self) -> list[dict[str, str]]:
        return [parse_logfmt(line)
                for line in read_text(self.log_file).splitlines()]


class FailureTest(WorkersTestCase):
    def test_worker_killed_stops_the_others(self) -> None:
        """A worker killed by a signal makes the supervisor stop the
        others and exit 1 with one line."""
        server = self.start_workers()
        pids = self.worker_pids()
        os.kill(pids[2], signal.SIGKILL)
        self.assertEqual(self.supervisor.wait(STOP_S), 1)
        self.assertEqual(
            server.stderr,
            f'addrservice: worker 2 (pid {pids[2]}) was killed by signal '
            'SIGKILL\n')
        [failed] = self.log_lines('WORKER FAILED')
        self.assertEqual(
            {k: failed[k] for k in ('process', 'level', 'worker', 'pid',
                                    'reason')},
            {'process': str(self.supervisor.pid), 'level': 'ERROR',
             'worker': '2', 'pid': str(pids[2]),
             'reason': 'was killed by signal SIGKILL'})
        self.assertEqual(
            sorted(int(f['worker']) for f in self.log_lines('STOPPED')),
            [1, 3])
        self.assert_nothing_left()

    def test_workers_stop_when_supervisor_killed(self) -> None:
        """Workers whose supervisor was killed stop by themselves."""
        self.start_workers()
        pids = self.worker_pids()
        self.supervisor.kill()
        self.supervisor.wait(STOP_S)
        self.assertEqual(wait_until_none_running(self.tmp, STOP_S), [])
        for message in ('SUPERVISOR GONE', 'STOPPED'):
            self.assertEqual(
                sorted(int(f['process']) for f in self.log_lines(message)),
                sorted(pids.values()))

    def test_port_in_use(self) -> None:
        """A port in use fails with the one line of a single server, before
        any worker starts."""
        with socket.socket() as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = self.run_failing(self.argv(port, 2))
            left = running(self.tmp)
        self.assertEqual(
            (result.returncode, result.stderr),
            (1, f'addrservice: cannot listen on localhost:{port}: '
                'Address already in use\n'))
        self.assertEqual(left, [])
        self.assertEqual(self.log_lines('STARTING'), [])
        self.assertEqual(self.log_lines('WORKER FAILED'), [])

    def test_second_server_with_workers_refused(self) -> None:
        """A second server with workers on the port of a first one is
        refused, rather than joining it; the first serves on."""
        first = self.start_workers()
        result = self.run_failing(self.argv(first.port, 2))
        self.assertEqual(
            (result.returncode, result.stderr),
            (1, f'addrservice: cannot listen on localhost:{first.port}: '
                'Address already in use\n'))
        self.assertEqual(len(self.log_lines('STARTING')), WORKERS)
        self.assertEqual(first.request('GET', '/addresses').status, 200)

    def test_store_that_cannot_open_fails_before_forking(self) -> None:
        """A store that cannot be opened fails once, before any worker,
        with one line."""
        path = os.path.join(self.tmp, 'a-file')
        with open(path, 'w', encoding='utf-8'):
            pass
        refused = f'127.0.0.1:{free_port()}'
        cases: list[tuple[dict[str, Any], str]] = [
            ({'fs': path}, f'Store "{path}" is not a writable directory'),
            ({'postgres': {'dsn': f'postgresql://postgres@{refused}/test'}},
             f'cannot connect to PostgreSQL at {refused}/test: '
             'Connection refused'),
        ]
        for number, (store, error) in enumerate(cases):
            with self.subTest(engine=next(iter(store))):
                self.config['addr-db'] = store
                config = self.write_config(self.config, f'{number}.yaml')
                result = self.run_failing(self.argv(free_port(), 2, config))
                self.assertEqual((result.returncode, result.stderr),
                                 (1, f'addrservice: {error}\n'))
                self.assertEqual(read_text(self.log_file), '')


class UsageTest(WorkersTestCase):
    def test_memory_engine_refused(self) -> None:
        """--workers 2 with the memory engine is refused with one line."""
        self.config['addr-db'] = {'memory': None}
        config = self.write_config(self.config, 'memory.yaml')
        result = self.run_failing(self.argv(free_port(), 2, config))
        self.assertEqual(
            (result.returncode, result.stderr),
            (1, 'addrservice: --workers 2 needs a store shared by processes;'
                ' the memory engine keeps entries in each process'
                ' (use sqlite, fs or postgres)\n'))

    def test_bad_worker_counts_are_usage_errors(self) -> None:
        """--workers below 1, above 64 or not a number is an argparse
        error, exit 2."""
        for value, error in (('0', 'must be at least 1, not 0'),
                             ('-3', 'must be at least 1, not -3'),
                             ('65', 'must be at most 64, not 65'),
                             ('99999999999',
                              'must be at most 64, not 99999999999'),
                             ('two', "not an integer: 'two'")):
            with self.subTest(value=value):
                result = self.run_failing(
                    [sys.executable, SERVER_PY, '-p', str(free_port()),
                     '-c', self.config_path, '--workers', value])
                self.assertEqual(result.returncode, 2)
                self.assertEqual(
                    result.stderr.splitlines()[-1],
                    f'addrservice: error: argument --workers: {error}')

    def test_port_zero_refused(self) -> None:
        """--workers 2 with port 0 is an argparse error, exit 2."""
        result = self.run_failing(self.argv(0, 2))
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.splitlines()[-1],
            'addrservice: error: --workers 2 needs a fixed --port: with '
            'port 0 each worker would get a port of its own')

    def test_one_worker_is_the_single_process_server(self) -> None:
        """--workers 1 serves from the process itself, as without it."""
        port = free_port()
        server = self.start(self.argv(port, 1), port)
        self.assertEqual(server.request('GET', '/addresses').status, 200)
        self.assertEqual(server.stop(), 0)
        assert server.proc is not None
        [starting] = self.log_lines('STARTING')
        self.assertEqual(starting['process'], str(server.proc.pid))
        self.assertNotIn('worker', starting)
        self.assertNotIn('pid', starting)
        self.assertEqual([int(f['process']) for f in self.log_lines()],
                         [server.proc.pid])
