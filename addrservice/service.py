"""Business logic of the address book, independent of any web framework."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from typing import Any, AsyncIterator, Mapping

from addrservice import ADDRESS_BOOK_SCHEMA
from addrservice.config import AddressBookConfig
from addrservice.database.db_engines import create_addressbook_db
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressNotFoundError,
    VersionConflictError,
)
from addrservice.paging import Page, Paging
from addrservice.utils import strictjson
from addrservice.validation import EntryValidator

# A created entry's version; every update adds one.
FIRST_VERSION = 1

# Checking and converting an entry costs about 5 us per list item (most of
# it building the data model). Entries with more items than this are
# handled in a worker thread, so that one large request cannot hold up
# every other request on the event loop for more than a few ms.
_INLINE_ITEMS = 1000


class AddressBookService:
    """Create, read, update, delete and list address-book entries.

    Entries come in and go out in their API form (JSON-compatible dicts).
    Errors are domain errors: `SchemaValidationError` and
    `InvalidEntryError` (both `ValueError`) for a document that is not an
    entry, `AddressNotFoundError` (a `KeyError`) for an unknown id.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | AddressBookConfig,
        logger: logging.Logger,
    ) -> None:
        config = AddressBookConfig.of(config)
        self.config = config
        self.logger = logger
        self.addr_db = create_addressbook_db(config.addr_db)
        # Compiled once; formats ("email") are checked, not only types.
        self._validator = EntryValidator(ADDRESS_BOOK_SCHEMA)

    def start(self) -> None:
        self.addr_db.start()

    def stop(self) -> None:
        self.addr_db.stop()

    async def open(self) -> None:
        """Open the store; every engine can, including those that must
        connect asynchronously."""
        await self.addr_db.open()

    async def close(self) -> None:
        await self.addr_db.close()

    def validate_address(self, addr: Any) -> None:
        """`SchemaValidationError` unless `addr` conforms to the schema."""
        self._validator.validate(addr)

    async def create_address(self, value: Any) -> str:
        """Store a new entry (at version 1); return its id."""
        return await self.addr_db.create_address(await self._to_entry(value))

    async def create_tagged_address(self, value: Any) -> tuple[str, str]:
        """Store a new entry; return its id and its version's tag."""
        key = await self.create_address(value)
        return key, version_tag(key, FIRST_VERSION)

    async def get_address(self, key: str) -> dict[str, Any]:
        addr = await self.addr_db.read_address(key)
        return addr.to_api_dm()

    async def get_tagged_address(
        self, key: str
    ) -> tuple[dict[str, Any], str]:
        """The entry and its version's tag, which every update changes."""
        stored = await self.addr_db.read_entry(key)
        return stored.entry.to_api_dm(), version_tag(key, stored.version)

    async def get_address_json(self, key: str) -> tuple[bytes, str]:
        """The entry as its JSON text, and its version's tag."""
        stored = await self.addr_db.read_entry_json(key)
        return stored.json, version_tag(key, stored.version)

    async def update_address(
        self, key: str, value: Any, if_match: IfMatch | None = None
    ) -> str:
        """Replace the entry; return its new version's tag.

        With `if_match`, only while the entry is at a version it names,
        else `VersionConflictError` and nothing changes.
        """
        entry = await self._to_entry(value)
        async with _precondition(key, if_match):
            expected = await self._expected_version(key, if_match)
            version = await self.addr_db.update_address(key, entry, expected)
        return version_tag(key, version)

    async def delete_address(
        self, key: str, if_match: IfMatch | None = None
    ) -> None:
        """Remove the entry; with `if_match`, as `update_address`."""
        async with _precondition(key, if_match):
            expected = await self._expected_version(key, if_match)
            await self.addr_db.delete_address(key, expected)

    async def _expected_version(
        self, key: str, if_match: IfMatch | None
    ) -> int | None:
        """The one version the store must still find, None for any: the
        current version, if `if_match` names it. The write checks it
        again, atomically."""
        if if_match is None or if_match.any_version:
            return None
        version = (await self.addr_db.read_entry_json(key)).version
        if version_tag(key, version) not in if_match.tags:
            raise VersionConflictError(
                f'{key!r} is at version {version}, not one tagged '
                f'{sorted(if_match.tags)}')
        return version

    async def get_all_addresses(
        self,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for nickname, addr in self.addr_db.read_all_addresses():
            yield nickname, addr.to_api_dm()

    async def list_addresses(
        self, paging: Paging = Paging()
    ) -> Page[dict[str, Any]]:
        """The entries `paging` selects, in id order."""
        entries = {
            nickname: addr.to_api_dm() async for nickname, addr
            in self.addr_db.read_addresses(paging.after, _one_more(paging))
        }
        return Page.of(entries, paging.limit)

    async def list_addresses_json(
        self, paging: Paging = Paging()
    ) -> tuple[bytes, str | None]:
        """As `list_addresses()`, the page as the JSON object of its entries
        by id; and the id the next page starts after, if any."""
        page = Page.of({
            nickname: text async for nickname, text
            in self.addr_db.read_addresses_json(paging.after,
                                                _one_more(paging))
        }, paging.limit)
        members = b', '.join(
            b'%s: %s' % (strictjson.dumps(nickname).encode(), text)
            for nickname, text in page.entries.items())
        return b'{%s}' % members, page.next_after

    async def _to_entry(self, value: Any) -> AddressEntry:
        if _list_items(value) > _INLINE_ITEMS:
            return await asyncio.to_thread(self._checked_entry, value)
        return self._checked_entry(value)

    def _checked_entry(self, value: Any) -> AddressEntry:
        self.validate_address(value)
        return AddressEntry.from_api_dm(value)


def version_tag(key: str, version: int) -> str:
    """An opaque tag of one version of one entry (40 hex digits).

    A digest rather than the number itself: no tag of one entry matches
    another entry that happens to be at the same version.
    """
    return hashlib.sha1(f'{key}\n{version}'.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class IfMatch:
    """The versions a conditional write may replace: those whose tags are
    in `tags`, or any version of an existing entry with `any_version`.
    No version at all matches an empty set."""

    tags: frozenset[str] = frozenset()
    any_version: bool = False


@contextlib.asynccontextmanager
async def _precondition(
    key: str, if_match: IfMatch | None
) -> AsyncIterator[None]:
    """A missing entry fails a precondition rather than being not found:
    the client expected one to be there."""
    if if_match is not None and not if_match.any_version \
            and not if_match.tags:
        raise VersionConflictError(f'{key!r}: no version can match')
    try:
        yield
    except AddressNotFoundError:
        if if_match is None:
            raise
        raise VersionConflictError(f'{key!r} does not exist') from None


def _one_more(paging: Paging) -> int | None:
    return None if paging.limit is None else paging.limit + 1


def _list_items(value: Any) -> int:
    if not isinstance(value, Mapping):
        return 0
    return sum(len(v) for v in value.values() if isinstance(v, list))
