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
    AuthConfig,
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


class HttpSectionTest(unittest.TestCase):
    """Timeouts, header size and proxy trust, from the http section."""

    SECONDS = ('idle_connection_timeout', 'body_timeout', 'drain_timeout')

    def read(self, **http: Any) -> AddressBookConfig:
        return AddressBookConfig.from_mapping({**MINIMAL, 'http': http})

    def assert_refused(self, message: str, **http: Any) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.read(**http)
        self.assertEqual(str(cm.exception), message)

    def test_defaults(self) -> None:
        """Without the keys: 60 s idle, 30 s body, 64 KiB headers, no
        proxy, 10 s drain."""
        config = AddressBookConfig.from_mapping(MINIMAL)
        self.assertEqual(
            (config.idle_connection_timeout, config.body_timeout,
             config.max_header_size, config.behind_proxy,
             config.drain_timeout),
            (60.0, 30.0, 65536, False, 10.0))

    def test_every_key_is_read(self) -> None:
        """Each http key lands in its attribute."""
        config = self.read(idle_connection_timeout=5, body_timeout=2.5,
                           max_header_size=8192, behind_proxy=True,
                           drain_timeout=0.5)
        self.assertEqual(
            (config.idle_connection_timeout, config.body_timeout,
             config.max_header_size, config.behind_proxy,
             config.drain_timeout),
            (5.0, 2.5, 8192, True, 0.5))

    def test_seconds_are_floats(self) -> None:
        """Whole seconds are read as floats, so 2 and 2.0 are one config."""
        for key in self.SECONDS:
            with self.subTest(key=key):
                value = getattr(self.read(**{key: 2}), key)
                self.assertIsInstance(value, float)
                self.assertEqual(self.read(**{key: 2}),
                                 self.read(**{key: 2.0}))

    def test_seconds_of_wrong_type(self) -> None:
        """A string, bool, null or list is refused, naming the key."""
        for key in self.SECONDS:
            for value in ('30', True, None, [30]):
                with self.subTest(key=key, value=value):
                    self.assert_refused(
                        f"Config 'http.{key}' must be a int or float, "
                        f'not {value!r}', **{key: value})

    def test_seconds_not_positive_or_not_finite(self) -> None:
        """Zero, negative, infinite or NaN seconds are refused."""
        for key in self.SECONDS:
            for value in (0, -1, -0.5, float('inf'), float('nan')):
                with self.subTest(key=key, value=value):
                    self.assert_refused(
                        f"Config 'http.{key}' must be a positive number of "
                        f'seconds, not {value}', **{key: value})

    def test_max_header_size(self) -> None:
        """http.max_header_size must be a positive int."""
        self.assert_refused(
            "Config 'http.max_header_size' must be positive, not 0",
            max_header_size=0)
        for value in (1024.0, '1024', True):
            with self.subTest(value=value):
                self.assert_refused(
                    "Config 'http.max_header_size' must be a int, "
                    f'not {value!r}', max_header_size=value)

    def test_behind_proxy_must_be_a_bool(self) -> None:
        """Only true or false turn proxy trust on or off."""
        for value in (1, 0, 'true', 'no', None):
            with self.subTest(value=value):
                self.assert_refused(
                    "Config 'http.behind_proxy' must be a bool, "
                    f'not {value!r}', behind_proxy=value)

    def test_yaml_booleans(self) -> None:
        """YAML's true/false (and yes/no) are read as bools."""
        for text, value in (('true', True), ('false', False),
                            ('yes', True), ('no', False)):
            with self.subTest(text=text):
                config = load_config('addr-db: {memory: null}\n'
                                     f'http: {{behind_proxy: {text}}}\n')
                self.assertIs(config.behind_proxy, value)


class AuthSectionTest(unittest.TestCase):
    """The auth section names the tokens file, or the variable naming it."""

    def read(self, auth: Any) -> AddressBookConfig:
        return AddressBookConfig.from_mapping({**MINIMAL, 'auth': auth})

    def assert_refused(self, auth: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.read(auth)
        self.assertEqual(str(cm.exception), message)

    def test_off_by_default(self) -> None:
        """Without an auth section there is no authentication."""
        self.assertIsNone(AddressBookConfig.from_mapping(MINIMAL).auth)

    def test_tokens_file(self) -> None:
        """auth.tokens_file is read as the path of the tokens file."""
        self.assertEqual(self.read({'tokens_file': '/etc/book/tokens'}).auth,
                         AuthConfig(tokens_file='/etc/book/tokens'))

    def test_tokens_file_env(self) -> None:
        """auth.tokens_file_env is kept as the variable's name, unread."""
        config = self.read({'tokens_file_env': 'BOOK_TOKENS'})
        self.assertEqual(config.auth,
                         AuthConfig(tokens_file_env='BOOK_TOKENS'))

    def test_one_of_the_two(self) -> None:
        """Both keys, or neither, is refused."""
        message = ("Config 'auth' must have one of tokens_file and "
                   'tokens_file_env')
        self.assert_refused({}, message)
        self.assert_refused({'tokens_file': '/t', 'tokens_file_env': 'T'},
                            message)

    def test_unknown_key(self) -> None:
        """A misspelt key is refused rather than leaving auth half set."""
        self.assert_refused(
            {'tokens_file': '/t', 'token_file': '/u'},
            "Config 'auth.token_file' is not a known key; use tokens_file "
            'or tokens_file_env')

    def test_wrong_types(self) -> None:
        """A section or value of the wrong type is refused, naming it."""
        self.assert_refused(None, "Config 'auth' must be a Mapping, "
                                  'not None')
        self.assert_refused('/etc/book/tokens',
                            "Config 'auth' must be a Mapping, not "
                            "'/etc/book/tokens'")
        self.assert_refused({'tokens_file': 42},
                            "Config 'auth.tokens_file' must be a str, not 42")
        self.assert_refused({'tokens_file_env': ['T']},
                            "Config 'auth.tokens_file_env' must be a str, "
                            "not ['T']")

    def test_empty_values(self) -> None:
        """An empty path or variable name is refused."""
        for key in ('tokens_file', 'tokens_file_env'):
            with self.subTest(key=key):
                self.assert_refused({key: ''},
                                    f"Config 'auth.{key}' must not be empty")

    def test_variable_name(self) -> None:
        """tokens_file_env must be a name, not a path or a $ reference."""
        for value in ('$TOKENS', '/etc/tokens', '1TOKENS', 'A-B'):
            with self.subTest(value=value):
                self.assert_refused(
                    {'tokens_file_env': value},
                    "Config 'auth.tokens_file_env' must be an environment "
                    f'variable name, not {value!r}')


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

    def test_local_configs_have_auth_off(self) -> None:
        """The tutorial's configs serve on localhost without tokens."""
        for name in self.NAMES:
            with self.subTest(name):
                self.assertIsNone(_repo_config(name).auth)

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
