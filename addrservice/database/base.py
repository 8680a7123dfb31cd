"""The storage interface the service persists through."""

from __future__ import annotations

import re
import uuid
from abc import ABCMeta, abstractmethod
from typing import AsyncIterator

from addrservice.datamodel import ENTRY_ID_REGEX, AddressEntry
from addrservice.errors import AddressNotFoundError, InvalidIdError

NICKNAME_PATTERN = re.compile(ENTRY_ID_REGEX + r'\Z')


class AbstractAddressBookDB(metaclass=ABCMeta):
    """Where address-book entries live, keyed by nickname (the entry id).

    Reading, updating or deleting a nickname that does not exist raises
    `KeyError` (`AddressNotFoundError`); creating one that does raises
    `KeyError` (`AddressExistsError`). A nickname given to create must
    match `NICKNAME_PATTERN`, else `ValueError`.
    """

    def start(self) -> None:
        """Acquire what the engine needs before serving."""

    def stop(self) -> None:
        """Release what `start()` or use acquired."""

    @abstractmethod
    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        """Store a new entry; return its nickname (a fresh one if None)."""

    @abstractmethod
    async def read_address(self, nickname: str) -> AddressEntry:
        """The entry stored under `nickname`."""

    @abstractmethod
    async def update_address(self, nickname: str, addr: AddressEntry) -> None:
        """Replace the entry stored under `nickname` as a whole."""

    @abstractmethod
    async def delete_address(self, nickname: str) -> None:
        """Remove the entry stored under `nickname`."""

    @abstractmethod
    def read_all_addresses(self) -> AsyncIterator[tuple[str, AddressEntry]]:
        """Every `(nickname, entry)` pair."""


def new_nickname(nickname: str | None) -> str:
    """The nickname to create an entry under: given and valid, or fresh."""
    if nickname is None:
        return uuid.uuid4().hex
    if not NICKNAME_PATTERN.match(nickname):
        raise InvalidIdError(f'invalid id {nickname!r}')
    return nickname


def existing_nickname(nickname: str) -> str:
    """`nickname` if some entry could have it, else `AddressNotFoundError`."""
    if not isinstance(nickname, str) or not NICKNAME_PATTERN.match(nickname):
        raise AddressNotFoundError(nickname)
    return nickname
