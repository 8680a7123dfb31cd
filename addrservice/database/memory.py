"""In-memory storage: a dict, lost on restart; the fake for unit tests."""

from __future__ import annotations

import heapq
from typing import AsyncIterator

from addrservice.database.base import (
    AbstractAddressBookDB,
    StoredEntry,
    StoredJSON,
    check_version,
    encode_entry,
    existing_nickname,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import AddressExistsError, AddressNotFoundError
from addrservice.utils import strictjson


class InMemoryAddressBookDB(AbstractAddressBookDB):
    """Entries kept as the JSON the API sends for them, with versions.

    JSON text takes about a third of the memory of the objects of an
    entry, and reads send it as it is. `db` gives the entries as objects,
    for tests to look into.

    Each operation completes within one step of the event loop, so no
    other request can interleave with it.
    """

    process_local = True

    def __init__(self) -> None:
        self._entries: dict[str, StoredJSON] = {}

    @property
    def db(self) -> dict[str, AddressEntry]:
        """A copy of the store: nickname to entry."""
        return {nickname: _decode(stored.json)
                for nickname, stored in self._entries.items()}

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        if nickname in self._entries:
            raise AddressExistsError(nickname)
        self._entries[nickname] = StoredJSON(encode_entry(addr), 1)
        return nickname

    async def read_entry(self, nickname: str) -> StoredEntry:
        stored = self._stored(nickname)
        return StoredEntry(_decode(stored.json), stored.version)

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        return self._stored(nickname)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        version = self._stored(nickname).version
        check_version(nickname, version, expected_version)
        self._entries[nickname] = StoredJSON(encode_entry(addr), version + 1)
        return version + 1

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        check_version(nickname, self._stored(nickname).version,
                      expected_version)
        del self._entries[nickname]

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        async for nickname, text in self.read_addresses_json(after, limit):
            yield nickname, _decode(text)

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        nicknames = (n for n in self._entries if after is None or n > after)
        ordered = sorted(nicknames) if limit is None \
            else heapq.nsmallest(limit, nicknames)
        # Snapshot the entries: writers may run while the consumer awaits.
        for nickname, stored in [(n, self._entries[n]) for n in ordered]:
            yield nickname, stored.json

    async def count_addresses(self) -> int:
        return len(self._entries)

    def _stored(self, nickname: str) -> StoredJSON:
        stored = self._entries.get(existing_nickname(nickname))
        if stored is None:
            raise AddressNotFoundError(nickname)
        return stored


def _decode(text: bytes) -> AddressEntry:
    return AddressEntry.from_api_dm(strictjson.loads(text))
