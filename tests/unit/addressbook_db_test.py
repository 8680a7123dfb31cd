"""Storage behaviour: one contract, run against every engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import tempfile
import threading
import time
import unittest
from typing import TYPE_CHECKING, Any, Iterator

from addrservice.database.addressbook_db import (
    AbstractAddressBookDB,
    FilesystemAddressBookDB,
    InMemoryAddressBookDB,
)
from addrservice.database.base import (
    LIST_BATCH,
    StoredEntry,
    StoredJSON,
    encode_entry,
)
from addrservice.database.fs import LOCK_FILE
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
    StorageUnavailableError,
    VersionConflictError,
)
from data import address_data_suite
from tests.support import LogCapture, ticks_while

INVALID_NICKNAMES = ['', '../escape', 'a/b', 'a b', 'a.json', 'x' * 65, 'é']


if TYPE_CHECKING:
    _ContractBase = unittest.IsolatedAsyncioTestCase
else:
    _ContractBase = object  # a mixin: not a TestCase, so not run alone


class AddressBookDBContract(_ContractBase):
    """Behaviour every engine shares. Subclasses define `make_db()`."""

    db: AbstractAddressBookDB

    def make_db(self) -> AbstractAddressBookDB:
        raise NotImplementedError

    def entry(self, name: str = 'Bill Gates') -> AddressEntry:
        return AddressEntry(full_name=name)

    async def asyncSetUp(self) -> None:
        self.db = self.make_db()
        await self.db.open()
        self.suite = {
            nickname: AddressEntry.from_api_dm(doc)
            for nickname, doc in address_data_suite().items()
        }

    async def asyncTearDown(self) -> None:
        await self.db.close()

    async def listing(self) -> dict[str, AddressEntry]:
        return {n: a async for n, a in self.db.read_all_addresses()}

    async def test_create_and_read(self) -> None:
        """A created entry reads back equal, under a fresh 32-hex id."""
        for addr in self.suite.values():
            nickname = await self.db.create_address(addr)
            self.assertRegex(nickname, r'^[0-9a-f]{32}$')
            self.assertEqual(await self.db.read_address(nickname), addr)

    async def test_create_with_nickname(self) -> None:
        """A given nickname is used as the id."""
        nickname = await self.db.create_address(self.entry(), 'bill-1')
        self.assertEqual(nickname, 'bill-1')
        self.assertEqual(await self.db.read_address('bill-1'), self.entry())

    async def test_create_existing_nickname(self) -> None:
        """Creating an existing nickname is a KeyError; the entry stays."""
        await self.db.create_address(self.entry('First'), 'dup')
        with self.assertRaises(KeyError) as caught:
            await self.db.create_address(self.entry('Second'), 'dup')
        self.assertIsInstance(caught.exception, AddressExistsError)
        self.assertEqual(await self.db.read_address('dup'),
                         self.entry('First'))

    async def test_create_invalid_nickname(self) -> None:
        """A nickname outside [A-Za-z0-9-]{1,64} is a ValueError."""
        for nickname in INVALID_NICKNAMES:
            with self.subTest(nickname=nickname):
                with self.assertRaises(ValueError):
                    await self.db.create_address(self.entry(), nickname)
        self.assertEqual(await self.listing(), {})

    async def test_missing_and_invalid_ids_are_key_errors(self) -> None:
        """Read, update and delete of an absent or impossible id: KeyError."""
        for nickname in ['absent', *INVALID_NICKNAMES]:
            with self.subTest(nickname=nickname):
                with self.assertRaises(AddressNotFoundError):
                    await self.db.read_address(nickname)
                with self.assertRaises(AddressNotFoundError):
                    await self.db.update_address(nickname, self.entry())
                with self.assertRaises(AddressNotFoundError):
                    await self.db.delete_address(nickname)
        self.assertEqual(await self.listing(), {})

    async def test_update_replaces_whole_entry(self) -> None:
        """Update replaces the entry as a whole."""
        nickname = await self.db.create_address(self.suite['namo'])
        await self.db.update_address(nickname, self.suite['raga'])
        self.assertEqual(await self.db.read_address(nickname),
                         self.suite['raga'])

    async def test_delete(self) -> None:
        """A deleted entry is gone; deleting it again is a KeyError."""
        nickname = await self.db.create_address(self.entry())
        await self.db.delete_address(nickname)
        with self.assertRaises(KeyError):
            await self.db.read_address(nickname)
        with self.assertRaises(KeyError):
            await self.db.delete_address(nickname)

    async def test_read_all(self) -> None:
        """Listing yields every (nickname, entry) pair, nothing else."""
        self.assertEqual(await self.listing(), {})
        expected = {
            await self.db.create_address(addr): addr
            for addr in self.suite.values()
        }
        self.assertEqual(await self.listing(), expected)

    async def test_exact_round_trip(self) -> None:
        """Stored entries keep their exact API form, absent lists included."""
        docs: list[dict[str, Any]] = [
            {'full_name': 'Bill Gates'},
            {'full_name': 'x', 'emails': []},
            *address_data_suite().values(),
        ]
        for doc in docs:
            nickname = await self.db.create_address(
                AddressEntry.from_api_dm(doc))
            stored = await self.db.read_address(nickname)
            self.assertEqual(stored.to_api_dm(), doc)

    async def test_concurrent_creates_of_one_nickname(self) -> None:
        """Of concurrent creates of one nickname exactly one wins."""
        results = await asyncio.gather(*(
            self.db.create_address(self.entry(f'n{i}'), 'race')
            for i in range(10)
        ), return_exceptions=True)
        winners = [r for r in results if r == 'race']
        self.assertEqual(len(winners), 1)
        self.assertTrue(all(isinstance(r, AddressExistsError)
                            for r in results if r != 'race'))
        winner = results.index('race')
        self.assertEqual(await self.db.read_address('race'),
                         self.entry(f'n{winner}'))

    async def test_concurrent_updates_of_one_id(self) -> None:
        """Of concurrent whole-entry updates, one whole document wins."""
        nickname = await self.db.create_address(self.entry())
        candidates = [self.suite['namo'], self.suite['raga'],
                      self.entry('Third')] * 4
        await asyncio.gather(*(self.db.update_address(nickname, c)
                               for c in candidates))
        self.assertIn(await self.db.read_address(nickname), candidates)

    async def test_listing_while_writing(self) -> None:
        """Listing while entries are written and deleted does not fail."""
        ids = [await self.db.create_address(self.entry(f'n{i}'))
               for i in range(20)]

        async def churn() -> None:
            for nickname in ids[:10]:
                await self.db.delete_address(nickname)
                await self.db.create_address(self.entry('new'))

        listing, _ = await asyncio.gather(self.listing(), churn())
        self.assertTrue(set(ids[10:]) <= set(listing))

    async def test_versions_count_writes(self) -> None:
        """Create gives version 1; every update adds one; a new entry under
        a deleted nickname starts again at 1."""
        nickname = await self.db.create_address(self.entry())
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(), 1))
        for expected in [2, 3, 4]:
            version = await self.db.update_address(
                nickname, self.entry(f'v{expected}'))
            self.assertEqual(version, expected)
            self.assertEqual(await self.db.read_entry(nickname),
                             StoredEntry(self.entry(f'v{expected}'),
                                         expected))
        other = await self.db.create_address(self.entry('Other'))
        self.assertEqual((await self.db.read_entry(other)).version, 1)
        await self.db.delete_address(nickname)
        await self.db.create_address(self.entry('Again'), nickname)
        self.assertEqual((await self.db.read_entry(nickname)).version, 1)

    async def test_concurrent_updates_each_count(self) -> None:
        """Concurrent updates each get a distinct version; none is lost."""
        nickname = await self.db.create_address(self.entry())
        versions = await asyncio.gather(*(
            self.db.update_address(nickname, self.entry(f'n{i}'))
            for i in range(12)
        ))
        self.assertEqual(sorted(versions), list(range(2, 14)))
        self.assertEqual((await self.db.read_entry(nickname)).version, 13)

    async def test_conditional_update_at_expected_version(self) -> None:
        """An update expecting the current version replaces the entry; one
        expecting another version changes nothing."""
        nickname = await self.db.create_address(self.entry())
        self.assertEqual(await self.db.update_address(
            nickname, self.entry('v2'), expected_version=1), 2)
        for stale in (1, 3):
            with self.assertRaises(VersionConflictError):
                await self.db.update_address(
                    nickname, self.entry('stale'), expected_version=stale)
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry('v2'), 2))

    async def test_conditional_delete_at_expected_version(self) -> None:
        """A delete expecting a stale version leaves the entry; expecting
        the current one removes it."""
        nickname = await self.db.create_address(self.entry())
        await self.db.update_address(nickname, self.entry('v2'))
        with self.assertRaises(VersionConflictError):
            await self.db.delete_address(nickname, expected_version=1)
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry('v2'), 2))
        await self.db.delete_address(nickname, expected_version=2)
        self.assertEqual(await self.listing(), {})

    async def test_conditional_writes_of_a_missing_entry(self) -> None:
        """A conditional write of an entry that is not there is not found,
        and creates nothing."""
        with self.assertRaises(AddressNotFoundError):
            await self.db.update_address('gone', self.entry(),
                                         expected_version=1)
        with self.assertRaises(AddressNotFoundError):
            await self.db.delete_address('gone', expected_version=1)
        self.assertEqual(await self.listing(), {})

    async def test_concurrent_conditional_updates(self) -> None:
        """Of concurrent updates that all expect one version, exactly one
        is applied; the others are refused."""
        nickname = await self.db.create_address(self.entry())
        results = await asyncio.gather(*(
            self.db.update_address(nickname, self.entry(f'n{i}'),
                                   expected_version=1)
            for i in range(8)
        ), return_exceptions=True)
        winners = [i for i, r in enumerate(results) if r == 2]
        self.assertEqual(len(winners), 1, results)
        self.assertTrue(all(isinstance(r, VersionConflictError)
                            for r in results if r != 2), results)
        self.assertEqual(await self.db.read_entry(nickname),
                         StoredEntry(self.entry(f'n{winners[0]}'), 2))

    async def test_read_modify_write_loses_nothing(self) -> None:
        """Clients that retry a conditional update until it applies each
        add their mark; the final entry carries every mark, and its
        version counts every update."""
        nickname = await self.db.create_address(self.entry())

        async def add_mark(mark: str) -> int:
            while True:
                stored = await self.db.read_entry(nickname)
                marks = stored.entry.full_name + mark
                try:
                    return await self.db.update_address(
                        nickname, self.entry(marks), stored.version)
                except VersionConflictError:
                    await asyncio.sleep(0)

        marks = 'abcdefghij'
        versions = await asyncio.gather(*(add_mark(m) for m in marks))
        self.assertEqual(sorted(versions), list(range(2, 12)))
        stored = await self.db.read_entry(nickname)
        self.assertEqual(stored.version, 11)
        self.assertEqual(sorted(stored.entry.full_name),
                         sorted('Bill Gates' + marks))

    async def test_entries_as_json(self) -> None:
        """Entries read as JSON text are what the API sends for them: the
        canonical encoding of the entry, with the same version; listings
        as JSON hold the same entries as listings of objects."""
        ids = {await self.db.create_address(addr): addr
               for addr in self.suite.values()}
        nickname = next(iter(ids))
        await self.db.update_address(nickname, self.entry())
        ids[nickname] = self.entry()
        for nickname, addr in ids.items():
            self.assertEqual(await self.db.read_entry_json(nickname),
                             StoredJSON(encode_entry(addr),
                                        (await self.db.read_entry(
                                            nickname)).version))
        listed = [(n, t) async for n, t in self.db.read_addresses_json()]
        self.assertEqual(listed, sorted(
            (n, encode_entry(a)) for n, a in ids.items()))
        first = sorted(ids)[0]
        page = [n async for n, _ in self.db.read_addresses_json(first, 1)]
        self.assertEqual(page, sorted(ids)[1:2])
        with self.assertRaises(AddressNotFoundError):
            await self.db.read_entry_json('absent')

    async def test_listing_is_in_nickname_order(self) -> None:
        """Listings come in code-point order of the nickname."""
        nicknames = ['b', 'B', 'a-1', 'a', 'Z9', '0', '9-z', 'a0', 'A']
        for nickname in nicknames:
            await self.db.create_address(self.entry(nickname), nickname)
        listed = [n async for n, _ in self.db.read_all_addresses()]
        self.assertEqual(listed, sorted(nicknames))

    async def test_paging(self) -> None:
        """`after` and `limit` select a slice of the ordered listing."""
        nicknames = [f'n{i:03d}' for i in range(25)]
        for nickname in reversed(nicknames):
            await self.db.create_address(self.entry(nickname), nickname)

        async def page(after: str | None, limit: int | None) -> list[str]:
            return [n async for n, _ in self.db.read_addresses(after, limit)]

        self.assertEqual(await page(None, 3), nicknames[:3])
        self.assertEqual(await page('n002', 3), nicknames[3:6])
        self.assertEqual(await page('n0105', 2), ['n011', 'n012'])
        self.assertEqual(await page('n020', None), nicknames[21:])
        self.assertEqual(await page('n020', 100), nicknames[21:])
        self.assertEqual(await page('n024', 5), [])
        self.assertEqual(await page('', 1), nicknames[:1])
        self.assertEqual(await page(None, None), nicknames)
        pairs = [p async for p in self.db.read_addresses('n009', 1)]
        self.assertEqual(pairs, [('n010', self.entry('n010'))])
        walked: list[str] = []
        after = None
        while chunk := await page(after, 7):
            walked += chunk
            after = chunk[-1]
        self.assertEqual(walked, nicknames)

    async def test_listing_more_than_a_batch(self) -> None:
        """Listings longer than an engine's internal batch are whole."""
        nicknames = sorted(f'e{i}' for i in range(LIST_BATCH + 37))
        for nickname in nicknames:
            await self.db.create_address(self.entry(nickname), nickname)
        listed = [n async for n, _ in self.db.read_all_addresses()]
        self.assertEqual(listed, nicknames)
        paged = [n async for n, _ in
                 self.db.read_addresses(nicknames[10], LIST_BATCH + 5)]
        self.assertEqual(paged, nicknames[11:LIST_BATCH + 16])
        self.assertEqual(await self.db.count_addresses(), len(nicknames))

    async def test_count(self) -> None:
        """`count_addresses()` follows creates and deletes."""
        self.assertEqual(await self.db.count_addresses(), 0)
        ids = [await self.db.create_address(a) for a in self.suite.values()]
        self.assertEqual(await self.db.count_addresses(), len(ids))
        await self.db.delete_address(ids[0])
        self.assertEqual(await self.db.count_addresses(), len(ids) - 1)
        await self.db.ping()

    async def test_numbers_and_text_round_trip_exactly(self) -> None:
        """Extreme numbers and any Unicode text come back as stored."""
        doc: dict[str, Any] = {
            'full_name': 'Ünïcødé ✓ 名前 😀 "quoted" \\ back\nslash',
            'phone_numbers': [
                {'kind': 'home', 'country_code': 1e300,
                 'local_number': 9007199254740991},
                {'kind': 'work', 'country_code': 1e-7,
                 'area_code': 100.0, 'local_number': -1.5},
                {'kind': 'work', 'country_code': 1e16,
                 'local_number': 5e15},
                {'kind': 'home', 'country_code': 0,
                 'local_number': 123456789.125},
            ],
        }
        nickname = await self.db.create_address(AddressEntry.from_api_dm(doc))
        stored = (await self.db.read_address(nickname)).to_api_dm()
        self.assertEqual(stored, doc)
        for got, sent in zip(stored['phone_numbers'], doc['phone_numbers']):
            for key, value in sent.items():
                self.assertIs(type(got[key]), type(value), key)
        self.assertEqual((await self.db.read_entry_json(nickname)).json,
                         encode_entry(AddressEntry.from_api_dm(doc)))
        [(_, listed)] = [pair async for pair in self.db.read_addresses_json()]
        self.assertEqual(listed, encode_entry(AddressEntry.from_api_dm(doc)))

    async def test_open_and_close(self) -> None:
        """The asynchronous `open()`/`close()` work as `start()`/`stop()`."""
        nickname = await self.db.create_address(self.entry())
        await self.db.close()
        await self.db.open()
        self.assertEqual(await self.db.read_address(nickname), self.entry())


class DecodingEngineContract(AddressBookDBContract):
    """Engines that decode stored JSON on the loop's thread."""

    async def test_decoding_many_entries_does_not_block_the_loop(
        self,
    ) -> None:
        """A long listing and a large entry are decoded off the loop."""
        doc = self.suite['namo']
        for i in range(1200):
            await self.db.create_address(doc, f'n{i:04d}')
        big = AddressEntry.from_api_dm({'full_name': 'x' * 200_000})
        await self.db.create_address(big, 'big')

        async def work() -> tuple[int, AddressEntry]:
            listed = [n async for n, _ in self.db.read_addresses()]
            return len(listed), await self.db.read_address('big')

        (count, read), ticks = await ticks_while(work())
        self.assertEqual((count, read), (1201, big))
        # Inline, the whole listing would run without yielding: no ticks.
        self.assertGreaterEqual(ticks, 3)


class SynchronousStartContract(AddressBookDBContract):
    """Engines that keep the tutorial's synchronous `start()`/`stop()`."""

    async def test_usable_after_stop_and_start(self) -> None:
        """An engine that was stopped and started again keeps its entries."""
        nickname = await self.db.create_address(self.entry())
        self.db.stop()
        self.db.start()
        self.assertEqual(await self.db.read_address(nickname), self.entry())


class InMemoryAddressBookDBTest(
    SynchronousStartContract, unittest.IsolatedAsyncioTestCase
):
    def make_db(self) -> AbstractAddressBookDB:
        return InMemoryAddressBookDB()

    async def test_db_dict(self) -> None:
        """The entries are in the dict `.db`, keyed by nickname."""
        nickname = await self.db.create_address(self.entry())
        assert isinstance(self.db, InMemoryAddressBookDB)
        self.assertEqual(self.db.db, {nickname: self.entry()})


class FilesystemAddressBookDBTest(
    SynchronousStartContract, unittest.IsolatedAsyncioTestCase
):
    def make_db(self) -> AbstractAddressBookDB:
        self.store = self.enterContext(tempfile.TemporaryDirectory())
        return FilesystemAddressBookDB(self.store)

    def files(self) -> list[str]:
        """The store's files, but for its lock file, which stays."""
        return sorted(n for n in os.listdir(self.store) if n != LOCK_FILE)

    async def test_two_stores_on_one_directory(self) -> None:
        """Two engines on one directory, as two server processes have:
        concurrent updates through both each get a version of their own,
        and an update racing a delete never brings the entry back."""
        other = FilesystemAddressBookDB(self.store)
        self.addCleanup(other.stop)
        nickname = await self.db.create_address(self.entry())
        versions = await asyncio.gather(*(
            db.update_address(nickname, self.entry(f'n{i}'))
            for i in range(10) for db in (self.db, other)
        ))
        self.assertEqual(sorted(versions), list(range(2, 22)))
        for round in range(10):
            name = f'race{round}'
            await self.db.create_address(self.entry(), name)
            results = await asyncio.gather(
                other.delete_address(name),
                *(self.db.update_address(name, self.entry('late'))
                  for _ in range(3)),
                return_exceptions=True)
            self.assertIsNone(results[0])
            with self.assertRaises(AddressNotFoundError):
                await self.db.read_address(name)

    async def test_update_repairs_a_corrupt_entry(self) -> None:
        """Updating an entry whose file is corrupt replaces it, at version
        1, and logs the corrupt file."""
        path = os.path.join(self.store, 'bad.json')
        with open(path, 'w') as f:
            f.write('[]')
        with LogCapture() as logs:
            version = await self.db.update_address('bad', self.entry())
        self.assertEqual(version, 1)
        self.assertEqual(await self.db.read_entry('bad'),
                         StoredEntry(self.entry(), 1))
        self.assertEqual([e['file'] for e in logs.fields('UNREADABLE ENTRY')],
                         [path])

    async def test_conditional_write_of_a_corrupt_entry(self) -> None:
        """A corrupt entry's version cannot be known: a conditional update
        or delete of it is refused, and the file is left as it is."""
        path = os.path.join(self.store, 'bad.json')
        with open(path, 'w') as f:
            f.write('[]')
        with LogCapture():
            with self.assertRaises(VersionConflictError):
                await self.db.update_address('bad', self.entry(), 1)
            with self.assertRaises(VersionConflictError):
                await self.db.delete_address('bad', 1)
        with open(path) as f:
            self.assertEqual(f.read(), '[]')

    async def test_conditional_updates_through_two_stores(self) -> None:
        """Two engines on one directory (two server processes): of
        conditional updates expecting one version, one wins in all."""
        other = FilesystemAddressBookDB(self.store)
        self.addCleanup(other.stop)
        nickname = await self.db.create_address(self.entry())
        for version in range(1, 6):
            results = await asyncio.gather(*(
                db.update_address(nickname, self.entry(f'n{i}'), version)
                for i in range(4) for db in (self.db, other)
            ), return_exceptions=True)
            self.assertEqual(results.count(version + 1), 1, results)
        self.assertEqual((await other.read_entry(nickname)).version, 6)

    async def test_ping_fails_when_the_directory_is_gone(self) -> None:
        """The readiness check sees a store directory that went away."""
        await self.db.ping()
        os.rename(self.store, self.store + '.moved')
        self.addCleanup(os.rename, self.store + '.moved', self.store)
        with self.assertRaises(StorageUnavailableError):
            await self.db.ping()

    async def test_one_strict_json_file_per_entry(self) -> None:
        """Each entry is <nickname>.json holding its version and API form;
        no leftovers."""
        await self.db.create_address(self.suite['namo'], 'namo')
        await self.db.update_address('namo', self.suite['raga'])
        self.assertEqual(self.files(), ['namo.json'])
        with open(os.path.join(self.store, 'namo.json'),
                  encoding='utf-8') as f:
            self.assertEqual(json.load(f), {
                'version': 2, 'entry': self.suite['raga'].to_api_dm()})
        await self.db.delete_address('namo')
        self.assertEqual(self.files(), [])

    async def test_reads_files_of_bare_entries(self) -> None:
        """A file holding a bare entry (the first format) is version 1, and
        its first update is version 2."""
        with open(os.path.join(self.store, 'old.json'), 'w') as f:
            json.dump(self.suite['namo'].to_api_dm(), f)
        self.assertEqual(await self.db.read_entry('old'),
                         StoredEntry(self.suite['namo'], 1))
        self.assertEqual(
            await self.db.update_address('old', self.suite['raga']), 2)
        self.assertEqual(await self.listing(), {'old': self.suite['raga']})

    async def test_persists_across_instances(self) -> None:
        """A new engine on the same directory sees the stored entries."""
        nickname = await self.db.create_address(self.suite['namo'])
        again = FilesystemAddressBookDB(self.store)
        self.assertEqual(await again.read_address(nickname),
                         self.suite['namo'])
        again.stop()

    async def test_creates_missing_directory(self) -> None:
        """A missing store directory is created, parents included."""
        path = os.path.join(self.store, 'a', 'b')
        db = FilesystemAddressBookDB(path)
        self.assertEqual(db.store, path)
        self.assertTrue(os.path.isdir(path))

    async def test_store_must_be_a_writable_directory(self) -> None:
        """A path that is a file, or under one, is a ValueError naming it."""
        a_file = os.path.join(self.store, 'file')
        with open(a_file, 'w'):
            pass
        for path in [a_file, os.path.join(a_file, 'sub')]:
            with self.subTest(path=path):
                with self.assertRaisesRegex(ValueError, 'not a writable'):
                    FilesystemAddressBookDB(path)

    async def test_temporary_leftovers_are_ignored(self) -> None:
        """Temp files a crash left behind are neither listed nor read."""
        nickname = await self.db.create_address(self.entry())
        for name in ['.abc.x1y2.tmp', '.abc.json.tmp', 'notes.txt',
                     'bad name.json']:
            with open(os.path.join(self.store, name), 'w') as f:
                f.write('{"full_name": "partial')
        with LogCapture() as logs:
            listing = await self.listing()
        self.assertEqual(listing, {nickname: self.entry()})
        self.assertEqual(logs.messages, [])

    async def test_listing_survives_unreadable_files(self) -> None:
        """An unreadable file is logged at ERROR by name; the rest is read."""
        nickname = await self.db.create_address(self.entry())
        bad = {'truncated': '{"full_name": ', 'array': '[]', 'string': '"s"',
               'empty-name': '{"full_name": ""}', 'nan': '{"x": NaN}',
               'version-0': '{"version": 0, "entry": {"full_name": "x"}}',
               'version-str': '{"version": "2", "entry": {"full_name": "x"}}',
               'extra-key': '{"version": 2, "entry": {"full_name": "x"},'
                            ' "more": 1}'}
        for name, content in bad.items():
            with open(os.path.join(self.store, f'{name}.json'), 'w') as f:
                f.write(content)
        os.mkdir(os.path.join(self.store, 'adir.json'))
        with LogCapture() as logs:
            self.assertEqual(await self.listing(), {nickname: self.entry()})
        errors = logs.fields('UNREADABLE ENTRY')
        self.assertEqual(
            sorted(e['file'] for e in errors),
            sorted(os.path.join(self.store, f'{name}.json')
                   for name in [*bad, 'adir']))
        self.assertTrue(all(r.levelname == 'ERROR' for r in logs.records))

    async def test_reading_a_corrupt_entry(self) -> None:
        """A stored file that is not an entry is a store fault, not a 404."""
        with open(os.path.join(self.store, 'bad.json'), 'w') as f:
            f.write('[]')
        with self.assertRaises(CorruptEntryError):
            await self.db.read_address('bad')

    async def test_failed_write_leaves_nothing_behind(self) -> None:
        """A write the disk refuses raises; no entry or temp file is left."""
        nickname = await self.db.create_address(self.entry())
        big = AddressEntry(full_name='x' * 100_000)
        with file_size_limit(50_000):
            with self.assertRaises(OSError):
                await self.db.create_address(big, 'big')
            with self.assertRaises(OSError):
                await self.db.update_address(nickname, big)
        self.assertEqual(self.files(), [f'{nickname}.json'])
        self.assertEqual(await self.listing(), {nickname: self.entry()})

    async def test_failed_replace_leaves_no_temp_file(self) -> None:
        """An update that cannot replace its file leaves no temp file."""
        os.mkdir(os.path.join(self.store, 'blocked.json'))
        with self.assertRaises(OSError):
            await self.db.update_address('blocked', self.entry())
        self.assertEqual(self.files(), ['blocked.json'])

    async def test_blocking_io_runs_off_the_event_loop(self) -> None:
        """A slow disk does not stall the loop: other tasks keep running."""
        db = SlowDiskDB(self.store)

        async def work() -> tuple[str, dict[str, AddressEntry]]:
            nickname = await db.create_address(self.entry())
            await db.update_address(nickname, self.entry('New'))
            listing = {n: a async for n, a in db.read_all_addresses()}
            await db.delete_address(nickname)
            return nickname, listing

        (nickname, listing), ticks = await ticks_while(work())
        db.stop()
        self.assertEqual(listing, {nickname: self.entry('New')})
        self.assertNotIn(threading.main_thread(), db.threads)
        # Two slow writes took 0.4 s; a blocked loop would not have ticked.
        self.assertGreaterEqual(ticks, 5)


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Files of this process cannot grow past `size`: a full disk."""
    saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Past the limit write() fails with EFBIG instead of a fatal signal.
    saved_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, saved_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved_limit)
        signal.signal(signal.SIGXFSZ, saved_handler)


class SlowDiskDB(FilesystemAddressBookDB):
    """A store whose writes take 0.2 s, and that notes where they run."""

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        self.threads: set[threading.Thread] = set()

    def _write_temp(self, nickname: str, data: bytes) -> str:
        self.threads.add(threading.current_thread())
        time.sleep(0.2)
        return super()._write_temp(nickname, data)

    def _unlink(self, nickname: str, expected: int | None) -> None:
        self.threads.add(threading.current_thread())
        super()._unlink(nickname, expected)

    def _read_batch(self, nicknames: list[str]) -> Any:
        self.threads.add(threading.current_thread())
        return super()._read_batch(nicknames)


if __name__ == '__main__':
    unittest.main()
