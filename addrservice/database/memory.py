"""In-memory storage: a dict, lost on restart; the fake for unit tests."""

from __future__ import annotations

from typing import AsyncIterator

from addrservice.database.base import (
    AbstractAddressBookDB,
    existing_nickname,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import AddressExistsError, AddressNotFoundError


class InMemoryAddressBookDB(AbstractAddressBookDB):
    """Entries in the dict `.db`, nickname to entry.

    Each operation completes within one step of the event loop, so no
    other request can interleave with it.
    """

    def __init__(self) -> None:
        self.db: dict[str, AddressEntry] = {}

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        if nickname in self.db:
            raise AddressExistsError(nickname)
        self.db[nickname] = addr
        return nickname

    async def read_address(self, nickname: str) -> AddressEntry:
        return self.db[self._existing(nickname)]

    async def update_address(self, nickname: str, addr: AddressEntry) -> None:
        self.db[self._existing(nickname)] = addr

    async def delete_address(self, nickname: str) -> None:
        del self.db[self._existing(nickname)]

    async def read_all_addresses(
        self,
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        # A snapshot: writers may run while the consumer awaits.
        for nickname, addr in list(self.db.items()):
            yield nickname, addr

    def _existing(self, nickname: str) -> str:
        if existing_nickname(nickname) not in self.db:
            raise AddressNotFoundError(nickname)
        return nickname
