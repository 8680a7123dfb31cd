"""End-to-end tests of graceful shutdown: requests in flight finish.

A request is kept in flight by a client that sends its headers and half
of its body, then waits: the server has started on it (its REQUEST line
is in the log) and cannot answer until the rest arrives.
"""

from __future__ import annotations

import http.client
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
    Response,
    ServerProcess,
    ServerTestCase,
    free_port,
    read_text,
)
from tests.e2e.workers_test import WorkersProcess, running
from tests.support import parse_logfmt

ENTRY = {'full_name': 'Ada Lovelace',
         'emails': [{'kind': 'work', 'email': 'ada@example.com'}]}


class HalfSentPost:
    """A POST /addresses whose body is sent in two halves, on request."""

    def __init__(self, port: int, entry: Any = ENTRY) -> None:
        self.body = json.dumps(entry).encode()
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        head = ('POST /addresses HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                'Content-Type: application/json\r\n'
                f'Content-Length: {len(self.body)}\r\n\r\n').encode()
        self.sock.sendall(head + self.body[:len(self.body) // 2])

    def finish(self) -> Response:
        self.sock.sendall(self.body[len(self.body) // 2:])
        r = http.client.HTTPResponse(self.sock)
        r.begin()
        return Response(r.status, r.reason, r.headers, r.read())

    def close(self) -> None:
        self.sock.close()


class KeptAlive:
    """A keep-alive connection that has made one request already."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
        self.get('/addresses')

    def get(self, path: str) -> Response:
        self.conn.request('GET', path)
        r = self.conn.getresponse()
        return Response(r.status, r.reason, r.headers, r.read())

    def close(self) -> None:
        self.conn.close()


class ShutdownTestCase(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store_path = os.path.join(self.tmp, 'addresses.sqlite3')
        self.config['addr-db'] = {'sqlite': self.store_path}

    def argv(self, port: int, drain_timeout: float = 10,
             *extra: str) -> list[str]:
        self.config.setdefault('http', {})['drain_timeout'] = drain_timeout
        return [sys.executable, SERVER_PY, '--port', str(port),
                '--config', self.write_config(self.config), *extra]

    def start_server(self, drain_timeout: float = 10) -> ServerProcess:
        port = free_port()
        return self.start(self.argv(port, drain_timeout), port)

    def half_sent_post(self, server: ServerProcess) -> HalfSentPost:
        """A POST in flight: the server has logged its REQUEST line."""
        before = len(self.log_lines('REQUEST'))
        post = HalfSentPost(server.port)
        self.addCleanup(post.close)
        self.wait_for(lambda: len(self.log_lines('REQUEST')) > before,
                      'the REQUEST line of the half-sent POST')
        return post

    def kept_alive(self, server: ServerProcess) -> KeptAlive:
        conn = KeptAlive(server.port)
        self.addCleanup(conn.close)
        return conn

    def wait_for(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + START_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'no {what} in {START_S} s')
            time.sleep(0.02)

    def shutting_down(self) -> int:
        return len(self.log_lines('SHUTTING DOWN'))

    def assert_refused(self, server: ServerProcess) -> None:
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', server.port), 5).close()

    def assert_shutting_down_reply(self, r: Response) -> None:
        self.assertEqual((r.status, r.reason), (503, 'Shutting Down'))
        self.assertEqual(r.headers['Connection'], 'close')
        self.assertEqual(r.json(), {'method': 'GET', 'uri': '/addresses',
                                    'code': 503, 'message': 'Shutting Down'})

    def wait_exit(self, server: ServerProcess) -> int:
        assert server.proc is not None
        return server.proc.wait(STOP_S)


class DrainTest(ShutdownTestCase):
    def test_request_in_flight_finishes(self) -> None:
        """SIGTERM with a request in flight: new connections are refused,
        a new request on an open connection gets 503, the request in
        flight gets its normal response, then the server exits 0, and
        the entry it created is stored."""
        server = self.start_server()
        idle = self.kept_alive(server)
        post = self.half_sent_post(server)
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        self.wait_for(lambda: self.shutting_down() == 1, 'SHUTTING DOWN')
        self.assertEqual(self.log_lines('SHUTTING DOWN')[0]['in_flight'],
                         '1')
        self.assert_refused(server)
        self.assert_shutting_down_reply(idle.get('/addresses'))
        r = post.finish()
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.headers['Connection'], 'close')
        location = r.headers['Location']
        self.assertEqual(self.wait_exit(server), 0, server.stderr)
        messages = [f['message'] for f in self.log_lines_of_every_kind()
                    if f['message'] not in ('REQUEST', 'RESPONSE')]
        self.assertEqual(messages, ['STARTING', 'SHUTTING DOWN', 'STOPPED'])

        again = self.start_server()
        r = again.request('GET', location)
        self.assertEqual((r.status, r.json()), (200, ENTRY))

    def test_drain_timeout_bounds_the_wait(self) -> None:
        """A request that never completes is cut after the drain timeout;
        the server logs it and exits 0."""
        server = self.start_server(drain_timeout=1)
        post = self.half_sent_post(server)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        self.assertEqual(self.wait_exit(server), 0, server.stderr)
        self.assertGreaterEqual(time.monotonic() - started, 1)
        [cut] = self.log_lines('DRAIN CUT SHORT')
        self.assertEqual((cut['in_flight'], float(cut['drain_timeout']),
                          cut['interrupted']), ('1', 1.0, 'false'))
        self.assertEqual(post.sock.recv(1024), b'')  # closed, no reply

    def test_second_ctrl_c_cuts_the_drain_short(self) -> None:
        """A second SIGINT stops waiting for the requests in flight."""
        server = self.start_server(drain_timeout=60)
        self.half_sent_post(server)
        server.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        self.wait_for(lambda: self.shutting_down() == 1, 'SHUTTING DOWN')
        server.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        self.assertEqual(self.wait_exit(server), 0, server.stderr)
        [cut] = self.log_lines('DRAIN CUT SHORT')
        self.assertEqual(cut['interrupted'], 'true')

    def test_idle_server_stops_at_once(self) -> None:
        """With nothing in flight, open keep-alive connections do not hold
        the shutdown up."""
        server = self.start_server(drain_timeout=60)
        self.kept_alive(server)
        started = time.monotonic()
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)
        self.assertLess(time.monotonic() - started, STOP_S)
        self.assertEqual(self.log_lines('DRAIN CUT SHORT'), [])

    def test_client_gone_is_not_waited_for(self) -> None:
        """A request whose client went away is no longer in flight."""
        server = self.start_server(drain_timeout=60)
        self.half_sent_post(server).close()
        # Stops within STOP_S, far less than the drain timeout.
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr)
        self.assertEqual(self.log_lines('DRAIN CUT SHORT'), [])

    def log_lines_of_every_kind(self) -> list[dict[str, str]]:
        return [parse_logfmt(line)
                for line in read_text(self.log_file).splitlines()]


class WorkersDrainTest(ShutdownTestCase):
    WORKERS = 2

    def test_every_worker_drains(self) -> None:
        """With workers, SIGTERM to the supervisor lets the request in
        flight in a worker finish; every process exits 0."""
        port = free_port()
        argv = self.argv(port, 10, '--workers', str(self.WORKERS))
        server = WorkersProcess(argv, port, self.tmp, self.WORKERS)
        self.addCleanup(self.kill_leftovers)
        self.addCleanup(server.close)
        server.start()
        post = self.half_sent_post(server)
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        self.wait_for(lambda: self.shutting_down() == self.WORKERS,
                      'SHUTTING DOWN from every worker')
        self.assert_refused(server)
        r = post.finish()
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.wait_exit(server), 0, server.stderr)
        self.assertEqual(len(self.log_lines('STOPPED')), self.WORKERS)
        self.assertEqual(running(self.tmp), [])

    def kill_leftovers(self) -> None:
        for pid in running(self.tmp):
            os.kill(pid, signal.SIGKILL)
