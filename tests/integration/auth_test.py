"""Bearer-token authentication of the /addresses routes, over HTTP."""

from __future__ import annotations

import contextlib
import logging
import unittest
import urllib.parse
from typing import Any, Iterator

import tornado.httpclient

from tests.support import (
    AddressServiceTornadoAppTestSetup,
    LogCapture,
    memory_config,
    tokens_file,
)

ALICE = 'alice-token-0123456789abcdef'
BOB = 'b0b+token/ABCDEFGHIJ=='
TOKENS_FILE = f'# name:token\nalice:{ALICE}\nbob:{BOB}\n'
WRONG = 'wrong-token-0123456789abcdef'

CHALLENGE = 'Bearer realm="addrservice"'
INVALID_TOKEN = 'Bearer realm="addrservice", error="invalid_token"'


def bearer(token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}'}


@contextlib.contextmanager
def every_log_line() -> Iterator[tuple[LogCapture, LogCapture]]:
    """The service's lines, and Tornado's own, while the block runs."""
    tornado_logger = logging.getLogger('tornado')
    saved_level = tornado_logger.level
    with LogCapture() as service_logs:
        tornado_logs = LogCapture()
        tornado_logger.setLevel(logging.DEBUG)
        tornado_logger.addHandler(tornado_logs)
        try:
            yield service_logs, tornado_logs
        finally:
            tornado_logger.removeHandler(tornado_logs)
            tornado_logger.setLevel(saved_level)


class AuthTestSetup(AddressServiceTornadoAppTestSetup):
    """The memory engine, with auth.tokens_file naming a file of two."""

    serve_traceback = False
    http: dict[str, Any] = {}

    def setUp(self) -> None:
        self.tokens_file = tokens_file(self, TOKENS_FILE)
        super().setUp()
        self.headers = {**self.headers, **bearer(ALICE)}

    def make_config(self) -> dict[str, Any]:
        return {**memory_config(), 'http': self.http,
                'auth': {'tokens_file': self.tokens_file}}

    def assert_unauthorized(
        self, r: tornado.httpclient.HTTPResponse, challenge: str,
        detail: str,
    ) -> None:
        self.assertEqual(r.headers['WWW-Authenticate'], challenge)
        self.assertRegex(r.headers['X-Request-ID'], r'^[0-9a-f]{32}$')
        if r.request.method == 'HEAD':
            self.assertEqual((r.code, r.reason, r.body),
                             (401, 'Unauthorized', b''))
            return
        body = self.assert_error(r, 401, 'Unauthorized')
        self.assertEqual(body, {
            'method': r.request.method,
            'uri': urllib.parse.urlsplit(r.request.url).path,
            'code': 401, 'message': 'Unauthorized', 'detail': detail})


class AuthTest(AuthTestSetup):
    def setUp(self) -> None:
        super().setUp()
        self.entry_id = self.create(self.addr0)
        self.calls = [
            ('GET', '/addresses', None), ('HEAD', '/addresses', None),
            ('POST', '/addresses', self.addr1),
            ('GET', f'/addresses/{self.entry_id}', None),
            ('HEAD', f'/addresses/{self.entry_id}', None),
            ('PUT', f'/addresses/{self.entry_id}', self.addr1),
            ('DELETE', f'/addresses/{self.entry_id}', None),
        ]

    def test_no_token_is_401_on_every_route(self) -> None:
        """Without Authorization every method on both routes is 401 with
        the plain Bearer challenge, and the store is left alone."""
        for method, path, body in self.calls:
            with self.subTest(method=method, path=path):
                r = self.request(method, path, body)
                self.assert_unauthorized(r, CHALLENGE,
                                         'no Authorization header')
        self.assertEqual(self.listing(), {self.entry_id: self.addr0})

    def test_wrong_token_is_401_invalid_token(self) -> None:
        """An unknown token is 401 with error="invalid_token"."""
        for method, path, body in self.calls:
            with self.subTest(method=method, path=path):
                r = self.request(method, path, body, headers=bearer(WRONG))
                self.assert_unauthorized(r, INVALID_TOKEN,
                                         'the token is not known')
        self.assertEqual(self.listing(), {self.entry_id: self.addr0})

    def test_malformed_authorization(self) -> None:
        """Another scheme, or a broken token, is 401 without an error
        code, as no token could be read."""
        cases = {
            f'Basic {ALICE}': 'Authorization is not a Bearer token',
            'Bearer': 'Authorization is not a well-formed Bearer token',
            f'Bearer {ALICE} {ALICE}':
                'Authorization is not a well-formed Bearer token',
            f'Bearer "{ALICE}"':
                'Authorization is not a well-formed Bearer token',
        }
        for header, detail in cases.items():
            with self.subTest(header=header):
                r = self.request('GET', '/addresses',
                                 headers={'Authorization': header})
                self.assert_unauthorized(r, CHALLENGE, detail)

    def test_right_token_on_every_route(self) -> None:
        """Either known token gets the usual answers on both routes."""
        expected = [200, 200, 201, 200, 200, 204, 204]
        for token in (ALICE, BOB):
            with self.subTest(token=token):
                id = self.create(self.addr0)
                for (method, path, body), code in zip(self.calls, expected):
                    path = path.replace(self.entry_id, id)
                    r = self.request(method, path, body, headers={
                        **self.headers, **bearer(token)})
                    self.assertEqual(r.code, code, (method, path, r.body))
                    self.assertNotIn('WWW-Authenticate', r.headers)

    def test_scheme_is_case_insensitive(self) -> None:
        """`bearer` and `BEARER` are the Bearer scheme too."""
        for scheme in ('bearer', 'BEARER'):
            with self.subTest(scheme=scheme):
                r = self.request('GET', '/addresses', headers={
                    'Authorization': f'{scheme} {ALICE}'})
                self.assertEqual(r.code, 200)

    def test_checked_before_the_body(self) -> None:
        """Without a token, a body of the wrong type is 401, not 415."""
        r = self.request('POST', '/addresses', self.addr1,
                         headers={'Content-Type': 'application/xml'})
        self.assert_unauthorized(r, CHALLENGE, 'no Authorization header')
        r = self.request('POST', '/addresses', self.addr1, headers={
            **bearer(ALICE), 'Content-Type': 'application/xml'})
        self.assert_error(r, 415, 'Unsupported Media Type')

    def test_unknown_paths_are_404_without_a_token(self) -> None:
        """Paths outside /addresses are 404 as before, with no challenge."""
        for path in ('/', '/unknown', '/addresses/not!an!id', '/address'):
            with self.subTest(path=path):
                r = self.request('GET', path)
                self.assert_error(r, 404, 'Unknown Endpoint')
                self.assertNotIn('WWW-Authenticate', r.headers)

    def test_log_line_names_the_token_never_shows_it(self) -> None:
        """The RESPONSE line has auth=<name> when authenticated, no auth
        field otherwise, and no line holds a token that was sent."""
        with every_log_line() as (service_logs, tornado_logs):
            self.request('GET', '/addresses', headers=bearer(ALICE))
            self.request('POST', '/addresses', self.addr1,
                         headers={**self.headers, **bearer(BOB)})
            self.request('GET', '/addresses', headers=bearer(WRONG))
            self.request('GET', '/addresses',
                         headers={'Authorization': f'Basic {ALICE}'})
            self.request('GET', '/unknown', headers=bearer(ALICE))
            self.request('GET', '/addresses/missing', headers=bearer(BOB))
        lines = service_logs.fields('RESPONSE')
        self.assertEqual(
            [(f['method'], f['status'], f.get('auth')) for f in lines],
            [('GET', '200', 'alice'), ('POST', '201', 'bob'),
             ('GET', '401', None), ('GET', '401', None),
             ('GET', '404', None), ('GET', '404', 'bob')])
        self.assertEqual(lines[2]['reason'], 'Unauthorized')
        formatter = logging.Formatter('%(message)s %(exc_info)s')
        records = service_logs.records + tornado_logs.records
        self.assertGreater(len(records), len(lines))
        for record in records:
            text = formatter.format(record)
            for token in (ALICE, BOB, WRONG):
                self.assertNotIn(token, text)

    def listing(self) -> Any:
        return self.json_of(self.fetch('/addresses', headers=bearer(ALICE)))


class TracesTest(AuthTestSetup):
    serve_traceback = True

    def test_token_never_in_a_response(self) -> None:
        """No error body repeats the token, even with tracebacks on."""
        for headers in (bearer(WRONG), {'Authorization': f'Basic {WRONG}'},
                        {'Authorization': f'Bearer {WRONG} {WRONG}'}):
            with self.subTest(headers=headers):
                r = self.request('GET', '/addresses', headers=headers)
                self.assertEqual(r.code, 401)
                self.assertIn(b'Traceback', r.body)
                self.assertNotIn(WRONG.encode(), r.body)


class AuthBeforeBodyLimitTest(AuthTestSetup):
    http = {'max_body_size': 100}

    def test_checked_before_the_body_size(self) -> None:
        """Without a token, a body over the limit is 401; with one, 413."""
        body = {'full_name': 'x' * 200}
        r = self.request('POST', '/addresses', body)
        self.assert_unauthorized(r, CHALLENGE, 'no Authorization header')
        r = self.request('POST', '/addresses', body, headers=self.headers)
        self.assert_error(r, 413, 'Request body too large')


class AuthOffTest(AddressServiceTornadoAppTestSetup):
    def test_no_token_needed(self) -> None:
        """Without an auth section, requests need no Authorization, and a
        token sent anyway is ignored."""
        id = self.create(self.addr0)
        for headers in ({}, bearer(WRONG)):
            with self.subTest(headers=headers), LogCapture() as logs:
                r = self.fetch(f'/addresses/{id}', headers=headers)
                self.assertEqual(r.code, 200)
                self.assertNotIn('WWW-Authenticate', r.headers)
                [line] = logs.fields('RESPONSE')
                self.assertNotIn('auth', line)


if __name__ == '__main__':
    unittest.main()
