"""Crash consistency through HTTP: SIGKILL a server amid concurrent
writes, restart it on the same store, and check what it serves.

For the fs and the SQLite engine alike, each cycle runs WRITERS threads
(`http_writers.Writer`) that POST, PUT and DELETE through one server,
kills the server with SIGKILL at a random moment, and starts it again on
the same store; the new server serves the next cycle. After every
restart:

- each acknowledged create or update is listed and read back whole,
  with exactly the document sent;
- each acknowledged delete is 404 and not listed;
- each write in flight at the kill is wholly applied or not at all;
- the listing holds nothing else, and nothing was logged at ERROR
  (such as an `UNREADABLE ENTRY`).

The kill moments and the writers' choices come from one seed, shown in
every failure message; `ADDRSERVICE_CRASH_SEED=N` replays them.
"""

from __future__ import annotations

import glob
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tests.e2e.http_writers import Document, Writer, fingerprint, settle
from tests.e2e.server_test import ServerProcess
from tests.e2e.storage_test import StorageServerTestCase

SEED_ENV = 'ADDRSERVICE_CRASH_SEED'
CYCLES = 5
WRITERS = 6
# The kill comes this long after the cycle's first acknowledged write.
KILL_AFTER_S = (0.0, 1.0)
# How long a loaded machine may take to acknowledge a cycle's first write.
FIRST_ACK_S = 20.0
# Writers stop when the server dies, long before these.
UNBOUNDED_WRITES = 1_000_000
RUN_S = FIRST_ACK_S + 30.0
# In the log file and on the console; 4xx lines carry a trace too.
ERROR_MARKS = ('level="ERROR"', ' ERROR : ', 'UNREADABLE ENTRY')
# A line longer than this is cut in a failure message.
SHOWN_CHARS = 300

if TYPE_CHECKING:
    _ContractBase = StorageServerTestCase
else:
    _ContractBase = object  # a mixin: not a TestCase, so not run alone


@dataclass
class Cycle:
    """One kill: when, the writes acknowledged by method, and what became
    of those in flight ('PUT applied', 'POST not applied', ...)."""

    moment: float
    acks: Counter[str]
    outcomes: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return (f'killed {self.moment} s after the first ack; acked '
                f'{dict(self.acks)}; in flight {dict(self.outcomes)}')


def crash_seed() -> int:
    """The seed from the environment, or a fresh one."""
    value = os.environ.get(SEED_ENV)
    return random.randrange(2 ** 32) if value is None else int(value)


def acks_by_method(writers: Sequence[Writer]) -> Counter[str]:
    created = sum(len(w.created) for w in writers)
    deleted = sum(len(w.deleted) for w in writers)
    updated = sum(w.acks for w in writers) - created - deleted
    return Counter({'POST': created, 'PUT': updated, 'DELETE': deleted})


def differences(expected: Mapping[str, Document | None],
                found: Mapping[str, Document | None]) -> list[str]:
    """One line per id whose document (None: absent) is not as expected,
    naming documents by fingerprint rather than printing them whole."""
    def name(document: Document | None) -> str:
        return 'absent' if document is None else fingerprint(document)

    return [f'{entry_id}: {name(found.get(entry_id))}, '
            f'expected {name(expected.get(entry_id))}'
            for entry_id in sorted(set(expected) | set(found))
            if found.get(entry_id) != expected.get(entry_id)]


class ServerKillContract(_ContractBase):
    """SIGKILL amid writes, restart, check. Subclasses define `addr_db()`."""

    def addr_db(self) -> dict[str, Any]:
        raise NotImplementedError

    def test_sigkill_amid_writes_then_restart(self) -> None:
        """After each SIGKILL amid concurrent writes, the restarted server
        serves every acknowledged write exactly, no acknowledged delete,
        and each in-flight write wholly or not at all."""
        self.seed = crash_seed()
        rng = random.Random(f'{self.seed} {type(self).__name__}')
        self.moments = [round(rng.uniform(*KILL_AFTER_S), 3)
                        for _ in range(CYCLES)]
        self.cycles: list[Cycle] = []
        server = self.start_server(self.addr_db())
        stored: dict[str, Document] = {}
        gone: set[str] = set()
        for number, moment in enumerate(self.moments):
            writers = self.write_until_killed(
                server, stored, number, moment, rng.randrange(2 ** 32))
            server = self.start_server(self.addr_db())
            stored = self.check_restarted(server, writers, stored, gone)
        self.assertEqual(server.stop(), 0, server.stderr)

    def context(self) -> str:
        """Where a failure happened, and how to replay its kill moments."""
        done = ''.join(f'\n  cycle {n}: {cycle}'
                       for n, cycle in enumerate(self.cycles))
        return (f'\n{type(self).__name__}: {SEED_ENV}={self.seed} replays '
                f'the kill moments {self.moments} (s after the first ack '
                f'of each cycle){done}')

    def write_until_killed(self, server: ServerProcess,
                           stored: Mapping[str, Document], number: int,
                           moment: float, seed: int) -> list[Writer]:
        """Run the writers, each on its share of `stored`, and kill the
        server `moment` seconds after the first acknowledged write."""
        stop = threading.Event()
        self.addCleanup(stop.set)
        ids = sorted(stored)
        writers = [
            Writer(f'c{number}w{i}', server.port,
                   {e: stored[e] for e in ids[i::WRITERS]},
                   seed=seed + i, stop=stop, writes=UNBOUNDED_WRITES,
                   deadline=time.monotonic() + RUN_S)
            for i in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        self.wait_for_first_ack(writers)
        time.sleep(moment)
        self.assertEqual(server.stop(signal.SIGKILL), -signal.SIGKILL,
                         server.stderr + self.context())
        self.join(writers)
        self.cycles.append(Cycle(moment, acks_by_method(writers)))
        self.assertEqual([(w.name, w.problems) for w in writers
                          if w.problems], [], self.context())
        # Each was stopped by the kill, with a request on its way.
        self.assertEqual([w.name for w in writers if w.in_flight is None],
                         [], self.context())
        return writers

    def wait_for_first_ack(self, writers: Sequence[Writer]) -> None:
        deadline = time.monotonic() + FIRST_ACK_S
        while not any(w.acks for w in writers):
            if time.monotonic() > deadline or \
                    not any(w.is_alive() for w in writers):
                self.fail(f'no write acknowledged: '
                          f'{[(w.problems, w.disconnected) for w in writers]}'
                          + self.context())
            time.sleep(0.005)

    def check_restarted(self, server: ServerProcess,
                        writers: Sequence[Writer],
                        before: Mapping[str, Document],
                        gone: set[str]) -> dict[str, Document]:
        """Check the restarted server against the journals; its entries.

        Every entry is compared in the listing; those written since
        `before`, and every one deleted so far, are also read by id.
        """
        listed = self.listing(server)
        expected, outcomes = settle(writers, listed)
        self.cycles[-1].outcomes = Counter(outcomes)
        self.assertEqual(differences(expected, listed), [],
                         'listed' + self.context())
        # Deleted, by an acknowledged or an in-flight delete, in this
        # cycle or an earlier one.
        gone.update(i for w in writers for i in w.acked if i not in expected)
        changed = [i for i, doc in expected.items() if before.get(i) != doc]
        read = self.read_each(server, [*changed, *sorted(gone)])
        expected_read = {i: expected[i] for i in changed}
        self.assertEqual(differences(expected_read, read), [],
                         'read by id' + self.context())
        self.assertEqual(self.errors_logged(server), [], self.context())
        return expected

    def errors_logged(self, server: ServerProcess) -> list[str]:
        """Lines at ERROR in the log files of every server so far and on
        this one's console, and tracebacks on its stderr."""
        texts = [server.stdout]
        for path in sorted(glob.glob(self.log_file + '*')):
            with open(path, encoding='utf-8', errors='replace') as f:
                texts.append(f.read())
        lines = [line for text in texts for line in text.splitlines()
                 if any(mark in line for mark in ERROR_MARKS)]
        lines += [line for line in server.stderr.splitlines()
                  if 'Traceback' in line]
        return [line[:SHOWN_CHARS] for line in lines]


class FilesystemServerKillTest(ServerKillContract, StorageServerTestCase):
    def addr_db(self) -> dict[str, Any]:
        return {'fs': os.path.join(self.tmp, 'store')}


class SqliteServerKillTest(ServerKillContract, StorageServerTestCase):
    def addr_db(self) -> dict[str, Any]:
        return {'sqlite': os.path.join(self.tmp, 'addresses.db')}
