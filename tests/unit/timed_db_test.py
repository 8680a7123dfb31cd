"""The timing engine: every operation delegated, and timed once."""

from __future__ import annotations

import inspect
import unittest
from typing import Callable

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB
from addrservice.database.timed import OPERATIONS, TimedAddressBookDB
from addrservice.datamodel import AddressEntry
from addrservice.errors import AddressNotFoundError, VersionConflictError
from tests.unit.addressbook_db_test import SynchronousStartContract


class Durations:
    """Records each duration reported, by operation."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def observer(self, operation: str) -> Callable[[float], None]:
        return lambda seconds: self.seen.append((operation, seconds))

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.seen]


class TimedInMemoryContractTest(
    SynchronousStartContract, unittest.IsolatedAsyncioTestCase
):
    """The storage contract holds through the timing engine."""

    def make_db(self) -> AbstractAddressBookDB:
        return TimedAddressBookDB(InMemoryAddressBookDB(),
                                  Durations().observer)


class TimedAddressBookDBTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.durations = Durations()
        self.inner = InMemoryAddressBookDB()
        self.db = TimedAddressBookDB(self.inner, self.durations.observer)
        await self.db.open()
        self.entry_id = await self.inner.create_address(
            AddressEntry(full_name='A'))

    def test_every_method_of_the_interface_is_delegated(self) -> None:
        """Each public method of the interface is the timing engine's own,
        not the base class's default built on other methods."""
        names = [name for name, _ in inspect.getmembers(
            AbstractAddressBookDB, inspect.isfunction)
            if not name.startswith('_')]
        self.assertIn('read_entry_json', names)
        missing = [n for n in names if n not in vars(TimedAddressBookDB)]
        self.assertEqual(missing, [])

    def test_process_local_is_the_engine_s(self) -> None:
        """It is shared by processes exactly when the engine is."""
        self.assertTrue(self.db.process_local)

    async def test_each_operation_is_timed_once_under_its_name(self) -> None:
        """Every call reports one duration, named after its operation."""
        entry = AddressEntry(full_name='B')
        new = await self.db.create_address(entry)
        await self.db.read_entry(new)
        await self.db.read_address(new)
        await self.db.read_entry_json(new)
        self.assertEqual(await self.db.update_address(new, entry, 1), 2)
        [_ async for _ in self.db.read_addresses('0', 5)]
        [_ async for _ in self.db.read_addresses_json()]
        [_ async for _ in self.db.read_all_addresses()]
        self.assertEqual(await self.db.count_addresses(), 2)
        await self.db.ping()
        await self.db.delete_address(new, 2)
        self.assertEqual(self.durations.operations(), [
            'create', 'read', 'read', 'read', 'update', 'list', 'list',
            'list', 'count', 'ping', 'delete'])
        self.assertTrue(all(s >= 0 for _, s in self.durations.seen))
        self.assertLessEqual(set(self.durations.operations()),
                             set(OPERATIONS))

    async def test_failures_are_timed_and_raised(self) -> None:
        """A failed operation still reports its duration, and its error
        reaches the caller unchanged."""
        with self.assertRaises(AddressNotFoundError):
            await self.db.read_entry_json('nobody')
        with self.assertRaises(VersionConflictError):
            await self.db.update_address(
                self.entry_id, AddressEntry(full_name='C'), expected_version=7)
        with self.assertRaises(VersionConflictError):
            await self.db.delete_address(self.entry_id, expected_version=7)
        self.assertEqual(self.durations.operations(),
                         ['read', 'update', 'delete'])
        self.assertEqual(await self.inner.read_address(self.entry_id),
                         AddressEntry(full_name='A'))

    async def test_listing_is_timed_when_it_ends(self) -> None:
        """A listing reports once, when its last entry has been taken."""
        listing = self.db.read_addresses_json()
        self.assertEqual((await anext(listing))[0], self.entry_id)
        self.assertEqual(self.durations.operations(), [])
        with self.assertRaises(StopAsyncIteration):
            await anext(listing)
        self.assertEqual(self.durations.operations(), ['list'])


if __name__ == '__main__':
    unittest.main()
