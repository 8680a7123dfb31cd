"""File-backed storage: one JSON file per entry in a directory.

Each file holds `{"version": N, "entry": {...}}`, the entry in its API
form. A file that holds a bare entry (as the first release wrote) reads
as version 1.

Durability: every write goes to a temporary file in the same directory,
is fsynced, then moved into place (`os.link` for a create, so that only
one of several concurrent creators of a nickname wins, even across
processes; `os.replace` for an update), and the directory is fsynced.
A crash at any moment leaves the old or the new file, never a partial
one; temporary leftovers are dot-files ending in `.tmp`, never listed.

Blocking file I/O runs in threads. Mutations go through one writer
thread, and each holds an exclusive `flock` on the file `.lock` in the
store while it runs, which makes each check-then-write atomic across
processes too (the server's `--workers`): no update is lost, no delete
undone by an update in flight, and a conditional write (with an expected
version) sees the version it replaces.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, TypeVar

from addrservice.database.base import (
    NICKNAME_PATTERN,
    AbstractAddressBookDB,
    StoredEntry,
    check_version,
    existing_nickname,
    log_unreadable,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
    StorageUnavailableError,
    VersionConflictError,
)
from addrservice.utils import strictjson

_T = TypeVar('_T')

SUFFIX = '.json'
LOCK_FILE = '.lock'

# Files read per hop to a thread while listing.
_LIST_BATCH = 64


class FilesystemAddressBookDB(AbstractAddressBookDB):
    """Entries as `<nickname>.json` files in the directory `.store`."""

    def __init__(self, store_dir: str) -> None:
        self._store = _writable_directory(store_dir)
        self._writer: ThreadPoolExecutor | None = None

    @property
    def store(self) -> str:
        return self._store

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    async def create_address(
        self, addr: AddressEntry, nickname: str | None = None
    ) -> str:
        nickname = new_nickname(nickname)
        await self._in_writer(self._link_new, nickname, _encode(addr, 1))
        return nickname

    async def read_entry(self, nickname: str) -> StoredEntry:
        path = self._path(existing_nickname(nickname))
        return await asyncio.to_thread(_read_entry, nickname, path)

    async def update_address(
        self, nickname: str, addr: AddressEntry,
        expected_version: int | None = None,
    ) -> int:
        existing_nickname(nickname)
        return await self._in_writer(
            self._replace, nickname, addr, expected_version)

    async def delete_address(
        self, nickname: str, expected_version: int | None = None
    ) -> None:
        existing_nickname(nickname)
        await self._in_writer(self._unlink, nickname, expected_version)

    async def read_addresses(
        self, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        nicknames = await asyncio.to_thread(self._list_nicknames, after)
        left = len(nicknames) if limit is None else limit
        start = 0
        # Files deleted or unreadable since listed are skipped, so a page
        # may need more than `limit` names.
        while left > 0 and start < len(nicknames):
            batch = nicknames[start:start + min(left, _LIST_BATCH)]
            start += len(batch)
            for pair in await asyncio.to_thread(self._read_batch, batch):
                yield pair
                left -= 1

    async def count_addresses(self) -> int:
        return len(await asyncio.to_thread(self._list_nicknames, None))

    async def ping(self) -> None:
        # Listing a large store to count it would cost far more.
        if not await asyncio.to_thread(_usable_directory, self._store):
            raise StorageUnavailableError(
                f'{self._store} is no longer a writable directory')

    def _path(self, nickname: str) -> str:
        return os.path.join(self._store, nickname + SUFFIX)

    # The file operations below block; they run in threads. The writes
    # run under the store's lock, which other processes take too, so that
    # a version checked is still the version when the file is replaced.

    def _link_new(self, nickname: str, data: bytes) -> None:
        temp = self._write_temp(nickname, data)
        try:
            os.link(temp, self._path(nickname))
        except FileExistsError:
            raise AddressExistsError(nickname) from None
        finally:
            os.unlink(temp)
        _fsync_dir(self._store)

    def _replace(
        self, nickname: str, addr: AddressEntry, expected: int | None
    ) -> int:
        path = self._path(nickname)
        version = self._stored_version(nickname, expected) + 1
        temp = self._write_temp(nickname, _encode(addr, version))
        try:
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        _fsync_dir(self._store)
        return version

    def _unlink(self, nickname: str, expected: int | None) -> None:
        if expected is not None:
            self._stored_version(nickname, expected)
        try:
            os.unlink(self._path(nickname))
        except FileNotFoundError:
            raise AddressNotFoundError(nickname) from None
        _fsync_dir(self._store)

    def _stored_version(self, nickname: str, expected: int | None) -> int:
        """The entry's version, checked against `expected`; 0 for a
        corrupt entry, which only an unconditional write may repair."""
        path = self._path(nickname)
        try:
            stored = _read_entry(nickname, path).version
        except CorruptEntryError as e:
            log_unreadable(path, e)
            if expected is not None:
                raise VersionConflictError(
                    f'{nickname!r} is unreadable, not at version '
                    f'{expected}') from None
            return 0
        check_version(nickname, stored, expected)
        return stored

    def _write_temp(self, nickname: str, data: bytes) -> str:
        fd, temp = tempfile.mkstemp(
            dir=self._store, prefix=f'.{nickname}.', suffix='.tmp'
        )
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(temp)
            raise
        return temp

    def _list_nicknames(self, after: str | None) -> list[str]:
        names = (
            name[:-len(SUFFIX)] for name in os.listdir(self._store)
            if name.endswith(SUFFIX)
        )
        return sorted(
            n for n in names
            if NICKNAME_PATTERN.match(n) and (after is None or n > after)
        )

    def _read_batch(
        self, nicknames: list[str]
    ) -> list[tuple[str, AddressEntry]]:
        pairs = []
        for nickname in nicknames:
            path = self._path(nickname)
            try:
                pairs.append((nickname, _read_entry(nickname, path).entry))
            except AddressNotFoundError:
                pass  # deleted since it was listed
            except (OSError, CorruptEntryError) as e:
                log_unreadable(path, e)
        return pairs

    async def _in_writer(
        self, write: Callable[..., _T], *args: object
    ) -> _T:
        """Run `write` in the one writer thread of this store."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix='addrservice-fs-writer'
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, self._locked, write, *args)

    def _locked(self, write: Callable[..., _T], *args: object) -> _T:
        """`write(*args)` while holding the store's lock."""
        fd = os.open(os.path.join(self._store, LOCK_FILE),
                     os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return write(*args)
        finally:
            os.close(fd)  # releases the lock


def _usable_directory(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.R_OK | os.W_OK | os.X_OK)


def _writable_directory(store_dir: str) -> str:
    store = os.path.abspath(store_dir)
    try:
        os.makedirs(store, exist_ok=True)
    except OSError:
        pass  # reported below, with the reason that matters to a user
    if not (os.path.isdir(store) and os.access(store, os.W_OK)):
        raise ValueError(f'Store "{store}" is not a writable directory')
    return store


def _encode(addr: AddressEntry, version: int) -> bytes:
    document = {'version': version, 'entry': addr.to_api_dm()}
    return strictjson.dumps(document).encode('utf-8')


def _read_entry(nickname: str, path: str) -> StoredEntry:
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise AddressNotFoundError(nickname) from None
    try:
        return _decode(strictjson.loads(data))
    except ValueError as e:
        raise CorruptEntryError(f'{path}: {e}') from None


def _decode(document: Any) -> StoredEntry:
    if isinstance(document, dict) and 'version' in document:
        version = document['version']
        if type(version) is not int or version < 1 \
                or set(document) != {'version', 'entry'}:
            raise ValueError(f'not a versioned entry: {sorted(document)}')
        return StoredEntry(AddressEntry.from_api_dm(document['entry']),
                           version)
    # A bare entry, as the first release stored it.
    return StoredEntry(AddressEntry.from_api_dm(document), 1)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
