"""The API docs page at /docs and its files, over HTTP, without a browser.

tests/e2e/docs_browser_test.py drives the page itself in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import logging
import unittest
import urllib.parse
from typing import Any

from addrservice.tornado.docs import SWAGGER_UI_VERSION
from tests.support import (
    AddressServiceTornadoAppTestSetup,
    LogCapture,
    memory_config,
    tokens_file,
)

TOKEN = 'docs-token-0123456789abcdef'
ASSET_TYPES = {
    'swagger-ui.css': 'text/css',
    'swagger-ui-bundle.js': 'text/javascript',
    'favicon-32x32.png': 'image/png',
    'favicon-16x16.png': 'image/png',
}


class PageParts(html.parser.HTMLParser):
    """The URLs a page links to, and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str,
                        attrs: list[tuple[str, str | None]]) -> None:
        found = [value for name, value in attrs
                 if name in ('src', 'href') and value is not None]
        self.urls += found
        self._in_inline_script = tag == 'script' and not found

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts.append(data)


def page_parts(body: bytes) -> PageParts:
    parts = PageParts()
    parts.feed(body.decode('utf-8'))
    return parts


def script_source(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


class DocsPageTest(AddressServiceTornadoAppTestSetup):
    def test_page_links_only_its_own_files(self) -> None:
        """/docs is HTML whose every link is a file under /docs/static/,
        each served with its type."""
        r = self.fetch('/docs')
        self.assertEqual(r.code, 200)
        self.assertEqual(r.headers['Content-Type'], 'text/html; charset=UTF-8')
        urls = page_parts(r.body).urls
        self.assertEqual(
            sorted(urls),
            sorted(f'docs/static/{name}?v={SWAGGER_UI_VERSION}'
                   for name in ASSET_TYPES))
        for url in urls:
            path = urllib.parse.urljoin('/docs', url)
            asset = self.fetch(path)
            self.assertEqual(asset.code, 200, path)
            name = urllib.parse.urlsplit(path).path.rsplit('/', 1)[1]
            self.assertEqual(asset.headers['Content-Type'], ASSET_TYPES[name])
            self.assertGreater(len(asset.body), 0)

    def test_content_security_policy(self) -> None:
        """The page may load scripts, styles and data only from the
        service, and run only its own inline script."""
        r = self.fetch('/docs')
        [script] = page_parts(r.body).inline_scripts
        self.assertIn('SwaggerUIBundle(', script)
        self.assertEqual(
            r.headers['Content-Security-Policy'],
            "default-src 'none'; "
            f"script-src 'self' {script_source(script)}; "
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self.assertEqual(r.headers['X-Content-Type-Options'], 'nosniff')

    def test_page_reads_openapi_json_beside_it(self) -> None:
        """The page loads the document from openapi.json beside itself."""
        [script] = page_parts(self.fetch('/docs').body).inline_scripts
        self.assertIn("url: new URL('openapi.json', document.baseURI).href",
                      script)

    def test_swagger_ui_5(self) -> None:
        """The bundled Swagger UI is 5.x, the first to read OpenAPI 3.1,
        and the script served is that version."""
        self.assertEqual(SWAGGER_UI_VERSION.split('.')[0], '5')
        bundle = self.fetch('/docs/static/swagger-ui-bundle.js').body
        self.assertIn(f'PACKAGE_VERSION:"{SWAGGER_UI_VERSION}"'.encode(),
                      bundle)

    def test_trailing_slash_redirects(self) -> None:
        """/docs/ redirects to /docs, where the relative links resolve."""
        r = self.fetch('/docs/', follow_redirects=False)
        self.assertEqual(r.code, 301)
        self.assertEqual(r.headers['Location'], '/docs')

    def test_head(self) -> None:
        """HEAD gives the headers of GET without the body."""
        for path in ('/docs', '/docs/static/swagger-ui.css'):
            get, head = self.fetch(path), self.fetch(path, method='HEAD')
            self.assertEqual((head.code, head.body), (200, b''), path)
            self.assertEqual(head.headers['Content-Type'],
                             get.headers['Content-Type'])

    def test_versioned_files_are_cached(self) -> None:
        """A file asked for with its version may be kept by the browser;
        asked for again with its ETag, it is not sent again."""
        r = self.fetch(f'/docs/static/swagger-ui.css?v={SWAGGER_UI_VERSION}')
        self.assertEqual(r.headers['Cache-Control'], 'max-age=315360000')
        again = self.fetch('/docs/static/swagger-ui.css',
                           headers={'If-None-Match': r.headers['Etag']})
        self.assertEqual((again.code, again.body), (304, b''))

    def test_unknown_files_are_json_404(self) -> None:
        """Any other path under /docs, including the package's own demo
        page, is the JSON 404 of every unknown path."""
        for path in ('/docs/static/index.html', '/docs/static/nothing.js',
                     '/docs/static/../app.py', '/docs/static/',
                     '/docs/index.html', '/docsx'):
            with self.subTest(path=path):
                self.assert_error(self.fetch(path), 404, 'Unknown Endpoint')

    def test_other_methods_are_405(self) -> None:
        """The page and its files only answer GET and HEAD."""
        for path in ('/docs', '/docs/static/swagger-ui.css'):
            for method in ('POST', 'PUT', 'DELETE'):
                with self.subTest(path=path, method=method):
                    r = self.request(method, path, b'{}')
                    self.assert_error(r, 405, 'Method Not Allowed')
                    self.assertEqual(r.headers['Allow'], 'GET, HEAD')

    def test_log_levels(self) -> None:
        """The page's RESPONSE line is INFO, its files' are DEBUG, and an
        error on a file is still a WARNING."""
        with LogCapture() as logs:
            self.fetch('/docs')
            self.fetch('/docs/static/swagger-ui.css')
            self.request('POST', '/docs/static/swagger-ui.css', b'')
        levels = [(fields['method'], fields['uri'], fields['status'])
                  for fields in logs.fields()]
        self.assertEqual(levels, [
            ('GET', '/docs', '200'),
            ('GET', '/docs/static/swagger-ui.css', '200'),
            ('POST', '/docs/static/swagger-ui.css', '405'),
        ])
        self.assertEqual(
            [r.levelno for r in logs.records if 'RESPONSE' in r.getMessage()],
            [logging.INFO, logging.DEBUG, logging.WARNING])


class DocsWithAuthTest(AddressServiceTornadoAppTestSetup):
    """With bearer auth on, the docs stay public; the API does not."""

    def make_config(self) -> dict[str, Any]:
        return {**memory_config(), 'auth': {
            'tokens_file': tokens_file(self, f'docs:{TOKEN}\n')}}

    def test_docs_need_no_token(self) -> None:
        """/docs and its files answer without a token; /addresses not."""
        self.assertEqual(self.fetch('/docs').code, 200)
        self.assertEqual(self.fetch('/docs/static/swagger-ui.css').code, 200)
        self.assert_error(self.fetch('/addresses'), 401, 'Unauthorized')


if __name__ == '__main__':
    unittest.main()
