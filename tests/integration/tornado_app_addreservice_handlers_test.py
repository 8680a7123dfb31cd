"""The REST endpoints end to end through the app, on every engine."""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
import unittest
from typing import Any

from tests.pg import fresh_schema, pg_config
from tests.support import (
    TEST_CONFIG,
    AddressServiceTornadoAppTestSetup,
    fs_config,
    memory_config,
    sqlite_config,
)

LIMIT = 1024 * 1024


class AddressBookEndpointsContract(AddressServiceTornadoAppTestSetup):
    """The tutorial's transcripts, and bad input, on one engine."""

    def test_address_book_endpoints(self) -> None:
        """The tutorial's CRUD session gives its statuses and bodies."""
        r = self.fetch('/addresses')
        self.assertEqual(r.code, 200)
        self.assertEqual(self.json_of(r), {})

        id = self.create(self.addr0)
        r = self.fetch(f'/addresses/{id}')
        self.assertEqual(r.code, 200)
        self.assertEqual(self.json_of(r), self.addr0)

        r = self.request('PUT', f'/addresses/{id}', self.addr1,
                         headers=self.headers)
        self.assertEqual((r.code, r.body), (204, b''))
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         self.addr1)
        self.assertEqual(self.json_of(self.fetch('/addresses')),
                         {id: self.addr1})

        r = self.request('DELETE', f'/addresses/{id}')
        self.assertEqual((r.code, r.body), (204, b''))
        self.assertEqual(self.json_of(self.fetch('/addresses')), {})
        self.assert_error(self.fetch(f'/addresses/{id}'), 404, f"'{id}'")

    def test_bill_gates_transcript(self) -> None:
        """The part-2 transcript: exact bodies, no JSON content type sent."""
        r = self.request('POST', '/addresses',
                         b'{"full_name": "Bill Gates"}')
        self.assertEqual(r.code, 201)
        self.assertEqual(r.body, b'')
        self.assertEqual(r.headers['Content-Length'], '0')
        id = r.headers['Location'].rsplit('/', 1)[1]
        r = self.fetch(f'/addresses/{id}')
        self.assertEqual(r.body, b'{"full_name": "Bill Gates"}')
        self.assertIn('Etag', r.headers)
        self.request('PUT', f'/addresses/{id}',
                     b'{"full_name": "William Henry Gates III"}')
        r = self.fetch('/addresses')
        self.assertEqual(
            r.body,
            b'{"%s": {"full_name": "William Henry Gates III"}}' % id.encode())
        self.request('DELETE', f'/addresses/{id}')
        self.assertEqual(self.fetch('/addresses').body, b'{}')

    def test_trailing_slashes(self) -> None:
        """Both endpoints also answer with a trailing slash."""
        r = self.request('POST', '/addresses/', self.addr0)
        self.assertEqual(r.code, 201)
        id = r.headers['Location'].rsplit('/', 1)[1]
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}/')),
                         self.addr0)
        self.assertEqual(list(self.json_of(self.fetch('/addresses/'))),
                         [id])

    def test_put_and_delete_missing(self) -> None:
        """PUT and DELETE of an unknown id are 404 and create nothing."""
        r = self.request('PUT', '/addresses/absent', self.addr0)
        self.assert_error(r, 404, "'absent'")
        r = self.request('DELETE', '/addresses/absent')
        self.assert_error(r, 404, "'absent'")
        self.assertEqual(self.assert_store_intact(), {})

    def test_gzip_request_body(self) -> None:
        """A gzip-encoded request body is accepted."""
        r = self.request('POST', '/addresses',
                         gzip.compress(json.dumps(self.addr0).encode()),
                         headers={'Content-Encoding': 'gzip'})
        self.assertEqual(r.code, 201)
        id = r.headers['Location'].rsplit('/', 1)[1]
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         self.addr0)

    def test_schema_error_body(self) -> None:
        """A schema-invalid body is 400 with the validator's detail, path."""
        bad = {**self.addr0, 'emails': [{'kind': 'home', 'email': 'nope'}]}
        r = self.request('POST', '/addresses', bad)
        body = self.assert_error(r, 400, 'JSON Schema validation failed')
        self.assertEqual(body['detail'], "'nope' is not a 'email'")
        self.assertEqual(body['path'], '/emails/0/email')
        self.assertEqual(self.assert_store_intact(), {})

    def test_bad_bodies_are_400_and_store_nothing(self) -> None:
        """Every malformed body is a clear 400; the store stays strict."""
        id = self.create(self.addr0)
        cases: list[tuple[str, bytes, str]] = [
            ('invalid UTF-8', b'{"full_name": "\xff\xfe"}',
             'Invalid JSON body'),
            ('UTF-16', json.dumps({'full_name': 'x'}).encode('utf-16'),
             'Invalid JSON body'),
            ('deep arrays', b'[' * 100000 + b']' * 100000,
             'Invalid JSON body'),
            ('deep objects', b'{"a":' * 100000 + b'1' + b'}' * 100000,
             'Invalid JSON body'),
            ('NaN', b'{"full_name": "x", "phone_numbers": [{"kind": "home",'
             b' "country_code": NaN, "local_number": 1}]}',
             'Invalid JSON body'),
            ('Infinity', b'{"full_name": "x", "addresses": [{"kind": '
             b'"home", "street_name": "s", "pincode": Infinity, '
             b'"country": "c"}]}', 'Invalid JSON body'),
            ('-Infinity', b'{"full_name": -Infinity}', 'Invalid JSON body'),
            ('1e400', b'{"full_name": "x", "phone_numbers": [{"kind": '
             b'"home", "country_code": 1e400, "local_number": 1}]}',
             'Invalid JSON body'),
            ('huge integer', b'{"full_name": "x", "phone_numbers": [{"kind":'
             b' "home", "country_code": ' + b'9' * 5000 +
             b', "local_number": 1}]}', 'Invalid JSON body'),
            ('integer over 2**53', b'{"full_name": "x", "phone_numbers": '
             b'[{"kind": "home", "country_code": 9007199254740993, '
             b'"local_number": 1}]}', 'Invalid JSON body'),
            ('duplicate keys', b'{"full_name": "a", "full_name": "b"}',
             'Invalid JSON body'),
            ('lone surrogate', b'{"full_name": "\\ud800"}',
             'Invalid JSON body'),
            ('empty body', b'', 'Invalid JSON body'),
            ('trailing data', b'{"full_name": "x"} {}', 'Invalid JSON body'),
            ('array', b'[]', 'JSON Schema validation failed'),
            ('string', b'"Bill Gates"', 'JSON Schema validation failed'),
            ('number', b'42', 'JSON Schema validation failed'),
            ('null', b'null', 'JSON Schema validation failed'),
            ('missing name', b'{}', 'JSON Schema validation failed'),
            ('unknown field', b'{"full_name": "x", "age": 3}',
             'JSON Schema validation failed'),
            ('empty name', b'{"full_name": ""}', 'Invalid address entry'),
        ]
        for name, body, reason in cases:
            for method, path in [('POST', '/addresses'),
                                 ('PUT', f'/addresses/{id}')]:
                with self.subTest(case=name, method=method):
                    r = self.request(method, path, body)
                    error = self.assert_error(r, 400, reason)
                    self.assertIsInstance(error.get('detail', ''), str)
                    self.assertEqual(self.assert_store_intact(),
                                     {id: self.addr0})

    def test_proper_surrogate_pair_is_stored(self) -> None:
        """An escaped surrogate pair is a real character, stored as such."""
        id = self.create(b'{"full_name": "\\ud83d\\ude00 Smile"}')
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         {'full_name': '\U0001F600 Smile'})

    def test_body_limit(self) -> None:
        """Bodies over 1 MiB are 413 however they come; at 1 MiB they pass."""
        id = self.create(self.addr0)
        name = 'x' * (LIMIT - len('{"full_name": ""}'))
        at_limit = json.dumps({'full_name': name}).encode()
        self.assertEqual(len(at_limit), LIMIT)
        over = json.dumps({'full_name': name + 'x'}).encode()

        async def chunked(write: Any) -> None:
            for start in range(0, len(over), 65536):
                await write(over[start:start + 65536])

        attempts: dict[str, dict[str, Any]] = {
            'content-length': dict(body=over),
            'chunked': dict(body_producer=chunked),
            'gzip': dict(body=gzip.compress(over),
                         headers={'Content-Encoding': 'gzip'}),
        }
        for name_, kwargs in attempts.items():
            with self.subTest(how=name_):
                r = self.fetch('/addresses', method='POST', **kwargs)
                self.assert_error(r, 413, 'Request body too large')
                r = self.fetch(f'/addresses/{id}', method='PUT', **kwargs)
                self.assert_error(r, 413, 'Request body too large')
        self.assertEqual(self.assert_store_intact(), {id: self.addr0})
        self.create(at_limit)

    def test_ids_outside_the_alphabet(self) -> None:
        """Ids with other characters, or absurdly long, are 4xx."""
        self.create(self.addr0)
        for id in ['a.b', 'a%20b', '..%2F..%2Fetc', 'x' * 65, 'x' * 5000,
                   '%C3%A9', 'a_b']:
            for method in ['GET', 'PUT', 'DELETE']:
                with self.subTest(id=id[:20], method=method):
                    body = json.dumps(self.addr1) if method == 'PUT' \
                        else None
                    r = self.request(method, f'/addresses/{id}', body)
                    self.assertEqual(r.code, 404)
                    self.assertEqual(self.json_of(r)['code'], 404)
        self.assertEqual(len(self.assert_store_intact()), 1)

    # Optimistic concurrency: the version as ETag, If-Match, If-None-Match.

    def etag_of(self, id: str) -> str:
        r = self.fetch(f'/addresses/{id}')
        self.assertEqual(r.code, 200)
        return str(r.headers['ETag'])

    def test_etag_follows_the_version(self) -> None:
        """POST, GET, HEAD and PUT give the entry version's strong ETag, in
        the tutorial's form; each update changes it, and no two entries
        share one."""
        r = self.request('POST', '/addresses', self.addr0)
        created = r.headers['ETag']
        self.assertRegex(created, r'^"[0-9a-f]{40}"$')
        id = r.headers['Location'].rsplit('/', 1)[1]
        self.assertEqual(self.etag_of(id), created)
        r = self.request('HEAD', f'/addresses/{id}')
        self.assertEqual((r.code, r.headers['ETag']), (200, created))
        tags = {created}
        for _ in range(2):
            r = self.request('PUT', f'/addresses/{id}', self.addr1)
            self.assertEqual(r.code, 204)
            self.assertEqual(self.etag_of(id), r.headers['ETag'])
            tags.add(r.headers['ETag'])
        other = self.create(self.addr0)
        tags.add(self.etag_of(other))
        self.assertEqual(len(tags), 4)

    def test_put_if_match(self) -> None:
        """PUT with the current tag applies; with a stale one it is 412
        with the JSON error body and changes nothing."""
        id = self.create(self.addr0)
        first = self.etag_of(id)
        r = self.request('PUT', f'/addresses/{id}', self.addr1,
                         headers={'If-Match': first})
        self.assertEqual(r.code, 204)
        second = r.headers['ETag']
        other = self.etag_of(self.create(self.addr1))
        for stale in (first, other, f'W/{second}', f'{first}, {other}',
                      '"x"'):
            r = self.request('PUT', f'/addresses/{id}', self.addr0,
                             headers={'If-Match': stale})
            self.assert_error(r, 412, 'Precondition Failed')
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         self.addr1)
        self.assertEqual(self.etag_of(id), second)
        r = self.request('PUT', f'/addresses/{id}', self.addr0,
                         headers={'If-Match': f'{first}, {second}'})
        self.assertEqual(r.code, 204)
        third = r.headers['ETag']
        self.assertEqual(self.etag_of(id), third)
        r = self.request('PUT', f'/addresses/{id}', self.addr1,
                         headers={'If-Match': '*'})
        self.assertEqual(r.code, 204)
        self.assertNotIn(self.etag_of(id), (first, second, third))

    def test_delete_if_match(self) -> None:
        """DELETE with a stale tag is 412 and keeps the entry; with the
        current tag it deletes."""
        id = self.create(self.addr0)
        first = self.etag_of(id)
        self.request('PUT', f'/addresses/{id}', self.addr1)
        r = self.request('DELETE', f'/addresses/{id}',
                         headers={'If-Match': first})
        self.assert_error(r, 412, 'Precondition Failed')
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         self.addr1)
        r = self.request('DELETE', f'/addresses/{id}',
                         headers={'If-Match': self.etag_of(id)})
        self.assertEqual(r.code, 204)
        self.assertEqual(self.assert_store_intact(), {})

    def test_if_match_on_a_missing_entry(self) -> None:
        """Any If-Match, * included, on an entry that is not there is 412,
        and creates nothing."""
        gone = self.create(self.addr0)
        tag = self.etag_of(gone)
        self.request('DELETE', f'/addresses/{gone}')
        for method, body in (('PUT', self.addr0), ('DELETE', None)):
            for value in ('*', tag):
                r = self.request(method, f'/addresses/{gone}', body,
                                 headers={'If-Match': value})
                self.assert_error(r, 412, 'Precondition Failed')
        self.assertEqual(self.assert_store_intact(), {})

    def test_malformed_if_match(self) -> None:
        """An If-Match that is not * or quoted tags is 400, naming it."""
        id = self.create(self.addr0)
        for value in ('1', '"1', '"1" "2"', '*, "1"', ',', '*\xa0'):
            r = self.request('PUT', f'/addresses/{id}', self.addr1,
                             headers={'If-Match': value})
            body = self.assert_error(r, 400, 'Invalid If-Match header')
            self.assertIn(repr(value), body['detail'])
        self.assertEqual(self.json_of(self.fetch(f'/addresses/{id}')),
                         self.addr0)

    def test_if_none_match(self) -> None:
        """GET with the current tag is 304 without a body; once the entry
        changes, 200 with it."""
        id = self.create(self.addr0)
        first = self.etag_of(id)
        r = self.request('GET', f'/addresses/{id}',
                         headers={'If-None-Match': first})
        self.assertEqual((r.code, r.body, r.headers['ETag']),
                         (304, b'', first))
        self.request('PUT', f'/addresses/{id}', self.addr1)
        r = self.request('GET', f'/addresses/{id}',
                         headers={'If-None-Match': first})
        self.assertEqual(r.code, 200)
        self.assertNotEqual(r.headers['ETag'], first)
        self.assertEqual(self.json_of(r), self.addr1)

    def test_read_modify_write_clients(self) -> None:
        """Clients that each read, change and PUT with If-Match, retrying
        on 412: every acknowledged update is in the final entry, and the
        version counts them."""
        id = self.create({'full_name': 'start'})
        clients = 20

        url = self.get_url(f'/addresses/{id}')

        async def client(mark: str, first: Any) -> int:
            """PUT from `first` read, then read again while refused."""
            refused = 0
            r = first
            while True:
                entry = json.loads(r.body)
                entry['full_name'] += f' {mark}'
                put = await self.http_client.fetch(
                    url, method='PUT', body=json.dumps(entry),
                    raise_error=False,
                    headers={'If-Match': r.headers['ETag']})
                if put.code == 204:
                    return refused
                self.assertEqual(put.code, 412, put.body)
                refused += 1
                r = await self.http_client.fetch(url)

        async def all_clients() -> list[int]:
            # Every client reads before any writes, so they collide.
            firsts = await asyncio.gather(
                *(self.http_client.fetch(url) for _ in range(clients)))
            return await asyncio.gather(
                *(client(f'c{i}', first) for i, first in enumerate(firsts)))

        refusals = self.io_loop.run_sync(all_clients, timeout=60)
        final = self.json_of(self.fetch(f'/addresses/{id}'))
        self.assertEqual(sorted(final['full_name'].split()[1:]),
                         sorted(f'c{i}' for i in range(clients)))
        stored = self.io_loop.run_sync(
            lambda: self.service.addr_db.read_entry(id))
        self.assertEqual(stored.version, clients + 1)
        # All first PUTs carried one tag: all but one were refused.
        self.assertGreaterEqual(sum(refusals), clients - 1)

    def create_named(self, count: int) -> list[str]:
        """POST `count` entries; their ids in id order."""
        return sorted(self.create({'full_name': f'n{i}'})
                      for i in range(count))

    def test_listing_is_in_id_order(self) -> None:
        """GET /addresses lists every entry, ordered by id."""
        ids = self.create_named(6)
        r = self.fetch('/addresses')
        self.assertEqual(list(self.json_of(r)), ids)
        self.assertNotIn('Link', r.headers)

    def test_paging_follows_next_links(self) -> None:
        """?limit=N pages in id order; Link rel=next leads to the rest."""
        ids = self.create_named(5)
        r = self.fetch('/addresses?limit=2')
        self.assertEqual(list(self.json_of(r)), ids[:2])
        self.assertEqual(r.headers['Link'],
                         f'</addresses?limit=2&after={ids[1]}>; rel="next"')
        seen, pages, path = [], 0, '/addresses?limit=2'
        while True:
            r = self.fetch(path)
            self.assertEqual(r.code, 200)
            seen += list(self.json_of(r))
            pages += 1
            if 'Link' not in r.headers:
                break
            path = r.headers['Link'].split('>')[0][1:]
        self.assertEqual((seen, pages), (ids, 3))

    def test_last_full_page_has_no_link(self) -> None:
        """A page that ends the listing exactly carries no next link."""
        ids = self.create_named(4)
        r = self.fetch(f'/addresses?limit=2&after={ids[1]}')
        self.assertEqual(list(self.json_of(r)), ids[2:])
        self.assertNotIn('Link', r.headers)
        r = self.fetch(f'/addresses?limit=5&after={ids[3]}')
        self.assertEqual(self.json_of(r), {})
        self.assertNotIn('Link', r.headers)

    def test_page_bodies_are_the_entries(self) -> None:
        """A page maps each id to its entry; after alone lists the rest;
        HEAD carries the same Link."""
        first = self.create(self.addr0)
        second = self.create(self.addr1)
        ids = sorted([first, second])
        entries = {first: self.addr0, second: self.addr1}
        r = self.fetch('/addresses?limit=1')
        self.assertEqual(self.json_of(r), {ids[0]: entries[ids[0]]})
        r = self.fetch(f'/addresses?after={ids[0]}')
        self.assertEqual(self.json_of(r), {ids[1]: entries[ids[1]]})
        self.assertNotIn('Link', r.headers)
        r = self.fetch('/addresses?limit=1', method='HEAD')
        self.assertEqual((r.code, r.body), (200, b''))
        self.assertEqual(r.headers['Link'],
                         f'</addresses?limit=1&after={ids[0]}>; rel="next"')

    def test_bad_paging_parameters(self) -> None:
        """A limit or after that cannot be used is a 400 saying which."""
        self.create(self.addr0)
        cases = {
            'limit=0': "limit must be an integer from 1 to 1000, not '0'",
            'limit=1001':
                "limit must be an integer from 1 to 1000, not '1001'",
            'limit=-1': "limit must be an integer from 1 to 1000, not '-1'",
            'limit=abc':
                "limit must be an integer from 1 to 1000, not 'abc'",
            'limit=': "limit must be an integer from 1 to 1000, not ''",
            'limit=1.5':
                "limit must be an integer from 1 to 1000, not '1.5'",
            'limit=%201':
                "limit must be an integer from 1 to 1000, not ' 1'",
            'limit=99999999999999999999': 'limit must be an integer from '
                "1 to 1000, not '99999999999999999999'",
            'limit=1&limit=2': 'limit given more than once',
            'after=a%2Fb': "after must be an entry id, not 'a/b'",
            'after=': "after must be an entry id, not ''",
            'limit=2&after=x&after=y': 'after given more than once',
            'limit=2&sort=name':
                "unknown parameter 'sort'; a listing takes limit and after",
        }
        for query, detail in cases.items():
            with self.subTest(query=query):
                r = self.fetch(f'/addresses?{query}')
                body = self.assert_error(r, 400, 'Invalid paging parameter')
                self.assertEqual(body['detail'], detail)
        self.assertEqual(len(self.assert_store_intact()), 1)


class InMemoryEndpointsTest(AddressBookEndpointsContract):
    def make_config(self) -> dict[str, Any]:
        return memory_config()


class FilesystemEndpointsTest(AddressBookEndpointsContract):
    def make_config(self) -> dict[str, Any]:
        return fs_config(self.enterContext(tempfile.TemporaryDirectory()))


class SqliteEndpointsTest(AddressBookEndpointsContract):
    def make_config(self) -> dict[str, Any]:
        store = self.enterContext(tempfile.TemporaryDirectory())
        return sqlite_config(f'{store}/addressbook.sqlite3')


class PostgresEndpointsTest(
    AddressBookEndpointsContract
):
    def make_config(self) -> dict[str, Any]:
        return {**TEST_CONFIG, 'addr-db': pg_config(fresh_schema(self))}


del AddressBookEndpointsContract  # run only through the engine subclasses


class CorruptStoreTest(AddressServiceTornadoAppTestSetup):
    serve_traceback = False

    def make_config(self) -> dict[str, Any]:
        self.store = self.enterContext(tempfile.TemporaryDirectory())
        return fs_config(self.store)

    def test_corrupt_file_is_a_server_error(self) -> None:
        """A corrupt stored entry is a 500 for itself; the list skips it."""
        id = self.create(self.addr0)
        with open(f'{self.store}/bad.json', 'w') as f:
            f.write('["not", "an", "entry"]')
        self.assert_error(self.fetch('/addresses/bad'), 500,
                          'Internal Server Error')
        self.assertEqual(self.assert_store_intact(), {id: self.addr0})


class ConfiguredLimitTest(AddressServiceTornadoAppTestSetup):
    def make_config(self) -> dict[str, Any]:
        return {**memory_config(), 'http': {'max_body_size': 100}}

    def test_configured_body_limit(self) -> None:
        """http.max_body_size sets the limit."""
        r = self.request('POST', '/addresses',
                         {'full_name': 'x' * 100})
        self.assert_error(r, 413, 'Request body too large')
        self.create({'full_name': 'x' * 50})


if __name__ == '__main__':
    unittest.main()
