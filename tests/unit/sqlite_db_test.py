"""The SQLite engine: the storage contract, and what is its own."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import threading
import time
import unittest
from typing import Any

from addrservice.database.base import (
    LIST_BATCH,
    AbstractAddressBookDB,
    StoredEntry,
)
from addrservice.database.sqlite import (
    MIGRATIONS,
    SqliteAddressBookDB,
    require_sqlite,
)
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
    StorageUnavailableError,
    VersionConflictError,
)
from addrservice.utils import strictjson
from tests.support import LogCapture, ticks_while
from tests.unit.addressbook_db_test import (
    DecodingEngineContract,
    SynchronousStartContract,
)

WRITER_THREAD = 'addrservice-sqlite-writer_0'


class SqliteAddressBookDBTest(
    SynchronousStartContract, DecodingEngineContract,
    unittest.IsolatedAsyncioTestCase,
):
    def make_db(self) -> AbstractAddressBookDB:
        self.dir = self.enterContext(tempfile.TemporaryDirectory())
        self.path = os.path.join(self.dir, 'addresses.sqlite3')
        return SqliteAddressBookDB(self.path)

    def raw(self, timeout: float = 5.0) -> sqlite3.Connection:
        """A connection of its own to the file, as another program has."""
        conn = sqlite3.connect(self.path, timeout=timeout,
                               isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    async def another(
        self, path: str | None = None, **kwargs: Any
    ) -> SqliteAddressBookDB:
        """A second engine, as another worker process has, opened."""
        db = SqliteAddressBookDB(path or self.path, **kwargs)
        await db.open()
        self.addAsyncCleanup(db.close)
        return db

    async def test_persists_across_instances(self) -> None:
        """A new engine on the same file sees the entries and versions."""
        await self.db.create_address(self.suite['namo'], 'namo')
        await self.db.update_address('namo', self.suite['raga'])
        await self.db.create_address(self.suite['namo'], 'other')
        await self.db.close()
        again = await self.another()
        self.assertEqual(await again.read_entry('namo'),
                         StoredEntry(self.suite['raga'], 2))
        self.assertEqual(await again.read_entry('other'),
                         StoredEntry(self.suite['namo'], 1))
        self.assertEqual(await again.count_addresses(), 2)

    async def test_entries_are_strict_json_text(self) -> None:
        """A row holds the id, the version and the API form as JSON text."""
        await self.db.create_address(self.suite['namo'], 'namo')
        await self.db.update_address('namo', self.suite['raga'])
        rows = self.raw().execute(
            'SELECT id, version, entry, typeof(entry) FROM addresses'
        ).fetchall()
        self.assertEqual(rows, [(
            'namo', 2, strictjson.dumps(self.suite['raga'].to_api_dm()),
            'text',
        )])

    async def test_wal_and_full_synchronous(self) -> None:
        """Every connection runs in WAL mode with synchronous=FULL and the
        busy timeout; the file itself stays in WAL mode."""
        db = RecordingDB(os.path.join(self.dir, 'other.sqlite3'))
        await db.open()
        self.addAsyncCleanup(db.close)
        self.assertEqual(len(db.connections), 2)
        for conn in db.connections:
            self.assertEqual(conn.execute('PRAGMA journal_mode').fetchall(),
                             [('wal',)])
            self.assertEqual(conn.execute('PRAGMA synchronous').fetchall(),
                             [(2,)])  # FULL
            self.assertEqual(conn.execute('PRAGMA busy_timeout').fetchall(),
                             [(5000,)])
        self.assertEqual(self.raw().execute('PRAGMA journal_mode').fetchall(),
                         [('wal',)])

    async def test_reads_inline_and_writes_on_the_writer_thread(self) -> None:
        """Queries run on the loop's thread; every write, its commit (and
        fsync) included, on the one writer thread."""
        db = RecordingDB(self.path)
        db.start()
        self.addCleanup(db.stop)
        db.trace()
        nickname = await db.create_address(self.entry())
        await db.update_address(nickname, self.entry('New'))
        await db.read_entry(nickname)
        self.assertEqual([n async for n, _ in db.read_addresses()],
                         [nickname])
        await db.delete_address(nickname)
        await db.count_addresses()
        statements = {
            verb: {thread for sql, thread in db.statements
                   if sql.startswith(verb)}
            for verb in ['SELECT', 'BEGIN', 'INSERT', 'UPDATE', 'DELETE',
                         'COMMIT']
        }
        self.assertEqual(statements, {
            'SELECT': {threading.main_thread().name},
            'BEGIN': {WRITER_THREAD}, 'INSERT': {WRITER_THREAD},
            'UPDATE': {WRITER_THREAD}, 'DELETE': {WRITER_THREAD},
            'COMMIT': {WRITER_THREAD},
        })

    async def test_a_write_waiting_for_a_lock_does_not_block_the_loop(
        self,
    ) -> None:
        """A write that waits for another process's lock waits on its
        thread: the loop keeps running, and the write then succeeds."""
        other = self.raw()
        other.execute('BEGIN IMMEDIATE')
        loop = asyncio.get_running_loop()
        # Only a loop that keeps running can release the lock.
        loop.call_later(0.3, other.execute, 'COMMIT')
        started = time.monotonic()
        nickname, ticks = await ticks_while(
            self.db.create_address(self.entry()))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(), 1))
        # A blocked loop would not have ticked at all (nor committed).
        self.assertGreaterEqual(ticks, 5)

    async def test_reads_do_not_wait_for_writers(self) -> None:
        """While another process holds the write lock with a change under
        way, reads answer at once with the last commit."""
        nickname = await self.db.create_address(self.entry())
        other = self.raw()
        other.execute('BEGIN IMMEDIATE')
        other.execute("UPDATE addresses SET version = 7, entry = '[]'")
        started = time.monotonic()
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(), 1))
        self.assertEqual(await self.listing(), {nickname: self.entry()})
        self.assertLess(time.monotonic() - started, 1.0)
        other.execute('ROLLBACK')

    async def test_a_lock_held_too_long_is_unavailable(self) -> None:
        """A write that cannot get the lock within the busy timeout is
        StorageUnavailableError naming the file; later writes succeed."""
        db = await self.another(busy_timeout=0.1)
        other = self.raw()
        other.execute('BEGIN IMMEDIATE')
        with self.assertRaises(StorageUnavailableError) as caught:
            await db.create_address(self.entry(), 'late')
        self.assertEqual(
            str(caught.exception),
            f'SQLite database "{self.path}" cannot be written: '
            'database is locked')
        other.execute('ROLLBACK')
        self.assertEqual(await db.create_address(self.entry(), 'late'),
                         'late')

    async def test_schema_version_recorded(self) -> None:
        """The schema is created at start, its version in user_version."""
        conn = self.raw()
        self.assertEqual(conn.execute('PRAGMA user_version').fetchall(),
                         [(1,)])
        self.assertEqual(len(MIGRATIONS), 1)
        self.assertEqual(
            conn.execute('PRAGMA table_info(addresses)').fetchall(), [
                (0, 'id', 'TEXT', 0, None, 1),
                (1, 'version', 'INTEGER', 1, None, 0),
                (2, 'entry', 'TEXT', 1, None, 0),
            ])

    async def test_an_empty_file_gets_the_schema(self) -> None:
        """An existing empty file (schema version 0) is migrated."""
        path = os.path.join(self.dir, 'empty.sqlite3')
        with open(path, 'wb'):
            pass
        db = await self.another(path)
        self.assertEqual(await db.create_address(self.entry(), 'a'), 'a')
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute('PRAGMA user_version').fetchall(),
                         [(1,)])

    async def test_engines_starting_together_migrate_once(self) -> None:
        """Several engines opening one new file at once all start, on one
        schema."""
        path = os.path.join(self.dir, 'new.sqlite3')
        barrier = threading.Barrier(4, timeout=10)
        dbs = [StartTogetherDB(path, barrier) for _ in range(4)]
        await asyncio.gather(*(db.open() for db in dbs))
        for db in dbs:
            self.addAsyncCleanup(db.close)
        await dbs[0].create_address(self.entry(), 'a')
        for db in dbs:
            self.assertEqual(await db.read_address('a'), self.entry())
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(
            conn.execute('SELECT type, name FROM sqlite_schema').fetchall(),
            [('table', 'addresses'),
             ('index', 'sqlite_autoindex_addresses_1')])

    async def test_newer_schema_refused(self) -> None:
        """A database of a schema version newer than the code is refused at
        start, saying so; its data is left alone."""
        await self.db.create_address(self.entry(), 'kept')
        self.raw().execute('PRAGMA user_version = 2')
        await self.db.close()
        with self.assertRaises(StorageUnavailableError) as caught:
            SqliteAddressBookDB(self.path).start()
        self.assertEqual(
            str(caught.exception),
            f'SQLite database "{self.path}" has schema version 2, newer '
            'than the 1 this addrservice knows; upgrade addrservice')
        self.assertEqual(
            self.raw().execute('SELECT id FROM addresses').fetchall(),
            [('kept',)])

    async def test_not_a_database(self) -> None:
        """A file that is not a SQLite database is refused at open, with a
        one-line message naming it."""
        path = os.path.join(self.dir, 'notes.txt')
        with open(path, 'w') as f:
            f.write('not a database\n' * 100)
        db = SqliteAddressBookDB(path)
        with self.assertRaises(StorageUnavailableError) as caught:
            await db.open()
        self.assertEqual(
            str(caught.exception),
            f'SQLite database "{path}" cannot be opened: '
            'file is not a database')

    async def test_unusable_paths(self) -> None:
        """A path under a regular file, or a directory, is refused at
        start with a one-line message naming it."""
        a_file = os.path.join(self.dir, 'file')
        with open(a_file, 'w'):
            pass
        under_file = os.path.join(a_file, 'db.sqlite3')
        expected = {
            under_file: f"[Errno 17] File exists: '{a_file}'",
            self.dir: 'unable to open database file',
        }
        for path, reason in expected.items():
            with self.subTest(path=path):
                with self.assertRaises(StorageUnavailableError) as caught:
                    SqliteAddressBookDB(path).start()
                self.assertEqual(
                    str(caught.exception),
                    f'SQLite database "{path}" cannot be opened: {reason}')

    async def test_creates_missing_directories(self) -> None:
        """The directories above a new database file are created."""
        path = os.path.join(self.dir, 'a', 'b', 'db.sqlite3')
        db = await self.another(os.path.relpath(path))
        self.assertEqual(db.path, path)
        await db.create_address(self.entry(), 'x')
        self.assertTrue(os.path.isfile(path))

    async def test_not_open(self) -> None:
        """Before start and after stop, operations are
        StorageUnavailableError."""
        db = SqliteAddressBookDB(os.path.join(self.dir, 'later.sqlite3'))
        message = f'SQLite database "{db.path}" is not open'
        for when in ['before start', 'after stop']:
            with self.subTest(when=when):
                with self.assertRaisesRegex(StorageUnavailableError,
                                            f'^{message}$'):
                    await db.read_entry('x')
                with self.assertRaisesRegex(StorageUnavailableError,
                                            f'^{message}$'):
                    await db.create_address(self.entry(), 'x')
                db.start()
                db.stop()

    async def test_two_engines_see_each_others_writes(self) -> None:
        """Two engines on one file, as two worker processes, each see what
        the other wrote."""
        other = await self.another()
        await self.db.create_address(self.suite['namo'], 'namo')
        self.assertEqual(await other.read_entry('namo'),
                         StoredEntry(self.suite['namo'], 1))
        version = await other.update_address('namo', self.suite['raga'])
        self.assertEqual(version, 2)
        self.assertEqual(await self.db.read_entry('namo'),
                         StoredEntry(self.suite['raga'], 2))
        await other.create_address(self.entry(), 'bill')
        self.assertEqual(await self.listing(),
                         {'bill': self.entry(), 'namo': self.suite['raga']})
        await self.db.delete_address('bill')
        self.assertEqual([n async for n, _ in other.read_all_addresses()],
                         ['namo'])

    async def test_concurrent_writes_across_engines(self) -> None:
        """Creates of one nickname through two engines have one winner;
        updates through both get distinct versions."""
        other = await self.another()
        for i in range(10):
            nickname = f'race{i}'
            results = await asyncio.gather(
                self.db.create_address(self.entry('one'), nickname),
                other.create_address(self.entry('two'), nickname),
                return_exceptions=True)
            winners = [r for r in results if r == nickname]
            self.assertEqual(len(winners), 1, results)
            [loser] = [r for r in results if r != nickname]
            self.assertIsInstance(loser, AddressExistsError)
            winner = self.entry(['one', 'two'][results.index(nickname)])
            self.assertEqual(await other.read_address(nickname), winner)
        versions = await asyncio.gather(*(
            db.update_address('race0', self.entry(f'n{i}'))
            for i in range(6) for db in [self.db, other]
        ))
        self.assertEqual(sorted(versions), list(range(2, 14)))

    async def test_writes_committed_together_fail_alone(self) -> None:
        """Concurrent writes share commits; one that fails (an id that
        exists, a stale version, a missing entry) changes nothing and
        does not undo the others, which are all on disk."""
        await self.db.create_address(self.entry('taken'), 'taken')
        await self.db.create_address(self.entry('v1'), 'versioned')
        writes = [
            *(self.db.create_address(self.entry(f'n{i}'), f'n{i}')
              for i in range(10)),
            self.db.create_address(self.entry('again'), 'taken'),
            self.db.update_address('versioned', self.entry('v2'), 1),
            self.db.update_address('versioned', self.entry('stale'), 1),
            self.db.delete_address('missing'),
            *(self.db.create_address(self.entry(f'm{i}'), f'm{i}')
              for i in range(10)),
        ]
        results = await asyncio.gather(*writes, return_exceptions=True)
        self.assertEqual(results[:10], [f'n{i}' for i in range(10)])
        self.assertIsInstance(results[10], AddressExistsError)
        self.assertEqual(results[11], 2)
        self.assertIsInstance(results[12], VersionConflictError)
        self.assertIsInstance(results[13], AddressNotFoundError)
        self.assertEqual(results[14:], [f'm{i}' for i in range(10)])
        conn = self.raw()
        stored = dict(conn.execute('SELECT id, entry FROM addresses'))
        self.assertEqual(len(stored), 22)
        self.assertIn('"taken"', stored['taken'])
        self.assertIn('"v2"', stored['versioned'])

    async def test_reading_a_corrupt_row(self) -> None:
        """A row that is not an entry is CorruptEntryError naming the file
        and id, not a 404."""
        conn = self.raw()
        for name, (version, entry) in CORRUPT_ROWS.items():
            conn.execute('INSERT INTO addresses VALUES (?, ?, ?)',
                         (name, version, entry))
            with self.subTest(name=name):
                with self.assertRaises(CorruptEntryError):
                    await self.db.read_entry(name)
        with self.assertRaises(CorruptEntryError) as caught:
            await self.db.read_address('array')
        self.assertEqual(str(caught.exception),
                         f'{self.path}#array: expected an object, got []')

    async def test_reading_text_that_is_not_json(self) -> None:
        """Entries are sent as the text stored: a row that is not a JSON
        object is CorruptEntryError, and listings skip it."""
        conn = self.raw()
        not_json = ['truncated', 'array', 'string', 'number', 'nan',
                    'not-utf8', 'version-0', 'version-text', 'version-real']
        for name, (version, entry) in CORRUPT_ROWS.items():
            conn.execute('INSERT INTO addresses VALUES (?, ?, ?)',
                         (name, version, entry))
        for name in not_json:
            with self.subTest(name=name):
                with self.assertRaises(CorruptEntryError):
                    await self.db.read_entry_json(name)
        await self.db.create_address(self.entry(), 'good')
        with LogCapture() as logs:
            listed = [n async for n, _ in self.db.read_addresses_json()]
        self.assertEqual(listed, sorted(
            set(CORRUPT_ROWS) - set(not_json) | {'good'}))
        self.assertEqual(len(logs.fields('UNREADABLE ENTRY')),
                         len(not_json))

    async def test_listing_skips_and_logs_corrupt_rows(self) -> None:
        """Listings skip rows that are not entries, log each at ERROR by
        file and id, and still fill a page."""
        good = {name: self.entry(name) for name in ['b', 'd', 'f', 'h']}
        for name, addr in good.items():
            await self.db.create_address(addr, name)
        corrupt = [f'{letter}-{name}' for letter, name
                   in zip('aceg' * 3, CORRUPT_ROWS)]
        conn = self.raw()
        for name, row in zip(corrupt, CORRUPT_ROWS.values()):
            conn.execute('INSERT INTO addresses VALUES (?, ?, ?)',
                         (name, *row))
        with LogCapture() as logs:
            self.assertEqual(await self.listing(), good)
            page = [n async for n, _ in self.db.read_addresses('b', 2)]
        self.assertEqual(page, ['d', 'f'])
        errors = logs.fields('UNREADABLE ENTRY')
        self.assertEqual(
            sorted(e['file'] for e in errors),
            sorted([f'{self.path}#{name}' for name in corrupt]
                   + [f'{self.path}#{name}' for name in corrupt
                      if 'b' < name < 'f']))
        self.assertTrue(all(r.levelname == 'ERROR' for r in logs.records))

    async def test_listings_hold_no_transaction_between_batches(
        self,
    ) -> None:
        """A listing paused between entries holds no read transaction (the
        WAL can be checkpointed) and its next batch sees later commits."""
        nicknames = [f'e{i:04d}' for i in range(LIST_BATCH + 10)]
        for nickname in nicknames:
            await self.db.create_address(self.entry(nickname), nickname)
        listing = self.db.read_all_addresses()
        first = await anext(listing)
        await self.db.create_address(self.entry(), 'z')
        checkpoint = self.raw(timeout=0.1).execute(
            'PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
        self.assertEqual(checkpoint, [(0, 0, 0)])  # not busy, all copied
        rest = [n async for n, _ in listing]
        self.assertEqual([first[0], *rest], [*nicknames, 'z'])

    async def test_sqlite_version_required(self) -> None:
        """A SQLite library older than 3.35 (no RETURNING) is refused."""
        with self.assertRaises(StorageUnavailableError) as caught:
            require_sqlite((3, 34, 1))
        self.assertEqual(
            str(caught.exception),
            'SQLite 3.35.0 or later is needed; this Python has 3.34.1')
        require_sqlite((3, 35, 0))
        require_sqlite(sqlite3.sqlite_version_info)


# Rows that are not entries: name -> (version, entry).
CORRUPT_ROWS: dict[str, tuple[object, object]] = {
    'truncated': (1, '{"full_name": '),
    'array': (1, '[]'),
    'string': (1, '"s"'),
    'number': (1, 42),
    'empty-name': (1, '{"full_name": ""}'),
    'unknown-field': (1, '{"full_name": "x", "more": 1}'),
    'nan': (1, '{"full_name": NaN}'),
    'not-utf8': (1, b'{"full_name": "\xff"}'),
    'version-0': (0, '{"full_name": "x"}'),
    'version-text': ('two', '{"full_name": "x"}'),
    'version-real': (1.5, '{"full_name": "x"}'),
}


class StartTogetherDB(SqliteAddressBookDB):
    """An engine whose schema check waits until all its peers are at
    theirs, as processes started at one moment may be."""

    def __init__(self, path: str, barrier: threading.Barrier) -> None:
        super().__init__(path)
        self.barrier = barrier

    def _migrate(self, conn: sqlite3.Connection) -> None:
        self.barrier.wait()
        super()._migrate(conn)


class RecordingDB(SqliteAddressBookDB):
    """An engine that keeps its connections, to look at their settings
    and at which thread runs each statement."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.connections: list[sqlite3.Connection] = []
        self.statements: list[tuple[str, str]] = []

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        self.connections.append(conn)
        return conn

    def trace(self) -> None:
        """From now on, note each statement and the thread that runs it."""
        def note(sql: str) -> None:
            self.statements.append((sql, threading.current_thread().name))
        for conn in self.connections:
            conn.set_trace_callback(note)


if __name__ == '__main__':
    unittest.main()
