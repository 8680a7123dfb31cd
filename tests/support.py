"""Shared test fixtures: configs, the app under test, log capture."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.config
import os
import re
import tempfile
import unittest
from typing import Any, Awaitable, Iterator, TypeVar

import tornado.httpclient
import tornado.testing
import tornado.web
import yaml

from addrservice import LOGGER_NAME
from addrservice.service import AddressBookService
from addrservice.tornado.app import make_addrservice_app
from addrservice.tornado.server import http_server_options
from addrservice.utils import logutils
from data import address_data_suite

IN_MEMORY_CFG_TXT = '''
service:
  name: Address Book Test

addr-db:
  memory: null

logging:
  version: 1
  disable_existing_loggers: false
  handlers:
    quiet:
      class: logging.NullHandler
  root:
    level: ERROR
    handlers:
      - quiet
'''

TEST_CONFIG: dict[str, Any] = yaml.safe_load(IN_MEMORY_CFG_TXT)

_T = TypeVar('_T')


def memory_config() -> dict[str, Any]:
    return {**TEST_CONFIG, 'addr-db': {'memory': None}}


def fs_config(store_dir: str) -> dict[str, Any]:
    return {**TEST_CONFIG, 'addr-db': {'fs': store_dir}}


def sqlite_config(path: str) -> dict[str, Any]:
    return {**TEST_CONFIG, 'addr-db': {'sqlite': path}}


_LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """Read one logfmt line strictly: every character must belong to a pair.

    The service escapes quoted values exactly as JSON strings do, so
    `json.loads` undoes them. (The logfmt package's own parser mis-reads
    an escaped backslash.) A line that does not parse whole fails the test.
    """
    fields: dict[str, str] = {}
    position = 0
    for match in _LOGFMT_PAIR.finditer(line):
        if match.start() != position:
            raise AssertionError(f'not logfmt at {position}: {line!r}')
        key, value = match.groups()
        if key in fields:
            raise AssertionError(f'key {key!r} twice in {line!r}')
        fields[key] = json.loads(value) if value.startswith('"') else value
        position = match.end()
    if position != len(line):
        raise AssertionError(f'not logfmt at {position}: {line!r}')
    return fields


class LogCapture(logging.Handler):
    """Collects the service logger's messages while attached."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def fields(self, message: str = 'RESPONSE') -> list[dict[str, str]]:
        """Parsed logfmt fields of every line whose message is `message`."""
        parsed = [parse_logfmt(m) for m in self.messages]
        return [p for p in parsed if p.get('message') == message]

    def __enter__(self) -> LogCapture:
        logger = logging.getLogger(LOGGER_NAME)
        self._saved_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger(LOGGER_NAME)
        logger.removeHandler(self)
        logger.setLevel(self._saved_level)


class AddressServiceTornadoAppTestSetup(tornado.testing.AsyncHTTPTestCase):
    """The app from `make_addrservice_app`, on a loop with the task factory.

    Subclasses choose the engine by overriding `make_config()`.
    """

    serve_traceback = True
    install_task_factory = True

    def setUp(self) -> None:
        self.headers = {'Content-Type': 'application/json; charset=UTF-8'}
        address_data = address_data_suite()
        keys = sorted(address_data)
        self.assertGreaterEqual(len(keys), 2)
        self.addr0 = address_data[keys[0]]
        self.addr1 = address_data[keys[1]]
        super().setUp()
        if self.install_task_factory:
            asyncio_loop = self.io_loop.asyncio_loop  # type: ignore
            asyncio_loop.set_task_factory(logutils.task_factory)

    def make_config(self) -> dict[str, Any]:
        return memory_config()

    def get_app(self) -> tornado.web.Application:
        logging.config.dictConfig(TEST_CONFIG['logging'])
        logger = logging.getLogger(LOGGER_NAME)
        self.service, app = make_addrservice_app(
            config=self.make_config(), debug=self.serve_traceback,
            logger=logger,
        )
        # Opened as the server opens it, so that engines that connect
        # asynchronously are tested too.
        self.io_loop.run_sync(self.service.open)
        return app

    def tearDown(self) -> None:
        # Before the loop closes: closing the store may need it.
        self.io_loop.run_sync(self.service.close)
        super().tearDown()

    def get_httpserver_options(self) -> dict[str, Any]:
        return http_server_options(self.service.config)

    # Request helpers that read like the tutorial's curl transcript.

    def request(
        self, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> tornado.httpclient.HTTPResponse:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.fetch(path, method=method, body=body,
                          allow_nonstandard_methods=True, **kwargs)

    def create(self, entry: Any) -> str:
        """POST an entry; assert 201 and return the new id."""
        r = self.request('POST', '/addresses', entry, headers=self.headers)
        self.assertEqual(r.code, 201, r.body)
        location = r.headers['Location']
        self.assertRegex(location, r'^/addresses/[0-9a-f]{32}$')
        return location.rsplit('/', 1)[1]

    def json_of(self, r: tornado.httpclient.HTTPResponse) -> Any:
        self.assertEqual(r.headers['Content-Type'],
                         'application/json; charset=UTF-8')
        return json.loads(r.body.decode('utf-8'))

    def assert_error(
        self, r: tornado.httpclient.HTTPResponse, code: int, message: str
    ) -> dict[str, Any]:
        """Assert the JSON error body; return it for further checks."""
        body = self.json_of(r)
        self.assertEqual(r.code, code, body)
        self.assertEqual(r.reason, message)
        self.assertEqual(body['code'], code)
        self.assertEqual(body['message'], message)
        self.assertEqual(body['method'], r.request.method)
        return body  # type: ignore[no-any-return]

    def assert_store_intact(self) -> dict[str, Any]:
        """GET /addresses still answers 200 with strict JSON."""
        r = self.fetch('/addresses')
        self.assertEqual(r.code, 200)
        text = r.body.decode('utf-8')
        listing = json.loads(text, parse_constant=_refuse_constant)
        self.assertIsInstance(listing, dict)
        return listing  # type: ignore[no-any-return]


async def ticks_while(work: Awaitable[_T]) -> tuple[_T, int]:
    """Await `work`, counting how often the loop meanwhile ran a 5 ms sleep.

    A loop that `work` blocks counts no ticks at all.
    """
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        return await work, ticks
    finally:
        task.cancel()


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f'non-strict JSON constant {name} in a response')


def temporary_store() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix='addrservice-test-')


__all__ = [
    'AddressBookService',
    'AddressServiceTornadoAppTestSetup',
    'IN_MEMORY_CFG_TXT',
    'LogCapture',
    'TEST_CONFIG',
    'fs_config',
    'memory_config',
    'parse_logfmt',
    'sqlite_config',
    'temporary_store',
    'ticks_while',
]


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Run with `values` set in `os.environ` (and so in the environment of
    child processes started meanwhile); restore it afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tokens_file(case: unittest.TestCase, text: str) -> str:
    """A tokens file holding `text` ("name:token" lines), removed after
    `case`; its path."""
    tmp = tempfile.TemporaryDirectory(prefix='addrservice-test-')
    case.addCleanup(tmp.cleanup)
    path = os.path.join(tmp.name, 'tokens')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path
