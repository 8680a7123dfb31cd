"""Builds the storage engine that the `addr-db` config section names.

    addr-db: {memory: null}
    addr-db: {fs: DIRECTORY}
    addr-db: {sqlite: FILE}
    addr-db: {postgres: {dsn: DSN, min_size: 1, max_size: 10, schema: NAME}}

Relative paths are relative to the working directory of the process.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB

# Connections a PostgreSQL pool keeps open at least and at most.
PG_MIN_SIZE = 1
PG_MAX_SIZE = 10


def _memory(setting: Any, create: bool) -> AbstractAddressBookDB:
    return InMemoryAddressBookDB()


def _fs(setting: Any, create: bool) -> AbstractAddressBookDB:
    path = _path(setting, 'fs', 'a directory path', create)
    return FilesystemAddressBookDB(path)


def _sqlite(setting: Any, create: bool) -> AbstractAddressBookDB:
    # Imported here: a process only loads the driver of its own engine.
    from addrservice.database.sqlite import SqliteAddressBookDB
    return SqliteAddressBookDB(_path(setting, 'sqlite', 'a file path', create))


def _postgres(setting: Any, create: bool) -> AbstractAddressBookDB:
    from addrservice.database.postgres import PostgresAddressBookDB
    if not isinstance(setting, Mapping):
        # Not the value itself: a DSN given here may hold a password.
        raise ValueError(
            "Config 'addr-db.postgres' must be a mapping with a 'dsn', "
            f'not a {type(setting).__name__}'
        )
    unknown = sorted(set(setting) - {'dsn', 'min_size', 'max_size', 'schema'})
    if unknown:
        raise ValueError(
            f"Config 'addr-db.postgres' has unknown key(s): "
            f"{', '.join(map(str, unknown))}"
        )
    min_size = _int(setting, 'min_size', PG_MIN_SIZE, least=0)
    return PostgresAddressBookDB(
        dsn=str(_string(setting, 'dsn', required=True)),
        min_size=min_size,
        max_size=_int(setting, 'max_size', max(PG_MAX_SIZE, min_size),
                      least=max(min_size, 1)),
        schema=_string(setting, 'schema', required=False),
        create=create,
    )


ENGINES: dict[str, Callable[[Any, bool], AbstractAddressBookDB]] = {
    'memory': _memory,
    'fs': _fs,
    'sqlite': _sqlite,
    'postgres': _postgres,
}


def create_addressbook_db(
    addr_db_config: Mapping[str, Any], create: bool = True,
) -> AbstractAddressBookDB:
    """The engine for `{memory: null}`, `{fs: DIR}`, `{sqlite: FILE}` or
    `{postgres: {dsn: ...}}`.

    With `create` False, a store that does not exist yet is refused rather
    than created empty (for PostgreSQL, when it is opened): for reading a
    store whose name a typo would otherwise turn into an empty new one.
    """
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
    return ENGINES[engine](setting, create)


def _path(setting: Any, engine: str, what: str, create: bool) -> str:
    if not isinstance(setting, str) or not setting:
        raise ValueError(
            f"Config 'addr-db.{engine}' must be {what}, not {setting!r}"
        )
    if not create and not os.path.exists(setting):
        raise ValueError(f'store {setting} does not exist')
    return setting


def _string(setting: Mapping[str, Any], key: str,
            required: bool) -> str | None:
    if key not in setting:
        if required:
            raise ValueError(f"Config 'addr-db.postgres.{key}' is missing, "
                             'and has no default.')
        return None
    value = setting[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"Config 'addr-db.postgres.{key}' must be a "
                         f'non-empty string, not {value!r}')
    return value


def _int(setting: Mapping[str, Any], key: str, default: int,
         least: int) -> int:
    value = setting.get(key, default)
    if type(value) is not int or value < least:
        raise ValueError(f"Config 'addr-db.postgres.{key}' must be an "
                         f'integer of at least {least}, not {value!r}')
    return value
