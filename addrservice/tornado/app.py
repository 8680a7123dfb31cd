"""The Tornado application: routes, handlers, errors and the access log."""

from __future__ import annotations

import functools
import logging
import re
import traceback
import uuid
from types import TracebackType
from typing import Any, Awaitable, Mapping

import tornado.web

from addrservice import LOGGER_NAME
from addrservice.config import AddressBookConfig
from addrservice.service import AddressBookService
from addrservice.tornado.errors import map_error
from addrservice.utils import logutils, strictjson

ADDRESSBOOK_REGEX = r'/addresses/?'
ADDRESSBOOK_ENTRY_REGEX = r'/addresses/(?P<id>[a-zA-Z0-9-]{1,64})/?'
ADDRESSBOOK_ENTRY_URI_FORMAT_STR = r'/addresses/{id}'

REQUEST_ID_PATTERN = re.compile(r'[A-Za-z0-9._-]{1,128}\Z')

# Bodies are JSON whatever the label; these are the labels clients use for
# it (`curl -d` sends the form type). Anything else is refused with 415.
ACCEPTED_BODY_TYPES = frozenset({
    'application/json', 'application/x-www-form-urlencoded', 'text/plain',
})

JSON_CONTENT_TYPE = 'application/json; charset=UTF-8'


@tornado.web.stream_request_body
class BaseRequestHandler(tornado.web.RequestHandler):
    """Request id, log context, bounded JSON body and JSON error bodies.

    Bodies are streamed so that a body over the configured limit is refused
    with 413 as soon as it is seen (from Content-Length, or while chunked or
    gzip-decompressed data arrives), without reading the rest.
    """

    def initialize(
        self,
        service: AddressBookService,
        config: AddressBookConfig,
        logger: logging.Logger,
    ) -> None:
        self.service = service
        self.config = config
        self.max_body_size = config.max_body_size
        self._start_request(logger)

    def _start_request(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._body: list[bytes] = []
        self._body_size = 0
        logutils.set_log_context(
            req_id=self.req_id,
            method=self.request.method,
            uri=self.request.uri,
            ip=self.request.remote_ip,
        )
        # Held so the RESPONSE line finds it from whichever task ends it.
        self.log_context = logutils.get_log_context()

    @functools.cached_property
    def req_id(self) -> str:
        given = self.request.headers.get('X-Request-ID', '')
        return given if REQUEST_ID_PATTERN.match(given) else uuid.uuid4().hex

    def set_default_headers(self) -> None:
        # Also runs on every send_error(), which clears headers.
        self.set_header('X-Request-ID', self.req_id)

    def prepare(self) -> Awaitable[None] | None:
        self._log_request()
        if self.request.method in ('POST', 'PUT'):
            self._check_body_headers()
        return super().prepare()

    def _log_request(self) -> None:
        logutils.log(self.logger, logging.DEBUG, include_context=True,
                     message='REQUEST')

    def _check_body_headers(self) -> None:
        content_type = self.request.headers.get('Content-Type', '')
        media_type = content_type.split(';')[0].strip().lower()
        if media_type and media_type not in ACCEPTED_BODY_TYPES \
                and not media_type.endswith('+json'):
            raise tornado.web.HTTPError(415, reason='Unsupported Media Type')
        length = int(self.request.headers.get('Content-Length', 0))
        if length > self.max_body_size:
            # Let Tornado discard the refused body until the connection
            # closes, rather than answer a second time with a bare 400.
            self.request.connection.set_max_body_size(length)  # type: ignore
            raise tornado.web.HTTPError(413, reason='Request body too large')

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # refused already; the connection closes after the reply
        self._body_size += len(chunk)
        if self._body_size > self.max_body_size:
            self.send_error(413, reason='Request body too large')
        else:
            self._body.append(chunk)

    def json_body(self) -> Any:
        """The request body as strict JSON (`InvalidJSONError` if not)."""
        return strictjson.loads(b''.join(self._body))

    def write_json(self, document: Any) -> None:
        self.set_header('Content-Type', JSON_CONTENT_TYPE)
        self.write(strictjson.dumps(document))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render every error as the JSON error body."""
        exc_info = kwargs.get('exc_info')
        body: dict[str, Any] = {}
        if exc_info is not None:
            mapped = map_error(exc_info[1])
            if mapped is not None:
                self.set_status(mapped.status, reason=mapped.reason)
                body = mapped.fields
            self.log_context['exc_info'] = exc_info
            if self.settings.get('serve_traceback'):
                body['trace'] = ''.join(traceback.format_exception(*exc_info))
        if self.get_status() == 405:
            self.set_header('Allow', ', '.join(self.SUPPORTED_METHODS))
        self.log_context['reason'] = self._reason
        self.write_json({
            'method': self.request.method,
            'uri': self.request.path,
            'code': self.get_status(),
            'message': self._reason,
            **body,
        })
        self.finish()

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The RESPONSE line carries the reason and the trace of every
        # error; logging it here too would split one request over lines.
        pass


class DefaultRequestHandler(BaseRequestHandler):
    """Answers every unknown path with the JSON error body."""

    def initialize(  # type: ignore[override]  # the tutorial's signature
        self, status_code: int, message: str, logger: logging.Logger
    ) -> None:
        self.max_body_size = 0
        self._start_request(logger)
        self.set_status(status_code, reason=message)

    def prepare(self) -> Awaitable[None] | None:
        # An unknown path is the error to report, whatever the body.
        self._log_request()
        raise tornado.web.HTTPError(self._status_code, reason=self._reason)


class AddressBookRequestHandler(BaseRequestHandler):
    SUPPORTED_METHODS = ('GET', 'POST')

    async def get(self) -> None:
        all_addrs = {
            nickname: addr
            async for nickname, addr in self.service.get_all_addresses()
        }
        self.write_json(all_addrs)

    async def post(self) -> None:
        id = await self.service.create_address(self.json_body())
        self.set_status(201)
        self.set_header('Location',
                        ADDRESSBOOK_ENTRY_URI_FORMAT_STR.format(id=id))


class AddressBookEntryRequestHandler(BaseRequestHandler):
    SUPPORTED_METHODS = ('GET', 'PUT', 'DELETE')

    async def get(self, id: str) -> None:
        self.write_json(await self.service.get_address(id))

    async def put(self, id: str) -> None:
        await self.service.update_address(id, self.json_body())
        self.set_status(204)

    async def delete(self, id: str) -> None:
        await self.service.delete_address(id)
        self.set_status(204)


def log_function(handler: tornado.web.RequestHandler) -> None:
    """Write the request's canonical RESPONSE line, then clear its context."""
    logger = getattr(handler, 'logger', logging.getLogger(LOGGER_NAME))
    context = getattr(handler, 'log_context', None)
    if context is None:
        context = logutils.get_log_context()
    status = handler.get_status()
    logutils.log(
        logger, _level(status), **context,
        message='RESPONSE',
        status=status,
        time_ms=round(1000.0 * handler.request.request_time(), 3),
    )
    context.clear()


def _level(status: int) -> int:
    if status < 400:
        return logging.INFO
    return logging.WARNING if status < 500 else logging.ERROR


def make_addrservice_app(
    config: Mapping[str, Any] | AddressBookConfig,
    debug: bool,
    logger: logging.Logger,
) -> tuple[AddressBookService, tornado.web.Application]:
    """Build the service and the Tornado app that serves it.

    `debug` adds the traceback to error bodies. The caller starts and
    stops the service.
    """
    if not isinstance(config, AddressBookConfig):
        config = AddressBookConfig.from_mapping(config)
    service = AddressBookService(config, logger)
    handler_args = dict(service=service, config=config, logger=logger)
    app = tornado.web.Application(
        [
            (ADDRESSBOOK_REGEX, AddressBookRequestHandler, handler_args),
            (ADDRESSBOOK_ENTRY_REGEX, AddressBookEntryRequestHandler,
             handler_args),
        ],
        compress_response=True,
        log_function=log_function,
        serve_traceback=debug,
        default_handler_class=DefaultRequestHandler,
        default_handler_args=dict(
            status_code=404, message='Unknown Endpoint', logger=logger
        ),
    )
    return service, app
