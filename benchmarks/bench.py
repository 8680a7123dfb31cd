"""`./run.py bench`: requests/s and latency of each endpoint, per engine,
as ratios to bare Tornado serving the same bytes.

For each engine (memory, fs, sqlite, and postgres when a server answers
at the shipped config's DSN) a server runs as a user runs it (see
`rig`), one process writing its canonical log line to a file on every
request, and wrk (1 thread, 16 connections, after a short warm-up)
drives in turn:

- with 1,000 stored entries: `GET /addresses/{id}`, `GET
  /addresses?limit=100`, `GET /addresses` and `PUT /addresses/{id}`;
- with 10,000: `GET /addresses`;
- with 100,000: `GET /addresses/{id}`, then `POST /addresses`.

`bare.py`, serving the same entry's JSON, is measured before and after
each engine: the better of the two is the floor every figure of the
engine is a ratio to (other work on the machine can only lower it). The
full listings run on one
connection: with 16, every request of a long listing would be in flight
at once, and none might finish within the run. The memory engine's RSS
is read after each growth of the store, for its RSS per stored entry.

The table goes to stdout and to `benchmarks/results.md`. Exit status: 2
if wrk is missing, 1 if a request failed, else 0 (whether or not the
targets are met).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from typing import Any, Sequence

import asyncpg
import tornado

from benchmarks import books, rig, wrk
from benchmarks.bench_report import (
    DEFAULT,
    GET_ID,
    LIST,
    PAGE,
    PAGE_SIZE,
    POST,
    PUT,
    QUICK,
    EngineRun,
    Figure,
    Plan,
    render,
)
from benchmarks.client import Connection, TransportError

RESULTS = os.path.join(rig.REPO, 'benchmarks', 'results.md')
# Ids a run cycles through: enough that no single entry stays hot.
SAMPLE_IDS = 1_000
# The longest wrk run, however slow the requests.
MAX_RUN_S = 60
# A request this fast means the server has no backlog left.
SETTLED_S = 0.05
SETTLE_LIMIT_S = 120.0


class Bench:
    """One run of the plan, in a work directory of its own."""

    def __init__(self, plan: Plan, workdir: str) -> None:
        self.plan = plan
        self.workdir = workdir
        self.templates = rig.templates()
        self.entry = books.entry_bytes(self.templates[0])
        self.body_file = self._write('body.json',
                                     json.dumps(self.templates[0]).encode())
        self.bare = self._start_bare()
        self.last_floor: wrk.WrkResult | None = None

    def close(self) -> None:
        self.bare.stop()

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def _start_bare(self) -> rig.Server:
        """bare.py, with the memory engine's config for its logging."""
        workdir = os.path.join(self.workdir, 'bare')
        os.mkdir(workdir)
        config = rig.adapt_config(rig.shipped_config('memory'), workdir)
        port = rig.free_port()
        server = rig.Server(
            [sys.executable, '-m', 'benchmarks.bare', '--port', str(port),
             '--config', rig.write_config(config, workdir),
             '--body', self._write('entry.json', self.entry)],
            port, workdir)
        server.start()
        return server

    def floor(self) -> wrk.WrkResult:
        """The bare server's `GET /addresses/{id}`, on ids of no entry."""
        ids = [uuid.uuid4().hex for _ in range(SAMPLE_IDS)]
        ids_file = self._write('bare-ids.txt', '\n'.join(ids).encode())
        return self.measure(self.bare.port, wrk.Load(ids_file=ids_file),
                            ids[0])

    def measure(self, port: int, load: wrk.Load,
                settle_id: str) -> wrk.WrkResult:
        per_reply = asyncio.run(warm_up(port, load, self.plan.warm_up_s))
        result = wrk.run(port, load, run_seconds(self.plan, per_reply))
        asyncio.run(settle(port, settle_id))
        return result

    def run_engine(self, engine: str) -> EngineRun:
        started = time.monotonic()
        before = self.last_floor or self.floor()
        run = EngineRun(engine, floor=before)
        self.measure_engine(run)
        self.last_floor = self.floor()
        run.floor = max(before, self.last_floor, key=lambda r: r.rps)
        run.figures = [dataclasses.replace(f, floor_rps=run.floor.rps)
                       for f in run.figures]
        run.seconds = time.monotonic() - started
        return run

    def measure_engine(self, run: EngineRun) -> None:
        workdir = os.path.join(self.workdir, run.engine)
        os.mkdir(workdir)
        with rig.engine_config(run.engine, workdir, 'addrservice_bench_') \
                as config, \
                books.make_book(run.engine, config, workdir,
                                self.templates) as book:
            steps = ((self.plan.small, (GET_ID, PAGE, LIST, PUT)),
                     (self.plan.listing, (LIST,)),
                     (self.plan.large, (GET_ID,)))
            for stored, requests in steps:
                self.step(run, book, stored, requests)
            run.figures.append(self.figure(run, book, POST))

    def step(self, run: EngineRun, book: books.Book, stored: int,
             requests: Sequence[str]) -> None:
        """Grow the book to `stored` entries, then measure `requests`."""
        loading = time.monotonic()
        book.grow_to(stored)
        run.load_seconds += time.monotonic() - loading
        # Before the requests: what a long listing allocates for a while
        # is not the store's.
        run.rss[stored] = book.rss()
        self.check_entry(run, book)
        for request in requests:
            run.figures.append(self.figure(run, book, request))

    def check_entry(self, run: EngineRun, book: books.Book) -> None:
        """Note it if the service's bytes differ from the floor's."""
        reply = asyncio.run(get(book.port, book.ids_of_first()[0]))
        if reply != self.entry:
            run.notes.append(f'GET gives {len(reply)} bytes, the floor '
                             f'serves {len(self.entry)}')

    def figure(self, run: EngineRun, book: books.Book,
               request: str) -> Figure:
        candidates = book.ids_of_first()
        ids = random.sample(candidates, min(SAMPLE_IDS, len(candidates)))
        load = self.load(request, self._write(
            'ids.txt', '\n'.join(ids).encode()))
        result = self.measure(book.port, load, ids[0])
        returned = {LIST: len(book.ids), PAGE: PAGE_SIZE}.get(request, 0)
        return Figure(request, len(book.ids), result, run.floor.rps,
                      returned)

    def load(self, request: str, ids_file: str) -> wrk.Load:
        return {
            GET_ID: wrk.Load(ids_file=ids_file),
            PUT: wrk.Load('PUT', body_file=self.body_file,
                          ids_file=ids_file),
            POST: wrk.Load('POST', body_file=self.body_file),
            LIST: wrk.Load(connections=1),
            PAGE: wrk.Load(path=f'/addresses?limit={PAGE_SIZE}'),
        }[request]


async def get(port: int, entry_id: str) -> bytes:
    conn = Connection(port)
    try:
        return (await conn.request('GET', f'/addresses/{entry_id}')).body
    finally:
        conn.close()


def run_seconds(plan: Plan, per_reply_s: float) -> int:
    """How long wrk runs, when a connection gets a reply every
    `per_reply_s`: whole seconds, as wrk takes them."""
    wanted = math.ceil(plan.min_replies * per_reply_s)
    return max(plan.seconds, min(MAX_RUN_S, wanted))


async def warm_up(port: int, load: wrk.Load, seconds: float) -> float:
    """Send `load` for `seconds`, as wrk will, and wait for every reply;
    the time between two replies on one connection."""
    body = None
    if load.body_file is not None:
        with open(load.body_file, 'rb') as body_file:
            body = body_file.read()
    paths = [load.path]
    if load.ids_file is not None:
        with open(load.ids_file, encoding='ascii') as ids:
            paths = [f'/addresses/{line.strip()}' for line in ids]
    started = time.monotonic()
    deadline = started + seconds

    async def client(offset: int) -> int:
        conn = Connection(port, timeout=wrk.TIMEOUT_S)
        replies = 0
        try:
            while time.monotonic() < deadline:
                await conn.request(load.method,
                                   paths[offset % len(paths)], body)
                offset += load.connections
                replies += 1
        finally:
            conn.close()
        return replies

    replies = await asyncio.gather(*(
        client(i) for i in range(load.connections)))
    elapsed = time.monotonic() - started
    return elapsed * load.connections / max(1, sum(replies))


async def settle(port: int, entry_id: str) -> None:
    """Return once a GET is answered at once: wrk leaves requests in
    flight, which the server still works through after it stops."""
    conn = Connection(port, timeout=SETTLE_LIMIT_S)
    deadline = time.monotonic() + SETTLE_LIMIT_S
    try:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            await conn.request('GET', f'/addresses/{entry_id}')
            if time.monotonic() - sent < SETTLED_S:
                return
    finally:
        conn.close()


def reachable(engines: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The engines to run, and why others are skipped."""
    skipped = {}
    if 'postgres' in engines:
        reason = rig.pg_unavailable(rig.pg_dsn())
        if reason is not None:
            skipped['postgres'] = reason
    return [e for e in engines if e not in skipped], skipped


def versions(engines: Sequence[str]) -> str:
    found = [
        f'addrservice {rig.revision()}',
        f'Python {platform.python_version()}',
        f'Tornado {tornado.version}',
        f'wrk {wrk.version()}',
        f'SQLite {sqlite3.sqlite_version}',
    ]
    if 'postgres' in engines:
        found += [f'PostgreSQL {rig.pg_server_version(rig.pg_dsn())}',
                  f'asyncpg {asyncpg.__version__}']
    return ', '.join(found)


def run_bench(quick: bool, engines: Sequence[str]) -> int:
    """Run the plan; print the table and write it to `RESULTS`."""
    reason = wrk.missing()
    if reason is not None:
        print(f'bench: {reason}', file=sys.stderr)
        return 2
    plan = QUICK if quick else DEFAULT
    to_run, skipped = reachable(engines)
    context: dict[str, Any] = {
        'started': time.time(), 'load_before': os.getloadavg()[0],
        'machine': rig.machine(), 'versions': versions(to_run)}
    runs, failed = run_engines(plan, to_run)
    context['elapsed'] = time.time() - context['started']
    context['load_after'] = os.getloadavg()[0]
    text = render(plan, runs, {**skipped, **failed}, context)
    print(text, end='')
    with open(RESULTS, 'w', encoding='utf-8') as f:
        f.write(text)
    errors = any(f.result.errors for r in runs for f in r.figures)
    return 1 if errors or failed else 0


def run_engines(plan: Plan, engines: Sequence[str]
                ) -> tuple[list[EngineRun], dict[str, str]]:
    """The figures of each engine, and why any could not be taken."""
    runs, failed = [], {}
    with tempfile.TemporaryDirectory(prefix='addrservice-bench-') as tmp:
        bench = Bench(plan, tmp)
        try:
            for engine in engines:
                print(f'bench: {engine}...', file=sys.stderr, flush=True)
                try:
                    runs.append(bench.run_engine(engine))
                except (RuntimeError, OSError, TransportError) as e:
                    failed[engine] = f'failed: {e}'
        finally:
            bench.close()
    return runs, failed
