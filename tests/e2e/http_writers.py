"""Concurrent HTTP writers for the storage end-to-end tests.

Each `Writer` is a thread with its own keep-alive connection. It creates,
updates and deletes only its own entries, and records what the server
acknowledged and the one write, if any, that was still in flight when it
stopped. Every document it sends is distinct (its full name carries the
writer's name and a sequence number), so a stored entry shows which
write it came from. Journals hold whole documents, which the tests
compare whole; `fingerprint` names one in a message.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from tests.e2e.fs_writer import LARGE_EVERY, canonical_sha, make_document

ENTRY_PATH = '/addresses/'
LOCATION_RE = re.compile(r'/addresses/([0-9a-f]{32})\Z')
JSON_HEADERS = {'Content-Type': 'application/json'}
TIMEOUT_S = 10.0
# A writer keeps at least this many entries of its own to update.
MIN_LIVE = 3

Document = dict[str, Any]


def fingerprint(document: Any) -> str:
    """The full name (unique per write) and a hash of the whole entry."""
    return f"{document['full_name']} {canonical_sha(document)[:16]}"


class Client:
    """One keep-alive HTTP connection to a server on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection('127.0.0.1', port,
                                               timeout=TIMEOUT_S)

    def request(self, method: str, path: str, document: Any = None
                ) -> tuple[int, http.client.HTTPMessage, bytes]:
        body = None if document is None else json.dumps(document).encode()
        self.conn.request(method, path, body,
                          JSON_HEADERS if body is not None else {})
        r = self.conn.getresponse()
        return r.status, r.headers, r.read()

    def close(self) -> None:
        self.conn.close()


class Write(NamedTuple):
    """One request: POST (no id yet), PUT or DELETE (no document)."""

    method: str
    entry_id: str | None
    document: Document | None


class Writer(threading.Thread):
    """Writes to the server on `port` until `stop`, `writes` or `deadline`.

    `acked` maps each of its entry ids to the document of its last
    acknowledged write (None once a delete was acknowledged); it starts
    as `owned`. A network error ends the thread with its write left in
    `in_flight` and the error in `disconnected`; any other surprise ends
    it with a line in `problems`.
    With `check_port`, each acknowledged write is read back at once
    through that server.
    """

    def __init__(self, name: str, port: int,
                 owned: Mapping[str, Document], *, seed: int,
                 stop: threading.Event, writes: int, deadline: float,
                 check_port: int | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.port, self.check_port = port, check_port
        self.rng = random.Random(seed)
        self.stop_event, self.writes, self.deadline = stop, writes, deadline
        self.acked: dict[str, Document | None] = dict(owned)
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.in_flight: Write | None = None
        self.problems: list[str] = []
        self.disconnected: str | None = None
        self.acks = 0

    def run(self) -> None:
        client = Client(self.port)
        checker = None if self.check_port is None else Client(self.check_port)
        try:
            self._loop(client, checker)
        except (OSError, http.client.HTTPException) as e:
            self.disconnected = repr(e)
        except Exception as e:  # reported by the test, not the thread hook
            self.problems.append(f'{type(e).__name__}: {e}')
        finally:
            client.close()
            if checker is not None:
                checker.close()

    def _loop(self, client: Client, checker: Client | None) -> None:
        for seq in range(self.writes):
            if self.stop_event.is_set() or time.monotonic() > self.deadline:
                return
            self.in_flight = write = self._next_write(seq)
            entry_id = self._send(client, write)
            if entry_id is None:
                return
            self._record(write, entry_id)
            self.in_flight = None
            if checker is not None and not self._read_back(checker,
                                                           entry_id):
                return

    def _next_write(self, seq: int) -> Write:
        live = [i for i, doc in self.acked.items() if doc is not None]
        roll = self.rng.random()
        if len(live) < MIN_LIVE or roll < 0.4:
            return Write('POST', None, self._document(seq))
        entry_id = self.rng.choice(live)
        if roll < 0.85:
            return Write('PUT', entry_id, self._document(seq))
        return Write('DELETE', entry_id, None)

    def _document(self, seq: int) -> Document:
        large = self.rng.randrange(LARGE_EVERY) == 0
        return make_document(self.name, seq, large)

    def _send(self, client: Client, write: Write) -> str | None:
        """The acknowledged entry's id, or None after noting a problem."""
        path = '/addresses' if write.entry_id is None \
            else ENTRY_PATH + write.entry_id
        status, headers, body = client.request(
            write.method, path, write.document)
        if status != (201 if write.method == 'POST' else 204):
            self.problems.append(f'{write.method} {path}: {status} '
                                 f'{body[:300]!r}')
            return None
        if write.method != 'POST':
            return write.entry_id
        match = LOCATION_RE.match(headers.get('Location', ''))
        if match is None:
            self.problems.append(f'POST: Location {headers["Location"]!r}')
            return None
        return match.group(1)

    def _record(self, write: Write, entry_id: str) -> None:
        self.acked[entry_id] = write.document
        self.acks += 1
        if write.method == 'POST':
            self.created.append(entry_id)
        elif write.method == 'DELETE':
            self.deleted.append(entry_id)

    def _read_back(self, checker: Client, entry_id: str) -> bool:
        status, _, body = checker.request('GET', ENTRY_PATH + entry_id)
        expected = self.acked[entry_id]
        seen = json.loads(body) if status == 200 else None
        if (status, seen) == ((200, expected) if expected else (404, None)):
            return True
        self.problems.append(f'read back {entry_id} on {self.check_port}: '
                             f'{status} {_name(seen)}, '
                             f'expected {_name(expected)}')
        return False


class Settled(NamedTuple):
    """What a store must hold after a crash, and what became of each
    write in flight ('PUT applied', 'DELETE not applied', ...)."""

    expected: dict[str, Document]
    outcomes: list[str]


def settle(writers: Sequence[Writer],
           stored: Mapping[str, Document]) -> Settled:
    """Every acknowledged write, and each write in flight either applied
    or not: applied where `stored` shows its result, else not applied
    (so that anything else the store holds shows up as a difference)."""
    expected = {entry_id: document for w in writers
                for entry_id, document in w.acked.items()
                if document is not None}
    known = {entry_id for w in writers for entry_id in w.acked}
    outcomes = []
    for write in in_flight(writers):
        entry_id = applied_as(write, stored, known)
        outcomes.append(f'{write.method} '
                        f'{"not applied" if entry_id is None else "applied"}')
        if entry_id is None:
            continue
        if write.document is None:
            expected.pop(entry_id, None)
        else:
            expected[entry_id] = write.document
    return Settled(expected, outcomes)


def in_flight(writers: Sequence[Writer]) -> Iterator[Write]:
    return (w.in_flight for w in writers if w.in_flight is not None)


def applied_as(write: Write, stored: Mapping[str, Document],
               known: set[str]) -> str | None:
    """The id under which `stored` shows `write` applied, or None."""
    if write.entry_id is None:  # a create, whose id was never seen
        return next((entry_id for entry_id, document in stored.items()
                     if entry_id not in known
                     and document == write.document), None)
    if write.document is None:  # a delete
        return None if write.entry_id in stored else write.entry_id
    return write.entry_id if stored.get(write.entry_id) == write.document \
        else None


def _name(document: Document | None) -> str | None:
    return None if document is None else fingerprint(document)
