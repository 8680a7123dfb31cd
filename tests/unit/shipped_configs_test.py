"""The ready configs in configs/: one per engine, each usable as shipped."""

from __future__ import annotations

import os
import subprocess
import unittest

import yaml

from addrservice.config import AddressBookConfig, AuthConfig, load_config
from addrservice.database.db_engines import ENGINES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, 'configs')


def shipped(name: str) -> AddressBookConfig:
    with open(os.path.join(CONFIGS, name), encoding='utf-8') as f:
        return load_config(f.read())


class ShippedConfigsTest(unittest.TestCase):
    def test_every_engine_has_a_config(self) -> None:
        """configs/ holds a config for each engine, and nothing else."""
        engines = {
            name: next(iter(shipped(name).addr_db))
            for name in os.listdir(CONFIGS) if name.endswith('.yaml')
        }
        self.assertEqual(engines, {
            'addressbook-local.yaml': 'memory',
            'addressbook-fs.yaml': 'fs',
            'addressbook-sqlite.yaml': 'sqlite',
            'addressbook-postgres.yaml': 'postgres',
            'addressbook-production.yaml': 'sqlite',
        })
        self.assertEqual(set(engines.values()), set(ENGINES))

    def test_make_run_stores_in_an_ignored_file_of_the_repo(self) -> None:
        """`make run` uses SQLite in var/, which git ignores."""
        with open(os.path.join(REPO, 'Makefile'), encoding='utf-8') as f:
            self.assertIn('CONFIG ?= configs/addressbook-sqlite.yaml\n',
                          f.read())
        path = shipped('addressbook-sqlite.yaml').addr_db['sqlite']
        self.assertEqual(path, 'var/addressbook.sqlite3')
        ignored = subprocess.run(
            ['git', 'check-ignore', '--no-index', path], cwd=REPO,
            capture_output=True, text=True, check=False)
        self.assertEqual(ignored.stdout.strip(), path)

    def test_postgres_config(self) -> None:
        """The PostgreSQL config names the local server and a schema."""
        setting = shipped('addressbook-postgres.yaml').addr_db['postgres']
        self.assertEqual(setting, {
            'dsn': 'postgresql://postgres@127.0.0.1:5432/postgres',
            'schema': 'addrservice', 'min_size': 1, 'max_size': 10,
        })

    def test_only_the_production_config_needs_tokens(self) -> None:
        """Auth is off in the configs for one machine, on in production's,
        through a variable naming the tokens file."""
        auth = {name: shipped(name).auth
                for name in os.listdir(CONFIGS) if name.endswith('.yaml')}
        self.assertEqual(auth.pop('addressbook-production.yaml'),
                         AuthConfig(tokens_file_env='ADDRSERVICE_TOKENS_FILE'))
        self.assertEqual(set(auth.values()), {None})

    def test_production_config(self) -> None:
        """The production example states its limits and timeouts, keeps
        SQLite and its log out of the repository, and rotates from
        outside."""
        with open(os.path.join(CONFIGS, 'addressbook-production.yaml'),
                  encoding='utf-8') as f:
            raw = yaml.safe_load(f)
        self.assertEqual(raw['http'], {
            'max_body_size': 1048576, 'max_header_size': 65536,
            'idle_connection_timeout': 60, 'body_timeout': 30,
            'drain_timeout': 10})
        config = shipped('addressbook-production.yaml')
        self.assertFalse(config.behind_proxy)
        self.assertEqual(config.addr_db, {
            'sqlite': '/var/lib/addrservice/addressbook.sqlite3'})
        assert config.logging is not None
        file_handler = config.logging['handlers']['file']
        self.assertEqual(file_handler['class'],
                         'logging.handlers.WatchedFileHandler')
        self.assertEqual(file_handler['filename'],
                         '/var/log/addrservice/addrservice.log')


if __name__ == '__main__':
    unittest.main()
