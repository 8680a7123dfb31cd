"""Copies every address-book entry from one store to another.

    python -m addrservice.database.copy \\
        --from configs/addressbook-sqlite.yaml \\
        --to configs/addressbook-postgres.yaml [--overwrite]

Each side is named by a config file of the service; only its `addr-db`
section is used (its `logging` section is not: the copy does not write to
the service's log files, and errors go to stderr). The source is read a
page at a time in id order, and each entry is created in the destination
under the same id.

A re-run is safe, and resumes an interrupted copy: an entry that the
destination already holds with equal content is left as it is. One that
holds different content is kept, and its id listed on stderr, unless
`--overwrite` is given, which replaces it with the source's. Entries only
in the destination are left alone.

A memory store cannot be copied from or to (a new process sees it empty,
and it is gone when the process exits), nor can a store onto itself.

On a terminal, stderr shows a progress bar. The last line on stdout
counts what was done. Exit status: 0 when every entry counted in the
source was read; 1 when some could not be (an unreadable entry, which
the source engine logs, or one deleted during the copy), or when the
copy could not run at all, which one line on stderr explains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import sys
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
    TypeVar,
)

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from addrservice.config import AddressBookConfig, ConfigError, load_config
from addrservice.database.base import LIST_BATCH, AbstractAddressBookDB
from addrservice.database.db_engines import create_addressbook_db
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
    StorageUnavailableError,
)

_T = TypeVar('_T')

PROG = 'addrservice.database.copy'

# Entries written at once. A database that syncs every commit takes
# several together in little more than the time of one: into PostgreSQL,
# 8 at once copied about three times as many entries a second as 1 (16 no
# more than 8). Below the default pool size of 10.
WRITES_AT_ONCE = 8

# Ids listed on stderr at most; the rest are counted.
MAX_LISTED_IDS = 20

# Engines whose setting is a path, and whose store a path identifies.
_PATH_ENGINES = ('fs', 'sqlite')


class CopyError(Exception):
    """The copy cannot run: a bad config, or a store that cannot be used."""


class Outcome(enum.Enum):
    COPIED = 'copied'
    UNCHANGED = 'unchanged'
    KEPT = 'kept'
    REPLACED = 'replaced'


@dataclasses.dataclass
class CopyReport:
    """What a copy did with each source entry it read."""

    copied: int = 0
    unchanged: int = 0
    kept: list[str] = dataclasses.field(default_factory=list)
    replaced: list[str] = dataclasses.field(default_factory=list)

    @property
    def read(self) -> int:
        """How many source entries were read."""
        return self.copied + self.unchanged + len(self.kept) + \
            len(self.replaced)

    def add(self, nickname: str, outcome: Outcome) -> None:
        if outcome is Outcome.COPIED:
            self.copied += 1
        elif outcome is Outcome.UNCHANGED:
            self.unchanged += 1
        elif outcome is Outcome.KEPT:
            self.kept.append(nickname)
        else:
            self.replaced.append(nickname)


async def copy_addresses(
    source: AbstractAddressBookDB,
    destination: AbstractAddressBookDB,
    overwrite: bool = False,
    progress: Callable[[int], object] | None = None,
) -> CopyReport:
    """Copy every entry of `source` into `destination` under its id.

    Both stores must be open. An entry the destination holds already is
    left alone when equal, and when it differs unless `overwrite`.
    `progress(n)` is called as each further `n` entries are done.
    """
    report = CopyReport()
    held = _Walk(destination)
    async for page in _pages(source):
        for start in range(0, len(page), WRITES_AT_ONCE):
            chunk = page[start:start + WRITES_AT_ONCE]
            found = [await held.find(nickname) for nickname, _ in chunk]
            outcomes = await _all([
                _copy_one(destination, nickname, addr, was, overwrite)
                for (nickname, addr), was in zip(chunk, found)
            ])
            for (nickname, _), outcome in zip(chunk, outcomes):
                report.add(nickname, outcome)
            if progress is not None:
                progress(len(chunk))
    return report


async def _all(work: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    """The results of `work`, run concurrently; on the first error, the
    rest are cancelled (and waited for) before it is raised."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _pages(
    db: AbstractAddressBookDB,
) -> AsyncIterator[list[tuple[str, AddressEntry]]]:
    # A page per query keeps each query of a SQL engine short, rather than
    # one cursor held open for the whole copy.
    after: str | None = None
    while True:
        page = [pair async for pair in db.read_addresses(after, LIST_BATCH)]
        if not page:
            return  # not on a short page: an engine may skip bad entries
        yield page
        after = page[-1][0]


class _Walk:
    """A store's entries, paged through in id order beside the source's.

    One listing of the destination tells which entries it holds, where a
    read or a write per entry would cost a round trip each (and on the fs
    engine, a failed create costs a synced write).
    """

    def __init__(self, db: AbstractAddressBookDB) -> None:
        self._pages = _pages(db)
        self._page: list[tuple[str, AddressEntry]] = []
        self._at = 0
        self._done = False

    async def find(self, nickname: str) -> AddressEntry | None:
        """The entry listed under `nickname`; ids asked for must ascend."""
        while not self._done:
            while self._at < len(self._page) and \
                    self._page[self._at][0] < nickname:
                self._at += 1
            if self._at < len(self._page):
                listed, addr = self._page[self._at]
                return addr if listed == nickname else None
            self._page, self._at = await anext(self._pages, []), 0
            self._done = not self._page
        return None


# What the destination holds under an id whose entry it cannot read.
_UNREADABLE = object()


async def _copy_one(
    db: AbstractAddressBookDB, nickname: str, addr: AddressEntry,
    held: object, overwrite: bool,
) -> Outcome:
    if held == addr:
        return Outcome.UNCHANGED
    if held is not None and not overwrite:
        return Outcome.KEPT
    try:
        if held is None:
            await db.create_address(addr, nickname)
            return Outcome.COPIED
        await db.update_address(nickname, addr)
        return Outcome.REPLACED
    except (AddressExistsError, AddressNotFoundError):
        # Written by someone else since listed, or unreadable and so not
        # listed: decide again on what it holds now.
        held = await _read_held(db, nickname)
        return await _copy_one(db, nickname, addr, held, overwrite)


async def _read_held(db: AbstractAddressBookDB, nickname: str) -> object:
    try:
        return await db.read_address(nickname)
    except AddressNotFoundError:
        return None
    except CorruptEntryError:
        return _UNREADABLE


def summary_line(report: CopyReport, counted: int) -> str:
    """The last line of output; `counted` is the source's count at start."""
    line = (f'{report.read} entries read: {report.copied} copied, '
            f'{report.unchanged} already identical, '
            f'{len(report.kept)} differing kept, '
            f'{len(report.replaced)} differing replaced')
    missing = counted - report.read
    if missing > 0:
        line += (f'; {missing} of {counted} counted not read (unreadable, '
                 'or deleted during the copy)')
    return line


def id_list(ids: Sequence[str], most: int = MAX_LISTED_IDS) -> str:
    """`ids` joined by commas, the ones past `most` only counted."""
    shown = ', '.join(ids[:most])
    if len(ids) > most:
        shown += f' and {len(ids) - most} more'
    return shown


def differing_lines(report: CopyReport) -> list[str]:
    """Lines for stderr naming the entries that differed, if any did."""
    lines = []
    if report.kept:
        lines.append(f'{PROG}: differing entries kept (--overwrite replaces '
                     f'them): {id_list(report.kept)}')
    if report.replaced:
        lines.append(f'{PROG}: differing entries replaced: '
                     f'{id_list(report.replaced)}')
    return lines


def parse_args(args: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f'python -m {PROG}',
        description='Copy every address-book entry from one store to '
        'another; each is named by a service config file.')
    parser.add_argument(
        '--from', dest='source', required=True, metavar='CONFIG',
        help='config of the store to copy from')
    parser.add_argument(
        '--to', dest='destination', required=True, metavar='CONFIG',
        help='config of the store to copy to')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='replace destination entries that differ from the source '
        '(default: keep them)')
    return parser.parse_args(args)


def read_config(path: str) -> AddressBookConfig:
    """The config in the file `path`; `CopyError` names the file."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as e:
        raise CopyError(f'cannot read config {path}: {e.strerror or e}') \
            from None
    with _about(path):
        return load_config(text)


def check_pair(source: AddressBookConfig, destination: AddressBookConfig,
               source_path: str, destination_path: str) -> None:
    """Refuse a memory store on either side, and a store onto itself."""
    for config, path in ((source, source_path),
                         (destination, destination_path)):
        if 'memory' in config.addr_db:
            raise CopyError(
                f'{path}: the memory engine cannot be copied from or to: '
                'a new process sees it empty, and it is gone at exit')
    if _store_identity(source.addr_db) == \
            _store_identity(destination.addr_db):
        raise CopyError(f'{source_path} and {destination_path} name the '
                        'same store; it cannot be copied onto itself')


def _store_identity(addr_db: Mapping[str, Any]) -> dict[str, Any]:
    identity = dict(addr_db)
    for engine in _PATH_ENGINES:
        if isinstance(identity.get(engine), str):
            identity[engine] = os.path.realpath(identity[engine])
    postgres = identity.get('postgres')
    if isinstance(postgres, Mapping):
        # Pool sizes do not change which data a DSN and schema reach.
        identity['postgres'] = (postgres.get('dsn'),
                                postgres.get('schema') or None)
    return identity


def build_engine(config: AddressBookConfig, path: str,
                 must_exist: bool) -> AbstractAddressBookDB:
    """The engine of `config`, not yet open; `CopyError` names the file.

    With `must_exist`, the store must be there already: an engine would
    create it empty, and a mistyped source would then copy nothing and
    succeed.
    """
    with _about(path):
        return create_addressbook_db(config.addr_db, create=not must_exist)


@contextlib.contextmanager
def _about(path: str) -> Iterator[None]:
    try:
        yield
    except (ConfigError, OSError, ValueError, StorageUnavailableError,
            CopyError) as e:
        raise CopyError(f'{path}: {e}') from e


async def run_copy(
    source: AbstractAddressBookDB, destination: AbstractAddressBookDB,
    overwrite: bool, paths: tuple[str, str],
) -> tuple[CopyReport, int]:
    """Open both stores, copy with a progress bar on a terminal, close.

    Returns the report and the source's count of entries at the start.
    """
    async with contextlib.AsyncExitStack() as stack:
        for db, path in zip((source, destination), paths):
            with _about(path):
                await db.open()
            stack.push_async_callback(db.close)
        counted = await source.count_addresses()
        with _progress_bar(counted) as bar:
            report = await copy_addresses(source, destination, overwrite,
                                          bar.update)
    return report, counted


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[tqdm[Any]]:
    on_terminal = sys.stderr.isatty()
    with tqdm(total=total, unit='entry', file=sys.stderr,
              disable=not on_terminal) as bar:
        if not on_terminal:
            yield bar
            return
        # Log lines are written above the bar rather than through it.
        with logging_redirect_tqdm():
            yield bar


def _log_errors_to_stderr() -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format='%(name)s %(levelname)s %(message)s')


def _copy(options: argparse.Namespace) -> tuple[CopyReport, int]:
    paths = (options.source, options.destination)
    source, destination = (read_config(path) for path in paths)
    check_pair(source, destination, *paths)
    engines = (build_engine(source, paths[0], must_exist=True),
               build_engine(destination, paths[1], must_exist=False))
    return asyncio.run(run_copy(*engines, options.overwrite, paths))


def main(args: Sequence[str] | None = None) -> None:
    """Copy between the stores of two configs; exit non-zero with one
    line on stderr if the copy cannot run."""
    options = parse_args(args)
    _log_errors_to_stderr()
    try:
        report, counted = _copy(options)
    except KeyboardInterrupt:
        sys.exit(f'{PROG}: interrupted; run it again to resume')
    except (CopyError, ConfigError, OSError, ValueError,
            StorageUnavailableError, CorruptEntryError) as e:
        sys.exit(f'{PROG}: {e}')
    for line in differing_lines(report):
        print(line, file=sys.stderr)
    print(summary_line(report, counted), flush=True)
    if report.read < counted:
        sys.exit(1)


if __name__ == '__main__':
    main()
