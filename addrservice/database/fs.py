"""File-backed storage: one JSON file per entry in a directory.

Durability: every write goes to a temporary file in the same directory,
is fsynced, then moved into place (`os.link` for a create, so that only
one of several concurrent creators of a nickname wins, even across
processes; `os.replace` for an update), and the directory is fsynced.
A crash at any moment leaves the old or the new file, never a partial
one; temporary leftovers are dot-files ending in `.tmp`, never listed.

Blocking file I/O runs in threads. Mutations go through one writer
thread, which makes each check-then-write atomic within this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, TypeVar

from addrservice import LOGGER_NAME
from addrservice.database.base import (
    NICKNAME_PATTERN,
    AbstractAddressBookDB,
    existing_nickname,
    new_nickname,
)
from addrservice.datamodel import AddressEntry
from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    CorruptEntryError,
)
from addrservice.utils import logutils, strictjson

_T = TypeVar('_T')

SUFFIX = '.json'

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
        await self._in_writer(self._link_new, nickname, _encode(addr))
        return nickname

    async def read_address(self, nickname: str) -> AddressEntry:
        path = self._path(existing_nickname(nickname))
        return await asyncio.to_thread(_read_entry, nickname, path)

    async def update_address(self, nickname: str, addr: AddressEntry) -> None:
        existing_nickname(nickname)
        await self._in_writer(self._replace, nickname, _encode(addr))

    async def delete_address(self, nickname: str) -> None:
        existing_nickname(nickname)
        await self._in_writer(self._unlink, nickname)

    async def read_all_addresses(
        self,
    ) -> AsyncIterator[tuple[str, AddressEntry]]:
        nicknames = await asyncio.to_thread(self._list_nicknames)
        for start in range(0, len(nicknames), _LIST_BATCH):
            batch = nicknames[start:start + _LIST_BATCH]
            for pair in await asyncio.to_thread(self._read_batch, batch):
                yield pair

    def _path(self, nickname: str) -> str:
        return os.path.join(self._store, nickname + SUFFIX)

    # The file operations below block; they run in threads.

    def _link_new(self, nickname: str, data: bytes) -> None:
        temp = self._write_temp(nickname, data)
        try:
            os.link(temp, self._path(nickname))
        except FileExistsError:
            raise AddressExistsError(nickname) from None
        finally:
            os.unlink(temp)
        _fsync_dir(self._store)

    def _replace(self, nickname: str, data: bytes) -> None:
        path = self._path(nickname)
        if not os.path.exists(path):
            raise AddressNotFoundError(nickname)
        temp = self._write_temp(nickname, data)
        try:
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        _fsync_dir(self._store)

    def _unlink(self, nickname: str) -> None:
        try:
            os.unlink(self._path(nickname))
        except FileNotFoundError:
            raise AddressNotFoundError(nickname) from None
        _fsync_dir(self._store)

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

    def _list_nicknames(self) -> list[str]:
        names = (
            name[:-len(SUFFIX)] for name in os.listdir(self._store)
            if name.endswith(SUFFIX)
        )
        return sorted(n for n in names if NICKNAME_PATTERN.match(n))

    def _read_batch(
        self, nicknames: list[str]
    ) -> list[tuple[str, AddressEntry]]:
        pairs = []
        for nickname in nicknames:
            path = self._path(nickname)
            try:
                pairs.append((nickname, _read_entry(nickname, path)))
            except AddressNotFoundError:
                pass  # deleted since it was listed
            except (OSError, CorruptEntryError) as e:
                _log_unreadable(path, e)
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
        return await loop.run_in_executor(self._writer, write, *args)


def _writable_directory(store_dir: str) -> str:
    store = os.path.abspath(store_dir)
    try:
        os.makedirs(store, exist_ok=True)
    except OSError:
        pass  # reported below, with the reason that matters to a user
    if not (os.path.isdir(store) and os.access(store, os.W_OK)):
        raise ValueError(f'Store "{store}" is not a writable directory')
    return store


def _encode(addr: AddressEntry) -> bytes:
    return strictjson.dumps(addr.to_api_dm()).encode('utf-8')


def _read_entry(nickname: str, path: str) -> AddressEntry:
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise AddressNotFoundError(nickname) from None
    try:
        return AddressEntry.from_api_dm(strictjson.loads(data))
    except ValueError as e:
        raise CorruptEntryError(f'{path}: {e}') from None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _log_unreadable(path: str, error: Exception) -> None:
    logutils.log(
        logging.getLogger(LOGGER_NAME), logging.ERROR,
        message='UNREADABLE ENTRY', file=path, error=str(error),
    )
