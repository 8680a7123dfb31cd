"""The service config: read once into a typed object, bad keys named."""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.config
import logging.handlers
import os
import pathlib
import tempfile
import unittest
from typing import Any, Iterator

from addrservice.config import (
    DEFAULT_MAX_BODY_SIZE,
    AddressBookConfig,
    ConfigError,
    load_config,
)

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[2] / 'configs'

MINIMAL: dict[str, Any] = {'addr-db': {'memory': None}}


def _repo_config(name: str) -> AddressBookConfig:
    return load_config((CONFIGS_DIR / name).read_text(encoding='utf-8'))


def _all_loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    return [logging.getLogger()] + [
        logger for logger in manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Undo what dictConfig does to every logger, closing new handlers."""
    saved = {logger: (logger.level, list(logger.handlers), logger.propagate,
                      logger.disabled) for logger in _all_loggers()}
    try:
        yield
    finally:
        for logger in _all_loggers():
            level, handlers, propagate, disabled = saved.get(
                logger, (logging.NOTSET, [], True, False))
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled


class FromMappingTest(unittest.TestCase):
    def test_defaults(self) -> None:
        """Only addr-db given: the name, body size and logging default."""
        self.assertEqual(
            AddressBookConfig.from_mapping(MINIMAL),
            AddressBookConfig(service_name='Address Book',
                              addr_db={'memory': None}, logging=None,
                              max_body_size=1048576),
        )
        self.assertEqual(DEFAULT_MAX_BODY_SIZE, 1048576)

    def test_every_key_is_read(self) -> None:
        """Each section's value lands in its typed attribute."""
        config = AddressBookConfig.from_mapping({
            'service': {'name': 'Book'},
            'addr-db': {'fs': '/srv/book'},
            'logging': {'version': 1},
            'http': {'max_body_size': 2048},
        })
        self.assertEqual(config, AddressBookConfig(
            service_name='Book', addr_db={'fs': '/srv/book'},
            logging={'version': 1}, max_body_size=2048,
        ))

    def test_config_is_frozen(self) -> None:
        """The config object cannot be changed once read."""
        config = AddressBookConfig.from_mapping(MINIMAL)
        with self.assertRaises(AttributeError):
            config.max_body_size = 1  # type: ignore[misc]

    def test_missing_addr_db(self) -> None:
        """Without addr-db the error names the key, as starlette words it."""
        with self.assertRaises(ConfigError) as cm:
            AddressBookConfig.from_mapping({'service': {'name': 'Book'}})
        self.assertEqual(str(cm.exception),
                         "Config 'addr-db' is missing, and has no default.")

    def test_config_error_is_a_value_error(self) -> None:
        """ConfigError is a ValueError."""
        self.assertTrue(issubclass(ConfigError, ValueError))

    def test_max_body_size_of_wrong_type(self) -> None:
        """http.max_body_size as string, bool, float or null is refused."""
        for value in ('1024', True, False, 1024.0, None, [1024]):
            with self.subTest(value=value):
                with self.assertRaisesRegex(
                        ConfigError,
                        r"^Config 'http\.max_body_size' must be a int, "):
                    AddressBookConfig.from_mapping(
                        {**MINIMAL, 'http': {'max_body_size': value}})

    def test_max_body_size_not_positive(self) -> None:
        """http.max_body_size of zero or below is refused, naming the value."""
        for value in (0, -1, -1048576):
            with self.subTest(value=value):
                with self.assertRaises(ConfigError) as cm:
                    AddressBookConfig.from_mapping(
                        {**MINIMAL, 'http': {'max_body_size': value}})
                self.assertEqual(
                    str(cm.exception),
                    f"Config 'http.max_body_size' must be positive, "
                    f"not {value}")

    def test_other_keys_of_wrong_type(self) -> None:
        """A wrong type for any other key is refused, naming that key."""
        cases = {
            'service.name': {**MINIMAL, 'service': {'name': 42}},
            'addr-db': {'addr-db': 'memory'},
            'logging': {**MINIMAL, 'logging': ['console']},
        }
        for key, mapping in cases.items():
            with self.subTest(key=key):
                with self.assertRaisesRegex(ConfigError,
                                            f"^Config '{key}' must be a "):
                    AddressBookConfig.from_mapping(mapping)

    def test_non_mapping_top_level(self) -> None:
        """A config that is not a mapping of sections is refused."""
        for value in (None, 'addr-db', ['addr-db'], 1):
            with self.subTest(value=value):
                with self.assertRaises(ConfigError) as cm:
                    AddressBookConfig.from_mapping(value)  # type: ignore
                self.assertEqual(str(cm.exception),
                                 'Config must be a mapping of sections')


class LoadConfigTest(unittest.TestCase):
    def test_yaml_text(self) -> None:
        """YAML text is parsed and checked into a config."""
        config = load_config(
            'service:\n  name: Book\naddr-db:\n  memory: null\n'
            'http:\n  max_body_size: 10\n'
        )
        self.assertEqual(config, AddressBookConfig(
            service_name='Book', addr_db={'memory': None}, max_body_size=10,
        ))

    def test_invalid_yaml(self) -> None:
        """Text that is not YAML raises ConfigError, not a YAML error."""
        for text in ('addr-db: [memory', 'a: b: c', 'key: "open'):
            with self.subTest(text=text):
                with self.assertRaisesRegex(ConfigError,
                                            '^Config is not valid YAML: '):
                    load_config(text)

    def test_invalid_yaml_is_one_line(self) -> None:
        """The error says what and where on one line, for any YAML error."""
        cases = {
            'addr-db: {memory: null\n':
                "Config is not valid YAML: expected ',' or '}', but got "
                "'<stream end>' (line 2, column 1)",
            'a: \x00':
                'Config is not valid YAML: unacceptable character #x0000: '
                'special characters are not allowed',
        }
        for text, message in cases.items():
            with self.subTest(text=text):
                with self.assertRaises(ConfigError) as caught:
                    load_config(text)
                self.assertEqual(str(caught.exception), message)

    def test_yaml_that_is_not_a_mapping(self) -> None:
        """Empty text, a list or a scalar at the top level is refused."""
        for text in ('', '- addr-db\n- memory\n', 'just words', '42'):
            with self.subTest(text=text):
                with self.assertRaisesRegex(ConfigError,
                                            '^Config must be a mapping'):
                    load_config(text)

    def test_string_max_body_size_in_yaml(self) -> None:
        """A quoted number in YAML is a string, and refused as one."""
        with self.assertRaisesRegex(ConfigError,
                                    r"^Config 'http\.max_body_size'"):
            load_config('addr-db: {memory: null}\n'
                        'http: {max_body_size: "1048576"}\n')


class RepositoryConfigsTest(unittest.TestCase):
    NAMES = ('addressbook-local.yaml', 'addressbook-fs.yaml')

    def test_configs_load(self) -> None:
        """Both shipped configs load with the documented values."""
        for name in self.NAMES:
            with self.subTest(name):
                config = _repo_config(name)
                self.assertEqual(config.service_name, 'Address Book')
                self.assertEqual(config.max_body_size, 1048576)
                self.assertIsNotNone(config.logging)

    def test_fs_config_names_the_fs_engine(self) -> None:
        """addressbook-fs.yaml configures the filesystem engine."""
        self.assertEqual(list(_repo_config('addressbook-fs.yaml').addr_db),
                         ['fs'])

    def test_logging_sections_pass_dict_config(self) -> None:
        """Each config's logging section is accepted by dictConfig."""
        for name in self.NAMES:
            with self.subTest(name), _logging_restored(), \
                    tempfile.TemporaryDirectory() as tmp:
                logging.config.dictConfig(self._redirected(name, tmp))
                handlers = logging.getLogger('addrservice').handlers
                self.assertEqual([type(h) for h in handlers], [
                    logging.StreamHandler,
                    logging.handlers.RotatingFileHandler,
                ])

    def test_local_log_file_rotates(self) -> None:
        """The local config's rotating file handler has a positive maxBytes."""
        with _logging_restored(), tempfile.TemporaryDirectory() as tmp:
            logging.config.dictConfig(
                self._redirected('addressbook-local.yaml', tmp))
            [handler] = [
                h for h in logging.getLogger('addrservice').handlers
                if isinstance(h, logging.handlers.RotatingFileHandler)
            ]
            self.assertGreater(handler.maxBytes, 0)
            self.assertEqual(handler.maxBytes, 10 * 1024 * 1024)
            self.assertEqual(handler.backupCount, 3)

    def _redirected(self, name: str, tmp: str) -> dict[str, Any]:
        # The shipped log file is shared with any server running here.
        section = copy.deepcopy(dict(_repo_config(name).logging or {}))
        file_handler = section['handlers']['file']
        self.assertEqual(file_handler['filename'], '/tmp/addrservice-app.log')
        file_handler['filename'] = os.path.join(tmp, 'app.log')
        return section


if __name__ == '__main__':
    unittest.main()
