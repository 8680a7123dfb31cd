"""Replies sent before the request body is read say that the connection
closes after them, as it does.

Tornado closes the connection after such a reply (it will not read the
rest of the body), but too late to say so in its headers; a client that
is not told sends its next request on a closing connection, and gets a
reset instead of an answer.
"""

from __future__ import annotations

import http.client
import json
import socket

from tests.e2e.server_test import JSON_HEADERS, ServerTestCase


class EarlyReplyTest(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.config['http'] = {'max_body_size': 1000}
        self.server = self.start_tutorial_server(debug=False)

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection('127.0.0.1', self.server.port,
                                          timeout=10)
        self.addCleanup(conn.close)
        return conn

    def test_replies_before_the_body_say_close(self) -> None:
        """405, 404 Unknown Endpoint, 415 and 413 say Connection: close."""
        cases = [
            ('PATCH', '/addresses', {}, b'{}', 405),
            ('PUT', '/openapi.json', {}, b'', 405),
            ('GET', '/unknown', {}, None, 404),
            ('POST', '/addresses', {'Content-Type': 'image/png'}, b'{}', 415),
            ('POST', '/addresses', JSON_HEADERS, b' ' * 2000, 413),
        ]
        for method, path, headers, body, status in cases:
            with self.subTest(method=method, path=path):
                conn = self.connect()
                conn.request(method, path, body, headers)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, status)
                self.assertEqual(r.headers['Connection'], 'close')
                self.assertTrue(r.will_close)
                self.assertIsNone(conn.sock)  # closed by the client too

    def test_replies_after_the_body_keep_the_connection(self) -> None:
        """Successes, and errors found in a body read whole, keep it open
        for the next request."""
        conn = self.connect()
        cases = [
            ('POST', '/addresses', b'{"full_name": "A"}', 201),
            ('GET', '/addresses', None, 200),
            ('GET', '/addresses/missing', None, 404),
            ('POST', '/addresses', json.dumps({'full_name': 7}).encode(),
             400),
            ('GET', '/addresses?limit=0', None, 400),
        ]
        first_socket: socket.socket | None = None
        for method, path, body, status in cases:
            with self.subTest(method=method, path=path):
                conn.request(method, path, body, JSON_HEADERS)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, status)
                self.assertIsNone(r.headers['Connection'])
                first_socket = first_socket or conn.sock
                self.assertIs(conn.sock, first_socket)
