"""The service's business logic, on every storage engine."""

from __future__ import annotations

import logging
import tempfile
import unittest
from typing import TYPE_CHECKING, Any

from addrservice import LOGGER_NAME
from addrservice.errors import (
    AddressNotFoundError,
    InvalidEntryError,
    SchemaValidationError,
)
from addrservice.paging import Paging
from addrservice.service import AddressBookService
from data import address_data_suite
from tests.pg import fresh_schema, pg_config
from tests.support import (
    TEST_CONFIG,
    fs_config,
    memory_config,
    sqlite_config,
    ticks_while,
)


if TYPE_CHECKING:
    _ContractBase = unittest.IsolatedAsyncioTestCase
else:
    _ContractBase = object  # a mixin: not a TestCase, so not run alone


class AddressBookServiceContract(_ContractBase):
    """Service behaviour on one engine. Subclasses define `make_config()`."""

    def make_config(self) -> dict[str, Any]:
        raise NotImplementedError

    async def asyncSetUp(self) -> None:
        self.service = AddressBookService(
            self.make_config(), logging.getLogger(LOGGER_NAME))
        await self.service.open()
        self.docs = address_data_suite()

    async def asyncTearDown(self) -> None:
        await self.service.close()

    async def listing(self) -> dict[str, Any]:
        return {i: a async for i, a in self.service.get_all_addresses()}

    async def test_crud(self) -> None:
        """Create, get, update, list and delete an entry in its API form."""
        id = await self.service.create_address(self.docs['namo'])
        self.assertEqual(await self.service.get_address(id),
                         self.docs['namo'])
        await self.service.update_address(id, self.docs['raga'])
        self.assertEqual(await self.service.get_address(id),
                         self.docs['raga'])
        self.assertEqual(await self.listing(), {id: self.docs['raga']})
        await self.service.delete_address(id)
        self.assertEqual(await self.listing(), {})
        with self.assertRaises(KeyError):
            await self.service.get_address(id)

    async def test_schema_errors_say_what_and_where(self) -> None:
        """A schema-invalid document is refused with detail and path."""
        doc = {'full_name': 'x', 'emails': [{'kind': 'home', 'email': 'no'}]}
        with self.assertRaises(ValueError) as caught:
            await self.service.create_address(doc)
        error = caught.exception
        assert isinstance(error, SchemaValidationError)
        self.assertEqual(str(error), 'JSON Schema validation failed')
        self.assertEqual(error.detail, "'no' is not a 'email'")
        self.assertEqual(error.path, '/emails/0/email')
        self.assertEqual(await self.listing(), {})

    async def test_not_an_object(self) -> None:
        """Documents that are not objects fail validation at the root."""
        for doc in [[], 'x', 1, None, True]:
            with self.subTest(doc=doc):
                with self.assertRaises(SchemaValidationError) as caught:
                    await self.service.create_address(doc)
                self.assertEqual(caught.exception.path, '')

    async def test_empty_required_string(self) -> None:
        """A schema-valid entry with an empty full_name is refused."""
        with self.assertRaisesRegex(InvalidEntryError, 'full_name'):
            await self.service.create_address({'full_name': ''})
        self.assertEqual(await self.listing(), {})

    async def test_invalid_update_leaves_entry(self) -> None:
        """A refused update changes nothing stored."""
        id = await self.service.create_address(self.docs['namo'])
        for bad in [{'full_name': 5}, {'full_name': ''}, {}]:
            with self.assertRaises(ValueError):
                await self.service.update_address(id, bad)
        self.assertEqual(await self.service.get_address(id),
                         self.docs['namo'])

    async def test_update_missing(self) -> None:
        """Updating an unknown id is a KeyError and creates nothing."""
        with self.assertRaises(AddressNotFoundError) as caught:
            await self.service.update_address('absent', self.docs['namo'])
        self.assertEqual(str(caught.exception), "'absent'")
        self.assertEqual(await self.listing(), {})

    async def test_large_entry_does_not_stall_the_loop(self) -> None:
        """A large entry is validated while other tasks keep running."""
        doc = {'full_name': 'Many', 'emails': [
            {'kind': 'home', 'email': f'a{i}@example.com'}
            for i in range(50_000)]}
        id, ticks = await ticks_while(self.service.create_address(doc))
        self.assertEqual(await self.service.get_address(id), doc)
        # Checking and converting 50,000 items takes about a quarter of a
        # second; a loop blocked by it would not tick at all.
        self.assertGreaterEqual(ticks, 5)

    async def test_error_dense_document(self) -> None:
        """A document with 200,000 errors is refused naming one of them."""
        doc = {'full_name': 'x', 'addresses': [1] * 200_000}
        with self.assertRaises(SchemaValidationError) as caught:
            await self.service.create_address(doc)
        self.assertRegex(caught.exception.path, r'^/addresses/[0-9]+$')
        self.assertEqual(caught.exception.detail,
                         "1 is not of type 'object'")

    async def test_list_addresses_pages(self) -> None:
        """list_addresses gives a page in id order and where the next one
        starts, or None after the last."""
        ids = sorted([await self.service.create_address(d)
                      for d in self.docs.values()])
        self.assertGreaterEqual(len(ids), 2)
        page = await self.service.list_addresses(Paging(limit=1))
        self.assertEqual(list(page.entries), ids[:1])
        self.assertEqual(page.next_after, ids[0])
        page = await self.service.list_addresses(
            Paging(limit=len(ids), after=ids[0]))
        self.assertEqual(list(page.entries), ids[1:])
        self.assertIsNone(page.next_after)
        page = await self.service.list_addresses()
        self.assertEqual(page.entries, await self.listing())
        self.assertEqual(list(page.entries), ids)

    async def test_nul_characters_are_refused(self) -> None:
        """An entry with a NUL character is refused before it is stored."""
        with self.assertRaises(InvalidEntryError):
            await self.service.create_address({'full_name': 'a\x00b'})
        self.assertEqual(await self.listing(), {})

    async def test_long_detail_is_shortened(self) -> None:
        """The validator's message about a huge value is cut to 300 chars."""
        with self.assertRaises(SchemaValidationError) as caught:
            await self.service.create_address({'full_name': ['a' * 5000]})
        self.assertEqual(len(caught.exception.detail), 300)
        self.assertTrue(caught.exception.detail.endswith('...'))


class InMemoryServiceTest(
    AddressBookServiceContract, unittest.IsolatedAsyncioTestCase
):
    def make_config(self) -> dict[str, Any]:
        return memory_config()


class FilesystemServiceTest(
    AddressBookServiceContract, unittest.IsolatedAsyncioTestCase
):
    def make_config(self) -> dict[str, Any]:
        return fs_config(self.enterContext(tempfile.TemporaryDirectory()))


class SqliteServiceTest(
    AddressBookServiceContract, unittest.IsolatedAsyncioTestCase
):
    def make_config(self) -> dict[str, Any]:
        store = self.enterContext(tempfile.TemporaryDirectory())
        return sqlite_config(f'{store}/addressbook.sqlite3')


class PostgresServiceTest(
    AddressBookServiceContract, unittest.IsolatedAsyncioTestCase
):
    def make_config(self) -> dict[str, Any]:
        return {**TEST_CONFIG, 'addr-db': pg_config(fresh_schema(self))}


if __name__ == '__main__':
    unittest.main()
