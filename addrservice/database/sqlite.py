"""SQLite storage: one database file, which several processes may share.

Entries live in the table `addresses(id, version, entry)`: `entry` is the
entry's API form as strict JSON text, `version` is 1 on create and one
more on every update.

Durability: WAL journal with `synchronous=FULL`. Every commit fsyncs the
WAL before the write is acknowledged, so an acknowledged write survives a
killed process and also a power loss or a kernel crash. In WAL mode
`NORMAL` syncs only at checkpoints: it survives `kill -9`, but the last
commits before a power loss can roll back, and an acknowledged write must
never be lost. SQLite also syncs the directory when it creates the WAL.

Sharing: each process (each of the server's `--workers`) has its own
connections. SQLite's file locks serialise writers across processes; a
writer waits up to `busy_timeout` for the lock. Readers in WAL mode read
the last commit and do not wait for writers (only, briefly, for the
recovery of the WAL that a crashed process left).

Threads, chosen by measurement (SQLite 3.40.1, Python 3.11, a 2-CPU VM,
10,000 rows of 1 KB, medians of five runs). Per operation, wall time and
the time the event loop was blocked, in µs:

                                 point read   page of 100   durable write
    sqlite3 inline on the loop     16 / 14     160 / 165      630 / 650
    sqlite3 on one thread         110 / 49     340 / 55       490 / 61
    aiosqlite                      50 / 18     200 / 18       450 / 52

Point reads by 8 concurrent tasks: 92,000/s inline, 20,000/s on a thread,
30,000/s with aiosqlite.

A read is served from the page cache in microseconds, no more than a
hand-off to a thread costs the loop alone (and a tenth of decoding the
entry, some 150 µs, which every engine does on the loop). So reads run
inline on the loop, on a read connection of their own. A durable write
waits on fsync, with the GIL released, for about half a millisecond and
at times far longer (inline, single writes blocked the loop for up to
56 ms). So writes run on one writer thread with a connection of its own,
which also serialises the writes of this process and runs each whole
transaction in one hop. aiosqlite would move the reads to a thread as
well, at three times their latency, and does a write no better than a
plain thread (fsync dominates both): the standard `sqlite3` module is
used, and no dependency added.

Every query runs to completion (`fetchall`), so no read transaction stays
open across an `await` and holds back checkpoints.

Schema: `PRAGMA user_version` counts the `MIGRATIONS` applied. `start()`
applies the missing ones in one `BEGIN IMMEDIATE` transaction, so that of
several processes starting at once one migrates and the others wait and
find it done. A database of a newer version than this code is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterator, NoReturn, TypeVar

from addrservice.database.base import (
    DECODE_INLINE_BYTES,
    LIST_BATCH,
    AbstractAddressBookDB,
    StoredEntry,
    StoredJSON,
    check_version,
    existing_nickname,
    log_unreadable,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
    StorageUnavailableError,
)
from addrservice.utils import strictjson

_T = TypeVar('_T')
_V = TypeVar('_V')

# How long a connection waits for another process's lock, in seconds.
BUSY_TIMEOUT = 5.0

# UPDATE ... RETURNING
MIN_SQLITE_VERSION = (3, 35, 0)

# Schema changes in order; `PRAGMA user_version` is how many are applied.
MIGRATIONS: tuple[str, ...] = (
    # id compares by BINARY collation: UTF-8 bytes, which is code-point
    # order, the order listings promise.
    'CREATE TABLE addresses ('
    ' id TEXT PRIMARY KEY,'
    ' version INTEGER NOT NULL,'
    ' entry TEXT NOT NULL)',
)

# Checking that stored text is a JSON object, to send it as it is, costs
# about 6 us per KiB, 25 times less than decoding it into an entry: up to
# this much is checked on the event loop.
CHECK_INLINE_BYTES = 256 * 1024

# Entries are fetched as bytes, so that text that is not UTF-8 makes one
# corrupt entry rather than a failed fetch of a whole page.
_SELECT_ENTRY = (
    'SELECT version, CAST(entry AS BLOB) FROM addresses WHERE id = ?'
)
_SELECT_PAGE = (
    'SELECT id, version, CAST(entry AS BLOB) FROM addresses'
    ' WHERE id > ? ORDER BY id LIMIT ?'
)


class SqliteAddressBookDB(AbstractAddressBookDB):
    """Entries in the SQLite database file `.path`.

    `start()` or `open()` opens (and creates) the database; an operation
    before that, or after `stop()`, raises `StorageUnavailableError`.
    """

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self._path = os.path.abspath(path)
        self._busy_timeout = busy_timeout
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._group_commit: _GroupCommit | None = None

    @property
    def path(self) -> str:
        return self._path

    def start(self) -> None:
        """Open the database, creating or migrating its schema; raise
        `StorageUnavailableError` naming the path if it cannot be used."""
        if self._reader is not None:
            return
        with self._unavailable('cannot be opened'):
            require_sqlite(sqlite3.sqlite_version_info)
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            writer = self._connect()
            try:
                self._migrate(writer)
                reader = self._connect()
            except BaseException:
                writer.close()
                raise
        self._reader, self._writer = reader, writer
        self._writer_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='addrservice-sqlite-writer'
        )
        self._group_commit = _GroupCommit(writer, self._writer_thread)

    def stop(self) -> None:
        """Finish the writes under way, then close the connections."""
        _shut(*self._detach())

    async def open(self) -> None:
        # Opening may wait for another process's lock, and fsyncs.
        await asyncio.to_thread(self.start)

    async def close(self) -> None:
        # Detached here, on the loop, so no read starts on a closing
        # connection; the last connection to close checkpoints the WAL.
        await asyncio.to_thread(_shut, *self._detach())

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        await self._write(_insert, nickname, _encode(addr))
        return nickname

    async def read_entry(self, nickname: str) -> StoredEntry:
        version, entry = self._row(nickname)
        try:
            if len(entry) <= DECODE_INLINE_BYTES:
                return _decode(version, entry)
            return await asyncio.to_thread(_decode, version, entry)
        except ValueError as e:
            raise CorruptEntryError(f'{self._where(nickname)}: {e}') from None

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        version, entry = self._row(nickname)
        try:
            return StoredJSON(_checked_json(version, entry), version)
        except ValueError as e:
            raise CorruptEntryError(f'{self._where(nickname)}: {e}') from None

    def _row(self, nickname: str) -> tuple[Any, Any]:
        existing_nickname(nickname)
        rows = self._read(_SELECT_ENTRY, nickname)
        if not rows:
            raise AddressNotFoundError(nickname)
        return tuple(rows[0])

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        existing_nickname(nickname)
        return await self._write(
            _update, nickname, _encode(addr), expected_version)

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        existing_nickname(nickname)
        await self._write(_delete, nickname, expected_version)

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        async for pair in self._listing(after, limit, _entry_of,
                                        DECODE_INLINE_BYTES):
            yield pair

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        async for pair in self._listing(after, limit, _checked_json,
                                        CHECK_INLINE_BYTES):
            yield pair

    async def _listing(
        self, after: str | None, limit: int | None,
        decode: Callable[[object, object], _V], inline_bytes: int,
    ) -> AsyncIterator[tuple[str, _V]]:
        left = limit
        # Every id is longer than '', so '' starts at the first.
        start: object = '' if after is None else after
        while left is None or left > 0:
            size = LIST_BATCH if left is None else min(left, LIST_BATCH)
            rows = self._read(_SELECT_PAGE, start, size)
            for pair in await self._readable(rows, decode, inline_bytes):
                yield pair
                left = None if left is None else left - 1
            if len(rows) < size:
                return
            start = rows[-1][0]

    async def count_addresses(self) -> int:
        [(count,)] = self._read('SELECT count(*) FROM addresses')
        return int(count)

    async def ping(self) -> None:
        # One row at most: counting them all costs a scan of the table.
        self._read('SELECT 1 FROM addresses LIMIT 1')

    def _connect(self) -> sqlite3.Connection:
        # Autocommit: transactions are explicit. Each connection is used
        # by one thread at a time, but opened and closed by another.
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None,
            check_same_thread=False,
        )
        try:
            [(mode,)] = conn.execute('PRAGMA journal_mode = WAL').fetchall()
            if mode != 'wal':
                raise sqlite3.OperationalError(f'journal mode {mode}, not WAL')
            conn.execute('PRAGMA synchronous = FULL')
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):
            [(version,)] = conn.execute('PRAGMA user_version').fetchall()
            if version > len(MIGRATIONS):
                raise StorageUnavailableError(
                    f'SQLite database "{self._path}" has schema version '
                    f'{version}, newer than the {len(MIGRATIONS)} this '
                    'addrservice knows; upgrade addrservice'
                )
            if version < len(MIGRATIONS):
                for migration in MIGRATIONS[version:]:
                    conn.execute(migration)
                conn.execute(f'PRAGMA user_version = {len(MIGRATIONS)}')

    def _read(self, sql: str, *args: object) -> list[Any]:
        """Run a query inline on the loop, on the read connection."""
        if self._reader is None:
            raise self._not_open()
        with self._unavailable('cannot be read'):
            return self._reader.execute(sql, args).fetchall()

    async def _write(
        self, write: Callable[..., _T], *args: object
    ) -> _T:
        """Run `write(connection, *args)` on the writer thread, in a
        transaction it may share with other writes (`_GroupCommit`)."""
        if self._group_commit is None:
            raise self._not_open()
        with self._unavailable('cannot be written'):
            return await self._group_commit.write(write, *args)

    async def _readable(
        self, rows: list[Any], decode: Callable[[object, object], _V],
        inline_bytes: int,
    ) -> list[tuple[str, _V]]:
        """The entries of `rows` that can be decoded, in order."""
        size = sum(len(entry) for _, _, entry in rows
                   if isinstance(entry, bytes))
        if size <= inline_bytes:
            return list(self._decode_rows(rows, decode))
        return await asyncio.to_thread(
            lambda: list(self._decode_rows(rows, decode)))

    def _decode_rows(
        self, rows: list[Any], decode: Callable[[object, object], _V]
    ) -> Iterator[tuple[str, _V]]:
        for nickname, version, entry in rows:
            try:
                if not isinstance(nickname, str):
                    raise ValueError(f'id {nickname!r} is not text')
                value = decode(version, entry)
            except ValueError as e:
                log_unreadable(self._where(str(nickname)), e)
                continue
            yield nickname, value

    def _detach(
        self,
    ) -> tuple[sqlite3.Connection | None, sqlite3.Connection | None,
               ThreadPoolExecutor | None]:
        detached = self._reader, self._writer, self._writer_thread
        self._reader = self._writer = self._writer_thread = None
        self._group_commit = None
        return detached

    def _where(self, nickname: str) -> str:
        return f'{self._path}#{nickname}'

    def _not_open(self) -> StorageUnavailableError:
        return StorageUnavailableError(
            f'SQLite database "{self._path}" is not open'
        )

    @contextlib.contextmanager
    def _unavailable(self, what: str) -> Iterator[None]:
        """Faults of the database file as `StorageUnavailableError`."""
        try:
            yield
        except (OSError, sqlite3.DatabaseError) as e:
            if isinstance(e, (sqlite3.IntegrityError,
                              sqlite3.ProgrammingError)):
                raise  # a fault of this code, not of the file
            raise StorageUnavailableError(
                f'SQLite database "{self._path}" {what}: {e}'
            ) from e


def require_sqlite(version: tuple[int, int, int]) -> None:
    """Refuse a SQLite library older than `MIN_SQLITE_VERSION`."""
    if version < MIN_SQLITE_VERSION:
        needed = '.'.join(map(str, MIN_SQLITE_VERSION))
        found = '.'.join(map(str, version))
        raise StorageUnavailableError(
            f'SQLite {needed} or later is needed; this Python has {found}'
        )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock at once (waiting for it up to the
    # busy timeout), so a transaction never fails half-way for want of it.
    conn.execute('BEGIN IMMEDIATE')
    try:
        yield
        conn.execute('COMMIT')
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT may have ended it
            conn.execute('ROLLBACK')
        raise


class _GroupCommit:
    """The writes of one engine, committed in groups on its writer thread.

    Every write that is waiting when the thread is free goes into its next
    transaction, each write in a savepoint of its own: one commit, and one
    fsync, then acknowledges them all, and a write that fails (an id that
    exists, a stale version) undoes only itself. Each caller still gets
    its own result only once the commit holding its write is durable; if
    that commit fails, every write of the group fails with it.
    """

    def __init__(
        self, conn: sqlite3.Connection, thread: ThreadPoolExecutor
    ) -> None:
        self._conn = conn
        self._thread = thread
        self._waiting: list[_Write] = []
        self._committing = False

    async def write(self, op: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((op, args, done))
        if not self._committing:
            self._committing = True
            loop.create_task(self._commit_waiting())
        result: _T = await done
        return result

    async def _commit_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[_Write] = []
        try:
            while self._waiting:
                group = self._waiting[:MAX_GROUP]
                del self._waiting[:MAX_GROUP]
                try:
                    outcomes = await loop.run_in_executor(
                        self._thread, _commit_group, self._conn,
                        [(op, args) for op, args, _ in group])
                except Exception as e:
                    outcomes = [e] * len(group)
                for (_, _, done), outcome in zip(group, outcomes):
                    if done.done():
                        continue  # its caller was cancelled
                    if isinstance(outcome, Exception):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome.value)
        except BaseException:
            # The loop is closing: no caller is left to be told.
            for _, _, done in group + self._waiting:
                done.cancel()
            self._waiting.clear()
            raise
        finally:
            self._committing = False


_Write = tuple[Callable[..., Any], tuple[object, ...], 'asyncio.Future[Any]']


@dataclasses.dataclass(frozen=True)
class _Done:
    value: Any


# Writes committed together at most; more wait for the next commit.
MAX_GROUP = 64


def _commit_group(
    conn: sqlite3.Connection,
    writes: list[tuple[Callable[..., Any], tuple[object, ...]]],
) -> list[_Done | Exception]:
    """Run `writes` in one transaction, each in a savepoint; their values
    or errors once it is committed (and fsynced)."""
    outcomes: list[_Done | Exception] = []
    with _transaction(conn):
        for op, args in writes:
            conn.execute('SAVEPOINT one_write')
            try:
                outcomes.append(_Done(op(conn, *args)))
            except Exception as e:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back
                conn.execute('ROLLBACK TO one_write')
                outcomes.append(e)
            conn.execute('RELEASE one_write')
    return outcomes


# The writes below run on the writer thread, within a transaction that
# `_commit_group()` commits.

def _insert(conn: sqlite3.Connection, nickname: str, entry: str) -> None:
    try:
        conn.execute(
            'INSERT INTO addresses (id, version, entry) VALUES (?, 1, ?)',
            (nickname, entry),
        )
    except sqlite3.IntegrityError:
        raise AddressExistsError(nickname) from None


def _update(
    conn: sqlite3.Connection, nickname: str, entry: str,
    expected: int | None,
) -> int:
    rows = conn.execute(
        'UPDATE addresses SET version = version + 1, entry = ?'
        ' WHERE id = ? AND version = coalesce(?, version)'
        ' RETURNING version',
        (entry, nickname, expected),
    ).fetchall()
    if not rows:
        _refuse(conn, nickname, expected)
    return int(rows[0][0])


def _delete(
    conn: sqlite3.Connection, nickname: str, expected: int | None
) -> None:
    deleted = conn.execute(
        'DELETE FROM addresses'
        ' WHERE id = ? AND version = coalesce(?, version)',
        (nickname, expected),
    ).rowcount
    if deleted == 0:
        _refuse(conn, nickname, expected)


def _refuse(
    conn: sqlite3.Connection, nickname: str, expected: int | None
) -> NoReturn:
    """Why a write that matched no row was refused, seen in its
    transaction: the entry is gone, or at another version."""
    row = conn.execute(
        'SELECT version FROM addresses WHERE id = ?', (nickname,)
    ).fetchone()
    if row is None:
        raise AddressNotFoundError(nickname)
    check_version(nickname, int(row[0]), expected)
    raise AssertionError(f'{nickname!r} matched no row at its version')


def _shut(
    reader: sqlite3.Connection | None,
    writer: sqlite3.Connection | None,
    writer_thread: ThreadPoolExecutor | None,
) -> None:
    if writer_thread is not None:
        writer_thread.shutdown(wait=True)
    for conn in (reader, writer):
        if conn is not None:
            conn.close()


def _encode(addr: AddressEntry) -> str:
    return strictjson.dumps(addr.to_api_dm())


def _decode(version: object, entry: object) -> StoredEntry:
    version, entry = _checked_row(version, entry)
    return StoredEntry(AddressEntry.from_api_dm(strictjson.loads(entry)),
                       version)


def _entry_of(version: object, entry: object) -> AddressEntry:
    return _decode(version, entry).entry


def _checked_json(version: object, entry: object) -> bytes:
    """The stored text, to be sent as it is.

    This engine wrote it from a checked entry, so only a row changed by
    other means can be anything else. That it is still one UTF-8 JSON
    object is checked, so that nothing else is ever sent; that it is an
    entry is not (that costs 25 times more).
    """
    _, entry = _checked_row(version, entry)
    if not isinstance(_JSON_CHECKER.decode(entry.decode()), dict):
        raise ValueError('entry is not a JSON object')
    return entry


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON')


_JSON_CHECKER = json.JSONDecoder(parse_constant=_refuse_constant)


def _checked_row(version: object, entry: object) -> tuple[int, bytes]:
    if type(version) is not int or version < 1:
        raise ValueError(f'version {version!r} is not a positive integer')
    if not isinstance(entry, bytes):
        raise ValueError(f'entry {entry!r} is not text')
    return version, entry
