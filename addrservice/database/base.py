"""The storage interface the service persists through."""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from abc import ABCMeta, abstractmethod
from typing import AsyncIterator

from addrservice import LOGGER_NAME
from addrservice.datamodel import ENTRY_ID_REGEX, AddressEntry
from addrservice.errors import (
    AddressNotFoundError,
    InvalidIdError,
    VersionConflictError,
)
from addrservice.utils import logutils, strictjson

NICKNAME_PATTERN = re.compile(ENTRY_ID_REGEX + r'\Z')

# Entries fetched per round trip when an engine lists in batches.
LIST_BATCH = 500

# Decoding an entry costs about 0.15 ms per KiB of JSON. Engines decode up
# to this many bytes on the event loop; more (a page of entries, or one
# large entry) in a thread, so that no other request waits behind them.
DECODE_INLINE_BYTES = 16 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as stored, with its version: 1 when created, and one more
    on every update."""

    entry: AddressEntry
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class StoredJSON:
    """An entry as the API sends it (`encode_entry()`), with its version."""

    json: bytes
    version: int


def encode_entry(addr: AddressEntry) -> bytes:
    """An entry's canonical JSON, the body the API sends for it."""
    return strictjson.dumps(addr.to_api_dm()).encode()


class AbstractAddressBookDB(metaclass=ABCMeta):
    """Where address-book entries live, keyed by nickname (the entry id).

    Reading, updating or deleting a nickname that does not exist raises
    `KeyError` (`AddressNotFoundError`); creating one that does raises
    `KeyError` (`AddressExistsError`). A conditional update or delete of
    an entry whose version is not the expected one raises
    `VersionConflictError`. A nickname given to create must
    match `NICKNAME_PATTERN`, else `ValueError`.

    Listings are in nickname order (by code point, as Python compares
    strings), so that a listing can be read a page at a time.

    An engine that must connect asynchronously overrides `open()` and
    `close()`; the others need only the tutorial's `start()` and `stop()`,
    which those two call by default.
    """

    #: True if the entries live in this process alone, so that several
    #: server processes would each see a store of their own.
    process_local = False

    def start(self) -> None:
        """Acquire what the engine needs before serving."""

    def stop(self) -> None:
        """Release what `start()` or use acquired."""

    async def open(self) -> None:
        """Acquire what the engine needs before serving; `start()` here."""
        self.start()

    async def close(self) -> None:
        """Release what `open()` or use acquired; `stop()` here."""
        self.stop()

    async def ping(self) -> None:
        """Return if the store answers; raise `StorageUnavailableError`
        (or the engine's own error) if it does not."""
        await self.count_addresses()

    @abstractmethod
    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        """Store a new entry at version 1; return its nickname (a fresh
        one if None)."""

    @abstractmethod
    async def read_entry(self, nickname: str) -> StoredEntry:
        """The entry stored under `nickname`, with its version."""

    async def read_address(self, nickname: str) -> AddressEntry:
        """The entry stored under `nickname`."""
        return (await self.read_entry(nickname)).entry

    async def read_entry_json(self, nickname: str) -> StoredJSON:
        """The entry stored under `nickname` as the API sends it, with its
        version. Engines that keep that text override this, to send it
        without decoding and encoding it again."""
        stored = await self.read_entry(nickname)
        return StoredJSON(encode_entry(stored.entry), stored.version)

    @abstractmethod
    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        """Replace the entry stored under `nickname` as a whole; return its
        new version.

        With `expected_version`, replace it only if that is its version
        now, else raise `VersionConflictError`; the check and the write
        are one atomic step.
        """

    @abstractmethod
    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        """Remove the entry stored under `nickname`; with
        `expected_version`, only if that is its version now (as
        `update_address`)."""

    @abstractmethod
    def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        """`(nickname, entry)` pairs in nickname order: those after `after`
        (every one if None), at most `limit` of them (all if None)."""

    async def read_addresses_json(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        """As `read_addresses()`, each entry as the API sends it."""
        async for nickname, addr in self.read_addresses(after, limit):
            yield nickname, encode_entry(addr)

    def read_all_addresses(self) -> AsyncIterator[tuple[str, AddressEntry]]:
        """Every `(nickname, entry)` pair, in nickname order."""
        return self.read_addresses()

    @abstractmethod
    async def count_addresses(self) -> int:
        """How many entries are stored."""


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


def check_version(nickname: str, stored: int, expected: int | None) -> None:
    """`VersionConflictError` unless `expected` is None or `stored`."""
    if expected is not None and stored != expected:
        raise VersionConflictError(
            f'{nickname!r} is at version {stored}, not {expected}')


def log_unreadable(where: str, error: Exception) -> None:
    """Log at ERROR a stored entry that a listing skips because it cannot
    be read; `where` names it (its file, or its database and id)."""
    logutils.log(
        logging.getLogger(LOGGER_NAME), logging.ERROR,
        message='UNREADABLE ENTRY', file=where, error=str(error),
    )
