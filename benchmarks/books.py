"""Address books grown to a given size, with a server in front, per engine.

Entry k is a copy of reference entry k % len(templates), so that every
copy of the first one reads back as the same bytes.

The memory engine keeps its entries in the server process, so its book
is filled over HTTP, with POSTs on keep-alive connections, as a user
would fill it. Persistent engines are filled through the engine's own
Python API (`create_addressbook_db`) while their server is stopped, then
the server is started again: the store is the same, only faster to fill.
Filling skips the fsync of each write, and syncs once at the end; for
PostgreSQL it ends with the `VACUUM ANALYZE` that autovacuum would run
soon after, so that no figure is taken while the database catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from abc import ABCMeta, abstractmethod
from typing import Any, Iterator, Mapping, Sequence

import asyncpg

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.db_engines import create_addressbook_db
from addrservice.datamodel import AddressEntry
from addrservice.utils import strictjson
from benchmarks import rig
from benchmarks.client import Connection

# Creates in flight at once while filling a persistent store.
LOAD_BATCH = 64
# Connections POSTing at once while filling the memory engine.
POST_CONNECTIONS = 16


def entry_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes the service answers GET with for `document`."""
    entry = AddressEntry.from_api_dm(document)
    return strictjson.dumps(entry.to_api_dm()).encode('utf-8')


class Book(metaclass=ABCMeta):
    """The entries of one engine's store, by id in the order made."""

    def __init__(self, config: dict[str, Any], workdir: str,
                 templates: Sequence[Mapping[str, Any]]) -> None:
        self.config = config
        self.workdir = workdir
        self.templates = templates
        self.ids: list[str] = []
        self.server: rig.Server | None = None

    def __enter__(self) -> Book:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def ids_of_first(self) -> list[str]:
        """The ids of the copies of the first template."""
        return self.ids[::len(self.templates)]

    def rss(self) -> int:
        assert self.server is not None
        return self.server.rss()

    def start(self) -> None:
        self.server = rig.service_server(self.config, self.workdir)
        self.server.start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @abstractmethod
    def grow_to(self, stored: int) -> None:
        """Add entries until `stored` are stored; the server runs after."""


class MemoryBook(Book):
    def grow_to(self, stored: int) -> None:
        if self.server is None:
            self.start()
        bodies = [json.dumps(t).encode('utf-8') for t in self.templates]
        self.ids += asyncio.run(
            post_entries(self.port, bodies, len(self.ids), stored))


class StoredBook(Book):
    def grow_to(self, stored: int) -> None:
        if stored > len(self.ids) or self.server is None:
            self.close()
            entries = [AddressEntry.from_api_dm(t) for t in self.templates]
            self.ids += asyncio.run(load_entries(
                self.config['addr-db'], entries, len(self.ids), stored))
            self.start()


def make_book(engine: str, config: dict[str, Any], workdir: str,
              templates: Sequence[Mapping[str, Any]]) -> Book:
    kind = MemoryBook if engine == 'memory' else StoredBook
    return kind(config, workdir, templates)


async def post_entries(port: int, bodies: Sequence[bytes], start: int,
                       stop: int) -> list[str]:
    """POST entries `start` to `stop` (body k % len(bodies)); their ids."""
    ids: list[str] = [''] * (stop - start)
    numbers = iter(range(start, stop))

    async def poster() -> None:
        conn = Connection(port)
        try:
            for k in numbers:  # shared: each number is taken once
                reply = await conn.request(
                    'POST', '/addresses', bodies[k % len(bodies)])
                if reply.status != 201:
                    raise RuntimeError(f'POST /addresses: {reply.status} '
                                       f'{reply.body[:200]!r}')
                ids[k - start] = reply.headers['location'].rsplit('/', 1)[1]
        finally:
            conn.close()

    await asyncio.gather(*(poster() for _ in range(POST_CONNECTIONS)))
    return ids


async def load_entries(addr_db: Mapping[str, Any],
                       entries: Sequence[AddressEntry], start: int,
                       stop: int) -> list[str]:
    """Create entries `start` to `stop` (entry k % len(entries)) through
    the engine's API; their ids."""
    db = create_addressbook_db(addr_db)
    await db.open()
    ids: list[str] = []
    try:
        with fsync_deferred():
            for first in range(start, stop, LOAD_BATCH):
                batch = range(first, min(stop, first + LOAD_BATCH))
                ids += await asyncio.gather(*(
                    db.create_address(entries[k % len(entries)])
                    for k in batch))
    finally:
        await db.close()
    await vacuum(db, addr_db)
    return ids


@contextlib.contextmanager
def fsync_deferred() -> Iterator[None]:
    """`os.fsync` does nothing inside; `os.sync()` runs on the way out.

    The fs engine fsyncs each file and the directory on every write,
    which makes filling a store of 100,000 entries take minutes. One sync
    at the end leaves the same files, as durable. (SQLite and PostgreSQL
    sync in their own code, which this leaves alone.)
    """
    fsync = os.fsync
    os.fsync = _skip_fsync
    try:
        yield
    finally:
        os.fsync = fsync
        os.sync()


def _skip_fsync(fd: Any) -> None:
    pass


async def vacuum(db: AbstractAddressBookDB,
                 addr_db: Mapping[str, Any]) -> None:
    """`VACUUM ANALYZE` the table of a PostgreSQL store; nothing else."""
    from addrservice.database.postgres import PostgresAddressBookDB
    if not isinstance(db, PostgresAddressBookDB):
        return
    connection = await asyncpg.connect(addr_db['postgres']['dsn'])
    try:
        await connection.execute(f'VACUUM ANALYZE {db.addresses_table}')
    finally:
        await connection.close()
