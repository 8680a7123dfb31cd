"""`./run.py soak`: many clients on one server for a while, then a check
that the store holds exactly what the server acknowledged.

The server runs as a user runs it (see `rig`). Each client is a
keep-alive connection that creates, reads, replaces and deletes entries
of its own (their ids are its alone, so it knows what each must hold)
and lists the first page, as fast as the server answers, until the time
is up. Every document written is distinct: the reference entries of
data/addresses with the client's name and a sequence number in
`full_name`.

Afterwards every id a client wrote is read back: the last acknowledged
POST or PUT must be what GET returns, every acknowledged DELETE must
give 404, and the full listing must hold exactly the live entries. A
write that got no reply may or may not have happened; either outcome
is accepted for it.

It fails (exit status 1) on any 5xx, any request that got no reply or
an unexpected status, any lost write, or when the server's RSS grew by
more than 10% from the end of the first 10 s to the end.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import random
import tempfile
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence

from benchmarks import rig
from benchmarks.client import Connection, Reply, TransportError
from benchmarks.tables import count, markdown_table, mib, ms, percentile

# Each client keeps between these many entries of its own alive.
MIN_LIVE = 3
MAX_LIVE = 20
# Operations, by how often they are chosen.
OP_WEIGHTS = {'get': 40, 'put': 20, 'post': 15, 'delete': 15, 'list': 10}
EXPECTED_STATUS = {'get': 200, 'put': 204, 'post': 201, 'delete': 204,
                   'list': 200}
LIST_PATH = '/addresses?limit=100'
# RSS is compared from the end of this warm-up to the end of the run.
WARM_UP_S = 10.0
MAX_RSS_GROWTH = 0.10
# RSS is also sampled this many times during the run, at 10 s or more
# apart, to tell a leak from a plateau.
RSS_SAMPLES = 12
# Problems quoted in the report; the rest are only counted.
QUOTED = 5


class Unreadable(str):
    """What a read-back gave instead of an entry or a 404."""


@dataclasses.dataclass
class Journal:
    """What one client's writes should have left in the store."""

    #: id -> the document of its last acknowledged POST or PUT
    live: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ids whose DELETE was acknowledged
    deleted: set[str] = dataclasses.field(default_factory=set)
    #: id -> what it may hold (None: nothing) after a write with no reply
    doubtful: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    #: documents of POSTs with no reply: stored under some id, or not
    unplaced: list[Any] = dataclasses.field(default_factory=list)

    def in_doubt(self, entry_id: str, new: Any) -> None:
        """A write of `new` (None: a delete) got no reply."""
        self.doubtful[entry_id] = [self.live.pop(entry_id), new]

    def ids(self) -> list[str]:
        return [*self.live, *self.deleted, *self.doubtful]


@dataclasses.dataclass
class Tally:
    """What the requests of a run got."""

    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))
    statuses: collections.Counter[int] = dataclasses.field(
        default_factory=collections.Counter)
    transport: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport.values())

    def all_latencies(self) -> list[float]:
        return sorted(t for ts in self.latencies.values() for t in ts)


@dataclasses.dataclass
class SoakResult:
    engine: str
    clients: int
    seconds: float
    tally: Tally
    #: the server's RSS from the end of the warm-up on, every `rss_every`
    rss_samples: list[int] = dataclasses.field(default_factory=list)
    rss_every: float = WARM_UP_S
    rss_end: int | None = None
    verified: Mapping[str, int] = dataclasses.field(default_factory=dict)
    lost: list[str] = dataclasses.field(default_factory=list)
    server_exit: int | None = 0
    #: CPU seconds the server and this process (the clients) used
    cpu: tuple[float, float] = (0.0, 0.0)
    #: when, on what, and which code
    context: str = ''

    @property
    def rss_warm(self) -> int | None:
        return self.rss_samples[0] if self.rss_samples else None

    @property
    def rss_growth(self) -> float | None:
        if self.rss_warm is None or self.rss_end is None:
            return None
        return (self.rss_end - self.rss_warm) / self.rss_warm


def choose_op(rng: random.Random, live: int) -> str:
    """The next operation of a client that has `live` entries."""
    if live < MIN_LIVE:
        return 'post'
    op = rng.choices(list(OP_WEIGHTS), list(OP_WEIGHTS.values()))[0]
    return 'delete' if op == 'post' and live >= MAX_LIVE else op


def entry_path(entry_id: str) -> str:
    return f'/addresses/{entry_id}'


def created_id(reply: Reply) -> str:
    return reply.headers['location'].rsplit('/', 1)[1]


class SoakClient:
    """One connection doing mixed CRUD on entries of its own."""

    def __init__(self, name: str, port: int,
                 templates: Sequence[Mapping[str, Any]], tally: Tally) -> None:
        self.name = name
        self.conn = Connection(port)
        self.templates = templates
        self.tally = tally
        self.journal = Journal()
        self.rng = random.Random(name)
        self.writes = 0
        self.ops: dict[str, Callable[[], Awaitable[None]]] = {
            'get': self.get, 'put': self.put, 'post': self.post,
            'delete': self.delete, 'list': self.list_page}

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await self.ops[choose_op(self.rng, len(self.journal.live))]()
        self.conn.close()

    def document(self) -> dict[str, Any]:
        """A document no other write sends."""
        self.writes += 1
        template = self.templates[self.writes % len(self.templates)]
        name = f"{template['full_name']} {self.name} #{self.writes}"
        return {**template, 'full_name': name}

    async def call(self, op: str, method: str, path: str,
                   document: Any = None) -> Reply | None:
        """The reply if it has the status `op` expects; else None, with
        what went wrong in the tally."""
        body = None if document is None else json.dumps(document).encode()
        started = time.perf_counter()
        try:
            reply = await self.conn.request(method, path, body)
        except TransportError as e:
            self.tally.transport[str(e)] += 1
            return None
        self.tally.latencies[op].append(time.perf_counter() - started)
        self.tally.statuses[reply.status] += 1
        if reply.status != EXPECTED_STATUS[op]:
            self.tally.unexpected.append(
                f'{method} {path}: {reply.status} {reply.body[:200]!r}')
            return None
        return reply

    async def post(self) -> None:
        document = self.document()
        reply = await self.call('post', 'POST', '/addresses', document)
        if reply is None:
            self.journal.unplaced.append(document)
        else:
            self.journal.live[created_id(reply)] = document

    async def get(self) -> None:
        entry_id = self.rng.choice(list(self.journal.live))
        reply = await self.call('get', 'GET', entry_path(entry_id))
        if reply is not None and reply.json() != self.journal.live[entry_id]:
            self.tally.stale.append(
                f'GET {entry_id}: not its last acknowledged write')

    async def put(self) -> None:
        entry_id = self.rng.choice(list(self.journal.live))
        document = self.document()
        if await self.call('put', 'PUT', entry_path(entry_id), document):
            self.journal.live[entry_id] = document
        else:
            self.journal.in_doubt(entry_id, document)

    async def delete(self) -> None:
        entry_id = self.rng.choice(list(self.journal.live))
        if await self.call('delete', 'DELETE', entry_path(entry_id)):
            del self.journal.live[entry_id]
            self.journal.deleted.add(entry_id)
        else:
            self.journal.in_doubt(entry_id, None)

    async def list_page(self) -> None:
        await self.call('list', 'GET', LIST_PATH)


def verify(journals: Sequence[Journal], found: Mapping[str, Any],
           listing: Mapping[str, Any]) -> list[str]:
    """Lost writes: where `found` (id -> what GET gave, None for 404)
    or `listing` (the full listing) differ from the `journals`."""
    problems = []
    for journal in journals:
        for entry_id, document in journal.live.items():
            if found.get(entry_id) != document:
                problems.append(f'{entry_id}: acknowledged write lost, '
                                f'GET gives {_brief(found.get(entry_id))}')
        for entry_id in sorted(journal.deleted):
            if found.get(entry_id) is not None:
                problems.append(f'{entry_id}: acknowledged delete undone, '
                                f'GET gives {_brief(found[entry_id])}')
        for entry_id, options in journal.doubtful.items():
            if found.get(entry_id) not in options:
                problems.append(f'{entry_id}: neither before nor after its '
                                f'unanswered write: '
                                f'{_brief(found.get(entry_id))}')
    return problems + verify_listing(journals, found, listing)


def verify_listing(journals: Sequence[Journal], found: Mapping[str, Any],
                   listing: Mapping[str, Any]) -> list[str]:
    """The listing must hold the live entries as they read, and nothing
    else but documents of POSTs that got no reply."""
    expected = {i: d for j in journals for i, d in j.live.items()}
    expected.update({i: found[i] for j in journals for i in j.doubtful
                     if found.get(i) is not None})
    unplaced = [d for j in journals for d in j.unplaced]
    problems = [f'{i}: missing from the listing'
                for i in sorted(expected.keys() - listing.keys())]
    problems += [f'{i}: listed as {_brief(listing[i])}'
                 for i in sorted(expected.keys() & listing.keys())
                 if listing[i] != expected[i]]
    for entry_id in sorted(listing.keys() - expected.keys()):
        if listing[entry_id] in unplaced:
            unplaced.remove(listing[entry_id])
        else:
            problems.append(f'{entry_id}: listed, never acknowledged')
    return problems


def _brief(document: Any) -> str:
    if document is None:
        return '404'
    if isinstance(document, Mapping):
        return repr(document.get('full_name'))
    return str(document)


async def read_back(conn: Connection, ids: Sequence[str],
                    found: dict[str, Any]) -> None:
    """What GET gives for each of `ids`, into `found`."""
    for entry_id in ids:
        try:
            reply = await conn.request('GET', entry_path(entry_id))
        except TransportError as e:
            found[entry_id] = Unreadable(f'no reply ({e})')
            continue
        found[entry_id] = _as_found(reply)
    conn.close()


def _as_found(reply: Reply) -> Any:
    """The entry a GET gave, None for 404, else what it gave instead."""
    if reply.status == 200:
        return reply.json()
    if reply.status == 404:
        return None
    return Unreadable(f'status {reply.status}')


async def check_store(port: int, clients: Sequence[SoakClient]) -> list[str]:
    """Read back every id the clients wrote, and the full listing."""
    found: dict[str, Any] = {}
    await asyncio.gather(*(
        read_back(Connection(port), client.journal.ids(), found)
        for client in clients))
    conn = Connection(port)
    try:
        reply = await conn.request('GET', '/addresses')
    except TransportError as e:
        return [f'GET /addresses: no reply ({e})']
    finally:
        conn.close()
    if reply.status != 200:
        return [f'GET /addresses: status {reply.status}']
    journals = [client.journal for client in clients]
    return verify(journals, found, reply.json())


async def soak(server: rig.Server, engine: str, seconds: float,
               clients: int) -> SoakResult:
    """Load `server` with `clients` for `seconds`, then check the store."""
    tally = Tally()
    templates = rig.templates()
    soakers = [SoakClient(f'c{i}', server.port, templates, tally)
               for i in range(clients)]
    started = time.monotonic()
    deadline = started + seconds
    result = SoakResult(engine, clients, seconds, tally)
    result.rss_every = max(WARM_UP_S, seconds / RSS_SAMPLES)
    sampler = asyncio.create_task(_sample_rss(
        server, started + WARM_UP_S, result.rss_every, result.rss_samples))
    cpu_before = server.cpu_seconds(), time.process_time()
    await asyncio.gather(*(c.run(deadline) for c in soakers))
    result.seconds = time.monotonic() - started
    result.cpu = (server.cpu_seconds() - cpu_before[0],
                  time.process_time() - cpu_before[1])
    sampler.cancel()
    result.rss_end = server.rss()
    result.lost = await check_store(server.port, soakers)
    result.verified = _verified(soakers)
    return result


async def _sample_rss(server: rig.Server, first: float, every: float,
                      samples: list[int]) -> None:
    """Append the server's RSS to `samples` at `first`, then `every`
    seconds, until cancelled."""
    at = first
    while True:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        samples.append(server.rss())
        at += every


def _verified(clients: Sequence[SoakClient]) -> dict[str, int]:
    journals = [c.journal for c in clients]
    return {
        'live entries': sum(len(j.live) for j in journals),
        'acknowledged deletes': sum(len(j.deleted) for j in journals),
        'writes without a reply': sum(len(j.doubtful) + len(j.unplaced)
                                      for j in journals),
    }


def failures(result: SoakResult) -> list[str]:
    """Why the run failed; empty if it passed."""
    tally = result.tally
    reasons = []
    errors = sum(n for status, n in tally.statuses.items() if status >= 500)
    checks = [
        (errors, 'responses with a 5xx status'),
        (sum(tally.transport.values()), 'requests without a reply'),
        (len(tally.unexpected), 'responses with an unexpected status'),
        (len(tally.stale), 'reads that missed an acknowledged write'),
        (len(result.lost), 'lost writes'),
    ]
    reasons += [f'{n:,} {what}' for n, what in checks if n]
    growth = result.rss_growth
    if growth is not None and growth > MAX_RSS_GROWTH:
        reasons.append(f'server RSS grew {growth:.1%} after the first '
                       f'{WARM_UP_S:.0f} s (limit {MAX_RSS_GROWTH:.0%})')
    if result.server_exit != 0:
        reasons.append(f'server exited with status {result.server_exit}')
    return reasons


def render(result: SoakResult) -> str:
    """The report: figures, then operations, then the verdict."""
    tally = result.tally
    ordered = tally.all_latencies()
    rows = [
        ['requests', count(tally.requests)],
        ['requests/s', f'{tally.requests / result.seconds:,.0f}'],
        ['latency p50 / p99', f'{ms(percentile(ordered, 50))} ms / '
                              f'{ms(percentile(ordered, 99))} ms'],
        ['responses by status', _by_key(tally.statuses) or 'none'],
        ['transport errors', _by_key(tally.transport) or '0'],
        ['server RSS at 10 s / at end', _rss(result)],
        [f'server RSS every {result.rss_every:.0f} s from 10 s',
         _rss_series(result)],
        ['CPU used: server / clients', _cpu(result)],
        *[[name, count(n)] for name, n in result.verified.items()],
        ['reads that missed an acknowledged write',
         count(len(tally.stale))],
        ['lost writes (checked after the run)', count(len(result.lost))],
    ]
    title = (f'## Soak: {result.engine}, {result.clients} clients, '
             f'{result.seconds:.0f} s')
    parts = [title, *([result.context] if result.context else []),
             markdown_table(['figure', 'value'], rows),
             _operations_table(tally), _verdict(result)]
    return '\n\n'.join(parts) + '\n'


def _by_key(counter: collections.Counter[Any]) -> str:
    return ', '.join(f'{key}: {n:,}' for key, n in sorted(counter.items()))


def _rss(result: SoakResult) -> str:
    if result.rss_end is None:
        return '-'
    end = mib(result.rss_end)
    if result.rss_warm is None or result.rss_growth is None:
        return f'- / {end} (run shorter than {WARM_UP_S:.0f} s)'
    return f'{mib(result.rss_warm)} / {end} ({result.rss_growth:+.1%})'


def _rss_series(result: SoakResult) -> str:
    if not result.rss_samples:
        return '-'
    values = ', '.join(f'{n / 2 ** 20:.1f}' for n in result.rss_samples)
    return f'{values} MiB'


def _cpu(result: SoakResult) -> str:
    server, clients = (f'{s:.0f} s ({s / result.seconds:.0%})'
                       for s in result.cpu)
    return f'{server} / {clients}'


def _operations_table(tally: Tally) -> str:
    rows = []
    for op in EXPECTED_STATUS:
        ordered = sorted(tally.latencies.get(op, []))
        rows.append([_op_name(op), count(len(ordered)),
                     ms(percentile(ordered, 50)), ms(percentile(ordered, 99))])
    return markdown_table(['operation', 'requests:', 'p50 ms:', 'p99 ms:'],
                          rows)


def _op_name(op: str) -> str:
    return {'get': 'GET /addresses/{id}', 'put': 'PUT /addresses/{id}',
            'post': 'POST /addresses', 'delete': 'DELETE /addresses/{id}',
            'list': f'GET {LIST_PATH}'}[op]


def _verdict(result: SoakResult) -> str:
    reasons = failures(result)
    if not reasons:
        return '**PASS**: no 5xx, no lost write, RSS within ' \
            f'{MAX_RSS_GROWTH:.0%}.'
    tally = result.tally
    quoted = [*tally.unexpected[:QUOTED], *tally.stale[:QUOTED],
              *result.lost[:QUOTED]]
    lines = [f'**FAIL**: {"; ".join(reasons)}.']
    lines += [f'- {line}' for line in quoted]
    return '\n'.join(lines)


def soak_server(seconds: float, engine: str, clients: int) -> SoakResult:
    """Start a server of `engine`, soak it, stop it."""
    with tempfile.TemporaryDirectory(prefix='addrservice-soak-') as workdir, \
            rig.engine_config(engine, workdir, 'addrservice_soak_') as config:
        with rig.service_server(config, workdir) as server:
            result = asyncio.run(soak(server, engine, seconds, clients))
            result.server_exit = server.stop()
    return result


def describe_run(seconds: float, engine: str, clients: int) -> str:
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    return (f'`./run.py soak --seconds {seconds:g} --engine {engine} '
            f'--clients {clients}`, finished {started}; addrservice '
            f'{rig.revision()}; {rig.machine()}.')


def run_soak(seconds: float, engine: str, clients: int) -> int:
    """Soak a server of `engine`; print the report; 0 if it passed."""
    if engine == 'postgres':
        reason = rig.pg_unavailable(rig.pg_dsn())
        if reason is not None:
            print(f'soak: {reason}')
            return 2
    try:
        result = soak_server(seconds, engine, clients)
    except RuntimeError as e:  # the server did not start
        print(f'soak: {e}')
        return 1
    result.context = describe_run(seconds, engine, clients)
    print(render(result), end='')
    return 1 if failures(result) else 0
