"""Timeouts, slow clients, proxy headers and the auth start-up checks, with
the server as a process.

Each server runs with timeouts of a second or two, so that the tests see
them expire quickly.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
import unittest
from typing import Any

from tests.e2e.server_test import (
    SERVER_PY,
    ServerProcess,
    ServerTestCase,
    console_fields,
    free_port,
    read_text,
)
from tests.support import environment, parse_logfmt

ALICE = 'alice-token-0123456789abcdef'
ENTRY = b'{"full_name": "Slow Client"}'
SLOW_CLIENTS = 10
BYTE_INTERVAL_S = 0.05


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    return sock


def post_head(length: int, extra: str = '') -> bytes:
    return (f'POST /addresses HTTP/1.1\r\nHost: x\r\n'
            f'Content-Type: application/json\r\n'
            f'Content-Length: {length}\r\n{extra}\r\n').encode()


def wait_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """All the server sends until it closes; and how long that took."""
    sock.settimeout(limit_s)
    started = time.monotonic()
    received = b''
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f'still open after {limit_s} s: '
                                 f'{received!r}') from None
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def status_of(response: bytes) -> str:
    return response.split(b'\r\n', 1)[0].decode('latin-1')


class LimitsTestCase(ServerTestCase):
    def start_server(self, address: str | None = None,
                     **http: Any) -> ServerProcess:
        self.config['http'].update(http)
        port = free_port()
        argv = [sys.executable, SERVER_PY, '--port', str(port),
                '--config', self.write_config(self.config)]
        if address is not None:
            argv += ['--address', address]
        return self.start(argv, port)

    def use_tokens(self) -> str:
        path = os.path.join(self.tmp, 'tokens')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(f'alice:{ALICE}\n')
        self.config['auth'] = {'tokens_file': path}
        return path


class SlowClientTest(LimitsTestCase):
    def test_trickled_bodies_do_not_block_others(self) -> None:
        """While clients trickle bodies a byte at a time, other requests
        are answered at once; the trickled ones are then created."""
        server = self.start_server(body_timeout=10)
        results: list[bytes] = []

        def trickle() -> None:
            with connect(server.port) as sock:
                sock.sendall(post_head(len(ENTRY)))
                for byte in ENTRY:
                    time.sleep(BYTE_INTERVAL_S)
                    sock.sendall(bytes([byte]))
                results.append(wait_closed_or_response(sock))

        threads = [threading.Thread(target=trickle)
                   for _ in range(SLOW_CLIENTS)]
        for thread in threads:
            thread.start()
        latencies = []
        time.sleep(0.2)  # every slow client is sending its body by now
        while any(thread.is_alive() for thread in threads):
            started = time.monotonic()
            r = server.request('GET', '/addresses')
            latencies.append(time.monotonic() - started)
            self.assertEqual(r.status, 200)
            time.sleep(0.02)
        for thread in threads:
            thread.join(10)

        self.assertEqual([status_of(r) for r in results],
                         ['HTTP/1.1 201 Created'] * SLOW_CLIENTS)
        listing = server.request('GET', '/addresses').json()
        self.assertEqual(list(listing.values()),
                         [json.loads(ENTRY)] * SLOW_CLIENTS)
        # The trickle takes len(ENTRY) * 50 ms = 1.4 s; others meanwhile
        # take a few milliseconds each.
        self.assertGreater(len(latencies), 20)
        self.assertLess(max(latencies), 0.5, latencies)
        print(f'\n{len(latencies)} requests during {SLOW_CLIENTS} trickled'
              f' bodies: median {statistics.median(latencies) * 1000:.1f} '
              f'ms, max {max(latencies) * 1000:.1f} ms', file=sys.stderr)

    def test_stalled_body_is_cut(self) -> None:
        """A body that stops arriving is cut after body_timeout: the
        connection closes without a response, and the server carries on."""
        server = self.start_server(body_timeout=1)
        with connect(server.port) as sock:
            sock.sendall(post_head(len(ENTRY)) + ENTRY[:10])
            received, waited = wait_closed(sock, 5)
        self.assertEqual(received, b'')
        self.assertGreaterEqual(waited, 0.9)
        self.assertEqual(server.request('GET', '/addresses').body, b'{}')
        self.assertEqual(server.stop(), 0)
        self.assertIn('Timeout reading body from 127.0.0.1',
                      read_text(self.log_file))
        [cut, listed] = [
            parse_logfmt(line)
            for line in read_text(self.log_file).splitlines()
            if 'message="RESPONSE"' in line]
        self.assertEqual(
            (cut['method'], cut['status'], cut['reason'], listed['status']),
            ('POST', '499', 'Connection closed before the response', '200'))

    def test_client_gone_mid_body_is_logged_once(self) -> None:
        """A client that closes its connection half-way through its body
        gets one RESPONSE line, status 499; nothing is stored."""
        server = self.start_server()
        with connect(server.port) as sock:
            sock.sendall(post_head(len(ENTRY)) + ENTRY[:10])
            time.sleep(0.2)
        self.assertEqual(server.request('GET', '/addresses').body, b'{}')
        self.assertEqual(server.stop(), 0)
        self.assertEqual(
            [(f['method'], f['status']) for f in self.log_lines()],
            [('POST', '499'), ('GET', '200')])

    def test_body_timeout_bounds_the_whole_body(self) -> None:
        """A body that keeps trickling, but takes longer than body_timeout
        in all, is cut too."""
        server = self.start_server(body_timeout=1)
        with connect(server.port) as sock:
            sock.sendall(post_head(len(ENTRY)))
            started = time.monotonic()
            for byte in ENTRY:
                time.sleep(0.1)
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
            received, _ = wait_closed(sock, 5)
            waited = time.monotonic() - started
        self.assertEqual(received, b'')
        self.assertLess(waited, 2.5)  # the whole trickle takes 2.8 s
        self.assertEqual(server.request('GET', '/addresses').body, b'{}')


def wait_closed_or_response(sock: socket.socket) -> bytes:
    """The response to a request sent on `sock` (the server keeps the
    connection open after it)."""
    sock.settimeout(10)
    received = b''
    while b'\r\n\r\n' not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


class IdleConnectionTest(LimitsTestCase):
    def test_idle_keep_alive_connection_is_closed(self) -> None:
        """A kept-alive connection with no next request is closed after
        idle_connection_timeout; until then it serves more requests."""
        server = self.start_server(idle_connection_timeout=1)
        conn = http.client.HTTPConnection('127.0.0.1', server.port,
                                          timeout=10)
        self.addCleanup(conn.close)
        for _ in range(3):
            conn.request('GET', '/addresses')
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b'{}'))
            time.sleep(0.5)
        assert conn.sock is not None
        received, waited = wait_closed(conn.sock, 5)
        self.assertEqual(received, b'')
        self.assertGreater(waited, 0.3)
        self.assertLess(waited, 1.5)

    def test_silent_and_slow_header_clients_are_closed(self) -> None:
        """A connection that sends nothing, or trickles its headers, is
        closed after idle_connection_timeout."""
        server = self.start_server(idle_connection_timeout=1)
        with connect(server.port) as silent, connect(server.port) as slow:
            slow.sendall(b'GET /addresses HTTP/1.1\r\n')
            started = time.monotonic()
            for _ in range(30):
                time.sleep(0.1)
                try:
                    slow.sendall(b'X-A: b\r\n')
                except (BrokenPipeError, ConnectionResetError):
                    break
            received, _ = wait_closed(slow, 5)
            self.assertEqual(received, b'')
            self.assertLess(time.monotonic() - started, 2.0)
            received, _ = wait_closed(silent, 5)
            self.assertEqual(received, b'')


class HeaderSizeTest(LimitsTestCase):
    def test_headers_over_max_header_size(self) -> None:
        """Headers over http.max_header_size close the connection without
        a response; smaller ones are served."""
        server = self.start_server(max_header_size=1024)
        for size, expected in ((500, 'HTTP/1.1 200 OK'), (2000, '')):
            with self.subTest(size=size), connect(server.port) as sock:
                sock.sendall(b'GET /addresses HTTP/1.1\r\nHost: x\r\n'
                             b'Connection: close\r\n'
                             b'X-Big: ' + b'a' * size + b'\r\n\r\n')
                received, _ = wait_closed(sock, 5)
                self.assertEqual(status_of(received), expected)


class ChunkedLimitTest(LimitsTestCase):
    def test_chunk_announcing_a_huge_size_is_json_413(self) -> None:
        """A chunk whose announced size is far over every limit still gets
        the JSON 413 once the body passes max_body_size, not a bare 400."""
        server = self.start_server(max_body_size=1000)
        with connect(server.port) as sock:
            sock.sendall(b'POST /addresses HTTP/1.1\r\nHost: x\r\n'
                         b'Transfer-Encoding: chunked\r\n\r\n'
                         b'ffffffff\r\n' + b'x' * 2000)
            received, _ = wait_closed(sock, 5)
        head, _, body = received.partition(b'\r\n\r\n')
        self.assertEqual(status_of(head),
                         'HTTP/1.1 413 Request body too large')
        self.assertEqual(json.loads(body), {
            'method': 'POST', 'uri': '/addresses', 'code': 413,
            'message': 'Request body too large',
            'detail': 'over the limit of 1000 bytes'})


class ProxyHeadersTest(LimitsTestCase):
    def test_x_real_ip_only_behind_a_proxy(self) -> None:
        """X-Real-Ip and X-Forwarded-For set the logged ip only when
        http.behind_proxy is true."""
        headers = {'X-Real-Ip': '203.0.113.7'}
        forwarded = {'X-Forwarded-For': '198.51.100.9'}
        expected = {False: ['127.0.0.1', '127.0.0.1'],
                    True: ['203.0.113.7', '198.51.100.9']}
        for behind_proxy, ips in expected.items():
            with self.subTest(behind_proxy=behind_proxy):
                server = self.start_server(behind_proxy=behind_proxy)
                for sent in (headers, forwarded):
                    r = server.request('GET', '/addresses', headers=sent)
                    self.assertEqual(r.status, 200)
                self.assertEqual(server.stop(), 0)
                lines = self.log_lines()[-2:]
                self.assertEqual([f['ip'] for f in lines], ips)

    def test_x_forwarded_for_behind_a_proxy(self) -> None:
        """Behind a proxy, the client is the last X-Forwarded-For address
        the proxy added."""
        server = self.start_server(behind_proxy=True)
        r = server.request('GET', '/addresses', headers={
            'X-Forwarded-For': '192.0.2.1, 198.51.100.9'})
        self.assertEqual(r.status, 200)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(self.log_lines()[-1]['ip'], '198.51.100.9')


class OpenAddressWarningTest(LimitsTestCase):
    """The warning is logged before the port is bound. So that no test
    server is ever open beyond loopback, the port is held on 127.0.0.1
    first: a server asked for all interfaces logs, then cannot bind."""

    def warnings_of_blocked_start(self, address: str) -> list[dict[str, str]]:
        with socket.socket() as holder:
            holder.bind(('127.0.0.1', 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = self.run_failing(
                [sys.executable, SERVER_PY, '--port', str(port),
                 '--config', self.write_config(self.config),
                 '--address', address])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn('cannot listen', result.stderr)
        return [console_fields(line) for line in result.stdout.splitlines()
                if ' WARNING : ' in line]

    def test_all_interfaces_without_auth_warns(self) -> None:
        """Listening on all interfaces with auth off logs one WARNING."""
        for address, shown in (('0.0.0.0', '0.0.0.0'), ('', '*')):
            with self.subTest(address=address):
                [warning] = self.warnings_of_blocked_start(address)
                self.assertEqual(
                    (warning['message'], warning['address']),
                    ('OPEN WITHOUT AUTH', shown))
                self.assertIn('auth.tokens_file', warning['detail'])

    def test_no_warning_with_auth_or_on_localhost(self) -> None:
        """With auth on, or on localhost (the default), there is none."""
        server = self.start_server()
        self.assertEqual(server.stop(), 0)
        self.assertNotIn(' WARNING : ', server.stdout)
        self.use_tokens()
        self.assertEqual(self.warnings_of_blocked_start('0.0.0.0'), [])


class AuthStartupTest(LimitsTestCase):
    def test_tokens_file_problems_are_one_line(self) -> None:
        """A tokens file that is missing or broken, or a variable that is
        not set, stops the server with one line."""
        missing = os.path.join(self.tmp, 'absent')
        broken = os.path.join(self.tmp, 'broken')
        with open(broken, 'w', encoding='utf-8') as f:
            f.write(f'# tokens\nalice:{ALICE}\nbob:short\n')
        cases = {
            'missing': ({'tokens_file': missing},
                        f'addrservice: cannot read tokens file {missing}: '
                        'No such file or directory'),
            'broken': ({'tokens_file': broken},
                       f'addrservice: tokens file {broken}, line 3: the '
                       'token is shorter than 16 characters'),
            'unset variable': ({'tokens_file_env': 'ADDRSERVICE_TEST_UNSET'},
                               "addrservice: Config 'auth.tokens_file_env' "
                               'names ADDRSERVICE_TEST_UNSET, which is not '
                               'set'),
        }
        for name, (auth, line) in cases.items():
            with self.subTest(name):
                self.config['auth'] = auth
                result = self.run_failing(
                    [sys.executable, SERVER_PY, '-p', str(free_port()),
                     '-c', self.write_config(self.config)])
                self.assertEqual(result.returncode, 1)
                self.assertEqual(result.stderr, line + '\n')

    def test_tokens_file_from_the_environment(self) -> None:
        """With auth.tokens_file_env, the variable names the file."""
        path = self.use_tokens()
        self.config['auth'] = {'tokens_file_env': 'ADDRSERVICE_TEST_TOKENS'}
        with environment(ADDRSERVICE_TEST_TOKENS=path):
            server = self.start_server()
        r = server.request('GET', '/addresses')
        self.assertEqual((r.status, r.headers['WWW-Authenticate']),
                         (401, 'Bearer realm="addrservice"'))
        r = server.request('GET', '/addresses', headers={
            'Authorization': f'Bearer {ALICE}'})
        self.assertEqual(r.status, 200)
        self.assertEqual(server.stop(), 0)
        self.assertEqual([f.get('auth') for f in self.log_lines()],
                         [None, 'alice'])
        self.assertNotIn(ALICE, read_text(self.log_file))


if __name__ == '__main__':
    unittest.main()
