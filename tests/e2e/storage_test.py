"""End-to-end tests of the SQL engines, with real server processes.

SQLite keeps every acknowledged write across a clean restart (crash_test
kills servers amid writes); two servers on one PostgreSQL schema agree on
every acknowledged write; a server whose database does not answer exits
with one line before it binds its port.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

from data import address_data_suite
from tests.e2e.http_writers import ENTRY_PATH, Client, Document, Writer
from tests.e2e.server_test import (
    JSON_HEADERS,
    JSON_TYPE,
    REPO,
    SERVER_PY,
    ServerProcess,
    ServerTestCase,
    free_port,
)
from tests.pg import fresh_schema, pg_config

WRITERS = 8
# Writes by each writer through each server in the PostgreSQL test.
SHARED_WRITES = 25
RUN_S = 15.0
JOIN_S = 15.0
# A server that cannot reach its database must give up at least this fast.
PROMPT_EXIT_S = 5.0


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise AssertionError(f'a key twice in one JSON object: {keys}')
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f'non-strict JSON constant {name} in a response')


class StorageServerTestCase(ServerTestCase):
    def start_server(self, addr_db: Mapping[str, Any]) -> ServerProcess:
        """A server on a free port of 127.0.0.1 using the `addr_db` store."""
        port = free_port()
        return self.start(self.server_argv(addr_db, port), port)

    def server_argv(self, addr_db: Mapping[str, Any], port: int) -> list[str]:
        config = {**self.config, 'addr-db': dict(addr_db)}
        path = self.write_config(config, f'config-{port}.yaml')
        return [sys.executable, SERVER_PY, '--port', str(port),
                '--address', '127.0.0.1', '--config', path]

    def listing(self, server: ServerProcess) -> dict[str, Any]:
        """GET /addresses: a strict JSON object, in id order, no key twice."""
        r = server.request('GET', '/addresses')
        self.assertEqual((r.status, r.headers['Content-Type']),
                         (200, JSON_TYPE), r.body[:300])
        listing: dict[str, Any] = json.loads(
            r.body, object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant)
        self.assertEqual(list(listing), sorted(listing))
        return listing

    def read_each(self, server: ServerProcess,
                  ids: Iterable[str]) -> dict[str, Document | None]:
        """Each entry read alone: its document, or None for a 404."""
        client = Client(server.port)
        read: dict[str, Document | None] = {}
        try:
            for entry_id in ids:
                status, _, body = client.request('GET', ENTRY_PATH + entry_id)
                self.assertIn(status, (200, 404), body[:300])
                read[entry_id] = json.loads(body) if status == 200 else None
        finally:
            client.close()
        return read

    def join(self, writers: Sequence[Writer]) -> None:
        deadline = time.monotonic() + JOIN_S
        for writer in writers:
            writer.join(max(0.0, deadline - time.monotonic()))
        self.assertEqual([w.name for w in writers if w.is_alive()], [])

    def send(self, server: ServerProcess, method: str, entry_id: str,
             document: Any = None) -> None:
        """PUT or DELETE one entry; assert 204 and an empty body."""
        body = None if document is None else json.dumps(document).encode()
        r = server.request(method, ENTRY_PATH + entry_id, body, JSON_HEADERS)
        self.assertEqual((r.status, r.body), (204, b''))


class SqliteRestartTest(StorageServerTestCase):
    def test_acknowledged_writes_survive_restart(self) -> None:
        """After SIGINT and a restart on the same file, GET /addresses
        returns exactly the acknowledged creates, update and delete."""
        addr_db = {'sqlite': os.path.join(self.tmp, 'addresses.db')}
        server = self.start_server(addr_db)
        suite = address_data_suite()
        ids = {nickname: self.create_json(server, document)
               for nickname, document in sorted(suite.items())}
        # Untouched whatever the size of the suite.
        kept = {'full_name': 'Created Before Restart'}
        kept_id = self.create_json(server, kept)
        updated, deleted, *untouched = sorted(suite)
        renamed = {**suite[updated], 'full_name': 'Updated Before Restart'}
        self.send(server, 'PUT', ids[updated], renamed)
        self.send(server, 'DELETE', ids[deleted])
        expected = {kept_id: kept, ids[updated]: renamed,
                    **{ids[name]: suite[name] for name in untouched}}
        self.assertEqual(self.listing(server), expected)
        self.assertEqual(server.stop(), 0)

        restarted = self.start_server(addr_db)
        self.assertEqual(self.listing(restarted), expected)
        self.assertEqual(
            self.read_each(restarted, [kept_id, *ids.values()]),
            {**expected, ids[deleted]: None})
        self.assertEqual(restarted.stop(), 0)

    def create_json(self, server: ServerProcess, document: Any) -> str:
        return self.create(server, json.dumps(document).encode()).rsplit(
            '/', 1)[1]


class PostgresSharedTest(StorageServerTestCase):
    def test_two_servers_agree_on_every_acknowledged_write(self) -> None:
        """With 8 writers through each of two servers on one schema, every
        acknowledged write reads back through both, none lost or doubled."""
        addr_db = pg_config(fresh_schema(self))
        servers = [self.start_server(addr_db), self.start_server(addr_db)]
        seed = random.randrange(2 ** 32)
        writers = self.write_through_both(servers, seed)
        self.assertEqual(
            [(w.problems, w.disconnected, w.in_flight, w.acks)
             for w in writers],
            [([], None, None, SHARED_WRITES)] * len(writers), f'seed {seed}')

        created = [i for w in writers for i in w.created]
        deleted = {i for w in writers for i in w.deleted}
        self.assertEqual(len(set(created)), len(created))
        last_write = {i: doc for w in writers for i, doc in w.acked.items()}
        expected = {i: last_write[i] for i in created if i not in deleted}
        for server in servers:
            self.assertEqual(self.listing(server), expected, server.port)
            self.assertEqual(self.read_each(server, created),
                             {i: expected.get(i) for i in created},
                             server.port)
        self.assertEqual([s.stop() for s in servers], [0, 0])

    def write_through_both(self, servers: Sequence[ServerProcess],
                           seed: int) -> list[Writer]:
        """Run WRITERS writers through each server, each reading every
        acknowledged write back through the other server."""
        stop = threading.Event()
        self.addCleanup(stop.set)
        deadline = time.monotonic() + RUN_S
        a, b = servers
        writers = [
            Writer(f'{name}w{i}', server.port, {}, seed=seed + n * WRITERS + i,
                   stop=stop, writes=SHARED_WRITES, deadline=deadline,
                   check_port=other.port)
            for n, (name, server, other) in enumerate([('a', a, b),
                                                       ('b', b, a)])
            for i in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        self.join(writers)
        return writers


class UnreachableDatabaseTest(StorageServerTestCase):
    def test_unreachable_postgres_exits_before_binding(self) -> None:
        """With PostgreSQL unreachable, the server exits 1 promptly with one
        `addrservice:` line and no traceback, and never binds its port."""
        closed, port = free_port(), free_port()
        addr_db = {'postgres': {
            'dsn': f'postgresql://postgres@127.0.0.1:{closed}/test',
            'min_size': 1, 'max_size': 2}}
        started = time.monotonic()
        proc = subprocess.Popen(self.server_argv(addr_db, port), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        accepted = _accepts_until_exit(proc, port, PROMPT_EXIT_S)
        stdout, stderr = proc.communicate(timeout=PROMPT_EXIT_S)
        elapsed = time.monotonic() - started

        self.assertEqual(proc.returncode, 1, stderr)
        self.assertLess(elapsed, PROMPT_EXIT_S)
        self.assertFalse(accepted, 'the server accepted a connection')
        self.assertNotIn('STARTING', stdout)
        self.assertNotIn('Traceback', stderr)
        self.assertEqual(
            stderr.splitlines(),
            [f'addrservice: cannot connect to PostgreSQL at '
             f'127.0.0.1:{closed}/test: Connection refused'])

    def test_ctrl_c_while_waiting_for_the_store(self) -> None:
        """Ctrl-C while the server waits for a locked SQLite file ends it
        with one line and status 130, without a traceback."""
        path = os.path.join(self.tmp, 'locked.sqlite3')
        sqlite3.connect(path).close()
        lock = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(lock.close)
        lock.execute('BEGIN EXCLUSIVE')
        proc = subprocess.Popen(
            self.server_argv({'sqlite': path}, free_port()), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # start-up now waits for the lock, for up to 5 s
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=PROMPT_EXIT_S + 5)
        self.assertEqual(
            (proc.returncode, stderr),
            (128 + signal.SIGINT, 'addrservice: interrupted while starting\n'))
        self.assertNotIn('STARTING', stdout)


def _accepts_until_exit(proc: subprocess.Popen[str], port: int,
                        timeout: float) -> bool:
    """Whether `port` accepted a connection before `proc` exited."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), 0.1).close()
        except OSError:
            time.sleep(0.002)
        else:
            return True
    if proc.poll() is None:
        proc.kill()
    return False
