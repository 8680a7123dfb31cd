"""Business logic of the address book, independent of any web framework."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, AsyncIterator, Iterable, Mapping

import jsonschema
import jsonschema.exceptions

from addrservice import ADDRESS_BOOK_SCHEMA
from addrservice.config import AddressBookConfig
from addrservice.database.db_engines import create_addressbook_db
from addrservice.datamodel import AddressEntry
from addrservice.errors import SchemaValidationError
from addrservice.paging import Page, Paging

# The validator's message quotes the offending value, which may be large.
_MAX_DETAIL = 300

# The best error is chosen among the first few: a document can hold
# hundreds of thousands of errors, and each costs time to find.
_ERRORS_WEIGHED = 20

# Validation costs about 0.1 ms per list item. Entries with more items than
# this are checked in a worker thread, so one large request cannot hold up
# every other request on the event loop.
_INLINE_ITEMS = 100


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
        self._validator = jsonschema.Draft7Validator(
            ADDRESS_BOOK_SCHEMA,
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
        )

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
        error = jsonschema.exceptions.best_match(itertools.islice(
            self._validator.iter_errors(addr), _ERRORS_WEIGHED
        ))
        if error is not None:
            raise SchemaValidationError(
                detail=_shorten(error.message),
                path=_json_pointer(error.absolute_path),
            )

    async def create_address(self, value: Any) -> str:
        """Store a new entry; return its id."""
        return await self.addr_db.create_address(await self._to_entry(value))

    async def get_address(self, key: str) -> dict[str, Any]:
        addr = await self.addr_db.read_address(key)
        return addr.to_api_dm()

    async def update_address(self, key: str, value: Any) -> None:
        await self.addr_db.update_address(key, await self._to_entry(value))

    async def delete_address(self, key: str) -> None:
        await self.addr_db.delete_address(key)

    async def get_all_addresses(
        self,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for nickname, addr in self.addr_db.read_all_addresses():
            yield nickname, addr.to_api_dm()

    async def list_addresses(self, paging: Paging = Paging()) -> Page:
        """The entries `paging` selects, in id order."""
        # One more than asked for tells whether another page follows.
        limit = None if paging.limit is None else paging.limit + 1
        entries = {
            nickname: addr.to_api_dm() async for nickname, addr
            in self.addr_db.read_addresses(paging.after, limit)
        }
        if paging.limit is None or len(entries) <= paging.limit:
            return Page(entries, next_after=None)
        entries.popitem()
        return Page(entries, next_after=next(reversed(entries)))

    async def _to_entry(self, value: Any) -> AddressEntry:
        if _list_items(value) > _INLINE_ITEMS:
            return await asyncio.to_thread(self._checked_entry, value)
        return self._checked_entry(value)

    def _checked_entry(self, value: Any) -> AddressEntry:
        self.validate_address(value)
        return AddressEntry.from_api_dm(value)


def _list_items(value: Any) -> int:
    if not isinstance(value, Mapping):
        return 0
    return sum(len(v) for v in value.values() if isinstance(v, list))


def _shorten(message: str) -> str:
    if len(message) <= _MAX_DETAIL:
        return message
    return message[:_MAX_DETAIL - 3] + '...'


def _json_pointer(path: Iterable[Any]) -> str:
    """RFC 6901 pointer to the failing part of the document ('' is all)."""
    return ''.join(
        '/' + str(part).replace('~', '~0').replace('/', '~1')
        for part in path
    )
