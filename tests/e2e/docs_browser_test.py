"""The API docs page at /docs, driven in headless Chromium.

These tests need Debian's `chromium` and `chromium-driver` packages (`.ci/run`
installs them) and skip, saying why, where either is missing. Selenium
drives the system chromedriver given by path, so it never looks for or
downloads a browser or driver of its own.

The page reads the service's `/openapi.json`. Where the service does not
serve one, the page is loaded through a small proxy that adds a stand-in
document in its place and forwards everything else to the service.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import sys
import threading
import unittest
from typing import Any, Callable

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.server_test import ServerProcess, ServerTestCase

CHROMIUM = shutil.which('chromium')
CHROMEDRIVER = shutil.which('chromedriver')
# Every wait for the browser ends by then, passed or failed.
WAIT_S = 20.0
POLL_S = 0.05
# The browser reaches the service by this name, and no other name at all:
# the page is checked as it loads from a host that is not localhost (for
# which Swagger UI leaves some features out), and nothing leaves the
# machine, even a request the page should not make.
HOST = 'addrservice.test'
HOST_RULES = f'MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND'
TOKEN = 'docs-token-0123456789abcdef'
ENTRY = {'full_name': 'Ada Lovelace'}

# What the page must list, as Swagger UI shows each operation.
OPERATIONS = {
    ('GET', '/addresses'),
    ('POST', '/addresses'),
    ('GET', '/addresses/{id}'),
    ('PUT', '/addresses/{id}'),
    ('DELETE', '/addresses/{id}'),
}


def missing_browser() -> str | None:
    """Why the browser tests cannot run here; None if they can."""
    missing = [name for name, path in (('chromium', CHROMIUM),
                                       ('chromedriver', CHROMEDRIVER))
               if path is None]
    if not missing:
        return None
    return (f'{" and ".join(missing)} not found: install Debian\'s '
            f'chromium and chromium-driver packages')


def _operation(summary: str, responses: dict[str, str]) -> dict[str, Any]:
    return {
        'summary': summary,
        'responses': {code: {'description': text}
                      for code, text in responses.items()},
    }


def _entry_body() -> dict[str, Any]:
    return {'required': True, 'content': {'application/json': {
        'schema': {'type': 'object'}}}}


# Enough of the API for the page: its five operations and the bearer
# scheme. The service's own document says much more.
STAND_IN_DOCUMENT: dict[str, Any] = {
    'openapi': '3.1.0',
    'info': {'title': 'addrservice (stand-in)', 'version': '0'},
    'components': {'securitySchemes': {
        'bearerAuth': {'type': 'http', 'scheme': 'bearer'}}},
    'security': [{}, {'bearerAuth': []}],
    'paths': {
        '/addresses': {
            'get': _operation('List entries', {'200': 'Entries by id'}),
            'post': {**_operation('Add an entry', {'201': 'Created'}),
                     'requestBody': _entry_body()},
        },
        '/addresses/{id}': {
            'parameters': [{'name': 'id', 'in': 'path', 'required': True,
                            'schema': {'type': 'string'}}],
            'get': _operation('Get an entry', {'200': 'The entry'}),
            'put': {**_operation('Replace an entry', {'204': 'Replaced'}),
                    'requestBody': _entry_body()},
            'delete': _operation('Delete an entry', {'204': 'Deleted'}),
        },
    },
}

# Hop-by-hop headers, and those the proxy sets itself.
_NOT_FORWARDED = {'connection', 'keep-alive', 'transfer-encoding',
                  'content-length', 'server', 'date'}


class StandInProxy(http.server.ThreadingHTTPServer):
    """Serves STAND_IN_DOCUMENT as /openapi.json and forwards every other
    request to the service, on a free port of 127.0.0.1."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(('127.0.0.1', 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.document = json.dumps(STAND_IN_DOCUMENT).encode()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: StandInProxy

    def do_GET(self) -> None:
        if self.path == '/openapi.json':
            self._reply(200, 'OK', [('Content-Type', 'application/json')],
                        self.server.document)
        else:
            self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def _forward(self) -> None:
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in _NOT_FORWARDED}
        conn = http.client.HTTPConnection('127.0.0.1',
                                          self.server.upstream_port,
                                          timeout=WAIT_S)
        try:
            conn.request(self.command, self.path, body, headers)
            r = conn.getresponse()
            self._reply(r.status, r.reason, r.getheaders(), r.read())
        finally:
            conn.close()

    def _reply(self, status: int, reason: str,
               headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _NOT_FORWARDED:
                self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the service logs every request it is sent


def chromium() -> webdriver.Chrome:
    """Headless Debian Chromium, through the system chromedriver."""
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for argument in ('--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--window-size=1280,2400',
                     '--no-first-run', '--disable-extensions',
                     '--disable-background-networking',
                     f'--host-resolver-rules={HOST_RULES}'):
        options.add_argument(argument)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    # A driver path given: Selenium Manager is never run.
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


class DocsPage:
    """The docs page in a browser, as a reader uses it."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def wait_for(self, what: str,
                 condition: Callable[[webdriver.Chrome], Any]) -> Any:
        return WebDriverWait(self.driver, WAIT_S, POLL_S).until(
            condition, f'no {what} within {WAIT_S} s')

    def open(self) -> None:
        self.driver.get(f'{self.base_url}/docs')
        self.wait_for('operations', lambda d: len(
            d.find_elements(By.CSS_SELECTOR, '.opblock')) >= len(OPERATIONS))

    def operations(self) -> set[tuple[str, str]]:
        return {(self._text(block, '.opblock-summary-method'),
                 self._path(block))
                for block in self._blocks()}

    def _blocks(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, '.opblock')

    def _text(self, element: WebElement, selector: str) -> str:
        return str(element.find_element(By.CSS_SELECTOR, selector).text)

    def _path(self, block: WebElement) -> str:
        path = block.find_element(By.CSS_SELECTOR, '.opblock-summary-path')
        return str(path.get_attribute('data-path'))

    def operation(self, method: str, path: str) -> WebElement:
        for block in self._blocks():
            if (self._text(block, '.opblock-summary-method'),
                    self._path(block)) == (method, path):
                return block
        raise AssertionError(f'{method} {path} not on the page')

    def try_it_out(self, method: str, path: str) -> WebElement:
        """Expand the operation and press "Try it out"; the operation."""
        block = self.operation(method, path)
        block.find_element(By.CSS_SELECTOR, '.opblock-summary').click()
        self.wait_for('"Try it out"', lambda d: block.find_elements(
            By.CSS_SELECTOR, '.try-out__btn'))[0].click()
        return block

    def execute(self, block: WebElement) -> tuple[str, str]:
        """Press "Execute"; the status and body of the live response."""
        live = '.live-responses-table .response'
        for clear in block.find_elements(By.CSS_SELECTOR, '.btn-clear'):
            clear.click()  # so that only the new response is read
            self.wait_for('cleared response', lambda d: not (
                block.find_elements(By.CSS_SELECTOR, live)))
        self.wait_for('"Execute"', lambda d: block.find_elements(
            By.CSS_SELECTOR, '.execute'))[0].click()
        response = self.wait_for('live response', lambda d: (
            block.find_elements(By.CSS_SELECTOR, live)))[0]
        # Then perhaps "Undocumented", for a status the document omits.
        status = self._text(response, '.response-col_status').split()[0]
        body = self._text(response, '.response-col_description pre')
        return status, body

    def authorize(self, token: str) -> None:
        """Enter a bearer token through "Authorize"."""
        self.driver.find_element(By.CSS_SELECTOR, '.btn.authorize').click()
        field = self.wait_for('token field', lambda d: d.find_elements(
            By.CSS_SELECTOR, '.modal-ux input'))[0]
        field.send_keys(token)
        self.driver.find_element(
            By.CSS_SELECTOR, '.modal-ux .auth-btn-wrapper .authorize').click()
        self.driver.find_element(
            By.CSS_SELECTOR, '.modal-ux .btn-done').click()

    def resources(self) -> list[str]:
        """The URL of every file the page loaded."""
        names = self.driver.execute_script(
            'return performance.getEntriesByType("resource")'
            '.map(e => e.name);')
        return [str(name) for name in names]

    def _browser_log(self) -> list[dict[str, Any]]:
        # Selenium leaves this one unannotated.
        log = self.driver.get_log('browser')  # type: ignore[no-untyped-call]
        return list(log)

    def console_errors(self) -> list[str]:
        """The errors the page reported since last asked."""
        return [str(entry['message'])
                for entry in self._browser_log()
                if entry['level'] == 'SEVERE']


@unittest.skipIf(missing_browser(), str(missing_browser()))
class DocsBrowserTest(ServerTestCase):
    driver: webdriver.Chrome  # one browser for the class: it starts slowly

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.driver = chromium()
        cls.addClassCleanup(cls.driver.quit)

    def open_docs(self, server: ServerProcess) -> DocsPage:
        """The docs page of `server`, with a stand-in document if it has
        none of its own."""
        base_url = f'http://{HOST}:{server.port}'
        if server.request('GET', '/openapi.json').status == 404:
            proxy = StandInProxy(server.port)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            self.addCleanup(proxy.server_close)
            self.addCleanup(proxy.shutdown)
            base_url = f'http://{HOST}:{proxy.port}'
        page = DocsPage(self.driver, base_url)
        page.console_errors()  # what earlier tests left
        page.open()
        return page

    def store(self, server: ServerProcess,
              headers: dict[str, str] | None = None) -> None:
        r = server.request('POST', '/addresses', json.dumps(ENTRY).encode(),
                           {'Content-Type': 'application/json',
                            **(headers or {})})
        self.assertEqual(r.status, 201, r.body)

    def assert_entry_shown(self, body: str) -> None:
        self.assertEqual(list(json.loads(body).values()), [ENTRY])

    def test_lists_operations_and_tries_list(self) -> None:
        """The page lists the five operations, and "Try it out" on
        GET /addresses shows the stored entry, all from the service."""
        server = self.start_tutorial_server()
        self.store(server)
        page = self.open_docs(server)
        # The document may describe HEAD as well.
        self.assertLessEqual(OPERATIONS, page.operations())

        status, body = page.execute(page.try_it_out('GET', '/addresses'))
        self.assertEqual(status, '200')
        self.assert_entry_shown(body)
        self.assertEqual([url for url in page.resources()
                          if not url.startswith(page.base_url + '/')], [])
        self.assertEqual(page.console_errors(), [])

    def test_authorize_sends_bearer_token(self) -> None:
        """With auth on, "Try it out" is refused until a token is entered
        under "Authorize", and then shows the stored entry."""
        tokens = os.path.join(self.tmp, 'tokens')
        with open(tokens, 'w', encoding='utf-8') as f:
            f.write(f'docs:{TOKEN}\n')
        self.config['auth'] = {'tokens_file': tokens}
        server = self.start_tutorial_server()
        self.store(server, {'Authorization': f'Bearer {TOKEN}'})
        page = self.open_docs(server)
        block = page.try_it_out('GET', '/addresses')

        self.assertEqual(page.execute(block)[0], '401')
        page.authorize(TOKEN)
        status, body = page.execute(block)
        self.assertEqual(status, '200')
        self.assert_entry_shown(body)


def load_tests(loader: unittest.TestLoader, tests: unittest.TestSuite,
               pattern: str | None) -> unittest.TestSuite:
    reason = missing_browser()
    if reason is not None:
        # Said even when the runner is quiet about skips.
        print(f'docs_browser_test: skipped: {reason}', file=sys.stderr)
    return tests
