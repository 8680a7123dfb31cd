"""In-memory storage: a dict, lost on restart; the fake for unit tests."""

from __future__ import annotations

import heapq
from typing import AsyncIterator

from addrservice.database.base import (
    AbstractAddressBookDB,
    StoredEntry,
    check_version,
    existing_nickname,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import AddressExistsError, AddressNotFoundError


class InMemoryAddressBookDB(AbstractAddressBookDB):
    """Entries in the dict `.db`, nickname to entry; versions beside it.

    Each operation completes within one step of the event loop, so no
    other request can interleave with it.
    """

    process_local = True

    def __init__(self) -> None:
        self.db: dict[str, AddressEntry] = {}
        self._versions: dict[str, int] = {}

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        if nickname in self.db:
            raise AddressExistsError(nickname)
        self.db[nickname] = addr
        self._versions[nickname] = 1
        return nickname

    async def read_entry(self, nickname: str) -> StoredEntry:
        nickname = self._existing(nickname)
        return StoredEntry(self.db[nickname], self._versions[nickname])

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        nickname = self._existing(nickname)
        check_version(nickname, self._versions[nickname], expected_version)
        self.db[nickname] = addr
        self._versions[nickname] += 1
        return self._versions[nickname]

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        nickname = self._existing(nickname)
        check_version(nickname, self._versions[nickname], expected_version)
        del self.db[nickname]
        del self._versions[nickname]

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        nicknames = (n for n in self.db if after is None or n > after)
        ordered = sorted(nicknames) if limit is None \
            else heapq.nsmallest(limit, nicknames)
        # Snapshot the entries: writers may run while the consumer awaits.
        for nickname, addr in [(n, self.db[n]) for n in ordered]:
            yield nickname, addr

    async def count_addresses(self) -> int:
        return len(self.db)

    def _existing(self, nickname: str) -> str:
        if existing_nickname(nickname) not in self.db:
            raise AddressNotFoundError(nickname)
        return nickname
