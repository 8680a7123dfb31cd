"""The copy command: its core between open engines, and the command run
as a process (exit status, output, progress bar on a terminal only)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest
from typing import Any, NamedTuple, Sequence

import yaml

from addrservice.config import load_config
from addrservice.database.base import LIST_BATCH, AbstractAddressBookDB
from addrservice.database.copy import (
    PROG,
    WRITES_AT_ONCE,
    CopyError,
    CopyReport,
    check_pair,
    copy_addresses,
    differing_lines,
    id_list,
    summary_line,
)
from addrservice.database.db_engines import create_addressbook_db
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB
from addrservice.database.postgres import dsn_location
from addrservice.datamodel import AddressEntry
from addrservice.errors import StorageUnavailableError
from data import address_data_suite
from tests.pg import fresh_schema, pg_config, pg_dsn, pg_test_schemas
from tests.support import LogCapture, temporary_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RUN_S = 60.0

# Ids that sort differently by code point than by a locale's collation.
ODD_IDS = ['0', '9-z', 'A', 'Z-1', 'a', 'a-', 'b', 'z' * 64]


def sample_entries(count: int) -> dict[str, AddressEntry]:
    """`count` entries, varied by name, over the reference entries."""
    suite = list(address_data_suite().values())
    ids = (ODD_IDS + [f'entry-{i:05d}' for i in range(count)])[:count]
    entries = {}
    for i, nickname in enumerate(ids):
        doc = dict(suite[i % len(suite)], full_name=f'Person {i}')
        entries[nickname] = AddressEntry.from_api_dm(doc)
    return entries


def write_entries(store: str, entries: dict[str, AddressEntry]) -> None:
    """Put entries in an fs store as its files, without a synced write
    per entry (the engine's format: version and entry)."""
    os.makedirs(store, exist_ok=True)
    for nickname, addr in entries.items():
        document = {'version': 1, 'entry': addr.to_api_dm()}
        with open(os.path.join(store, nickname + '.json'), 'w',
                  encoding='utf-8') as f:
            json.dump(document, f)


async def listing(db: AbstractAddressBookDB) -> dict[str, AddressEntry]:
    return {n: a async for n, a in db.read_all_addresses()}


async def versions(db: AbstractAddressBookDB) -> dict[str, int]:
    return {n: (await db.read_entry(n)).version
            async for n, _ in db.read_all_addresses()}


def report(copied: int = 0, unchanged: int = 0, kept: Sequence[str] = (),
           replaced: Sequence[str] = ()) -> CopyReport:
    return CopyReport(copied, unchanged, list(kept), list(replaced))


class FsStoresFixture(unittest.IsolatedAsyncioTestCase):
    """An fs source holding `count` entries, and an empty fs destination."""

    count = 40

    def setUp(self) -> None:
        temp = temporary_store()
        self.addCleanup(temp.cleanup)
        self.source_dir = os.path.join(temp.name, 'source')
        self.destination_dir = os.path.join(temp.name, 'destination')
        self.entries = sample_entries(self.count)
        write_entries(self.source_dir, self.entries)

    async def asyncSetUp(self) -> None:
        self.source = FilesystemAddressBookDB(self.source_dir)
        self.destination = FilesystemAddressBookDB(self.destination_dir)
        for db in (self.source, self.destination):
            await db.open()
            self.addAsyncCleanup(db.close)


class CopyAcrossPagesTest(FsStoresFixture):
    """`copy_addresses` between fs stores, over more than one page."""

    count = LIST_BATCH + 3

    async def test_copies_every_entry(self) -> None:
        """Every entry, over more than one page, arrives equal under its
        id."""
        steps: list[int] = []
        result = await copy_addresses(self.source, self.destination,
                                      progress=steps.append)
        self.assertEqual(result, report(copied=len(self.entries)))
        self.assertEqual(await listing(self.destination), self.entries)
        page = [WRITES_AT_ONCE] * (LIST_BATCH // WRITES_AT_ONCE)
        if LIST_BATCH % WRITES_AT_ONCE:
            page.append(LIST_BATCH % WRITES_AT_ONCE)
        self.assertEqual(steps, page + [3])

    async def test_rerun_changes_nothing(self) -> None:
        """A second copy finds every entry identical and writes none."""
        await copy_addresses(self.source, self.destination)
        result = await copy_addresses(self.source, self.destination,
                                      overwrite=True)
        self.assertEqual(result, report(unchanged=len(self.entries)))
        self.assertEqual(await listing(self.destination), self.entries)
        self.assertEqual(set((await versions(self.destination)).values()),
                         {1})

    async def test_resumes_a_partial_copy(self) -> None:
        """Entries copied before are identical; the rest are copied."""
        done = dict(list(self.entries.items())[:LIST_BATCH + 1])
        write_entries(self.destination_dir, done)
        result = await copy_addresses(self.source, self.destination)
        self.assertEqual(result, report(copied=len(self.entries) - len(done),
                                        unchanged=len(done)))
        self.assertEqual(await listing(self.destination), self.entries)


class CopyConflictsTest(FsStoresFixture):
    """`copy_addresses` where the stores disagree or cannot be read."""

    async def test_differing_entry_kept(self) -> None:
        """An entry that differs in the destination is kept and reported;
        entries only in the destination stay."""
        other = AddressEntry(full_name='Someone Else')
        await self.destination.create_address(other, 'entry-00010')
        await self.destination.create_address(other, 'only-here')
        result = await copy_addresses(self.source, self.destination)
        self.assertEqual(result, report(copied=len(self.entries) - 1,
                                        kept=['entry-00010']))
        expected = {**self.entries, 'entry-00010': other,
                    'only-here': other}
        self.assertEqual(await listing(self.destination), expected)

    async def test_differing_entry_replaced_with_overwrite(self) -> None:
        """With overwrite, a differing entry takes the source's content as
        its next version; entries only in the destination stay."""
        other = AddressEntry(full_name='Someone Else')
        await self.destination.create_address(other, 'entry-00010')
        await self.destination.create_address(other, 'only-here')
        result = await copy_addresses(self.source, self.destination,
                                      overwrite=True)
        self.assertEqual(result, report(copied=len(self.entries) - 1,
                                        replaced=['entry-00010']))
        self.assertEqual(await listing(self.destination),
                         {**self.entries, 'only-here': other})
        self.assertEqual(
            (await self.destination.read_entry('entry-00010')).version, 2)

    async def test_unreadable_destination_entry_kept(self) -> None:
        """A destination entry that cannot be read counts as differing and
        is left as it is."""
        path = os.path.join(self.destination_dir, 'entry-00007.json')
        with open(path, 'w', encoding='utf-8') as f:
            f.write('{not json')
        with LogCapture() as logs:
            result = await copy_addresses(self.source, self.destination)
        self.assertEqual(result, report(copied=len(self.entries) - 1,
                                        kept=['entry-00007']))
        with open(path, encoding='utf-8') as f:
            self.assertEqual(f.read(), '{not json')
        self.assertIn('message="UNREADABLE ENTRY"', logs.messages[0])

    async def test_unreadable_source_entry_skipped(self) -> None:
        """A source entry that cannot be read is logged and not copied, so
        fewer entries are read than the source counts."""
        with open(os.path.join(self.source_dir, 'broken.json'), 'w',
                  encoding='utf-8') as f:
            f.write('[]')
        with LogCapture() as logs:
            result = await copy_addresses(self.source, self.destination)
        counted = await self.source.count_addresses()
        self.assertEqual(counted, len(self.entries) + 1)
        self.assertEqual(result, report(copied=len(self.entries)))
        self.assertEqual(await listing(self.destination), self.entries)
        self.assertIn('broken.json', logs.messages[0])
        self.assertEqual(
            summary_line(result, counted),
            f'{len(self.entries)} entries read: {len(self.entries)} copied, '
            '0 already identical, 0 differing kept, 0 differing replaced; '
            f'1 of {counted} counted not read (unreadable, or deleted '
            'during the copy)')


class CopyThroughSqlEnginesTest(unittest.IsolatedAsyncioTestCase):
    """`copy_addresses` into and out of SQLite and PostgreSQL, each built
    from its config section as the command builds it."""

    def setUp(self) -> None:
        temp = temporary_store()
        self.addCleanup(temp.cleanup)
        self.dir = temp.name
        self.entries = sample_entries(LIST_BATCH + 3)
        write_entries(os.path.join(self.dir, 'source'), self.entries)

    async def store(self, addr_db: dict[str, Any]) -> AbstractAddressBookDB:
        """The engine of `addr_db`, open until the test ends."""
        db = create_addressbook_db(addr_db)
        await db.open()
        self.addAsyncCleanup(db.close)
        return db

    async def copy_along(
        self, *stores: AbstractAddressBookDB
    ) -> list[CopyReport]:
        """Copy from each store to the next; every listing must equal the
        entries exactly."""
        results = []
        for source, destination in zip(stores, stores[1:]):
            results.append(await copy_addresses(source, destination))
            self.assertEqual(await listing(destination), self.entries)
        return results

    async def test_fs_to_sqlite_and_back(self) -> None:
        """Entries go from fs to SQLite and back to a new fs store equal."""
        stores = [await self.store({'fs': os.path.join(self.dir, 'source')}),
                  await self.store({'sqlite': os.path.join(self.dir, 'db')}),
                  await self.store({'fs': os.path.join(self.dir, 'back')})]
        results = await self.copy_along(*stores)
        self.assertEqual(results, [report(copied=len(self.entries))] * 2)

    async def test_round_trip_through_postgres(self) -> None:
        """Entries go fs, SQLite, PostgreSQL and back to fs equal; a re-run
        into PostgreSQL finds each identical and writes none."""
        sqlite = await self.store({'sqlite': os.path.join(self.dir, 'db')})
        postgres = await self.store(pg_config(fresh_schema(self)))
        stores = [await self.store({'fs': os.path.join(self.dir, 'source')}),
                  sqlite, postgres,
                  await self.store({'fs': os.path.join(self.dir, 'back')})]
        results = await self.copy_along(*stores)
        self.assertEqual(results, [report(copied=len(self.entries))] * 3)
        rerun = await copy_addresses(sqlite, postgres, overwrite=True)
        self.assertEqual(rerun, report(unchanged=len(self.entries)))
        self.assertEqual(set((await versions(postgres)).values()), {1})


class RacingDestination(InMemoryAddressBookDB):
    """A destination that another writer changes between the copy's
    listing and its write to `contested`: it creates the entry there
    first, or deletes it."""

    def __init__(self, contested: str, rival: AddressEntry | None) -> None:
        super().__init__()
        self.contested = contested
        self.rival = rival

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        if nickname == self.contested and self.rival is not None:
            await super().create_address(self.rival, nickname)
            self.rival = None
        return await super().create_address(addr, nickname)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        if nickname == self.contested and nickname in self.db:
            await self.delete_address(nickname)
        return await super().update_address(nickname, addr, expected_version)


class FailingDestination(InMemoryAddressBookDB):
    """A destination whose store fails on the create of `failing`."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        if nickname == self.failing:
            raise StorageUnavailableError('the store went away')
        return await super().create_address(addr, nickname)


class CopyRaceTest(unittest.IsolatedAsyncioTestCase):
    """`copy_addresses` when the destination changes under it."""

    async def asyncSetUp(self) -> None:
        self.source = InMemoryAddressBookDB()
        self.entries = sample_entries(3)
        for nickname, addr in self.entries.items():
            await self.source.create_address(addr, nickname)
        self.other = AddressEntry(full_name='Someone Else')

    async def test_created_meanwhile_with_other_content(self) -> None:
        """An entry created by another writer after the listing is kept,
        as any differing entry."""
        destination = RacingDestination('A', self.other)
        result = await copy_addresses(self.source, destination)
        self.assertEqual(result, report(copied=2, kept=['A']))
        self.assertEqual(await destination.read_address('A'), self.other)

    async def test_created_meanwhile_with_same_content(self) -> None:
        """An entry created equal by another writer is identical."""
        destination = RacingDestination('A', self.entries['A'])
        result = await copy_addresses(self.source, destination)
        self.assertEqual(result, report(copied=2, unchanged=1))
        self.assertEqual(await listing(destination), self.entries)

    async def test_deleted_meanwhile(self) -> None:
        """A differing entry deleted before its replacement is created."""
        destination = RacingDestination('A', None)
        await destination.create_address(self.other, 'A')
        result = await copy_addresses(self.source, destination,
                                      overwrite=True)
        self.assertEqual(result, report(copied=3))
        self.assertEqual(await listing(destination), self.entries)
        self.assertEqual((await destination.read_entry('A')).version, 1)

    async def test_failed_write_stops_the_copy(self) -> None:
        """A write that fails stops the copy with its error: the entries
        written at the same time finish, and no later ones are written."""
        source = InMemoryAddressBookDB()
        entries = sample_entries(3 * WRITES_AT_ONCE)
        for nickname, addr in entries.items():
            await source.create_address(addr, nickname)
        destination = FailingDestination('A')
        with self.assertRaisesRegex(StorageUnavailableError,
                                    '^the store went away$'):
            await copy_addresses(source, destination)
        first = sorted(entries)[:WRITES_AT_ONCE]
        self.assertEqual(await listing(destination),
                         {n: entries[n] for n in first if n != 'A'})


class ReportTextTest(unittest.TestCase):
    """The lines the command prints."""

    def test_summary_line(self) -> None:
        """The summary counts each outcome."""
        result = report(copied=3, unchanged=2, kept=['a'], replaced=['b'])
        self.assertEqual(
            summary_line(result, 7),
            '7 entries read: 3 copied, 2 already identical, '
            '1 differing kept, 1 differing replaced')

    def test_summary_line_of_an_empty_source(self) -> None:
        """An empty source reads zero entries."""
        self.assertEqual(
            summary_line(report(), 0),
            '0 entries read: 0 copied, 0 already identical, '
            '0 differing kept, 0 differing replaced')

    def test_id_list_is_bounded(self) -> None:
        """Past the bound, ids are only counted."""
        ids = [f'id{i}' for i in range(25)]
        self.assertEqual(id_list(ids, 3), 'id0, id1, id2 and 22 more')
        self.assertEqual(id_list(ids[:3], 3), 'id0, id1, id2')
        self.assertEqual(id_list(ids), ', '.join(ids[:20]) + ' and 5 more')

    def test_differing_lines(self) -> None:
        """Kept and replaced entries are named on a line each."""
        self.assertEqual(differing_lines(report(copied=1)), [])
        self.assertEqual(
            differing_lines(report(kept=['a', 'b'], replaced=['c'])),
            [f'{PROG}: differing entries kept (--overwrite replaces them): '
             'a, b',
             f'{PROG}: differing entries replaced: c'])


class CheckPairTest(unittest.TestCase):
    """Which pairs of stores the command refuses."""

    def config(self, addr_db: dict[str, Any]) -> Any:
        return load_config(yaml.safe_dump({'addr-db': addr_db}))

    def test_memory_refused_on_either_side(self) -> None:
        """A memory store is refused as the source and as the destination."""
        memory, fs = self.config({'memory': None}), self.config({'fs': 'x'})
        for pair, culprit in (((memory, fs), 'a.yaml'),
                              ((fs, memory), 'b.yaml')):
            with self.assertRaises(CopyError) as caught:
                check_pair(*pair, 'a.yaml', 'b.yaml')
            self.assertEqual(
                str(caught.exception),
                f'{culprit}: the memory engine cannot be copied from or to: '
                'a new process sees it empty, and it is gone at exit')

    def test_same_store_refused(self) -> None:
        """A store named twice, by relative and absolute path, is refused."""
        relative = self.config({'fs': 'some/store'})
        absolute = self.config({'fs': os.path.abspath('some/store/')})
        with self.assertRaises(CopyError) as caught:
            check_pair(relative, absolute, 'a.yaml', 'b.yaml')
        self.assertEqual(str(caught.exception),
                         'a.yaml and b.yaml name the same store; it cannot '
                         'be copied onto itself')

    def test_same_postgres_schema_refused(self) -> None:
        """Two configs of one DSN and schema name one store, whatever their
        pool sizes."""
        dsn = 'postgresql://postgres@127.0.0.1:5432/test'
        one = self.config({'postgres': {'dsn': dsn, 'max_size': 2}})
        two = self.config({'postgres': {'dsn': dsn, 'min_size': 3}})
        with self.assertRaises(CopyError):
            check_pair(one, two, 'a.yaml', 'b.yaml')

    def test_different_stores_accepted(self) -> None:
        """Different stores, of one engine or two, pass the check."""
        dsn = 'postgresql://postgres@127.0.0.1:5432/test'
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({'fs': 'a'}, {'fs': 'b'}), ({'fs': 'a'}, {'sqlite': 'a'}),
            ({'postgres': {'dsn': dsn, 'schema': 'one'}},
             {'postgres': {'dsn': dsn, 'schema': 'two'}}),
        ]
        for source, destination in pairs:
            check_pair(self.config(source), self.config(destination),
                       'a.yaml', 'b.yaml')  # raises if refused


class Run(NamedTuple):
    status: int
    stdout: str
    stderr: str


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (just freed)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def command(*args: str) -> list[str]:
    return [sys.executable, '-m', 'addrservice.database.copy', *args]


def run_command(*args: str) -> Run:
    """Run the command with stdout and stderr piped (not terminals)."""
    done = subprocess.run(command(*args), cwd=REPO, capture_output=True,
                          text=True, timeout=RUN_S, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr)


def run_on_terminal(*args: str) -> tuple[Run, str]:
    """Run the command with stderr on a pseudo-terminal of 80 columns.

    Returns the run (stderr empty) and what the terminal received.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(command(*args), cwd=REPO, stdout=out,
                                    stderr=slave, stdin=subprocess.DEVNULL)
        finally:
            os.close(slave)
        try:
            terminal = read_terminal(master, time.monotonic() + RUN_S)
            status = proc.wait(timeout=RUN_S)
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        stdout = out.read().decode('utf-8')
    return Run(status, stdout, ''), terminal.decode('utf-8')


def read_terminal(master: int, deadline: float) -> bytes:
    """All the terminal receives until the child closes it."""
    received = b''
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f'terminal still open after {RUN_S} s')
        if not select.select([master], [], [], left)[0]:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every holder of the terminal closed it
            return received
        if not chunk:
            return received
        received += chunk


def open_when_read(fifo: str, deadline: float) -> int:
    """Open `fifo` for writing as soon as a reader has it open."""
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


class CopyCommandTest(unittest.TestCase):
    """`python -m addrservice.database.copy` as a process."""

    def setUp(self) -> None:
        temp = temporary_store()
        self.addCleanup(temp.cleanup)
        self.dir = temp.name
        self.entries = sample_entries(30)
        write_entries(self.path('source'), self.entries)
        self.source = self.config('source.yaml', {'fs': self.path('source')})
        self.destination = self.config('destination.yaml',
                                       {'fs': self.path('destination')})

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def config(self, name: str, addr_db: Any, **sections: Any) -> str:
        """Write a config file naming the store `addr_db`; its path."""
        path = self.path(name)
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump({'addr-db': addr_db, **sections}, f)
        return path

    def destination_listing(self) -> dict[str, AddressEntry]:
        """The fs destination's entries, read straight from their files."""
        files = sorted(os.listdir(self.path('destination')))
        listed = {}
        for name in [n for n in files if n.endswith('.json')]:
            with open(os.path.join(self.path('destination'), name),
                      encoding='utf-8') as f:
                document = json.load(f)
            listed[name.removesuffix('.json')] = \
                AddressEntry.from_api_dm(document['entry'])
        return listed

    def assert_refused(self, run: Run, message: str) -> None:
        """Exit status 1, nothing on stdout, one line on stderr."""
        self.assertEqual(run, Run(1, '', f'{PROG}: {message}\n'))

    def test_copies_and_summarises(self) -> None:
        """The command copies every entry, prints only the summary, and
        draws no bar when stderr is not a terminal."""
        run = run_command('--from', self.source, '--to', self.destination)
        self.assertEqual(run, Run(0, '30 entries read: 30 copied, '
                                  '0 already identical, 0 differing kept, '
                                  '0 differing replaced\n', ''))
        self.assertEqual(self.destination_listing(), self.entries)

    def test_rerun_and_differing(self) -> None:
        """A re-run finds entries identical; a differing one is kept and
        named on stderr, or replaced with --overwrite."""
        args = ('--from', self.source, '--to', self.destination)
        self.assertEqual(run_command(*args).status, 0)
        write_entries(self.path('source'),
                      {'a': AddressEntry(full_name='Changed')})
        kept = run_command(*args)
        self.assertEqual(kept, Run(
            0, '30 entries read: 0 copied, 29 already identical, '
            '1 differing kept, 0 differing replaced\n',
            f'{PROG}: differing entries kept (--overwrite replaces them): '
            'a\n'))
        self.assertEqual(self.destination_listing(), self.entries)
        replaced = run_command(*args, '--overwrite')
        self.assertEqual(replaced, Run(
            0, '30 entries read: 0 copied, 29 already identical, '
            '0 differing kept, 1 differing replaced\n',
            f'{PROG}: differing entries replaced: a\n'))
        self.assertEqual(self.destination_listing()['a'],
                         AddressEntry(full_name='Changed'))

    def test_unreadable_source_entry(self) -> None:
        """An unreadable source entry is logged on stderr, the summary says
        it was not read, and the exit status is 1."""
        with open(os.path.join(self.path('source'), 'broken.json'), 'w',
                  encoding='utf-8') as f:
            f.write('{')
        run = run_command('--from', self.source, '--to', self.destination)
        self.assertEqual(run.status, 1)
        self.assertEqual(run.stdout, '30 entries read: 30 copied, '
                         '0 already identical, 0 differing kept, '
                         '0 differing replaced; 1 of 31 counted not read '
                         '(unreadable, or deleted during the copy)\n')
        [logged] = run.stderr.splitlines()
        self.assertRegex(logged, r'\Aaddrservice ERROR message="UNREADABLE '
                         r'ENTRY" file="[^"]*/broken\.json" error=')

    def test_service_logging_not_configured(self) -> None:
        """The config's logging section does not make the command write
        the service's log file."""
        log_file = self.path('service.log')
        logging_section = {
            'version': 1,
            'handlers': {'file': {'class': 'logging.FileHandler',
                                  'filename': log_file}},
            'root': {'level': 'DEBUG', 'handlers': ['file']},
        }
        source = self.config('logging.yaml', {'fs': self.path('source')},
                             logging=logging_section)
        run = run_command('--from', source, '--to', self.destination)
        self.assertEqual(run.status, 0)
        self.assertFalse(os.path.exists(log_file))

    def test_progress_bar_on_a_terminal(self) -> None:
        """With stderr on a terminal, a bar counts up to every entry; the
        summary still goes to stdout alone."""
        run, terminal = run_on_terminal(
            '--from', self.source, '--to', self.destination)
        self.assertEqual(run, Run(0, '30 entries read: 30 copied, '
                                  '0 already identical, 0 differing kept, '
                                  '0 differing replaced\n', ''))
        self.assertIn('100%|', terminal)
        self.assertIn('| 30/30 [', terminal)
        self.assertNotIn('entries read', terminal)

    def test_through_sqlite_and_postgres(self) -> None:
        """The command copies fs to SQLite to PostgreSQL and back to fs;
        the entries arrive equal."""
        sqlite = self.config('sqlite.yaml', {'sqlite': self.path('db')})
        postgres = self.config('postgres.yaml',
                               pg_config(fresh_schema(self)))
        summary = ('30 entries read: 30 copied, 0 already identical, '
                   '0 differing kept, 0 differing replaced\n')
        for source, destination in ((self.source, sqlite),
                                    (sqlite, postgres),
                                    (postgres, self.destination)):
            run = run_command('--from', source, '--to', destination)
            self.assertEqual(run, Run(0, summary, ''))
        self.assertEqual(self.destination_listing(), self.entries)

    def test_unreachable_postgres(self) -> None:
        """A PostgreSQL that does not answer is one line naming the config,
        and status 1."""
        port = closed_port()
        postgres = self.config('postgres.yaml', {
            'postgres': {'dsn': f'postgresql://postgres@127.0.0.1:{port}/x'}})
        run = run_command('--from', self.source, '--to', postgres)
        self.assertEqual(run.status, 1)
        self.assertEqual(run.stdout, '')
        self.assertRegex(run.stderr, rf'\A{PROG}: {postgres}: [^\n]*'
                         rf'127\.0\.0\.1:{port}[^\n]*\n\Z')

    def test_log_line_clear_of_the_bar(self) -> None:
        """A log line during the copy starts on a cleared line of its own,
        not in the middle of the bar, which counts the entries read."""
        with open(os.path.join(self.path('source'), 'broken.json'), 'w',
                  encoding='utf-8') as f:
            f.write('{')
        run, terminal = run_on_terminal(
            '--from', self.source, '--to', self.destination)
        self.assertEqual(run.status, 1)
        self.assertRegex(terminal, r'\r *\raddrservice ERROR '
                         r'message="UNREADABLE ENTRY" [^\r\n]*\r\n')
        self.assertIn('| 30/31 [', terminal)

    def test_interrupted(self) -> None:
        """Ctrl-C is one line saying a re-run resumes, and status 1."""
        fifo = self.path('fifo.yaml')
        os.mkfifo(fifo)
        # SIGINT as a terminal delivers it, even where the tests run as a
        # background job, which inherits it ignored.
        proc = subprocess.Popen(
            command('--from', fifo, '--to', self.source), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            # Once the command has the FIFO open, it waits in its read.
            writer = open_when_read(fifo, time.monotonic() + RUN_S)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=RUN_S)
            os.close(writer)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(Run(proc.returncode, stdout, stderr), Run(
            1, '', f'{PROG}: interrupted; run it again to resume\n'))

    def test_missing_config_file(self) -> None:
        """A config file that does not exist is one line and status 1."""
        missing = self.path('missing.yaml')
        self.assert_refused(
            run_command('--from', missing, '--to', self.destination),
            f'cannot read config {missing}: No such file or directory')

    def test_invalid_config(self) -> None:
        """A config that is not YAML, or lacks addr-db, is one line."""
        bad = self.path('bad.yaml')
        with open(bad, 'w', encoding='utf-8') as f:
            f.write('addr-db: [\n')
        run = run_command('--from', self.source, '--to', bad)
        self.assertEqual(run.status, 1)
        self.assertRegex(run.stderr, rf'\A{PROG}: {bad}: Config is not valid '
                         r'YAML: [^\n]*\n\Z')
        empty = self.config('empty.yaml', None)
        self.assert_refused(
            run_command('--from', empty, '--to', self.destination),
            f"{empty}: Config 'addr-db' must be a Mapping, not None")

    def test_unknown_engine(self) -> None:
        """A config naming an unknown engine is one line and status 1."""
        unknown = self.config('unknown.yaml', {'mongo': 'x'})
        run = run_command('--from', self.source, '--to', unknown)
        self.assertEqual(run.status, 1)
        self.assertRegex(run.stderr, rf"\A{PROG}: {unknown}: Unknown addr-db "
                         r"engine 'mongo'; supported: [^\n]*\n\Z")

    def test_memory_and_self_copy_refused(self) -> None:
        """A memory store, or a store onto itself, is refused in one line,
        and nothing is written."""
        memory = self.config('memory.yaml', {'memory': None})
        self.assert_refused(
            run_command('--from', memory, '--to', self.destination),
            f'{memory}: the memory engine cannot be copied from or to: '
            'a new process sees it empty, and it is gone at exit')
        self.assert_refused(
            run_command('--from', self.source, '--to', self.source),
            f'{self.source} and {self.source} name the same store; it '
            'cannot be copied onto itself')
        self.assertFalse(os.path.exists(self.path('destination')))

    def test_missing_source_store(self) -> None:
        """A source directory that does not exist is refused, not created
        empty and copied."""
        nowhere = self.path('nowhere')
        source = self.config('nowhere.yaml', {'fs': nowhere})
        self.assert_refused(
            run_command('--from', source, '--to', self.destination),
            f'{source}: store {nowhere} does not exist')
        self.assertFalse(os.path.exists(nowhere))

    def test_missing_source_schema(self) -> None:
        """A PostgreSQL source schema that holds no address book (a typo)
        is refused, and not created."""
        schema = fresh_schema(self)
        source = self.config('pg.yaml', pg_config(schema))
        location = dsn_location(pg_dsn())
        self.assert_refused(
            run_command('--from', source, '--to', self.destination),
            f'{source}: PostgreSQL at {location} holds no address book '
            f'in schema "{schema}"')
        self.assertNotIn(schema, pg_test_schemas())


if __name__ == '__main__':
    unittest.main()
