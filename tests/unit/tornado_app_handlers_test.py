"""The Tornado app: routing, error bodies, request ids, canonical logs."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import re
import unittest
from typing import Any, AsyncIterator

import tornado.httpclient
import tornado.iostream
import tornado.tcpclient
import tornado.testing
import tornado.web

from addrservice.database.addressbook_db import InMemoryAddressBookDB
from addrservice.database.base import StoredJSON
from addrservice.datamodel import AddressEntry
from addrservice.errors import StorageUnavailableError
from addrservice.tornado.app import log_function
from tests.support import (
    AddressServiceTornadoAppTestSetup,
    LogCapture,
    parse_logfmt,
)

UUID_HEX = re.compile(r'^[0-9a-f]{32}$')


class AddressServiceTornadoAppUnitTests(AddressServiceTornadoAppTestSetup):
    def test_default_handler(self) -> None:
        """An unknown path is 404 'Unknown Endpoint' with the error body."""
        r = self.fetch('/does-not-exist', method='GET', headers=None)
        info = self.assert_error(r, 404, 'Unknown Endpoint')
        self.assertEqual(info['uri'], '/does-not-exist')
        self.assertIn('Traceback', info['trace'])

    def test_error_body_has_exactly_the_documented_keys(self) -> None:
        """Error bodies carry method, uri, code, message (+trace in debug)."""
        r = self.request('DELETE', '/addresses/nope')
        body = self.assert_error(r, 404, "'nope'")
        self.assertEqual(sorted(body),
                         ['code', 'message', 'method', 'trace', 'uri'])
        self.assertEqual(body['uri'], '/addresses/nope')

    def test_unsupported_method(self) -> None:
        """An unsupported method is 405 with an Allow header."""
        for path, allow in [('/addresses', 'GET, HEAD, POST'),
                            ('/addresses/abc', 'GET, HEAD, PUT, DELETE')]:
            with self.subTest(path=path):
                r = self.request('PATCH', path, body='{}')
                self.assert_error(r, 405, 'Method Not Allowed')
                self.assertEqual(r.headers['Allow'], allow)

    def test_unsupported_media_type(self) -> None:
        """A body labelled as neither JSON nor form data is 415."""
        for content_type in ['application/xml', 'multipart/form-data']:
            with self.subTest(content_type=content_type):
                r = self.request('POST', '/addresses', {'full_name': 'x'},
                                 headers={'Content-Type': content_type})
                self.assert_error(r, 415, 'Unsupported Media Type')
        self.assertEqual(self.assert_store_intact(), {})

    def test_accepted_media_types(self) -> None:
        """JSON bodies are accepted with JSON, form, text or no label."""
        for content_type in [None, 'application/json',
                             'application/json; charset=utf-8',
                             'application/x-www-form-urlencoded',
                             'text/plain', 'application/merge+json']:
            with self.subTest(content_type=content_type):
                headers = {'Content-Type': content_type} \
                    if content_type else {}
                r = self.request('POST', '/addresses', {'full_name': 'x'},
                                 headers=headers)
                self.assertEqual(r.code, 201)

    def test_request_id_is_echoed(self) -> None:
        """A well-formed X-Request-ID is echoed back and used."""
        for req_id in ['abc-123', 'A.b_C-9', 'x' * 128]:
            with self.subTest(req_id=req_id):
                r = self.fetch('/addresses',
                               headers={'X-Request-ID': req_id})
                self.assertEqual(r.headers['X-Request-ID'], req_id)

    def test_bad_request_id_is_replaced(self) -> None:
        """A malformed X-Request-ID is replaced with a fresh uuid4 hex."""
        for req_id in ['', 'x' * 129, 'a b', 'a"b', 'a=b', 'é', 'a,b']:
            with self.subTest(req_id=req_id):
                r = self.fetch('/does-not-exist',
                               headers={'X-Request-ID': req_id})
                self.assertRegex(r.headers['X-Request-ID'], UUID_HEX)

    def test_fresh_request_ids_differ(self) -> None:
        """Without X-Request-ID every response gets its own id."""
        ids = {self.fetch('/addresses').headers['X-Request-ID']
               for _ in range(5)}
        self.assertEqual(len(ids), 5)
        self.assertTrue(all(UUID_HEX.match(i) for i in ids))

    def test_etag_and_not_modified(self) -> None:
        """GET answers with an Etag; If-None-Match with it gives 304."""
        id = self.create(self.addr0)
        for path in ['/addresses', f'/addresses/{id}']:
            with self.subTest(path=path):
                r = self.fetch(path)
                etag = r.headers['Etag']
                r = self.fetch(path, headers={'If-None-Match': etag})
                self.assertEqual(r.code, 304)
                self.assertEqual(r.body, b'')

    def test_gzip_response(self) -> None:
        """Responses are gzip-compressed when the client asks."""
        for _ in range(3):
            self.create(self.addr0)
        r = self.fetch('/addresses', decompress_response=False,
                       headers={'Accept-Encoding': 'gzip'})
        self.assertEqual(r.headers['Content-Encoding'], 'gzip')
        self.assertEqual(r.headers['Vary'], 'Accept-Encoding')


class CanonicalLogTests(AddressServiceTornadoAppTestSetup):
    serve_traceback = False

    def response_lines(self, logs: LogCapture) -> list[dict[str, str]]:
        return logs.fields('RESPONSE')

    def test_one_line_per_request(self) -> None:
        """Each request logs one RESPONSE line with the tutorial's fields."""
        with LogCapture() as logs:
            r = self.request('POST', '/addresses', {'full_name': 'x'},
                             headers={'X-Request-ID': 'req-1'})
        [line] = self.response_lines(logs)
        self.assertEqual(list(line), ['req_id', 'method', 'uri', 'ip',
                                      'message', 'status', 'time_ms'])
        self.assertEqual(line['req_id'], 'req-1')
        self.assertEqual(line['method'], 'POST')
        self.assertEqual(line['uri'], '/addresses')
        self.assertEqual(line['ip'], '127.0.0.1')
        self.assertEqual(line['status'], '201')
        self.assertGreater(float(line['time_ms']), 0)
        self.assertEqual(r.headers['X-Request-ID'], 'req-1')
        [record] = [rec for rec in logs.records
                    if 'RESPONSE' in rec.getMessage()]
        self.assertEqual(record.levelname, 'INFO')
        self.assertEqual(record.funcName, 'log_function')

    def test_request_line_at_debug(self) -> None:
        """A DEBUG REQUEST line precedes the RESPONSE line, same req_id."""
        with LogCapture() as logs:
            self.fetch('/addresses', headers={'X-Request-ID': 'dbg'})
        [request] = logs.fields('REQUEST')
        self.assertEqual(request['req_id'], 'dbg')
        self.assertEqual(logs.records[0].levelname, 'DEBUG')

    def test_every_error_has_a_line_with_its_req_id(self) -> None:
        """Errors log a WARNING line with req_id, status, reason and trace."""
        cases: list[tuple[str, str, Any, dict[str, str], int, str]] = [
            ('GET', '/nowhere', None, {}, 404, 'Unknown Endpoint'),
            ('GET', '/addresses/nope', None, {}, 404, "'nope'"),
            ('POST', '/addresses', b'{', {}, 400, 'Invalid JSON body'),
            ('POST', '/addresses', b'[]', {}, 400,
             'JSON Schema validation failed'),
            ('PATCH', '/addresses', b'{}', {}, 405, 'Method Not Allowed'),
            ('POST', '/addresses', b'x' * (1024 * 1024 + 1), {}, 413,
             'Request body too large'),
            ('POST', '/addresses', b'{}', {'Content-Type': 'text/xml'},
             415, 'Unsupported Media Type'),
        ]
        for i, (method, path, body, headers, code, reason) in \
                enumerate(cases):
            with self.subTest(code=code, reason=reason):
                with LogCapture() as logs:
                    r = self.request(method, path, body, headers={
                        'X-Request-ID': f'err-{i}', **headers})
                self.assertEqual(r.code, code)
                [line] = self.response_lines(logs)
                self.assertEqual(line['req_id'], f'err-{i}')
                self.assertEqual(line['status'], str(code))
                self.assertEqual(line['reason'], reason)
                self.assertIn('Traceback', line['trace'])
                levels = {rec.levelname for rec in logs.records
                          if 'RESPONSE' in rec.getMessage()}
                self.assertEqual(levels, {'WARNING'})

    def test_hostile_values_cannot_break_or_forge(self) -> None:
        """A URI with quotes, backslashes and '=' stays inside its field."""
        path = '/addresses/a"b\\c=d%0A%22 status=200'.replace(' ', '%20')
        raw = f'GET {path} HTTP/1.1\r\nHost: x\r\n' \
            'X-Request-ID: a" forged=1\r\n\r\n'
        with LogCapture() as logs:
            response = self.raw_request(raw.encode('latin-1'))
        self.assertTrue(response.startswith(b'HTTP/1.1 404'))
        [message] = [m for m in logs.messages if 'RESPONSE' in m]
        self.assertEqual(len(message.splitlines()), 1)
        line = parse_logfmt(message)
        self.assertEqual(list(line), ['req_id', 'method', 'uri', 'ip',
                                      'reason', 'message', 'status',
                                      'time_ms', 'trace'])
        self.assertEqual(line['uri'], path)
        self.assertEqual(line['status'], '404')
        self.assertRegex(line['req_id'], UUID_HEX)

    def raw_request(self, data: bytes) -> bytes:
        async def exchange() -> bytes:
            stream = await tornado.tcpclient.TCPClient().connect(
                '127.0.0.1', self.get_http_port())
            await stream.write(data)
            head: bytes = await stream.read_until(b'\r\n\r\n')
            stream.close()
            return head
        head: bytes = self.io_loop.run_sync(exchange)
        return head

    def test_server_error_is_500_and_logged_at_error(self) -> None:
        """An unexpected failure is a 500 JSON body and an ERROR line."""
        self.service.addr_db = BrokenDB()
        with LogCapture() as logs:
            r = self.fetch('/addresses', headers={'X-Request-ID': 'boom'})
        body = self.assert_error(r, 500, 'Internal Server Error')
        self.assertNotIn('trace', body)
        [line] = self.response_lines(logs)
        self.assertEqual(line['req_id'], 'boom')
        self.assertIn('RuntimeError: disk on fire', line['trace'])
        levels = [rec.levelname for rec in logs.records]
        self.assertEqual(levels, ['DEBUG', 'ERROR'])

    def test_unreachable_store_is_503(self) -> None:
        """A store that cannot be reached is a 503 saying so, at ERROR;
        why is logged, not told to the client."""
        self.service.addr_db = UnreachableDB()
        with LogCapture() as logs:
            r = self.fetch('/addresses/someone')
        body = self.assert_error(r, 503, 'Storage Unavailable')
        self.assertNotIn('detail', body)
        [line] = self.response_lines(logs)
        self.assertEqual((line['status'], line['reason']),
                         ('503', 'Storage Unavailable'))
        self.assertIn('StorageUnavailableError: connection to the database '
                      'lost', line['trace'])
        self.assertEqual(logs.records[-1].levelname, 'ERROR')


class RequestFramingTests(AddressServiceTornadoAppTestSetup):
    """Broken framing or encoding gets one JSON 4xx, and a log line."""

    serve_traceback = False

    def exchange(self, head: str, body: bytes = b'') -> bytes:
        """Send a raw request; return all the server sends until it closes."""
        async def run() -> bytes:
            stream = await tornado.tcpclient.TCPClient().connect(
                '127.0.0.1', self.get_http_port())
            await stream.write(head.encode('latin-1') + b'\r\n' + body)
            received: bytes = await stream.read_until_close()
            return received
        received: bytes = self.io_loop.run_sync(run, timeout=10)
        return received

    def assert_one_json_error(
        self, received: bytes, code: int, message: str
    ) -> dict[str, Any]:
        self.assertEqual(received.count(b'HTTP/1.1 '), 1, received)
        head, body = received.split(b'\r\n\r\n', 1)
        self.assertTrue(head.startswith(f'HTTP/1.1 {code} '.encode()))
        self.assertIn(b'Content-Type: application/json; charset=UTF-8', head)
        error: dict[str, Any] = json.loads(body)
        self.assertEqual((error['code'], error['message']), (code, message))
        return error

    def test_malformed_content_length(self) -> None:
        """A Content-Length that is not one number is a JSON 400."""
        for value in ['x', '-1', '1e3', '2, 3', '', '1' * 30, '\xb2']:
            with self.subTest(value=value):
                with LogCapture() as logs:
                    received = self.exchange(
                        'POST /addresses HTTP/1.1\r\nHost: x\r\n'
                        f'X-Request-ID: cl\r\nContent-Length: {value}\r\n',
                        b'{}')
                error = self.assert_one_json_error(
                    received, 400, 'Invalid request body')
                self.assertIn('Content-Length', error['detail'])
                [line] = logs.fields('RESPONSE')
                self.assertEqual((line['req_id'], line['status']),
                                 ('cl', '400'))
        self.assertEqual(self.assert_store_intact(), {})

    def test_repeated_equal_content_length(self) -> None:
        """A Content-Length repeated with one value is that length."""
        body = b'{"full_name": "x"}'
        received = self.exchange(
            'POST /addresses HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            f'Content-Length: {len(body)}, {len(body)}\r\n', body)
        self.assertTrue(received.startswith(b'HTTP/1.1 201 '), received)

    def test_oversized_body_on_any_method(self) -> None:
        """A huge Content-Length is one JSON 413 whatever the method."""
        for method, path in [('GET', '/addresses'), ('POST', '/addresses'),
                             ('PUT', '/addresses/abc'),
                             ('DELETE', '/addresses/abc')]:
            with self.subTest(method=method):
                received = self.exchange(
                    f'{method} {path} HTTP/1.1\r\nHost: x\r\n'
                    'Content-Length: 200000000\r\n', b'x' * 1000)
                self.assert_one_json_error(
                    received, 413, 'Request body too large')

    def test_errors_before_the_body_answer_once(self) -> None:
        """A 404 or 405 for a request with a huge body is one reply."""
        for method, path, code, message in [
            ('POST', '/addresses/abc', 405, 'Method Not Allowed'),
            ('POST', '/nowhere', 404, 'Unknown Endpoint'),
            ('FOO', '/addresses', 405, 'Method Not Allowed'),
        ]:
            for framing in ['Content-Length: 200000000',
                            'Transfer-Encoding: chunked']:
                with self.subTest(path=path, method=method, framing=framing):
                    received = self.exchange(
                        f'{method} {path} HTTP/1.1\r\nHost: x\r\n'
                        f'{framing}\r\n', b'x' * 1000)
                    self.assert_one_json_error(received, code, message)

    def test_two_framings(self) -> None:
        """Transfer-Encoding with Content-Length is one JSON 400."""
        received = self.exchange(
            'POST /addresses HTTP/1.1\r\nHost: x\r\n'
            'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n',
            b'4\r\n{}{}\r\n0\r\n\r\n')
        error = self.assert_one_json_error(
            received, 400, 'Invalid request body')
        self.assertIn('Transfer-Encoding', error['detail'])

    def test_broken_gzip_bodies(self) -> None:
        """Invalid, truncated or padded gzip bodies are a JSON 400."""
        good = gzip.compress(b'{"full_name": "x"}')
        for name, body in [('not gzip', b'{"full_name": "x"}'),
                           ('truncated', good[:-6]),
                           ('trailing data', good + b'junk'),
                           ('two members', good + good),
                           ('empty', b'')]:
            with self.subTest(name):
                with LogCapture() as logs:
                    r = self.request('POST', '/addresses', body, headers={
                        'Content-Encoding': 'gzip'})
                error = self.assert_error(r, 400, 'Invalid request body')
                self.assertIn('gzip', error['detail'])
                [line] = logs.fields('RESPONSE')
                self.assertEqual(line['status'], '400')
        self.assertEqual(self.assert_store_intact(), {})

    def test_content_encodings(self) -> None:
        """gzip, x-gzip and identity are decoded; others are 415."""
        body = b'{"full_name": "x"}'
        for encoding, payload, code in [
            ('gzip', gzip.compress(body), 201),
            ('X-GZIP', gzip.compress(body), 201),
            ('identity', body, 201),
            ('br', body, 415),
            ('gzip, gzip', gzip.compress(gzip.compress(body)), 415),
        ]:
            with self.subTest(encoding=encoding):
                r = self.request('POST', '/addresses', payload,
                                 headers={'Content-Encoding': encoding})
                self.assertEqual(r.code, code, r.body)
                if code == 415:
                    self.assert_error(r, 415, 'Unsupported Content-Encoding')

    def test_gzip_bomb(self) -> None:
        """A small gzip body that inflates past the limit is a 413."""
        bomb = gzip.compress(b' ' * (20 * 1024 * 1024))
        self.assertLess(len(bomb), 64 * 1024)
        r = self.request('POST', '/addresses', bomb,
                         headers={'Content-Encoding': 'gzip'})
        self.assert_error(r, 413, 'Request body too large')

    def test_streamed_413_carries_its_trace(self) -> None:
        """A body refused mid-stream is logged with reason and trace."""
        async def producer(write: Any) -> None:
            for _ in range(40):
                await write(b'x' * 65536)

        with LogCapture() as logs:
            r = self.fetch('/addresses', method='POST',
                           body_producer=producer,
                           headers={'X-Request-ID': 'chunked'})
        error = self.assert_error(r, 413, 'Request body too large')
        self.assertEqual(error['detail'],
                         'over the limit of 1048576 bytes')
        [line] = logs.fields('RESPONSE')
        self.assertEqual((line['req_id'], line['status']), ('chunked', '413'))
        self.assertEqual(line['reason'], 'Request body too large')
        self.assertIn('BodyTooLargeError', line['trace'])


class MethodTests(AddressServiceTornadoAppTestSetup):
    def test_head(self) -> None:
        """HEAD answers GET's status and headers, without the body."""
        id = self.create(self.addr0)
        for path in ['/addresses', f'/addresses/{id}']:
            with self.subTest(path=path):
                get = self.fetch(path)
                head = self.fetch(path, method='HEAD')
                self.assertEqual((head.code, head.body), (200, b''))
                for name in ['Content-Type', 'Etag']:
                    self.assertEqual(head.headers[name], get.headers[name])
        self.assertEqual(self.fetch('/addresses/nope', method='HEAD').code,
                         404)

    def test_unknown_method_on_unknown_path(self) -> None:
        """An unknown path is 404 whatever the method; a known one 405."""
        r = self.request('FOO', '/nowhere')
        self.assert_error(r, 404, 'Unknown Endpoint')
        r = self.request('FOO', '/addresses')
        self.assert_error(r, 405, 'Method Not Allowed')


class PlainHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write('plain')


class PlainHandlerLogTest(tornado.testing.AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([('/plain', PlainHandler)],
                                       log_function=log_function)

    def test_log_function_serves_any_handler(self) -> None:
        """log_function logs handlers that are not the service's too."""
        with LogCapture() as logs:
            r = self.fetch('/plain')
        self.assertEqual(r.body, b'plain')
        [line] = logs.fields('RESPONSE')
        self.assertEqual(list(line), ['message', 'status', 'time_ms'])
        self.assertEqual(line['status'], '200')


class BrokenDB(InMemoryAddressBookDB):
    """A store whose listing fails."""

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        raise RuntimeError('disk on fire')
        yield  # an async generator, like the others


class UnreachableDB(InMemoryAddressBookDB):
    """A store whose database has gone away."""

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        raise StorageUnavailableError('connection to the database lost')


class SlowDB(InMemoryAddressBookDB):
    """A store whose every operation takes a random few milliseconds."""

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        await asyncio.sleep(random.uniform(0, 0.02))
        return await super().read_entry_json(nickname)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        await asyncio.sleep(random.uniform(0, 0.02))
        return await super().update_address(nickname, addr, expected_version)

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        await asyncio.sleep(random.uniform(0, 0.02))
        await super().delete_address(nickname, expected_version)


class InterleavedRequestsTest(AddressServiceTornadoAppTestSetup):
    def get_app(self) -> tornado.web.Application:
        app = super().get_app()
        self.service.addr_db = SlowDB()
        return app

    @tornado.testing.gen_test(timeout=30)
    async def test_100_concurrent_requests_keep_their_context(self) -> None:
        """With 100 interleaved requests each line has its own context."""
        client = tornado.httpclient.AsyncHTTPClient(
            force_instance=True, max_clients=100)
        methods = ['GET', 'PUT', 'DELETE']
        expected = {
            f'req-{i}': (methods[i % 3], f'/addresses/id-{i}?n={i}')
            for i in range(100)
        }

        async def send(req_id: str, method: str, uri: str) -> int:
            body = json.dumps({'full_name': req_id}) \
                if method == 'PUT' else None
            r = await client.fetch(self.get_url(uri), method=method,
                                   body=body, raise_error=False,
                                   headers={'X-Request-ID': req_id})
            return r.code

        with LogCapture() as logs:
            codes = await asyncio.gather(*(
                send(req_id, method, uri)
                for req_id, (method, uri) in expected.items()
            ))
        client.close()
        self.assertEqual(set(codes), {404})
        lines = logs.fields('RESPONSE')
        self.assertEqual(len(lines), 100)
        seen = {line['req_id']: (line['method'], line['uri'])
                for line in lines}
        self.assertEqual(seen, expected)


class WithoutTaskFactoryTest(AddressServiceTornadoAppTestSetup):
    """A caller whose loop has no task factory still gets working logs."""

    install_task_factory = False

    def test_requests_and_log_lines_work(self) -> None:
        """Requests succeed and lines carry their req_id without a factory."""
        asyncio_loop = self.io_loop.asyncio_loop  # type: ignore
        self.assertIsNone(asyncio_loop.get_task_factory())
        with LogCapture() as logs:
            id = self.create(self.addr0)
            r = self.fetch(f'/addresses/{id}',
                           headers={'X-Request-ID': 'plain'})
            self.fetch('/nowhere', headers={'X-Request-ID': 'lost'})
        self.assertEqual(self.json_of(r), self.addr0)
        req_ids = [line['req_id'] for line in logs.fields('RESPONSE')]
        self.assertRegex(req_ids[0], UUID_HEX)
        self.assertEqual(req_ids[1:], ['plain', 'lost'])
        requests = logs.fields('REQUEST')
        self.assertEqual([(r['req_id'], r['method'], r['uri'])
                          for r in requests[1:]],
                         [('plain', 'GET', f'/addresses/{id}'),
                          ('lost', 'GET', '/nowhere')])


if __name__ == '__main__':
    unittest.main()
