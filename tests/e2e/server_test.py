"""End-to-end tests: the server as a process, spoken to over HTTP.

They follow the curl transcripts of the tutorial (parts 2, 3 and 4).
Each server runs on a free port of 127.0.0.1 with a config written to a
temporary directory, and is stopped with SIGINT or SIGTERM so that it
exits normally (coverage of the subprocess is saved at exit).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, NamedTuple, Sequence

import yaml

from tests.support import parse_logfmt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
LOCAL_CONFIG = os.path.join(REPO, 'configs', 'addressbook-local.yaml')
ADDRESSES_DIR = os.path.join(REPO, 'data', 'addresses')
# Relative, as the tutorial runs it from the repository root.
SERVER_PY = os.path.join('addrservice', 'tornado', 'server.py')
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), 'addrservice')

START_S = 10.0
STOP_S = 10.0
JSON_TYPE = 'application/json; charset=UTF-8'
# What `curl -d` sends.
FORM_TYPE = {'Content-Type': 'application/x-www-form-urlencoded'}
JSON_HEADERS = {'Content-Type': 'application/json'}
ID_RE = r'[0-9a-f]{32}'


class Response(NamedTuple):
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def local_config(log_file: str) -> dict[str, Any]:
    """configs/addressbook-local.yaml, logging to `log_file`."""
    with open(LOCAL_CONFIG, encoding='utf-8') as f:
        config: dict[str, Any] = yaml.safe_load(f)
    config['logging']['handlers']['file']['filename'] = log_file
    return config


def console_fields(line: str) -> dict[str, str]:
    """The logfmt fields of a console line, after its brief prefix."""
    return parse_logfmt(line.split(' : ', 1)[1])


def read_text(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


class ServerProcess:
    """One server process; its console goes to files in `workdir`."""

    def __init__(self, argv: Sequence[str], port: int, workdir: str) -> None:
        self.argv = list(argv)
        self.port = port
        self.stdout_path = os.path.join(workdir, f'{port}.stdout')
        self.stderr_path = os.path.join(workdir, f'{port}.stderr')
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def stdout(self) -> str:
        return read_text(self.stdout_path)

    @property
    def stderr(self) -> str:
        return read_text(self.stderr_path)

    def start(self) -> None:
        """Start, and wait until it has logged STARTING and accepts."""
        with open(self.stdout_path, 'wb') as out, \
                open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(self.argv, cwd=REPO,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f'server exited {self.proc.returncode}:'
                                     f' {self.stderr}')
            if 'message="STARTING"' in self.stdout and self._accepts():
                return
            time.sleep(0.05)
        raise AssertionError(f'server not ready in {START_S} s: {self.stderr}')

    def _accepts(self) -> bool:
        try:
            socket.create_connection(('127.0.0.1', self.port), 1).close()
        except OSError:
            return False
        return True

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Signal it and reap it; its exit code."""
        if self.proc is None:
            raise AssertionError('server was not started')
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # a hung server; the test fails anyway
            self.proc.wait()
            raise AssertionError(f'server did not stop in {STOP_S} s')

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.stop(signal.SIGTERM)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        try:
            conn.request(method, path, body, headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.headers, r.read())
        finally:
            conn.close()


class ServerTestCase(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-e2e-')
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.log_file = os.path.join(self.tmp, 'addrservice-app.log')
        self.config = local_config(self.log_file)

    def write_config(self, config: Any, name: str = 'config.yaml') -> str:
        path = os.path.join(self.tmp, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(config if isinstance(config, str)
                    else yaml.safe_dump(config))
        return path

    def start(self, argv: Sequence[str], port: int) -> ServerProcess:
        server = ServerProcess(argv, port, self.tmp)
        self.addCleanup(server.close)
        server.start()
        return server

    def start_tutorial_server(self, debug: bool = True) -> ServerProcess:
        """`python addrservice/tornado/server.py --port N --config CFG`."""
        port = free_port()
        argv = [sys.executable, SERVER_PY, '--port', str(port),
                '--config', self.write_config(self.config)]
        return self.start(argv + ['--debug'] * debug, port)

    def run_failing(
        self, argv: Sequence[str]
    ) -> subprocess.CompletedProcess[str]:
        """Run a server that is expected to exit at once."""
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                              timeout=START_S)

    def log_lines(self, message: str = 'RESPONSE') -> list[dict[str, str]]:
        lines = map(parse_logfmt, read_text(self.log_file).splitlines())
        return [fields for fields in lines if fields.get('message') == message]

    def create(self, server: ServerProcess, body: bytes,
               headers: dict[str, str] = JSON_HEADERS) -> str:
        r = server.request('POST', '/addresses', body, headers)
        self.assertEqual(r.status, 201, r.body)
        return r.headers['Location']


class TutorialTest(ServerTestCase):
    def test_tutorial_command_starts_server(self) -> None:
        """The tutorial's command line starts the server and logs STARTING."""
        server = self.start_tutorial_server()
        self.assertIn(
            f'addrservice INFO : message="STARTING" '
            f'service_name="Address Book" port={server.port}',
            [line.split(' ', 2)[2] for line in server.stdout.splitlines()])
        self.assertEqual(server.request('GET', '/addresses').body, b'{}')

    def test_part2_transcript(self) -> None:
        """Part 2's curl session gives the tutorial's statuses and bodies."""
        server = self.start_tutorial_server(debug=True)
        responses = []

        def call(method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Response:
            r = server.request(method, path, body, headers)
            responses.append(r)
            return r

        r = call('POST', '/addresses', b'{"full_name": "Bill Gates"}',
                 FORM_TYPE)
        self.assertEqual((r.status, r.body), (201, b''))
        self.assertEqual(r.headers['Content-Length'], '0')
        self.assertRegex(r.headers['Location'], f'^/addresses/{ID_RE}$')
        uri = r.headers['Location']
        entry_id = uri.rsplit('/', 1)[1]

        r = call('GET', uri)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers['Content-Type'], JSON_TYPE)
        self.assertRegex(r.headers['Etag'], r'^"[0-9a-f]{40}"$')
        self.assertEqual(r.body, b'{"full_name": "Bill Gates"}')

        r = call('GET', uri, headers={'If-None-Match': r.headers['Etag']})
        self.assertEqual((r.status, r.body), (304, b''))

        r = call('PUT', uri, b'{"full_name": "William Henry Gates III"}',
                 FORM_TYPE)
        self.assertEqual((r.status, r.body), (204, b''))

        r = call('GET', '/addresses')
        self.assertEqual((r.status, r.headers['Content-Type']),
                         (200, JSON_TYPE))
        self.assertEqual(
            r.body,
            b'{"%s": {"full_name": "William Henry Gates III"}}'
            % entry_id.encode())

        r = call('DELETE', uri)
        self.assertEqual((r.status, r.body), (204, b''))

        r = call('GET', '/addresses')
        self.assertEqual((r.status, r.body), (200, b'{}'))

        r = call('GET', uri)
        self.assertEqual((r.status, r.reason), (404, f"'{entry_id}'"))
        self.assertEqual(r.headers['Content-Type'], JSON_TYPE)
        body = r.json()
        self.assertIn('Traceback (most recent call last)', body.pop('trace'))
        self.assertEqual(body, {'method': 'GET', 'uri': uri, 'code': 404,
                                'message': f"'{entry_id}'"})

        request_ids = [r.headers['X-Request-ID'] for r in responses]
        for request_id in request_ids:
            self.assertRegex(request_id, f'^{ID_RE}$')
        self.assertEqual(len(set(request_ids)), len(responses))

    def test_part4_transcript(self) -> None:
        """Part 4's session: namo created, replaced by raga, deleted."""
        server = self.start_tutorial_server()
        namo, raga = (self.address_file(n) for n in ('namo', 'raga'))

        uri = self.create(server, namo)
        self.assertRegex(uri, f'^/addresses/{ID_RE}$')
        r = server.request('GET', uri)
        self.assertEqual((r.status, r.json()), (200, json.loads(namo)))

        r = server.request('PUT', uri, raga, JSON_HEADERS)
        self.assertEqual((r.status, r.body), (204, b''))
        r = server.request('GET', uri)
        self.assertEqual((r.status, r.json()), (200, json.loads(raga)))

        r = server.request('DELETE', uri)
        self.assertEqual((r.status, r.body), (204, b''))
        r = server.request('GET', '/addresses')
        self.assertEqual((r.status, r.body), (200, b'{}'))

    def address_file(self, nickname: str) -> bytes:
        with open(os.path.join(ADDRESSES_DIR, nickname + '.json'), 'rb') as f:
            return f.read()

    def test_no_trace_without_debug(self) -> None:
        """Without --debug, error bodies carry no trace."""
        server = self.start_tutorial_server(debug=False)
        r = server.request('GET', '/addresses/nope')
        self.assertEqual((r.status, r.reason), (404, "'nope'"))
        self.assertEqual(r.json(), {'method': 'GET', 'uri': '/addresses/nope',
                                    'code': 404, 'message': "'nope'"})
        r = server.request('POST', '/addresses', b'{"full_name":', FORM_TYPE)
        self.assertEqual((r.status, r.reason), (400, 'Invalid JSON body'))
        self.assertNotIn('trace', r.json())
        r = server.request('GET', '/unknown')
        self.assertEqual(r.json(), {'method': 'GET', 'uri': '/unknown',
                                    'code': 404,
                                    'message': 'Unknown Endpoint'})


class HttpTest(ServerTestCase):
    def test_gzip_response_and_request(self) -> None:
        """Responses are gzipped on request; gzipped request bodies work."""
        server = self.start_tutorial_server()
        for i in range(20):
            self.create(server, b'{"full_name": "Person %d"}' % i)
        r = server.request('GET', '/addresses',
                           headers={'Accept-Encoding': 'gzip'})
        self.assertEqual((r.status, r.headers['Content-Encoding']),
                         (200, 'gzip'))
        listing = json.loads(gzip.decompress(r.body))
        self.assertEqual(sorted(e['full_name'] for e in listing.values()),
                         sorted(f'Person {i}' for i in range(20)))

        body = b'{"full_name": "Zipped Person"}'
        uri = self.create(server, gzip.compress(body),
                          {**JSON_HEADERS, 'Content-Encoding': 'gzip'})
        self.assertEqual(server.request('GET', uri).body, body)

    def test_body_over_limit_gets_one_413(self) -> None:
        """A 200 MB Content-Length gets one JSON 413 and no parse error."""
        server = self.start_tutorial_server(debug=False)
        conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
        self.addCleanup(conn.close)
        conn.putrequest('POST', '/addresses')
        conn.putheader('Content-Type', 'application/json')
        conn.putheader('Content-Length', str(200 * 1024 * 1024))
        conn.endheaders()
        conn.send(b'{"full_name": "' + b'x' * 1000)
        data = read_until_closed(conn)

        self.assertEqual(data.count(b'HTTP/1.'), 1, data)
        head, _, body = data.partition(b'\r\n\r\n')
        status_line, *header_lines = head.decode('latin-1').split('\r\n')
        headers = dict(line.lower().split(': ', 1) for line in header_lines)
        self.assertEqual(status_line, 'HTTP/1.1 413 Request body too large')
        self.assertEqual(int(headers['content-length']), len(body))
        self.assertEqual(json.loads(body), {
            'method': 'POST', 'uri': '/addresses', 'code': 413,
            'message': 'Request body too large',
            'detail': '209715200 bytes announced; the limit is 1048576'})

        self.assertEqual(server.stop(), 0)
        self.assertEqual([f['status'] for f in self.log_lines()], ['413'])
        for text in (server.stdout, server.stderr, read_text(self.log_file)):
            self.assertNotIn('Malformed HTTP message', text)


def read_until_closed(conn: http.client.HTTPConnection) -> bytes:
    """Everything the server sends until it closes (or 5 s pass)."""
    assert conn.sock is not None
    conn.sock.settimeout(5)
    data = b''
    while True:
        try:
            chunk = conn.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk


class LoggingTest(ServerTestCase):
    def test_canonical_log_lines(self) -> None:
        """Each request writes one RESPONSE line with its id and status."""
        server = self.start_tutorial_server()
        uri = self.create(server, b'{"full_name": "Bill Gates"}')
        responses = [
            server.request('GET', uri),
            server.request('GET', '/addresses/missing'),
            server.request('GET', '/addresses',
                           headers={'X-Request-ID': 'abc-123'}),
        ]
        self.assertEqual(responses[2].headers['X-Request-ID'], 'abc-123')
        self.assertEqual(server.stop(), 0)

        lines = self.log_lines()
        self.assertEqual(
            [(f['method'], f['uri'], f['status'], f['level']) for f in lines],
            [('POST', '/addresses', '201', 'INFO'),
             ('GET', uri, '200', 'INFO'),
             ('GET', '/addresses/missing', '404', 'WARNING'),
             ('GET', '/addresses', '200', 'INFO')])
        self.assertEqual([f['req_id'] for f in lines[1:]],
                         [r.headers['X-Request-ID'] for r in responses])
        self.assertEqual(lines[3]['req_id'], 'abc-123')
        for fields in lines:
            self.assertEqual(fields['ip'], '127.0.0.1')
            self.assertGreaterEqual(float(fields['time_ms']), 0.0)
        self.assertEqual(lines[2]['reason'], "'missing'")

    def test_log_file_rotates(self) -> None:
        """A small maxBytes rotates the log file, keeping backupCount."""
        self.config['logging']['handlers']['file'].update(
            maxBytes=2000, backupCount=2)
        server = self.start_tutorial_server()
        for _ in range(50):
            self.assertEqual(server.request('GET', '/addresses').status, 200)
        self.assertEqual(server.stop(), 0)

        logs = [self.log_file, self.log_file + '.1', self.log_file + '.2']
        for path in logs:
            self.assertTrue(os.path.exists(path), path)
        self.assertFalse(os.path.exists(self.log_file + '.3'))
        longest = max(len(line) for path in logs
                      for line in read_text(path).splitlines(keepends=True))
        for path in logs:
            self.assertLess(os.path.getsize(path), 2000 + longest, path)


class ProcessTest(ServerTestCase):
    def test_signals_stop_cleanly(self) -> None:
        """SIGINT and SIGTERM each stop the server with exit status 0."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal=signum.name):
                server = self.start_tutorial_server()
                self.assertEqual(server.request('GET', '/addresses').status,
                                 200)
                started = time.monotonic()
                self.assertEqual(server.stop(signum), 0, server.stderr)
                self.assertLess(time.monotonic() - started, STOP_S)
                messages = [console_fields(line).get('message')
                            for line in server.stdout.splitlines()]
                self.assertEqual(
                    [m for m in messages if m != 'RESPONSE'],
                    ['STARTING', 'SHUTTING DOWN', 'STOPPED'])
                self.assertNotIn('Traceback', server.stderr)

    def test_module_and_console_script_serve(self) -> None:
        """`python -m addrservice` and the console script both serve."""
        config = self.write_config(self.config)
        for command in ([sys.executable, '-m', 'addrservice'],
                        [CONSOLE_SCRIPT]):
            with self.subTest(command=command[-1]):
                port = free_port()
                server = self.start(
                    command + ['-p', str(port), '-c', config], port)
                r = server.request('GET', '/addresses')
                self.assertEqual((r.status, r.body), (200, b'{}'))
                self.assertEqual(server.stop(), 0)

    def test_missing_config_file_is_usage_error(self) -> None:
        """A config path that does not exist is an argparse error, exit 2."""
        path = os.path.join(self.tmp, 'absent.yaml')
        result = self.run_failing(
            [sys.executable, SERVER_PY, '-p', str(free_port()), '-c', path])
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.splitlines()[-1],
            f"addrservice: error: argument -c/--config: can't open '{path}': "
            f"[Errno 2] No such file or directory: '{path}'")
        self.assertNotIn('Traceback', result.stderr)

    def test_startup_failures_are_one_line(self) -> None:
        """Each bad config fails with one line and no traceback."""
        no_db = {k: v for k, v in self.config.items() if k != 'addr-db'}
        cases: list[tuple[str, Any, str]] = [
            ('no addr-db', no_db, "'addr-db'"),
            ('unknown engine', {**self.config, 'addr-db': {'mongo': None}},
             'supported: memory, fs'),
            ('invalid YAML', 'addr-db: {memory: null\n', 'not valid YAML'),
        ]
        for name, config, fragment in cases:
            with self.subTest(name):
                result = self.run_failing(
                    [sys.executable, SERVER_PY, '-p', str(free_port()),
                     '-c', self.write_config(config, f'{name}.yaml')])
                self.assert_one_line_failure(result, fragment)

    def test_port_in_use_is_one_line(self) -> None:
        """A port already in use fails with one line naming the problem."""
        with socket.socket() as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = self.run_failing(
                [sys.executable, SERVER_PY, '-p', str(port),
                 '-c', self.write_config(self.config)])
        self.assert_one_line_failure(
            result,
            f'cannot listen on localhost:{port}: Address already in use')

    def assert_one_line_failure(
        self, result: subprocess.CompletedProcess[str], fragment: str
    ) -> None:
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith('addrservice: '), lines[0])
        self.assertIn(fragment, lines[0])
