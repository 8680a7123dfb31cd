"""The Tornado application: routes, handlers, errors and the access log."""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import urllib.parse
from types import TracebackType
from typing import Any, Awaitable, Mapping

import tornado.web
from tornado.http1connection import HTTP1Connection

from addrservice import LOGGER_NAME
from addrservice.auth import BearerTokens, load_tokens
from addrservice.config import AddressBookConfig
from addrservice.datamodel import ENTRY_ID_REGEX
from addrservice.paging import Paging
from addrservice.service import AddressBookService, IfMatch
from addrservice.tornado import etags
from addrservice.tornado.body import (
    BodyTooLargeError,
    InvalidBodyError,
    RequestBody,
    check_media_type,
)
from addrservice.tornado.errors import (
    MappedError,
    ShuttingDownError,
    map_error,
)
from addrservice.tornado.gate import RequestGate
from addrservice.utils import logutils, strictjson

ADDRESSBOOK_REGEX = r'/addresses/?'
ADDRESSBOOK_ENTRY_REGEX = rf'/addresses/(?P<id>{ENTRY_ID_REGEX})/?'
ADDRESSBOOK_ENTRY_URI_FORMAT_STR = r'/addresses/{id}'
ADDRESSBOOK_URI = '/addresses'

REQUEST_ID_PATTERN = re.compile(r'[A-Za-z0-9._-]{1,128}\Z')

JSON_CONTENT_TYPE = 'application/json; charset=UTF-8'

# The status logged for a request whose connection closed before it was
# answered (as nginx logs it): no response was sent.
CONNECTION_CLOSED = 499
CONNECTION_CLOSED_REASON = 'Connection closed before the response'

# A body length no client reaches: read and discard until the connection
# closes.
_DRAIN_ALL = 2 ** 62


@tornado.web.stream_request_body
class BaseRequestHandler(tornado.web.RequestHandler):
    """Request id, log context, bounded JSON body and JSON error bodies.

    Bodies are streamed, so one over the configured limit is refused with
    413 as soon as it is seen (from Content-Length, or as chunked or
    gzip-encoded data arrives), without reading the rest.
    """

    def initialize(
        self,
        service: AddressBookService,
        config: AddressBookConfig,
        logger: logging.Logger,
        tokens: BearerTokens | None = None,
        gate: RequestGate | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.tokens = tokens
        self._start_request(logger, gate)

    def _start_request(
        self, logger: logging.Logger, gate: RequestGate | None
    ) -> None:
        self.logger = logger
        self._body: RequestBody | None = None
        self._gate = gate
        given = self.request.headers.get('X-Request-ID', '')
        self.req_id = given if REQUEST_ID_PATTERN.match(given) \
            else os.urandom(16).hex()  # as random as a uuid4, in its form
        self.set_header('X-Request-ID', self.req_id)
        if gate is not None:
            gate.enter()
        logutils.set_log_context(
            req_id=self.req_id,
            method=self.request.method,
            uri=self.request.uri,
            ip=self.request.remote_ip,
        )
        # Held so that every line of this request finds it, from whichever
        # task Tornado runs that part of the request in.
        self.log_context = logutils.get_log_context()

    def set_default_headers(self) -> None:
        # Runs before initialize() too (no id yet: it is set then), and
        # on every send_error(), which clears headers.
        req_id = getattr(self, 'req_id', None)
        if req_id is not None:
            self.set_header('X-Request-ID', req_id)

    def prepare(self) -> Awaitable[None] | None:
        self._log_request()
        self._refuse_when_closing()
        self._authenticate()
        if self.request.method in ('POST', 'PUT'):
            check_media_type(self.request.headers.get('Content-Type', ''))
        self._body = RequestBody(self.request.headers,
                                 self.config.max_body_size)
        return super().prepare()

    def _log_request(self) -> None:
        logutils.log(self.logger, logging.DEBUG, **self.log_context,
                     message='REQUEST')

    def _refuse_when_closing(self) -> None:
        if self._gate is not None and self._gate.closed:
            raise ShuttingDownError()

    def finish(self, chunk: Any = None) -> Any:
        if self._gate is not None and self._gate.closed:
            # The connection is closed once drained: no new request on it.
            self.set_header('Connection', 'close')
        return super().finish(chunk)

    def on_finish(self) -> None:
        self._leave_gate()

    def on_connection_close(self) -> None:
        if not self._finished:
            # The client went away, or its body stopped coming within the
            # body timeout: no response can reach it, and Tornado would
            # not log the request at all.
            self.log_context['reason'] = CONNECTION_CLOSED_REASON
            log_function(self, status=CONNECTION_CLOSED)
        self._leave_gate()
        super().on_connection_close()

    def _leave_gate(self) -> None:
        if self._gate is not None:
            self._gate.leave()
            self._gate = None  # once per request, however it ends

    def _authenticate(self) -> None:
        # Before anything else is checked, so that a client without a
        # token learns nothing but that it needs one.
        if self.tokens is not None:
            self.log_context['auth'] = self.tokens.authenticate(
                self.request.headers.get('Authorization'))

    def _drain_unread_body(self) -> None:
        # An error reply can come before the body is read (405, 413, bad
        # framing). Tornado then closes the connection after the reply;
        # until then it should discard what the client still sends, not
        # fail on the same headers and answer a second time.
        headers = self.request.headers
        if 'Content-Length' not in headers \
                and 'Transfer-Encoding' not in headers:
            return
        headers.pop('Transfer-Encoding', None)
        headers['Content-Length'] = str(_DRAIN_ALL)
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # Tornado's server
        connection.set_max_body_size(_DRAIN_ALL)

    def data_received(self, chunk: bytes) -> None:
        if self._finished or self._body is None:
            return  # refused already; the connection closes after the reply
        try:
            self._body.feed(chunk)
        except (BodyTooLargeError, InvalidBodyError):
            self._body = None  # refused: the rest is not read
            self.send_error(exc_info=sys.exc_info())

    def json_body(self) -> Any:
        """The request body as strict JSON (`InvalidJSONError` if not)."""
        assert self._body is not None  # prepare() succeeded
        return strictjson.loads(self._body.content())

    def write_json(self, document: Any) -> None:
        self.write_json_text(strictjson.dumps(document).encode())

    def write_json_text(self, text: bytes) -> None:
        self.set_header('Content-Type', JSON_CONTENT_TYPE)
        self.write(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render every error as the JSON error body."""
        self._drain_unread_body()
        if self._body is None:
            # A reply before the body is read (from prepare(), or on a
            # refused chunk): Tornado closes the connection after it, too
            # late to say so itself. Told, a client does not send its next
            # request on a connection about to close.
            self.set_header('Connection', 'close')
        exc_info = kwargs.get('exc_info')
        extra: dict[str, Any] = {}
        if exc_info is not None:
            extra = self._apply_mapping(map_error(exc_info[1]))
            self._add_trace(exc_info, extra)
        if self.get_status() == 405:
            self.set_header('Allow', ', '.join(self.SUPPORTED_METHODS))
        self.log_context['reason'] = self._reason
        self.write_json({
            'method': self.request.method,
            'uri': self.request.path,
            'code': self.get_status(),
            'message': self._reason,
            **extra,
        })
        self.finish()

    def _apply_mapping(self, mapped: MappedError | None) -> dict[str, Any]:
        if mapped is None:
            return {}
        self.set_status(mapped.status, reason=mapped.reason)
        for name, value in mapped.headers.items():
            self.set_header(name, value)  # send_error() cleared them
        return dict(mapped.fields)

    def _add_trace(self, exc_info: Any, body: dict[str, Any]) -> None:
        self.log_context['exc_info'] = exc_info
        if self.settings.get('serve_traceback'):
            body['trace'] = ''.join(traceback.format_exception(*exc_info))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The RESPONSE line carries the reason and the trace of every
        # error; logging it here too would split one request over lines.
        pass


class _AnyMethod(tuple[str, ...]):
    def __contains__(self, method: object) -> bool:
        return True


class DefaultRequestHandler(BaseRequestHandler):
    """Answers every unknown path, whatever the method, with a JSON 404."""

    SUPPORTED_METHODS = _AnyMethod()

    def initialize(  # type: ignore[override]  # the tutorial's signature
        self, status_code: int, message: str, logger: logging.Logger,
        gate: RequestGate | None = None,
    ) -> None:
        self._start_request(logger, gate)
        self.set_status(status_code, reason=message)

    def prepare(self) -> Awaitable[None] | None:
        # An unknown path is the error to report, whatever the body.
        self._log_request()
        self._refuse_when_closing()
        raise tornado.web.HTTPError(self._status_code, reason=self._reason)


class AddressBookRequestHandler(BaseRequestHandler):
    SUPPORTED_METHODS = ('GET', 'HEAD', 'POST')

    async def get(self) -> None:
        paging = Paging.from_query({
            name: self.get_query_arguments(name, strip=False)
            for name in self.request.query_arguments
        })
        body, next_after = await self.service.list_addresses_json(paging)
        if next_after is not None:
            self.set_header('Link', _next_link(paging, next_after))
        self.write_json_text(body)

    async def head(self) -> None:
        await self.get()  # Tornado sends the headers without the body

    async def post(self) -> None:
        id, tag = await self.service.create_tagged_address(self.json_body())
        self.set_status(201)
        self.set_header('Location',
                        ADDRESSBOOK_ENTRY_URI_FORMAT_STR.format(id=id))
        self.set_header('ETag', etags.format_etag(tag))


class AddressBookEntryRequestHandler(BaseRequestHandler):
    """One entry, with its version as the ETag: `PUT` and `DELETE` with
    `If-Match` change it only while it is at a version the client names
    (else 412), and `GET` with `If-None-Match` answers 304 while it is
    unchanged."""

    SUPPORTED_METHODS = ('GET', 'HEAD', 'PUT', 'DELETE')

    async def get(self, id: str) -> None:
        entry, tag = await self.service.get_address_json(id)
        self.set_header('ETag', etags.format_etag(tag))
        if self.check_etag_header():
            self.set_status(304)
            return
        self.write_json_text(entry)

    async def head(self, id: str) -> None:
        await self.get(id)  # Tornado sends the headers without the body

    async def put(self, id: str) -> None:
        tag = await self.service.update_address(
            id, self.json_body(), self._if_match())
        self.set_header('ETag', etags.format_etag(tag))
        self.set_status(204)

    async def delete(self, id: str) -> None:
        await self.service.delete_address(id, self._if_match())
        self.set_status(204)

    def _if_match(self) -> IfMatch | None:
        values = self.request.headers.get_list('If-Match')
        return etags.parse_if_match(values) if values else None


def _next_link(paging: Paging, after: str) -> str:
    query = urllib.parse.urlencode({'limit': paging.limit, 'after': after})
    return f'<{ADDRESSBOOK_URI}?{query}>; rel="next"'


def log_function(
    handler: tornado.web.RequestHandler, status: int | None = None
) -> None:
    """Write the request's canonical RESPONSE line, then clear its context;
    count the request in the app's `metrics` setting, if any.

    Once per request: a request logged when its connection closed is not
    logged again if its handler finishes later.
    """
    if getattr(handler, '_canonical_line_written', False):
        return
    handler._canonical_line_written = True  # type: ignore[attr-defined]
    logger = getattr(handler, 'logger', logging.getLogger(LOGGER_NAME))
    context = getattr(handler, 'log_context', None)
    if context is None:
        context = logutils.get_log_context()
    status = handler.get_status() if status is None else status
    seconds = handler.request.request_time()
    logutils.log(
        logger, _level(handler, status), **context,
        message='RESPONSE',
        status=status,
        time_ms=round(1000.0 * seconds, 3),
    )
    context.clear()
    _count_request(handler, status, seconds)


def _count_request(
    handler: tornado.web.RequestHandler, status: int, seconds: float
) -> None:
    metrics = handler.settings.get('metrics')
    if metrics is not None:
        metrics.observe_request(type(handler).__name__,
                                handler.request.method or '', status, seconds)


def _level(handler: tornado.web.RequestHandler, status: int) -> int:
    if status < 400:
        # A handler of routine requests (such as static files) may set a
        # lower level for its successes.
        level: int = getattr(handler, 'success_log_level', logging.INFO)
        return level
    # Handlers polled by orchestrators set a level for their errors too.
    error_level: int | None = getattr(handler, 'error_log_level', None)
    if error_level is not None:
        return error_level
    return logging.WARNING if status < 500 else logging.ERROR


def make_addrservice_app(
    config: Mapping[str, Any] | AddressBookConfig,
    debug: bool,
    logger: logging.Logger,
    gate: RequestGate | None = None,
) -> tuple[AddressBookService, tornado.web.Application]:
    """Build the service and the Tornado app that serves it, with health
    checks and metrics (`addrservice.tornado.ops`).

    `debug` adds the traceback to error bodies. The caller starts and
    stops the service; a server that drains on shutdown passes the
    `gate` every request goes through.
    """
    # Here, not at the top: the docs handlers build on BaseRequestHandler.
    from addrservice.tornado.docs import docs_routes
    from addrservice.tornado.openapi import openapi_routes
    from addrservice.tornado.ops import instrument, ops_routes

    config = AddressBookConfig.of(config)
    tokens = None if config.auth is None else load_tokens(config.auth)
    service = AddressBookService(config, logger)
    metrics = instrument(service, gate)
    handler_args = dict(service=service, config=config, logger=logger,
                        tokens=tokens, gate=gate)
    app = tornado.web.Application(
        [
            (ADDRESSBOOK_REGEX, AddressBookRequestHandler, handler_args),
            (ADDRESSBOOK_ENTRY_REGEX, AddressBookEntryRequestHandler,
             handler_args),
            *docs_routes(handler_args),
            *openapi_routes(handler_args),
            *ops_routes(dict(service=service, config=config, logger=logger,
                             metrics=metrics, gate=gate)),
        ],
        compress_response=True,
        log_function=log_function,
        metrics=metrics,  # counted by log_function
        serve_traceback=debug,
        default_handler_class=DefaultRequestHandler,
        default_handler_args=dict(
            status_code=404, message='Unknown Endpoint', logger=logger,
            gate=gate,
        ),
    )
    return service, app
