"""The PostgreSQL engine: the storage contract, and what is its own."""

from __future__ import annotations

import asyncio
import collections.abc
import socket
import threading
import traceback
import unittest
import urllib.parse
from typing import Any, Callable, TypeVar

from addrservice.database.base import (
    DECODE_INLINE_BYTES,
    LIST_BATCH,
    StoredEntry,
)
from addrservice.database.postgres import (
    COMMAND_TIMEOUT,
    SCHEMA_VERSION,
    PostgresAddressBookDB,
    dsn_location,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    CorruptEntryError,
    InvalidEntryError,
    StorageUnavailableError,
)
from tests.pg import (
    TcpProxy,
    drop_schema,
    fresh_schema,
    no_server,
    pg_connection,
    pg_dsn,
    pg_required,
    pg_test_schemas,
    pg_unavailable,
    require_pg,
)
from tests.support import LogCapture
from tests.unit.addressbook_db_test import DecodingEngineContract

PASSWORD = 'hunter2-secret'

_DB = TypeVar('_DB', bound=PostgresAddressBookDB)
_V = TypeVar('_V')


def free_port() -> int:
    """A local TCP port on which nothing listens."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port: int = s.getsockname()[1]
        return port


def with_password(dsn: str, password: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    user, _, host = parts.netloc.rpartition('@')
    user = user.partition(':')[0] or 'postgres'
    return parts._replace(netloc=f'{user}:{password}@{host}').geturl()


def with_database(dsn: str, database: str) -> str:
    return urllib.parse.urlsplit(dsn)._replace(path='/' + database).geturl()


def with_port(dsn: str, port: int) -> str:
    parts = urllib.parse.urlsplit(dsn)
    user, at, _ = parts.netloc.rpartition('@')
    return parts._replace(netloc=f'{user}{at}127.0.0.1:{port}').geturl()


class PostgresAddressBookDBTest(
    DecodingEngineContract, unittest.IsolatedAsyncioTestCase
):
    def make_db(self) -> PostgresAddressBookDB:
        self.schema = fresh_schema(self)
        return self.engine()

    def engine(
        self, dsn: str | None = None, *, min_size: int = 1,
        max_size: int = 4, command_timeout: float = COMMAND_TIMEOUT,
    ) -> PostgresAddressBookDB:
        """A new engine on this test's schema."""
        return PostgresAddressBookDB(
            dsn or pg_dsn(), min_size, max_size, schema=self.schema,
            command_timeout=command_timeout)

    async def opened(self, db: _DB) -> _DB:
        await db.open()
        self.addAsyncCleanup(db.close)
        return db

    async def behind_proxy(
        self, **settings: Any
    ) -> tuple[TcpProxy, PostgresAddressBookDB, str]:
        """An open engine that reaches the server through a proxy the test
        controls, keeping no idle connection, and one entry it wrote."""
        proxy = TcpProxy()
        await proxy.start()
        self.addAsyncCleanup(proxy.stop)
        db = await self.opened(self.engine(proxy.dsn, min_size=0, **settings))
        return proxy, db, await db.create_address(self.entry())

    async def sql(self, query: str, *args: object) -> list[tuple[object, ...]]:
        async with pg_connection() as connection:
            return [tuple(row) for row in await connection.fetch(query, *args)]

    async def test_open_without_create(self) -> None:
        """With create=False, a schema that holds no address book is
        refused and left uncreated; one that holds one opens."""
        missing = fresh_schema(self, '_missing')
        db = PostgresAddressBookDB(pg_dsn(), schema=missing, create=False)
        with self.assertRaises(StorageUnavailableError) as caught:
            await db.open()
        self.assertEqual(
            str(caught.exception),
            f'PostgreSQL at {dsn_location(pg_dsn())} holds no address book '
            f'in schema "{missing}"')
        self.assertNotIn(missing, pg_test_schemas())
        nickname = await self.db.create_address(self.entry())
        existing = await self.opened(PostgresAddressBookDB(
            pg_dsn(), schema=self.schema, create=False))
        self.assertEqual(await existing.read_address(nickname), self.entry())

    async def test_persists_across_pools(self) -> None:
        """A new engine on the same schema sees the entries and versions."""
        nickname = await self.db.create_address(self.suite['namo'])
        await self.db.update_address(nickname, self.suite['raga'])
        await self.db.close()
        again = await self.opened(self.engine())
        self.assertEqual(await again.read_entry(nickname),
                         StoredEntry(self.suite['raga'], 2))
        self.assertEqual([n async for n, _ in again.read_all_addresses()],
                         [nickname])

    async def test_schema_version_recorded(self) -> None:
        """The schema's version is recorded; the id column collates "C"."""
        assert isinstance(self.db, PostgresAddressBookDB)
        self.assertEqual(SCHEMA_VERSION, 1)
        self.assertEqual(
            await self.sql(f'SELECT version FROM {self.db.versions_table}'),
            [(1,)])
        self.assertEqual(await self.sql(
            'SELECT column_name, data_type, collation_name'
            ' FROM information_schema.columns'
            ' WHERE table_schema = $1 AND table_name = $2'
            ' ORDER BY ordinal_position', self.schema, 'addresses'),
            [('id', 'text', 'C'), ('version', 'integer', None),
             ('entry', 'jsonb', None)])

    async def test_reopening_leaves_schema_as_is(self) -> None:
        """Opening a schema at the current version keeps its entries and
        records no new version."""
        assert isinstance(self.db, PostgresAddressBookDB)
        await self.db.create_address(self.entry(), 'kept')
        await self.opened(self.engine())
        self.assertEqual(
            await self.sql(f'SELECT version FROM {self.db.versions_table}'),
            [(1,)])
        self.assertEqual(await self.db.read_entry('kept'),
                         StoredEntry(self.entry(), 1))

    async def test_newer_schema_version_refused(self) -> None:
        """A database at a version newer than the code knows is refused
        with a one-line StorageUnavailableError, and left untouched."""
        assert isinstance(self.db, PostgresAddressBookDB)
        await self.db.create_address(self.entry(), 'kept')
        await self.sql(
            f'INSERT INTO {self.db.versions_table} (version) VALUES (2)')
        newer = self.engine()
        with self.assertRaises(StorageUnavailableError) as caught:
            await newer.open()
        self.assertEqual(
            str(caught.exception),
            f'PostgreSQL at {dsn_location(pg_dsn())} holds address-book '
            f'schema version 2, newer than this addrservice knows (1): '
            f'upgrade addrservice')
        with self.assertRaises(StorageUnavailableError):
            await newer.ping()  # not left half-open
        self.assertEqual(await self.db.read_entry('kept'),
                         StoredEntry(self.entry(), 1))

    async def test_concurrent_opens_migrate_once(self) -> None:
        """Engines opening a new schema at once all succeed, and it is
        migrated once."""
        await self.db.close()
        drop_schema(self.schema)
        engines = [self.engine(max_size=1) for _ in range(6)]
        for db in engines:
            self.addAsyncCleanup(db.close)
        await asyncio.gather(*(db.open() for db in engines))
        self.assertEqual(await self.sql(
            f'SELECT version FROM {engines[0].versions_table}'), [(1,)])
        nickname = await engines[0].create_address(self.entry())
        self.assertEqual(await engines[5].read_address(nickname),
                         self.entry())

    async def test_existing_empty_schema_is_used(self) -> None:
        """A schema that exists without tables (made by an administrator)
        gets the tables."""
        await self.db.close()
        drop_schema(self.schema)
        await self.sql(f'CREATE SCHEMA "{self.schema}"')
        db = await self.opened(self.engine())
        nickname = await db.create_address(self.entry())
        self.assertEqual(await db.read_address(nickname), self.entry())

    async def test_schema_name_is_quoted(self) -> None:
        """A schema name with quotes, spaces, capitals and non-ASCII text
        is used as it is."""
        self.schema = fresh_schema(self, suffix=' "Odd"; Ä')
        db = await self.opened(self.engine())
        nickname = await db.create_address(self.entry())
        self.assertEqual(await db.read_address(nickname), self.entry())
        self.assertEqual(await self.sql(
            'SELECT table_name FROM information_schema.tables'
            ' WHERE table_schema = $1 ORDER BY table_name', self.schema),
            [('addresses',), ('addrservice_schema_version',)])
        self.assertEqual(await self.sql(
            f'SELECT id FROM {db.addresses_table}'), [(nickname,)])

    async def test_unreachable_server(self) -> None:
        """A server that does not answer is a one-line
        StorageUnavailableError that names it, without the password."""
        port = free_port()
        dsn = with_password(with_port(pg_dsn(), port), PASSWORD)
        db = PostgresAddressBookDB(dsn, schema=self.schema)
        with self.assertRaises(StorageUnavailableError) as caught:
            await db.open()
        database = urllib.parse.urlsplit(pg_dsn()).path
        self.assertEqual(
            str(caught.exception),
            f'cannot connect to PostgreSQL at 127.0.0.1:{port}{database}: '
            f'Connection refused')
        told = ''.join(traceback.format_exception(caught.exception))
        self.assertNotIn(PASSWORD, told)

    async def test_missing_database(self) -> None:
        """A database that does not exist is a one-line
        StorageUnavailableError saying so."""
        dsn = with_database(pg_dsn(), 'addrservice_no_such_db')
        with self.assertRaises(StorageUnavailableError) as caught:
            await PostgresAddressBookDB(dsn).open()
        self.assertEqual(
            str(caught.exception),
            f'cannot connect to PostgreSQL at {dsn_location(dsn)}: '
            f'database "addrservice_no_such_db" does not exist')

    async def test_dsn_location_hides_credentials(self) -> None:
        """Messages name a DSN by its hosts and database only."""
        self.assertEqual(
            dsn_location('postgresql://u:secret@h1:5432,h2:5433/db'
                         '?password=secret&sslmode=require'),
            'h1:5432,h2:5433/db')
        self.assertEqual(dsn_location('postgres:///db'),
                         '(default host)/db')
        for dsn in ['postgresql://u:SE/CRET@h:1/db',
                    'postgresql://u:SE?CR#ET@h:1/db',
                    'postgresql://u:SE@CRET@h:1/db',
                    'postgresql://u:SE:CRET@h:1/db#x']:
            with self.subTest(dsn=dsn):
                self.assertEqual(dsn_location(dsn), 'h:1/db')

    async def test_bad_settings(self) -> None:
        """A DSN that is not a PostgreSQL URL, impossible pool sizes, or a
        schema name PostgreSQL cannot hold are ValueErrors."""
        with self.assertRaises(ValueError) as caught:
            PostgresAddressBookDB(f'mysql://u:{PASSWORD}@h/db')
        self.assertNotIn(PASSWORD, str(caught.exception))
        for sizes in [(0, 0), (5, 2), (-1, 1), (True, 2), (1, 2.5)]:
            with self.subTest(sizes=sizes):
                with self.assertRaisesRegex(ValueError, 'pool sizes'):
                    PostgresAddressBookDB(pg_dsn(), *sizes)  # type: ignore
        for schema in ['', 'x' * 64, 'a\0b', 'é' * 32, 'a\ud800']:
            with self.subTest(schema=schema):
                with self.assertRaisesRegex(ValueError, 'schema name'):
                    PostgresAddressBookDB(pg_dsn(), schema=schema)
        self.assertIsInstance(
            PostgresAddressBookDB(pg_dsn(), schema='é' * 31),
            PostgresAddressBookDB)

    async def test_not_open(self) -> None:
        """Using an engine that is not open is StorageUnavailableError."""
        db = self.engine()
        for use in [db.ping(), db.read_address('x'), db.count_addresses()]:
            with self.assertRaises(StorageUnavailableError) as caught:
                await use
            self.assertEqual(str(caught.exception),
                             f'PostgreSQL at {dsn_location(pg_dsn())} '
                             f'is not open')

    async def test_synchronous_start_and_stop_refused(self) -> None:
        """The tutorial's start()/stop() cannot open a pool, and say so."""
        db = self.engine()
        with self.assertRaisesRegex(RuntimeError,
                                    r'use `await open\(\)` instead'):
            db.start()
        with self.assertRaisesRegex(RuntimeError,
                                    r'use `await close\(\)` instead'):
            db.stop()

    async def test_two_pools_one_winner(self) -> None:
        """Of creates of one nickname through two pools (two servers),
        exactly one wins."""
        other = await self.opened(self.engine())
        results = await asyncio.gather(*(
            (self.db, other)[i % 2].create_address(self.entry(f'n{i}'), 'race')
            for i in range(16)
        ), return_exceptions=True)
        self.assertEqual(results.count('race'), 1)
        losers = [r for r in results if r != 'race']
        self.assertEqual(len(losers), 15)
        self.assertTrue(all(isinstance(r, AddressExistsError)
                            for r in losers))
        winner = results.index('race')
        self.assertEqual(await other.read_entry('race'),
                         StoredEntry(self.entry(f'n{winner}'), 1))

    async def test_two_pools_distinct_versions(self) -> None:
        """Updates through two pools each get a distinct version."""
        other = await self.opened(self.engine())
        nickname = await self.db.create_address(self.entry())
        versions = await asyncio.gather(*(
            (self.db, other)[i % 2].update_address(
                nickname, self.entry(f'n{i}'))
            for i in range(20)
        ))
        self.assertEqual(sorted(versions), list(range(2, 22)))
        last = versions.index(21)
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(f'n{last}'), 21))

    async def test_ids_order_by_code_point_in_sql(self) -> None:
        """The table's id column sorts by code point: 'B' before 'a'."""
        assert isinstance(self.db, PostgresAddressBookDB)
        nicknames = ['a', 'B', 'b', 'A', '0', '-', 'a-', 'aB']
        for nickname in nicknames:
            await self.db.create_address(self.entry(), nickname)
        ordered = await self.sql(
            f'SELECT id FROM {self.db.addresses_table} ORDER BY id')
        self.assertEqual([row[0] for row in ordered],
                         ['-', '0', 'A', 'B', 'a', 'a-', 'aB', 'b'])

    async def test_after_any_text(self) -> None:
        """`after` may be any text, even one PostgreSQL cannot hold; the
        listing is what Python's string order gives."""
        nicknames = ['n0', 'n01', 'n010', 'n0100', 'n011', 'n1', 'z', 'Z']
        for nickname in nicknames:
            await self.db.create_address(self.entry(), nickname)
        for after in ['n010\0', 'n010\0zz', 'n010\ud800', 'n010\ud800x',
                      'n01\uffff', 'n010é', '\0', '\ud800', 'n010\0\0\0',
                      'n' * 100, 'n' + '0' * 70, 'n010 x', 'n010~', '', 'Z\0',
                      'n01' + '0' * 62 + '\0']:
            expected = sorted(n for n in nicknames if n > after)
            for limit in [None, 2]:
                with self.subTest(after=after, limit=limit):
                    listed = [n async for n, _ in
                              self.db.read_addresses(after, limit)]
                    self.assertEqual(listed, expected[:limit])

    async def test_listing_holds_no_connection(self) -> None:
        """A long listing returns its connection between batches: a write
        through a one-connection pool proceeds while it is read. (The
        next batch is read ahead, so the new entry is listed only if
        that happened after the write.)"""
        db = await self.opened(self.engine(max_size=1))
        nicknames = [f'e{i:04d}' for i in range(LIST_BATCH + 10)]
        for nickname in nicknames:
            await db.create_address(self.entry(), nickname)
        listing = db.read_all_addresses()
        first = await anext(listing)
        await asyncio.wait_for(db.create_address(self.entry(), 'z'), 5)
        rest = [n async for n, _ in listing]
        self.assertIn([first[0], *rest], [nicknames, [*nicknames, 'z']])

    async def test_listing_left_early_reads_no_further(self) -> None:
        """A listing its reader stops reading cancels the batch it was
        reading ahead, and leaves the pool usable."""
        db = await self.opened(self.engine(max_size=1))
        for i in range(2 * LIST_BATCH + 1):
            await db.create_address(self.entry(), f'e{i:04d}')
        listing = db.read_all_addresses()
        assert isinstance(listing, collections.abc.AsyncGenerator)
        await anext(listing)
        await listing.aclose()
        self.assertEqual(await asyncio.wait_for(db.count_addresses(), 5),
                         2 * LIST_BATCH + 1)

    async def test_large_decoding_runs_off_the_event_loop(self) -> None:
        """Small entries are decoded on the loop; a page of many, or one
        large entry, in a worker thread."""
        db = await self.opened(ThreadNotingDB(pg_dsn(), schema=self.schema))
        await db.create_address(self.entry(), 'one')
        await db.read_entry('one')
        self.assertEqual([n async for n, _ in db.read_all_addresses()],
                         ['one'])
        self.assertEqual(db.threads, {threading.main_thread()})
        db.threads.clear()
        big = AddressEntry(full_name='x' * (DECODE_INLINE_BYTES + 1))
        await db.create_address(big, 'big')
        self.assertEqual(await db.read_address('big'), big)
        self.assertEqual(len(db.threads), 1)
        self.assertNotIn(threading.main_thread(), db.threads)
        db.threads.clear()
        self.assertEqual(len([n async for n, _ in db.read_addresses()]), 2)
        self.assertEqual(len(db.threads), 1)
        self.assertNotIn(threading.main_thread(), db.threads)

    async def test_corrupt_rows(self) -> None:
        """A row that is not an entry is CorruptEntryError when read, and
        logged at ERROR and skipped when listed."""
        assert isinstance(self.db, PostgresAddressBookDB)
        nickname = await self.db.create_address(self.entry())
        bad = {
            'array': '[]',
            'empty-name': '{"full_name": ""}',
            'unknown': '{"full_name": "x", "nick": "y"}',
            'bad-kind': '{"full_name": "x", "emails":'
                        ' [{"kind": "moon", "email": "a@b.c"}]}',
            'huge': '{"full_name": "x", "phone_numbers": [{"kind": "home",'
                    ' "country_code": 1e400, "local_number": 1}]}',
            'deep': '{"full_name": ' + '[' * 3000 + ']' * 3000 + '}',
        }
        await self.sql(
            f'INSERT INTO {self.db.addresses_table} (id, version, entry)'
            ' SELECT id, 1, entry::jsonb FROM unnest($1::text[], $2::text[])'
            ' AS t(id, entry)', list(bad), list(bad.values()))
        for name in bad:
            with self.subTest(name=name):
                with self.assertRaises(CorruptEntryError):
                    await self.db.read_entry(name)
        with LogCapture() as logs:
            self.assertEqual(await self.listing(), {nickname: self.entry()})
        where = f'{dsn_location(pg_dsn())} {self.db.addresses_table} id'
        self.assertEqual([e['file'] for e in logs.fields('UNREADABLE ENTRY')],
                         [f'{where} {name}' for name in sorted(bad)])
        self.assertEqual({r.levelname for r in logs.records}, {'ERROR'})
        self.assertEqual(await self.db.count_addresses(), len(bad) + 1)

    async def test_text_with_nul_refused(self) -> None:
        """Text JSONB cannot hold (U+0000) is InvalidEntryError, not a
        store fault; the stored entry stays as it was."""
        nickname = await self.db.create_address(self.entry())
        unstorable = self.entry()
        object.__setattr__(unstorable, 'full_name', 'a\0b')  # as if allowed
        message = 'entry cannot be stored: unsupported Unicode escape sequence'
        with self.assertRaisesRegex(InvalidEntryError, f'^{message}$'):
            await self.db.create_address(unstorable, 'nul')
        with self.assertRaisesRegex(InvalidEntryError, f'^{message}$'):
            await self.db.update_address(nickname, unstorable)
        self.assertEqual(await self.listing(), {nickname: self.entry()})
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(), 1))

    async def test_server_going_away_and_back(self) -> None:
        """While the server is gone every operation is a one-line
        StorageUnavailableError; when it is back the engine recovers."""
        proxy, db, nickname = await self.behind_proxy(max_size=2)
        await proxy.stop()
        refused = (f'PostgreSQL at 127.0.0.1:{proxy.port}'
                   f'{urllib.parse.urlsplit(pg_dsn()).path} is unavailable: '
                   f'Connection refused')
        for use in [db.ping(), db.read_address(nickname),
                    db.create_address(self.entry()),
                    db.update_address(nickname, self.entry('New')),
                    db.delete_address(nickname), db.count_addresses(),
                    anext(db.read_all_addresses())]:
            with self.assertRaises(StorageUnavailableError) as caught:
                await use
            self.assertEqual(str(caught.exception), refused)
        await proxy.start()
        self.assertEqual(await db.read_address(nickname), self.entry())
        await proxy.stop()
        await asyncio.wait_for(db.close(), 5)

    async def test_connection_cut_mid_use(self) -> None:
        """Connections cut while in use give StorageUnavailableError; the
        pool then reconnects."""
        proxy, db, nickname = await self.behind_proxy(max_size=2)
        proxy.stall = True
        reading = asyncio.ensure_future(db.read_address(nickname))
        await asyncio.sleep(0.1)
        await proxy.stop()
        with self.assertRaises(StorageUnavailableError) as caught:
            await reading
        self.assertEqual(
            str(caught.exception),
            f'PostgreSQL at 127.0.0.1:{proxy.port}'
            f'{urllib.parse.urlsplit(pg_dsn()).path} is unavailable: '
            f'connection was closed in the middle of operation')
        proxy.stall = False
        await proxy.start()
        self.assertEqual(await db.read_address(nickname), self.entry())

    async def test_hung_server_times_out(self) -> None:
        """A statement the server does not answer within command_timeout
        is StorageUnavailableError; later ones work again."""
        proxy, db, nickname = await self.behind_proxy(command_timeout=0.5)
        proxy.stall = True
        with self.assertRaises(StorageUnavailableError) as caught:
            await asyncio.wait_for(db.read_address(nickname), 10)
        self.assertEqual(
            str(caught.exception),
            f'PostgreSQL at 127.0.0.1:{proxy.port}'
            f'{urllib.parse.urlsplit(pg_dsn()).path} is unavailable: '
            f'timed out')
        proxy.stall = False
        self.assertEqual(await db.read_address(nickname), self.entry())


class ThreadNotingDB(PostgresAddressBookDB):
    """An engine that notes the threads it decodes entries in."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema=schema)
        self.threads: set[threading.Thread] = set()

    def _decode(
        self, nickname: str, text: str, decode: Callable[[str], _V]
    ) -> _V:
        self.threads.add(threading.current_thread())
        return super()._decode(nickname, text, decode)


class PgSupportTest(unittest.TestCase):
    """The PostgreSQL helpers other tests rely on."""

    def test_fresh_schema_dropped_at_cleanup(self) -> None:
        """A fresh schema is unique and gone when its test ends."""
        require_pg()
        case = unittest.TestCase()
        names = [fresh_schema(case), fresh_schema(case)]
        self.assertNotEqual(names[0], names[1])
        for name in names:
            self.assertRegex(name, r'^addrservice_test_\d+_[0-9a-f]{8}$')

        async def create() -> None:
            async with pg_connection() as connection:
                for name in names:
                    await connection.execute(f'CREATE SCHEMA "{name}"')

        asyncio.run(create())
        self.assertTrue(set(names) <= set(pg_test_schemas()))
        case.doCleanups()
        self.assertFalse(set(names) & set(pg_test_schemas()))

    def test_no_server_skips_or_fails(self) -> None:
        """With no server at the DSN, require_pg skips, or fails when
        ADDRSERVICE_REQUIRE_PG=1, with a reason naming where it looked."""
        port = free_port()
        dsn = with_password(with_port(pg_dsn(), port), PASSWORD)
        reason = pg_unavailable(dsn)
        database = urllib.parse.urlsplit(pg_dsn()).path
        self.assertEqual(
            reason,
            f'no PostgreSQL answers at 127.0.0.1:{port}{database} '
            f'(ADDRSERVICE_TEST_PG_DSN): Connection refused')
        assert reason is not None
        verdict = no_server(reason)
        if pg_required():
            self.assertIsInstance(verdict, AssertionError)
            self.assertEqual(str(verdict),
                             f'{reason}, and ADDRSERVICE_REQUIRE_PG=1')
        else:
            self.assertIsInstance(verdict, unittest.SkipTest)
            self.assertEqual(str(verdict), reason)


if __name__ == '__main__':
    unittest.main()
