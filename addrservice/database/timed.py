"""An engine that times every operation of another, for metrics.

`TimedAddressBookDB` delegates each method of `AbstractAddressBookDB` to
the engine it wraps and reports how long it took, to one observer per
operation: create, read, update, delete, list, count and ping. It knows
nothing of where the figures go (`addrservice.metrics` sends them to
Prometheus). A failed operation is timed too: how long a store takes to
fail is part of what an operator wants to see.
"""

from __future__ import annotations

import time
from typing import AsyncIterator, Callable

from addrservice.database.base import (
    AbstractAddressBookDB,
    StoredEntry,
    StoredJSON,
)
from addrservice.datamodel import AddressEntry

#: Takes the seconds one operation took.
Observe = Callable[[float], None]

OPERATIONS = ('create', 'read', 'update', 'delete', 'list', 'count', 'ping')

_clock = time.perf_counter


class TimedAddressBookDB(AbstractAddressBookDB):
    """`db`, each of whose operations reports its duration to
    `observer(operation)`, one of `OPERATIONS`.

    A listing is timed from the call until its last entry is taken (or
    the listing is abandoned), as that is when the store's work ends.
    """

    def __init__(
        self, db: AbstractAddressBookDB, observer: Callable[[str], Observe]
    ) -> None:
        self.db = db
        self.process_local = db.process_local
        # Bound once: these run on every request.
        self._create = observer('create')
        self._read = observer('read')
        self._update = observer('update')
        self._delete = observer('delete')
        self._list = observer('list')
        self._count = observer('count')
        self._ping = observer('ping')

    def start(self) -> None:
        self.db.start()

    def stop(self) -> None:
        self.db.stop()

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        start = _clock()
        try:
            await self.db.ping()
        finally:
            self._ping(_clock() - start)

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        start = _clock()
        try:
            return await self.db.create_address(addr, nickname)
        finally:
            self._create(_clock() - start)

    async def read_entry(self, nickname: str) -> StoredEntry:
        start = _clock()
        try:
            return await self.db.read_entry(nickname)
        finally:
            self._read(_clock() - start)

    async def read_address(self, nickname: str) -> AddressEntry:
        start = _clock()
        try:
            return await self.db.read_address(nickname)
        finally:
            self._read(_clock() - start)

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        start = _clock()
        try:
            return await self.db.read_entry_json(nickname)
        finally:
            self._read(_clock() - start)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        start = _clock()
        try:
            return await self.db.update_address(nickname, addr,
                                                expected_version)
        finally:
            self._update(_clock() - start)

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        start = _clock()
        try:
            await self.db.delete_address(nickname, expected_version)
        finally:
            self._delete(_clock() - start)

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        start = _clock()
        try:
            async for item in self.db.read_addresses(after, limit):
                yield item
        finally:
            self._list(_clock() - start)

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        start = _clock()
        try:
            async for item in self.db.read_addresses_json(after, limit):
                yield item
        finally:
            self._list(_clock() - start)

    async def read_all_addresses(
        self,
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        start = _clock()
        try:
            async for item in self.db.read_all_addresses():
                yield item
        finally:
            self._list(_clock() - start)

    async def count_addresses(self) -> int:
        start = _clock()
        try:
            return await self.db.count_addresses()
        finally:
            self._count(_clock() - start)
