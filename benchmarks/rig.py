"""The service as a user runs it, for the load commands.

Each server is a subprocess (`python -m addrservice`) with the engine's
shipped config from `configs/`, adapted so that nothing outside a
temporary directory is touched: the store (a directory or an SQLite
file, or for PostgreSQL a fresh schema, dropped afterwards) and the log
file live there, and the console output goes to /dev/null. It listens on
a free port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator, Sequence

import asyncpg
import yaml

from addrservice.database.postgres import (
    dsn_location,
    failure_reason,
    quote_ident,
)
from data import address_data_suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHIPPED_CONFIGS = {
    'memory': 'addressbook-local.yaml',
    'fs': 'addressbook-fs.yaml',
    'sqlite': 'addressbook-sqlite.yaml',
    'postgres': 'addressbook-postgres.yaml',
}

# Opening a PostgreSQL pool or recovering an SQLite WAL can take a while.
START_S = 30.0
STOP_S = 30.0
PG_PROBE_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def templates() -> list[dict[str, Any]]:
    """The reference entries (data/addresses/*.json), in file order."""
    return list(address_data_suite().values())


def shipped_config(engine: str) -> dict[str, Any]:
    path = os.path.join(REPO, 'configs', SHIPPED_CONFIGS[engine])
    with open(path, encoding='utf-8') as f:
        config: dict[str, Any] = yaml.safe_load(f)
    return config


def adapt_config(config: dict[str, Any], workdir: str,
                 pg_schema: str | None = None) -> dict[str, Any]:
    """`config` with its log file and store in `workdir` (or, for
    PostgreSQL, in the schema `pg_schema`)."""
    adapted = copy.deepcopy(config)
    handlers = adapted['logging']['handlers']
    handlers['file']['filename'] = os.path.join(workdir, 'addrservice.log')
    [(engine, setting)] = adapted['addr-db'].items()
    if engine == 'fs':
        adapted['addr-db'] = {'fs': os.path.join(workdir, 'store')}
    elif engine == 'sqlite':
        adapted['addr-db'] = {
            'sqlite': os.path.join(workdir, 'addressbook.sqlite3')}
    elif engine == 'postgres':
        adapted['addr-db'] = {'postgres': {**setting, 'schema': pg_schema}}
    return adapted


def write_config(config: dict[str, Any], workdir: str) -> str:
    path = os.path.join(workdir, 'config.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(config, f)
    return path


def pg_dsn() -> str:
    """The DSN of the shipped PostgreSQL config."""
    return str(shipped_config('postgres')['addr-db']['postgres']['dsn'])


def pg_unavailable(dsn: str) -> str | None:
    """Why no PostgreSQL answers at `dsn`, or None if one does."""

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=PG_PROBE_S)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, ValueError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as e:
        return f'no PostgreSQL answers at {dsn_location(dsn)}: ' \
            f'{failure_reason(e)}'
    return None


def pg_server_version(dsn: str) -> str:
    async def fetch() -> str:
        connection = await asyncpg.connect(dsn, timeout=PG_PROBE_S)
        try:
            return str(await connection.fetchval('SHOW server_version'))
        finally:
            await connection.close()

    return asyncio.run(fetch())


def drop_pg_schema(dsn: str, schema: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(dsn, timeout=PG_PROBE_S)
        try:
            await connection.execute(
                f'DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


@contextlib.contextmanager
def engine_config(engine: str, workdir: str,
                  prefix: str) -> Iterator[dict[str, Any]]:
    """The adapted shipped config of `engine`. For PostgreSQL, its schema
    is named `prefix`, the pid and a random suffix, and dropped on exit."""
    schema = None
    if engine == 'postgres':
        schema = f'{prefix}{os.getpid()}_{secrets.token_hex(4)}'
    try:
        yield adapt_config(shipped_config(engine), workdir, schema)
    finally:
        if schema is not None:
            drop_pg_schema(pg_dsn(), schema)


def parse_vmrss(status: str) -> int:
    """The resident set size in bytes, from /proc/PID/status text."""
    for line in status.splitlines():
        if line.startswith('VmRSS:'):
            value, unit = line.split()[1:3]
            if unit != 'kB':
                raise ValueError(f'unexpected VmRSS unit: {line!r}')
            return int(value) * 1024
    raise ValueError('no VmRSS line')


def parse_cpu_seconds(stat: str) -> float:
    """User plus system CPU seconds, from /proc/PID/stat text."""
    # Fields after the command name, which is in parentheses and may
    # hold spaces; utime and stime are the 14th and 15th fields.
    fields = stat.rsplit(')', 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf('SC_CLK_TCK')


class Server:
    """A server subprocess on `port`; stderr is kept in `workdir`."""

    def __init__(self, argv: Sequence[str], port: int, workdir: str) -> None:
        self.argv = list(argv)
        self.port = port
        self.stderr_path = os.path.join(workdir, f'server-{port}.stderr')
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start it; return once it accepts connections."""
        with open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'server exited {self.proc.returncode}: '
                                   f'{self.stderr()}')
            if self._accepts():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f'server not ready in {START_S:.0f} s')

    def stop(self) -> int | None:
        """SIGINT, as Ctrl-C would; its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # hung: the figures are void anyway
            return self.proc.wait()

    def rss(self) -> int:
        """Its resident set size in bytes."""
        assert self.proc is not None
        with open(f'/proc/{self.proc.pid}/status', encoding='ascii') as f:
            return parse_vmrss(f.read())

    def cpu_seconds(self) -> float:
        """The user and system CPU time it has used so far."""
        assert self.proc is not None
        with open(f'/proc/{self.proc.pid}/stat', encoding='ascii') as f:
            return parse_cpu_seconds(f.read())

    def stderr(self) -> str:
        with open(self.stderr_path, encoding='utf-8',
                  errors='replace') as f:
            return f.read().strip()

    def _accepts(self) -> bool:
        try:
            socket.create_connection(('127.0.0.1', self.port), 1).close()
        except OSError:
            return False
        return True


def service_server(config: dict[str, Any], workdir: str) -> Server:
    """`python -m addrservice -c CONFIG` on a free port of 127.0.0.1."""
    port = free_port()
    argv = [sys.executable, '-m', 'addrservice', '-c',
            write_config(config, workdir), '-p', str(port),
            '--address', '127.0.0.1']
    return Server(argv, port, workdir)


def machine() -> str:
    """Cores, CPU model, memory and kernel."""
    model = 'unknown CPU'
    with open('/proc/cpuinfo', encoding='utf-8') as cpuinfo:
        for line in cpuinfo:
            if line.startswith('model name'):
                model = ' '.join(line.split(':', 1)[1].split())
                break
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return (f'{os.cpu_count()} cores ({model}), {memory / 2 ** 30:.1f} GiB, '
            f'Linux {platform.release()}')


def revision() -> str:
    """The commit checked out, marked if addrservice/ has changes."""
    def git(*args: str) -> str:
        return subprocess.run(['git', *args], cwd=REPO, text=True,
                              capture_output=True).stdout.strip()

    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    changed = git('status', '--porcelain', '--', 'addrservice')
    return f'{commit} with uncommitted changes' if changed else commit
