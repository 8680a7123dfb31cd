"""The interactive API reference at `/docs`: Swagger UI, served offline.

The page and Swagger UI's files come from this service (the files from the
swagger-ui-bundle-v2 package), so the page works with no internet access.
It reads the OpenAPI document from `openapi.json` beside itself, and its
"Try it out" requests carry whatever token the reader enters under
"Authorize". It needs no token itself: it holds nothing but the static
page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any

import tornado.routing
import tornado.web
from swagger_ui_bundle import (  # type: ignore[import-untyped]  # no hints
    swagger_ui_path,
)

from addrservice.tornado.app import BaseRequestHandler

SWAGGER_UI_DIR = str(swagger_ui_path)
SWAGGER_UI_VERSION = swagger_ui_path.name.removeprefix('swagger-ui-')

DOCS_REGEX = r'/docs/?'
# Only what the page uses (and the source maps of the script and style
# sheet): the package also holds demo pages that load a remote document.
ASSETS = (
    'swagger-ui-bundle.js', 'swagger-ui-bundle.js.map',
    'swagger-ui.css', 'swagger-ui.css.map',
    'favicon-16x16.png', 'favicon-32x32.png',
)
ASSET_REGEX = r'/docs/static/(%s)' % '|'.join(map(re.escape, ASSETS))

# BaseLayout leaves out the top bar, whose box loads any document from
# anywhere; `validatorUrl: null` turns off the online validator, should a
# layout with its badge be chosen.
INIT_SCRIPT = '''
window.ui = SwaggerUIBundle({
  url: new URL('openapi.json', document.baseURI).href,
  dom_id: '#swagger-ui',
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true
});
'''


def _asset(name: str) -> str:
    # Relative, as is `openapi.json`, so that the page finds its files
    # wherever the service is mounted. `?v=` lets the browser keep the
    # file: the version changes with the package.
    return f'docs/static/{name}?v={SWAGGER_UI_VERSION}'


PAGE = f'''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>addrservice API</title>
<link rel="stylesheet" href="{_asset('swagger-ui.css')}">
<link rel="icon" type="image/png" sizes="32x32"
      href="{_asset('favicon-32x32.png')}">
<link rel="icon" type="image/png" sizes="16x16"
      href="{_asset('favicon-16x16.png')}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{_asset('swagger-ui-bundle.js')}"></script>
<script>{INIT_SCRIPT}</script>
</body>
</html>
'''.encode()


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return "'sha256-%s'" % base64.b64encode(digest).decode()


# Scripts, styles and requests from this service only; the one inline
# script is allowed by its hash. Swagger UI's style sheet draws its icons
# from data: URLs.
CONTENT_SECURITY_POLICY = '; '.join((
    "default-src 'none'",
    f"script-src 'self' {_script_hash(INIT_SCRIPT)}",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))


class DocsPageHandler(BaseRequestHandler):
    """The page: Swagger UI pointed at `openapi.json`."""

    SUPPORTED_METHODS = ('GET', 'HEAD')

    @tornado.web.removeslash  # `/docs/` would resolve the links elsewhere
    def get(self) -> None:
        self.set_header('Content-Type', 'text/html; charset=UTF-8')
        self.set_header('Content-Security-Policy', CONTENT_SECURITY_POLICY)
        self.set_header('X-Content-Type-Options', 'nosniff')
        self.write(PAGE)

    def head(self) -> None:
        self.get()  # Tornado sends the headers without the body


class DocsAssetHandler(BaseRequestHandler, tornado.web.StaticFileHandler):
    """Swagger UI's files, with Tornado's caching, ETags and ranges, and
    the service's request id, log line and JSON error bodies (all but
    Tornado's empty 416 for a range past the end of a file)."""

    SUPPORTED_METHODS = ('GET', 'HEAD')
    # Each page view fetches several of these: their RESPONSE lines are
    # logged at DEBUG (errors still at WARNING or ERROR).
    success_log_level = logging.DEBUG

    def initialize(  # type: ignore[override]  # a static root as well
        self, path: str, **handler_args: Any
    ) -> None:
        BaseRequestHandler.initialize(self, **handler_args)
        tornado.web.StaticFileHandler.initialize(self, path)


def docs_routes(handler_args: dict[str, Any]) -> list[tornado.routing.URLSpec]:
    """The routes of the page and its files; `handler_args` as for the
    other handlers, without tokens: the page is public."""
    args = dict(handler_args, tokens=None)
    return [
        tornado.web.url(DOCS_REGEX, DocsPageHandler, args),
        tornado.web.url(ASSET_REGEX, DocsAssetHandler,
                        dict(args, path=SWAGGER_UI_DIR)),
    ]
