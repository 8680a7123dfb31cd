"""PostgreSQL for the tests: where it is, whether it answers, and a fresh
schema per test that is dropped when the test ends.

The server is `ADDRSERVICE_TEST_PG_DSN` (default DEFAULT_DSN). When none
answers, tests that need one are skipped with the reason, which is also
printed once, unless `ADDRSERVICE_REQUIRE_PG=1`: then they fail with it.

Helpers here are synchronous where a synchronous test (tornado's
`AsyncHTTPTestCase.make_config()`, say) must call them: each runs its
queries on a short-lived connection in a loop of its own, in a thread,
so it works whether or not the caller's thread is running a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sys
import unittest
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Coroutine, TypeVar

import asyncpg

from addrservice.database.postgres import (
    dsn_location,
    failure_reason,
    quote_ident,
)

DSN_ENV = 'ADDRSERVICE_TEST_PG_DSN'
REQUIRE_ENV = 'ADDRSERVICE_REQUIRE_PG'
DEFAULT_DSN = 'postgresql://postgres@127.0.0.1:5432/test'

# How long the probe waits for a server before deciding there is none.
PROBE_TIMEOUT = 2.0

# Every schema the tests create starts with this.
SCHEMA_PREFIX = 'addrservice_test_'

_T = TypeVar('_T')
_C = TypeVar('_C', bound=type[unittest.TestCase])


def pg_dsn() -> str:
    """The DSN of the PostgreSQL database the tests use."""
    return os.environ.get(DSN_ENV) or DEFAULT_DSN


def pg_required() -> bool:
    """Whether a missing server fails the tests instead of skipping them."""
    return os.environ.get(REQUIRE_ENV) == '1'


def run_async(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine `make()` on a fresh loop in a thread of its own."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(make())).result()


@functools.lru_cache(maxsize=None)
def pg_unavailable(dsn: str) -> str | None:
    """Why no PostgreSQL answers at `dsn`, or None if one does; the server
    is asked once per DSN and process."""

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT)
        await connection.close()

    try:
        run_async(probe)
    except (OSError, ValueError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as e:
        return (f'no PostgreSQL answers at {dsn_location(dsn)} '
                f'({DSN_ENV}): {failure_reason(e)}')
    return None


def require_pg(dsn: str | None = None) -> str:
    """The DSN (default `pg_dsn()`) if a server answers there. Else
    `unittest.SkipTest`, or `AssertionError` when ADDRSERVICE_REQUIRE_PG=1:
    called in a test, `setUp` or `setUpClass`, that skips or fails it."""
    dsn = pg_dsn() if dsn is None else dsn
    reason = pg_unavailable(dsn)
    if reason is None:
        return dsn
    verdict = no_server(reason)
    if isinstance(verdict, unittest.SkipTest):
        _announce(f'PostgreSQL tests skipped: {reason}')
    raise verdict


def no_server(reason: str) -> Exception:
    """What a test without its server raises: `unittest.SkipTest`, or
    `AssertionError` when ADDRSERVICE_REQUIRE_PG=1."""
    if pg_required():
        return AssertionError(f'{reason}, and {REQUIRE_ENV}=1')
    return unittest.SkipTest(reason)


def skip_unless_pg(cls: _C) -> _C:
    """Class decorator: `require_pg()` in `setUpClass`, so the whole class
    is skipped (or fails) when no PostgreSQL answers."""
    inherited = cls.setUpClass.__func__  # type: ignore[attr-defined]

    def setUpClass(klass: type[unittest.TestCase]) -> None:
        require_pg()
        inherited(klass)

    cls.setUpClass = classmethod(setUpClass)  # type: ignore[assignment]
    return cls


def fresh_schema(case: unittest.TestCase, suffix: str = '') -> str:
    """A schema name no other test uses (`SCHEMA_PREFIX`, pid, random,
    `suffix`). Whatever creates the schema, it is dropped with everything
    in it when `case` ends. Skips or fails as `require_pg()` does."""
    dsn = require_pg()
    name = f'{SCHEMA_PREFIX}{os.getpid()}_{secrets.token_hex(4)}{suffix}'
    case.addCleanup(drop_schema, name, dsn)
    return name


def drop_schema(name: str, dsn: str | None = None) -> None:
    """Drop the schema `name` and everything in it, if it exists."""

    async def drop() -> None:
        async with pg_connection(dsn) as connection:
            # Fail rather than wait forever behind a connection left open.
            await connection.execute("SET lock_timeout = '10s'")
            await connection.execute(
                f'DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE')

    run_async(drop)


def pg_test_schemas(dsn: str | None = None) -> list[str]:
    """The schemas whose names start with SCHEMA_PREFIX, sorted."""

    async def fetch() -> list[str]:
        async with pg_connection(dsn) as connection:
            rows = await connection.fetch(
                'SELECT nspname FROM pg_namespace'
                ' WHERE starts_with(nspname, $1) ORDER BY nspname',
                SCHEMA_PREFIX,
            )
        return [row['nspname'] for row in rows]

    return run_async(fetch)


def pg_config(schema: str) -> dict[str, Any]:
    """The `addr-db` config section for the test server and `schema`."""
    return {'postgres': {'dsn': pg_dsn(), 'schema': schema,
                         'min_size': 1, 'max_size': 4}}


@contextlib.asynccontextmanager
async def pg_connection(
    dsn: str | None = None,
) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A connection of its own to the test database, closed on exit."""
    connection = await asyncpg.connect(dsn or pg_dsn(),
                                       timeout=PROBE_TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


class TcpProxy:
    """Relays TCP connections from a local port to the test server: a
    PostgreSQL that can be taken away (`stop()`), brought back
    (`start()` again, on the same port) or made to hang (`stall`).

    Runs on the loop of whoever starts it.
    """

    def __init__(self, dsn: str | None = None) -> None:
        parts = urllib.parse.urlsplit(dsn or pg_dsn())
        if parts.hostname is None:
            raise ValueError('the proxy needs a DSN with a TCP host')
        self._parts = parts
        self._target = (parts.hostname, parts.port or 5432)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def dsn(self) -> str:
        """The test DSN with the proxy in place of the server."""
        user = self._parts.netloc.rpartition('@')[0]
        netloc = f'{user}@127.0.0.1:{self.port}' if user \
            else f'127.0.0.1:{self.port}'
        return self._parts._replace(netloc=netloc).geturl()

    @property
    def stall(self) -> bool:
        return not self._flowing.is_set()

    @stall.setter
    def stall(self, stalled: bool) -> None:
        """While stalled, bytes are held back in both directions."""
        if stalled:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def start(self) -> None:
        """Listen on `port` (a free one the first time)."""
        self._server = await asyncio.start_server(
            self._relay, '127.0.0.1', self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, end a stall, cut every relayed connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self.stall = False  # wakes stalled relays, to see they are cut
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self._target)
        except OSError:
            up_reader, up_writer = None, None
        try:
            if up_reader is not None and up_writer is not None:
                self._writers.add(up_writer)
                await asyncio.gather(self._pipe(reader, up_writer),
                                     self._pipe(up_reader, writer))
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # a side is gone: so is the other one, below
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@functools.lru_cache(maxsize=None)
def _announce(line: str) -> None:
    # Once per process: a skip's reason is otherwise shown only with -v.
    print(f'\n{line}', file=sys.stderr)
