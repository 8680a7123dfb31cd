"""Builds the storage engine that the `addr-db` config section names.

    addr-db: {memory: null}
    addr-db: {fs: DIRECTORY}
    addr-db: {sqlite: FILE}
    addr-db: {postgres: {dsn: DSN, min_size: 1, max_size: 10, schema: NAME}}

Relative paths are relative to the working directory of the process.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB

# Connections a PostgreSQL pool keeps open at least and at most.
PG_MIN_SIZE = 1
PG_MAX_SIZE = 10


def _memory(setting: Any) -> AbstractAddressBookDB:
    return InMemoryAddressBookDB()


def _fs(setting: Any) -> AbstractAddressBookDB:
    return FilesystemAddressBookDB(_path(setting, 'fs', 'a directory path'))


def _sqlite(setting: Any) -> AbstractAddressBookDB:
    # Imported here: a process only loads the driver of its own engine.
    from addrservice.database.sqlite import SqliteAddressBookDB
    return SqliteAddressBookDB(_path(setting, 'sqlite', 'a file path'))


def _postgres(setting: Any) -> AbstractAddressBookDB:
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
    )


ENGINES: dict[str, Callable[[Any], AbstractAddressBookDB]] = {
    'memory': _memory,
    'fs': _fs,
    'sqlite': _sqlite,
    'postgres': _postgres,
}


def create_addressbook_db(
    addr_db_config: Mapping[str, Any],
) -> AbstractAddressBookDB:
    """The engine for `{memory: null}`, `{fs: DIR}`, `{sqlite: FILE}` or
    `{postgres: {dsn: ...}}`."""
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


def _path(setting: Any, engine: str, what: str) -> str:
    if not isinstance(setting, str) or not setting:
        raise ValueError(
            f"Config 'addr-db.{engine}' must be {what}, not {setting!r}"
        )
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
