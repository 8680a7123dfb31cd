"""Crash consistency of the file-backed engine, with real processes.

A worker (`fs_writer.py`) writes entries and reports each write before
and after it; the test kills it with SIGKILL at a random moment and
checks that the store holds exactly what was acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any

from addrservice.database.fs import LOCK_FILE, FilesystemAddressBookDB
from addrservice.datamodel import AddressEntry
from addrservice.utils import strictjson
from tests.e2e.fs_writer import canonical_sha

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'fs_writer.py')

CYCLES = 5
RACERS = 6
RACE_ROUNDS = 4
WAIT_S = 10.0


class Journal:
    """What the worker reported: last acknowledged and in-flight writes."""

    def __init__(self) -> None:
        self.acked: dict[str, str] = {}
        self.in_flight: tuple[str, str] | None = None
        self.acks = 0

    def read(self, text: str) -> None:
        # A last line without its newline was cut by the kill: ignored,
        # which leaves its write in flight (BEGIN is printed before it).
        for line in text.splitlines(keepends=True):
            if not line.endswith('\n'):
                break
            kind, *rest = line.split()
            if kind == 'BEGIN':
                self.in_flight = (rest[1], rest[2])
            elif kind == 'ACK':
                self.acked.pop(rest[1], None)  # keeps the last one last
                self.acked[rest[1]] = rest[2]
                self.in_flight = None
                self.acks += 1

    def touched(self) -> list[str]:
        """The last acked nickname and the in-flight one."""
        last = list(self.acked)[-1:]
        return last + [self.in_flight[0]] if self.in_flight else last

    def allowed(self, nickname: str) -> set[str | None]:
        """The hashes the store may hold for `nickname` (None: absent)."""
        allowed: set[str | None] = {self.acked.get(nickname)}
        if self.in_flight is not None and self.in_flight[0] == nickname:
            allowed.add(self.in_flight[1])
        return allowed


def stored_document(path: str) -> dict[str, Any]:
    """The entry a file holds, checked to be whole and as written."""
    with open(path, 'rb') as f:
        stored = strictjson.loads(f.read())
    if set(stored) != {'version', 'entry'} or stored['version'] < 1:
        raise AssertionError(f'{path} is not a versioned entry')
    document: dict[str, Any] = stored['entry']
    if AddressEntry.from_api_dm(document).to_api_dm() != document:
        raise AssertionError(f'{path} is not an entry as written')
    return document


def stored_hashes(store: str) -> dict[str, str]:
    """Hash of every `*.json` file, each parsed as a valid entry."""
    return {
        name[:-len('.json')]:
            canonical_sha(stored_document(os.path.join(store, name)))
        for name in os.listdir(store) if name.endswith('.json')
    }


def plant_temp_file(store: str, nickname: str) -> None:
    """A temp file such as a crash mid-write leaves: partial JSON."""
    path = os.path.join(store, f'.{nickname}.crash.tmp')
    with open(path, 'wb') as f:
        f.write(b'{"full_name": "torn')


async def read_store(
    store: str, nicknames: list[str]
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Through a fresh engine: hashes as listed, and as read one by one."""
    db = FilesystemAddressBookDB(store)
    try:
        listed = {nick: canonical_sha(addr.to_api_dm())
                  async for nick, addr in db.read_all_addresses()}
        read: dict[str, str | None] = {}
        for nick in nicknames:
            try:
                addr = await db.read_address(nick)
            except KeyError:
                read[nick] = None
            else:
                read[nick] = canonical_sha(addr.to_api_dm())
        return listed, read
    finally:
        db.stop()


class WorkerTestCase(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-crash-')
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name

    def spawn(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes],
                                                    str]:
        """Start a worker whose stdout goes to a file; return both."""
        out_path = os.path.join(self.tmp, name + '.out')
        with open(out_path, 'wb') as out, \
                open(out_path + '.err', 'wb') as err:
            proc = subprocess.Popen([sys.executable, WRITER, *args],
                                    stdout=out, stderr=err)
        self.addCleanup(_reap, proc)
        return proc, out_path

    def wait_for_line(self, proc: subprocess.Popen[bytes], out_path: str,
                      line: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if line in _read(out_path).splitlines():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        self.fail(f'worker did not print {line!r}: {_read(out_path)!r} '
                  f'{_read(out_path + ".err")!r}')


class FilesystemCrashTest(WorkerTestCase):
    def test_sigkill_leaves_acked_writes_and_no_partial_file(self) -> None:
        """After SIGKILL at any moment the store holds every acked write."""
        rng = random.Random()
        for cycle in range(CYCLES):
            moment = rng.uniform(0.2, 1.5)
            with self.subTest(cycle=cycle, moment=round(moment, 3)):
                store = os.path.join(self.tmp, f'store{cycle}')
                journal = self.run_and_kill(store, cycle, moment)
                self.check_store(store, journal)

    def run_and_kill(self, store: str, cycle: int, moment: float) -> Journal:
        proc, out_path = self.spawn(f'loop{cycle}', 'loop', store,
                                    f'c{cycle}', str(cycle))
        self.wait_for_line(proc, out_path, 'READY')
        time.sleep(moment)
        self.assertIsNone(proc.poll(), _read(out_path + '.err'))
        proc.send_signal(signal.SIGKILL)
        self.assertEqual(proc.wait(WAIT_S), -signal.SIGKILL)
        journal = Journal()
        journal.read(_read(out_path))
        self.assertGreater(journal.acks, 0, 'worker acked no write')
        return journal

    def check_store(self, store: str, journal: Journal) -> None:
        stored = stored_hashes(store)
        for nickname in sorted(set(journal.acked) | set(stored)):
            self.assertIn(stored.get(nickname), journal.allowed(nickname),
                          nickname)
        plant_temp_file(store, min(stored))
        listed, read = asyncio.run(read_store(store, journal.touched()))
        self.assertEqual(listed, stored)
        self.assertEqual(read, {n: stored.get(n) for n in read})


class FilesystemRaceTest(WorkerTestCase):
    def test_one_of_concurrent_creators_of_a_nickname_wins(self) -> None:
        """Of processes creating one nickname at once, exactly one wins."""
        for round_ in range(RACE_ROUNDS):
            with self.subTest(round=round_):
                self.race(f'race{round_}')

    def race(self, nickname: str) -> None:
        store = os.path.join(self.tmp, 'store')
        go_file = os.path.join(self.tmp, nickname + '.go')
        workers = [
            self.spawn(f'{nickname}-{i}', 'race', store, nickname,
                       go_file, str(i))
            for i in range(RACERS)
        ]
        for proc, out_path in workers:
            self.wait_for_line(proc, out_path, 'READY')
        open(go_file, 'wb').close()
        results = []
        for proc, out_path in workers:
            self.assertEqual(proc.wait(WAIT_S), 0, _read(out_path + '.err'))
            results.append(_read(out_path).splitlines()[-1].split())
        winners = [r for r in results if r[0] == 'WON']
        self.assertEqual(len(winners), 1, results)
        self.assertEqual(
            sorted(r for r in results if r[0] != 'WON'),
            [['LOST', 'AddressExistsError']] * (RACERS - 1))
        path = os.path.join(store, nickname + '.json')
        self.assertEqual(canonical_sha(stored_document(path)),
                         winners[0][1])
        self.assertEqual(
            [n for n in os.listdir(store)
             if n.startswith('.') and n != LOCK_FILE], [])


def _read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()  # a worker, never the server
    proc.wait()
