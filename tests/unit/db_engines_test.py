"""create_addressbook_db builds the one engine the addr-db section names."""

from __future__ import annotations

import os
import tempfile
import unittest
from typing import Any

from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.db_engines import create_addressbook_db
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB
from addrservice.database.postgres import PostgresAddressBookDB
from addrservice.database.sqlite import SqliteAddressBookDB

SUPPORTED = 'memory, fs, sqlite, postgres'
ONE_ENGINE = f"Config 'addr-db' must name exactly one engine of: {SUPPORTED}"
DSN = 'postgresql://postgres@127.0.0.1:5432/test'


class CreateAddressBookDBTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-test-')
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name

    def test_memory(self) -> None:
        """{memory: null} gives an empty in-memory engine."""
        db = create_addressbook_db({'memory': None})
        self.assertIsInstance(db, InMemoryAddressBookDB)
        self.assertIsInstance(db, AbstractAddressBookDB)
        assert isinstance(db, InMemoryAddressBookDB)
        self.assertEqual(db.db, {})

    def test_each_call_builds_a_new_engine(self) -> None:
        """Two calls give two engines that share no entries."""
        first = create_addressbook_db({'memory': None})
        self.assertIsNot(first, create_addressbook_db({'memory': None}))

    def test_fs_store_is_the_absolute_path(self) -> None:
        """{fs: relative/path} stores in that directory, made absolute."""
        store = os.path.join(self.tmp, 'nested', 'store')
        db = create_addressbook_db({'fs': os.path.relpath(store)})
        self.assertIsInstance(db, FilesystemAddressBookDB)
        assert isinstance(db, FilesystemAddressBookDB)
        self.addCleanup(db.stop)
        self.assertEqual(db.store, os.path.abspath(store))
        self.assertTrue(os.path.isabs(db.store))
        self.assertTrue(os.path.isdir(store))

    def test_fs_store_is_normalised(self) -> None:
        """A path with '..' in it is stored normalised."""
        path = os.path.join(self.tmp, 'a', '..', 'store')
        db = create_addressbook_db({'fs': path})
        assert isinstance(db, FilesystemAddressBookDB)
        self.addCleanup(db.stop)
        self.assertEqual(db.store, os.path.join(self.tmp, 'store'))

    def test_unknown_engine(self) -> None:
        """An unknown engine is refused, naming the supported ones."""
        with self.assertRaises(ValueError) as cm:
            create_addressbook_db({'mongodb': 'book'})
        self.assertEqual(
            str(cm.exception),
            f"Unknown addr-db engine 'mongodb'; supported: {SUPPORTED}")

    def test_not_exactly_one_engine(self) -> None:
        """Two engines, none, or a section not a mapping are refused."""
        cases: dict[str, Any] = {
            'two engines': {'memory': None, 'fs': self.tmp},
            'empty mapping': {},
            'None': None,
            'string': 'memory',
            'list': ['memory'],
            'list of pairs': [('memory', None)],
        }
        for case, section in cases.items():
            with self.subTest(case):
                with self.assertRaises(ValueError) as cm:
                    create_addressbook_db(section)
                self.assertEqual(str(cm.exception), ONE_ENGINE)

    def test_fs_path_must_be_a_string(self) -> None:
        """fs given a number, null, a list or '' is refused."""
        for setting in (123, None, [self.tmp], ''):
            with self.subTest(setting=setting):
                with self.assertRaises(ValueError) as cm:
                    create_addressbook_db({'fs': setting})
                self.assertEqual(
                    str(cm.exception),
                    f"Config 'addr-db.fs' must be a directory path, "
                    f"not {setting!r}")

    def test_sqlite(self) -> None:
        """{sqlite: FILE} gives the SQLite engine; FILE must be a path."""
        path = os.path.join(self.tmp, 'book.sqlite3')
        self.assertIsInstance(create_addressbook_db({'sqlite': path}),
                              SqliteAddressBookDB)
        for setting in (123, None, ''):
            with self.subTest(setting=setting):
                with self.assertRaises(ValueError) as cm:
                    create_addressbook_db({'sqlite': setting})
                self.assertEqual(
                    str(cm.exception),
                    f"Config 'addr-db.sqlite' must be a file path, "
                    f"not {setting!r}")

    def test_missing_store_refused_without_create(self) -> None:
        """With create=False, a file or directory store that does not
        exist is refused, and not made."""
        for engine in ('fs', 'sqlite'):
            with self.subTest(engine=engine):
                path = os.path.join(self.tmp, f'no-{engine}')
                with self.assertRaises(ValueError) as cm:
                    create_addressbook_db({engine: path}, create=False)
                self.assertEqual(str(cm.exception),
                                 f'store {path} does not exist')
                self.assertFalse(os.path.exists(path))

    def test_postgres(self) -> None:
        """{postgres: {dsn: ...}} gives the PostgreSQL engine; nothing
        connects until it is opened."""
        db = create_addressbook_db({'postgres': {'dsn': DSN}})
        self.assertIsInstance(db, PostgresAddressBookDB)
        db = create_addressbook_db({'postgres': {
            'dsn': DSN, 'min_size': 0, 'max_size': 1, 'schema': 'x'}})
        self.assertIsInstance(db, PostgresAddressBookDB)

    def test_postgres_settings_are_checked(self) -> None:
        """Each unusable postgres setting is refused, by its key."""
        key = "Config 'addr-db.postgres"
        cases: dict[str, tuple[Any, str]] = {
            'not a mapping': (DSN, f"{key}' must be a mapping with a 'dsn', "
                                   'not a str'),
            'no dsn': ({}, f"{key}.dsn' is missing, and has no default."),
            'empty dsn': ({'dsn': ''}, f"{key}.dsn' must be a non-empty "
                                       "string, not ''"),
            'unknown key': ({'dsn': DSN, 'pool': 3, 'host': 'h'},
                            f"{key}' has unknown key(s): host, pool"),
            'min_size < 0': ({'dsn': DSN, 'min_size': -1},
                             f"{key}.min_size' must be an integer of at "
                             'least 0, not -1'),
            'max_size < min_size': (
                {'dsn': DSN, 'min_size': 5, 'max_size': 4},
                f"{key}.max_size' must be an integer of at least 5, not 4"),
            'max_size 0': ({'dsn': DSN, 'min_size': 0, 'max_size': 0},
                           f"{key}.max_size' must be an integer of at "
                           'least 1, not 0'),
            'max_size a string': ({'dsn': DSN, 'max_size': '4'},
                                  f"{key}.max_size' must be an integer of "
                                  "at least 1, not '4'"),
            'schema a number': ({'dsn': DSN, 'schema': 7},
                                f"{key}.schema' must be a non-empty "
                                'string, not 7'),
        }
        for case, (setting, message) in cases.items():
            with self.subTest(case):
                with self.assertRaises(ValueError) as cm:
                    create_addressbook_db({'postgres': setting})
                self.assertEqual(str(cm.exception), message)

    def test_fs_path_that_is_a_file(self) -> None:
        """fs naming an existing file rather than a directory is refused."""
        path = os.path.join(self.tmp, 'file.json')
        with open(path, 'w', encoding='utf-8') as f:
            f.write('{}')
        with self.assertRaises(ValueError) as cm:
            create_addressbook_db({'fs': path})
        self.assertEqual(str(cm.exception),
                         f'Store "{path}" is not a writable directory')


if __name__ == '__main__':
    unittest.main()
