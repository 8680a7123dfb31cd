"""Builds the storage engine that the `addr-db` config section names."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB


def _memory(setting: Any) -> AbstractAddressBookDB:
    return InMemoryAddressBookDB()


def _fs(setting: Any) -> AbstractAddressBookDB:
    if not isinstance(setting, str) or not setting:
        raise ValueError(
            f"Config 'addr-db.fs' must be a directory path, not {setting!r}"
        )
    return FilesystemAddressBookDB(setting)


ENGINES: dict[str, Callable[[Any], AbstractAddressBookDB]] = {
    'memory': _memory,
    'fs': _fs,
}


def create_addressbook_db(
    addr_db_config: Mapping[str, Any],
) -> AbstractAddressBookDB:
    """The engine for `{memory: null}` or `{fs: PATH}`."""
    supported = ', '.join(ENGINES)
    if not isinstance(addr_db_config, Mapping) or len(addr_db_config) != 1:
        raise ValueError(
            f"Config 'addr-db' must name exactly one engine of: {supported}"
        )
    [(engine, setting)] = addr_db_config.items()
    if engine not in ENGINES:
        raise ValueError(
            f"Unknown addr-db engine {engine!r}; supported: {supported}"
        )
    return ENGINES[engine](setting)
