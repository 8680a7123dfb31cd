"""`GET /openapi.json`: the API contract, as one JSON document."""

from __future__ import annotations

from typing import Any

from addrservice.openapi import openapi_json
from addrservice.tornado.app import BaseRequestHandler

OPENAPI_URI = '/openapi.json'


class OpenAPIRequestHandler(BaseRequestHandler):
    """Serves the bundled OpenAPI document, read once per process."""

    SUPPORTED_METHODS = ('GET', 'HEAD')

    def get(self) -> None:
        self.write_json_text(openapi_json())

    def head(self) -> None:
        self.get()  # Tornado sends the headers without the body


def openapi_routes(
    handler_args: dict[str, Any],
) -> list[tuple[str, type[OpenAPIRequestHandler], dict[str, Any]]]:
    """The route of the document; `handler_args` as for the other
    handlers. It needs no token even when authentication is on: the
    document is what tells a client how to authenticate."""
    openapi_json()  # read now, so that a server never starts without it
    return [(OPENAPI_URI, OpenAPIRequestHandler,
             dict(handler_args, tokens=None))]
