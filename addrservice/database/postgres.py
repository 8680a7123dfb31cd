"""PostgreSQL storage: one row per entry, shared by any number of servers.

Design, and why:

- asyncpg with a connection pool per process. Every operation is a single
  statement on a pooled connection, so several service processes, on one
  machine or many, share one database; PostgreSQL's constraints and row
  locks keep their writes consistent. The pool is opened by `open()`,
  which the server awaits before it binds its port: the tutorial's
  synchronous `start()` cannot open it and refuses to.
- `addresses(id TEXT COLLATE "C" PRIMARY KEY, version, entry JSONB)`.
  The "C" collation compares UTF-8 bytes, which is code-point order: the
  order Python gives `str` and every other engine lists in (a database's
  default collation would put 'a' before 'B').
- Writes are atomic without explicit transactions. A create is an INSERT
  that the primary key refuses for a nickname that exists, so of two
  servers creating one nickname exactly one wins. An update is
  `SET version = version + 1 ... RETURNING version`: concurrent updates
  each get their own version and none is lost.
- Paging happens in SQL, by keyset (`WHERE id > $1 ORDER BY id LIMIT
  $2`, a walk of the primary-key index). A long listing reads LIST_BATCH
  rows per query and holds no connection or transaction while its
  consumer works through them, so a slow reader holds back neither
  writers nor the pool. As with the other engines, a listing that runs
  while entries change sees each batch as it is when read.
- Entries are JSONB in their API form. JSONB stores numbers as `numeric`
  and prints them without exponent: the float 1e300 comes back as a
  301-digit integer, 1e16 as 10000000000000000. Input refuses integers
  beyond 2**53-1 (I-JSON), so such an integer can only have been written
  as a float, and reading turns it back into one: every entry reads back
  as written, number types included. Text containing U+0000 cannot be
  held by JSONB; an entry with such text is refused as invalid.
- `schema` names a PostgreSQL schema (namespace) that holds the tables, so
  that several address books, or test runs, can share a database.
- The schema's version is recorded in `addrservice_schema_version`.
  `open()` applies the missing MIGRATIONS in one transaction that holds a
  transaction-scoped advisory lock, so servers starting together migrate
  once and none sees a half-made schema. A database at a newer version
  than this code knows is refused rather than misread.
- A server that cannot be reached, at `open()` or later, is a
  `StorageUnavailableError` whose message is one line naming host, port
  and database, never the password. Statements time out after
  `command_timeout` seconds, so a server that hangs is reported too
  instead of holding requests forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import urllib.parse
from typing import Any, AsyncIterator, Callable, NoReturn, TypeVar

import asyncpg
from asyncpg.exceptions import (
    InsufficientResourcesError,
    OperatorInterventionError,
    UntranslatableCharacterError,
)
from asyncpg.pool import PoolConnectionProxy

from addrservice.database.base import (
    DECODE_INLINE_BYTES,
    LIST_BATCH,
    NICKNAME_PATTERN,
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
    InvalidEntryError,
    StorageUnavailableError,
    VersionConflictError,
)
from addrservice.utils import strictjson

_V = TypeVar('_V')

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
# A pool waits for connections in use to be returned before it closes.
CLOSE_TIMEOUT = 10.0

VERSION_TABLE = 'addrservice_schema_version'
ADDRESSES_TABLE = 'addresses'

# Migration N takes the tables from schema version N-1 to N. Each is a
# list of statements; `{addresses}` is the qualified table name.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        'CREATE TABLE {addresses} ('
        ' id TEXT COLLATE "C" PRIMARY KEY,'
        ' version INTEGER NOT NULL CHECK (version > 0),'
        ' entry JSONB NOT NULL)',
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# HOST[:PORT][,HOST...] and /DATABASE, up to the parameters.
_DSN_LOCATION = re.compile(r'([^/?#]*)(/[^?#]*)?')

# Identifiers longer than this are silently truncated by PostgreSQL.
_MAX_IDENTIFIER_BYTES = 63

# Errors that mean the server is gone, refusing connections, or out of
# resources, rather than a fault of the request or of this code.
_UNAVAILABLE = (
    OSError,  # TimeoutError included
    asyncpg.PostgresConnectionError,
    OperatorInterventionError,
    InsufficientResourcesError,
)

# The characters nicknames are made of: ASCII letters, digits and '-'.
_NICKNAME_CHARS = frozenset(
    c for c in map(chr, range(128)) if NICKNAME_PATTERN.match(c)
)


class PostgresAddressBookDB(AbstractAddressBookDB):
    """Entries in the table `addresses` of a PostgreSQL database.

    `dsn` is a `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` URL;
    the pool keeps between `min_size` and `max_size` connections. The
    tables live in `schema` (created if missing), or where the server's
    `search_path` puts them if None. With `create` False, `open()` refuses
    a database that holds no address book instead of making one.
    """

    def __init__(
        self,
        dsn: str,
        min_size: int = 1,
        max_size: int = 10,
        schema: str | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
        create: bool = True,
    ) -> None:
        _check_dsn(dsn)
        _check_pool_size(min_size, max_size)
        self._dsn = dsn
        self._where = dsn_location(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._create = create
        self._schema = None if schema is None else _checked_schema(schema)
        prefix = '' if self._schema is None \
            else quote_ident(self._schema) + '.'
        self._addresses = prefix + quote_ident(ADDRESSES_TABLE)
        self._versions = prefix + quote_ident(VERSION_TABLE)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    @property
    def addresses_table(self) -> str:
        """The table's name as SQL, qualified and quoted."""
        return self._addresses

    @property
    def versions_table(self) -> str:
        """The schema-version table's name as SQL, qualified and quoted."""
        return self._versions

    def start(self) -> None:
        raise RuntimeError(
            'PostgresAddressBookDB opens a connection pool, which needs the '
            'event loop: use `await open()` instead of start()'
        )

    def stop(self) -> None:
        raise RuntimeError(
            'PostgresAddressBookDB closes a connection pool, which needs the '
            'event loop: use `await close()` instead of stop()'
        )

    async def open(self) -> None:
        """Connect the pool and bring the schema to SCHEMA_VERSION;
        `StorageUnavailableError` if either cannot be done."""
        if self._pool is not None:
            return
        pool = await self._connect()
        try:
            await self._prepare(pool)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()  # not closed gracefully in time: cut it

    async def ping(self) -> None:
        async with self._connected() as pool:
            await pool.fetchval('SELECT 1')

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        async with self._connected() as pool:
            try:
                await pool.execute(
                    f'INSERT INTO {self._addresses} (id, version, entry)'
                    ' VALUES ($1, 1, $2::jsonb)',
                    nickname, _encode(addr),
                )
            except asyncpg.UniqueViolationError:
                raise AddressExistsError(nickname) from None
            except UntranslatableCharacterError as e:
                raise _unstorable(e) from None
        return nickname

    async def read_entry(self, nickname: str) -> StoredEntry:
        row = await self._fetch_entry(nickname)
        entry = await self._decoded_text(nickname, row['entry'], _entry_of)
        return StoredEntry(entry, row['version'])

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        row = await self._fetch_entry(nickname)
        text = await self._decoded_text(nickname, row['entry'], _api_json)
        return StoredJSON(text, row['version'])

    async def _fetch_entry(self, nickname: str) -> asyncpg.Record:
        existing_nickname(nickname)
        async with self._connected() as pool:
            row = await pool.fetchrow(
                f'SELECT version, entry::text AS entry'
                f' FROM {self._addresses} WHERE id = $1',
                nickname,
            )
        if row is None:
            raise AddressNotFoundError(nickname)
        return row

    async def _decoded_text(
        self, nickname: str, text: str, decode: Callable[[str], _V]
    ) -> _V:
        if len(text) <= DECODE_INLINE_BYTES:
            return self._decode(nickname, text, decode)
        return await asyncio.to_thread(self._decode, nickname, text, decode)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        existing_nickname(nickname)
        async with self._connected() as pool:
            try:
                version: int | None = await pool.fetchval(
                    f'UPDATE {self._addresses}'
                    ' SET entry = $2::jsonb, version = version + 1'
                    ' WHERE id = $1 AND version = coalesce($3, version)'
                    ' RETURNING version',
                    nickname, _encode(addr), expected_version,
                )
            except UntranslatableCharacterError as e:
                raise _unstorable(e) from None
            if version is None:
                await self._refuse(pool, nickname, expected_version)
        assert version is not None  # _refuse() raised otherwise
        return version

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        existing_nickname(nickname)
        async with self._connected() as pool:
            deleted = await pool.fetchval(
                f'DELETE FROM {self._addresses}'
                ' WHERE id = $1 AND version = coalesce($2, version)'
                ' RETURNING 1',
                nickname, expected_version,
            )
            if deleted is None:
                await self._refuse(pool, nickname, expected_version)

    async def _refuse(
        self, pool: asyncpg.Pool[asyncpg.Record], nickname: str,
        expected: int | None,
    ) -> NoReturn:
        """Why a write that matched no row was refused: the entry is gone,
        or at another version. (Both refuse the write; which one is
        reported may race with a later write, never the outcome.)"""
        version: int | None = await pool.fetchval(
            f'SELECT version FROM {self._addresses} WHERE id = $1', nickname)
        if version is None:
            raise AddressNotFoundError(nickname)
        check_version(nickname, version, expected)
        # Changed back to the expected version in between: still refused.
        raise VersionConflictError(
            f'{nickname!r} changed while it was being written')

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        async for pair in self._listing(after, limit, _entry_of):
            yield pair

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        async for pair in self._listing(after, limit, _api_json):
            yield pair

    async def _listing(
        self, after: str | None, limit: int | None,
        decode: Callable[[str], _V],
    ) -> AsyncIterator[tuple[str, _V]]:
        left = limit
        fetching: asyncio.Task[tuple[int, list[asyncpg.Record]]] | None = \
            self._fetch(listing_bound(after), left)
        try:
            while fetching is not None:
                size, rows = await fetching
                # The server reads the next batch while this one is
                # decoded (in a thread, for large batches).
                unread = None if left is None else left - len(rows)
                fetching = None
                if len(rows) == size and (unread is None or unread > 0):
                    fetching = self._fetch(rows[-1]['id'], unread)
                for pair in await self._decoded(rows, decode):
                    yield pair
                    left = None if left is None else left - 1
                if fetching is None and len(rows) == size and left:
                    # Rows left out as unreadable: the page is not full.
                    fetching = self._fetch(rows[-1]['id'], left)
        finally:
            if fetching is not None:
                _abandon(fetching)

    def _fetch(
        self, bound: str, left: int | None
    ) -> asyncio.Task[tuple[int, list[asyncpg.Record]]]:
        """The next batch after `bound`, of at most `left` rows, being
        fetched: its size, and its rows."""
        size = LIST_BATCH if left is None else min(left, LIST_BATCH)

        async def fetch() -> tuple[int, list[asyncpg.Record]]:
            return size, await self._batch(bound, size)

        return asyncio.ensure_future(fetch())

    async def count_addresses(self) -> int:
        async with self._connected() as pool:
            count: int = await pool.fetchval(
                f'SELECT count(*) FROM {self._addresses}')
        return count

    async def _batch(self, bound: str, size: int) -> list[asyncpg.Record]:
        async with self._connected() as pool:
            return await pool.fetch(
                f'SELECT id, entry::text AS entry FROM {self._addresses}'
                ' WHERE id > $1 ORDER BY id LIMIT $2',
                bound, size,
            )

    async def _connect(self) -> asyncpg.Pool[asyncpg.Record]:
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                reset=_no_session_state,
            )
        except (OSError, ValueError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as e:
            raise self._cannot_connect(e) from e

    async def _prepare(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        try:
            async with pool.acquire() as connection:
                await self._migrate(connection)
        except _UNAVAILABLE as e:
            raise self._cannot_connect(e) from e
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StorageUnavailableError(
                f'cannot prepare the address book in PostgreSQL at '
                f'{self._where}: {failure_reason(e)}'
            ) from e

    def _cannot_connect(self, error: Exception) -> StorageUnavailableError:
        return StorageUnavailableError(
            f'cannot connect to PostgreSQL at {self._where}: '
            f'{failure_reason(error)}'
        )

    async def _migrate(self, connection: PoolConnectionProxy[Any]) -> None:
        async with connection.transaction():
            # Held until commit: servers that start together queue here.
            await connection.execute(
                'SELECT pg_advisory_xact_lock(hashtext($1))',
                f'addrservice schema {self._schema}',
            )
            version = await self._schema_version(connection)
            if version > SCHEMA_VERSION:
                raise StorageUnavailableError(
                    f'PostgreSQL at {self._where} holds address-book schema '
                    f'version {version}, newer than this addrservice knows '
                    f'({SCHEMA_VERSION}): upgrade addrservice'
                )
            if version == 0 and not self._create:
                raise StorageUnavailableError(
                    f'PostgreSQL at {self._where} holds no address book'
                    f'{self._in_schema()}'
                )
            if version < SCHEMA_VERSION:
                await self._create_version_table(connection)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    await connection.execute(
                        statement.format(addresses=self._addresses))
                await connection.execute(
                    f'INSERT INTO {self._versions} (version) VALUES ($1)',
                    number,
                )

    async def _schema_version(
        self, connection: PoolConnectionProxy[Any]
    ) -> int:
        """The version recorded in the database; 0 for none."""
        found = await connection.fetchval(
            'SELECT to_regclass($1) IS NOT NULL', self._versions)
        if not found:
            return 0
        version: int = await connection.fetchval(
            f'SELECT coalesce(max(version), 0) FROM {self._versions}')
        return version

    async def _create_version_table(
        self, connection: PoolConnectionProxy[Any]
    ) -> None:
        # Creating a schema needs a privilege that using one does not:
        # an existing schema is left alone.
        if self._schema is not None and not await connection.fetchval(
            'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)',
            self._schema,
        ):
            await connection.execute(
                f'CREATE SCHEMA {quote_ident(self._schema)}')
        await connection.execute(
            f'CREATE TABLE IF NOT EXISTS {self._versions} ('
            ' version INTEGER PRIMARY KEY,'
            ' applied TIMESTAMPTZ NOT NULL DEFAULT now())'
        )

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
        """The pool; a lost or refused connection meanwhile is
        `StorageUnavailableError`."""
        if self._pool is None:
            raise StorageUnavailableError(
                f'PostgreSQL at {self._where} is not open')
        try:
            yield self._pool
        except _UNAVAILABLE as e:
            raise StorageUnavailableError(
                f'PostgreSQL at {self._where} is unavailable: '
                f'{failure_reason(e)}'
            ) from e

    def _decode(
        self, nickname: str, text: str, decode: Callable[[str], _V]
    ) -> _V:
        try:
            return decode(text)
        except ValueError as e:
            raise CorruptEntryError(
                f'{self._row(nickname)}: {_first_line(e)}') from None

    async def _decoded(
        self, rows: list[asyncpg.Record], decode: Callable[[str], _V]
    ) -> list[tuple[str, _V]]:
        if sum(len(row['entry']) for row in rows) <= DECODE_INLINE_BYTES:
            return self._decode_rows(rows, decode)
        return await asyncio.to_thread(self._decode_rows, rows, decode)

    def _decode_rows(
        self, rows: list[asyncpg.Record], decode: Callable[[str], _V]
    ) -> list[tuple[str, _V]]:
        """The rows' entries; those that cannot be read are logged and
        left out."""
        pairs = []
        for row in rows:
            try:
                entry = self._decode(row['id'], row['entry'], decode)
                pairs.append((row['id'], entry))
            except CorruptEntryError as e:
                log_unreadable(self._row(row['id']), e)
        return pairs

    def _in_schema(self) -> str:
        return '' if self._schema is None \
            else f' in schema {quote_ident(self._schema)}'

    def _row(self, nickname: str) -> str:
        return f'{self._where} {self._addresses} id {nickname}'


def quote_ident(name: str) -> str:
    """`name` as an SQL identifier: double-quoted, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def dsn_location(dsn: str) -> str:
    """`HOST:PORT/DATABASE` of a DSN: what to name it by in messages,
    without its user, password or parameters."""
    # The user information ends at the last '@' before the path, which a
    # password may hold unencoded, as it may hold '/', '?' or '#'.
    rest = dsn.split('://', 1)[-1]
    rest = rest[rest.rfind('@') + 1:]
    match = _DSN_LOCATION.match(rest)
    assert match is not None  # the pattern matches any text
    hosts, path = match.groups()
    return (hosts or '(default host)') + (path or '')


def failure_reason(error: BaseException) -> str:
    """Why a connection or statement failed, in one line."""
    if isinstance(error, TimeoutError):
        return 'timed out'
    if isinstance(error, OSError) and error.errno and error.errno > 0:
        return os.strerror(error.errno)  # not the socket address again
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return _first_line(error)


def listing_bound(after: str | None) -> str:
    """A text that every possible nickname compares with as with `after`,
    and that PostgreSQL can take (no U+0000, no lone surrogate).

    Nicknames are made of ASCII letters, digits and '-' only, so a
    comparison with one is decided at `after`'s first other character at
    the latest: what follows that character never matters.
    """
    if after is None:
        return ''
    end = next((i for i, c in enumerate(after) if c not in _NICKNAME_CHARS),
               None)
    if end is None:
        return after
    prefix, stop = after[:end], after[end]
    if stop == '\0':
        return prefix  # a nickname that goes on past it is above both
    if '\ud800' <= stop <= '\udfff':
        return prefix + '\x7f'  # above every nickname character, as it is
    return prefix + stop


async def _no_session_state(connection: asyncpg.Connection[Any]) -> None:
    """Nothing to undo when a connection returns to the pool.

    The default (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlock) costs
    a round trip per operation, and this engine changes no session state.
    asyncpg still rolls back a transaction left open before calling this.
    """


def _abandon(task: asyncio.Task[Any]) -> None:
    """Cancel a fetch no one will read; its error, if any, is no news."""
    task.cancel()
    task.add_done_callback(
        lambda done: done.cancelled() or done.exception())


def _entry_of(text: str) -> AddressEntry:
    return AddressEntry.from_api_dm(_loads(text))


def _api_json(text: str) -> bytes:
    """The entry as the API sends it. Stored entries were checked when
    written, so they need not be built again: only their keys put back in
    the API's order (JSONB sorts them), at a fifth of the cost."""
    document = _loads(text)
    if not isinstance(document, dict):
        raise ValueError(f'expected an object, got {text[:40]!r}')
    return strictjson.dumps(AddressEntry.ordered_api_dm(document)).encode()


def _loads(text: str) -> Any:
    return strictjson.loads_jsonb(text)


def _encode(addr: AddressEntry) -> str:
    return strictjson.dumps(addr.to_api_dm())


def _unstorable(error: UntranslatableCharacterError) -> InvalidEntryError:
    # JSONB refuses text with U+0000 ("unsupported Unicode escape
    # sequence"): the entry's fault, not the store's.
    return InvalidEntryError(f'entry cannot be stored: {_first_line(error)}')


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_dsn(dsn: str) -> None:
    scheme = urllib.parse.urlsplit(dsn).scheme if isinstance(dsn, str) \
        else None
    if scheme not in ('postgresql', 'postgres'):
        raise ValueError(
            'a PostgreSQL DSN must look like '
            'postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE'
        )


def _check_pool_size(min_size: int, max_size: int) -> None:
    for value in (min_size, max_size):
        if type(value) is not int:
            raise ValueError(f'pool sizes must be integers, not {value!r}')
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValueError(
            f'pool sizes must satisfy 0 <= min_size <= max_size and '
            f'max_size >= 1, not {min_size} and {max_size}'
        )


def _checked_schema(schema: str) -> str:
    try:
        size = len(schema.encode('utf-8'))
    except (AttributeError, UnicodeEncodeError):
        size = 0  # not text, or a lone surrogate
    if not 0 < size <= _MAX_IDENTIFIER_BYTES or '\0' in schema:
        raise ValueError(
            f'a PostgreSQL schema name must be 1 to {_MAX_IDENTIFIER_BYTES}'
            f' bytes of UTF-8 text without U+0000, not {schema!r}'
        )
    return schema
