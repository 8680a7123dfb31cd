"""The one table that maps domain errors to HTTP statuses."""

from __future__ import annotations

import dataclasses
from typing import Any

from addrservice.errors import (
    AddressExistsError,
    AddressNotFoundError,
    AuthenticationError,
    InvalidEntryError,
    InvalidIdError,
    InvalidPagingError,
    SchemaValidationError,
    StorageUnavailableError,
    VersionConflictError,
)
from addrservice.tornado.body import (
    BodyTooLargeError,
    InvalidBodyError,
    UnsupportedEncodingError,
    UnsupportedMediaTypeError,
)
from addrservice.tornado.etags import InvalidPreconditionError
from addrservice.utils.strictjson import InvalidJSONError


class ShuttingDownError(Exception):
    """A request that arrived while the server drains for shutdown."""


class NotReadyError(Exception):
    """The server should get no traffic now; `str()` says why."""


# status, and the reason phrase; None takes the reason from str(exc),
# as the tutorial's 404 does ("'<id>'").
ERROR_STATUS: dict[type[BaseException], tuple[int, str | None]] = {
    InvalidBodyError: (400, 'Invalid request body'),
    InvalidJSONError: (400, 'Invalid JSON body'),
    SchemaValidationError: (400, SchemaValidationError.MESSAGE),
    InvalidEntryError: (400, 'Invalid address entry'),
    InvalidIdError: (400, 'Invalid id'),
    InvalidPagingError: (400, 'Invalid paging parameter'),
    InvalidPreconditionError: (400, 'Invalid If-Match header'),
    AuthenticationError: (401, 'Unauthorized'),
    AddressNotFoundError: (404, None),
    AddressExistsError: (409, 'Address already exists'),
    VersionConflictError: (412, 'Precondition Failed'),
    BodyTooLargeError: (413, 'Request body too large'),
    UnsupportedEncodingError: (415, 'Unsupported Content-Encoding'),
    UnsupportedMediaTypeError: (415, 'Unsupported Media Type'),
    StorageUnavailableError: (503, 'Storage Unavailable'),
    ShuttingDownError: (503, 'Shutting Down'),
    NotReadyError: (503, 'Not Ready'),
}


@dataclasses.dataclass(frozen=True)
class MappedError:
    status: int
    reason: str
    fields: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def map_error(exc: BaseException) -> MappedError | None:
    """The HTTP form of a domain error; None for any other exception."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            status, reason = ERROR_STATUS[cls]
            return MappedError(status, reason or str(exc), _fields(exc),
                               _headers(exc))
    return None


def _headers(exc: BaseException) -> dict[str, str]:
    """Headers the error needs, as RFC 6750 asks of a 401."""
    if isinstance(exc, AuthenticationError):
        error = ', error="invalid_token"' if exc.invalid_token else ''
        return {'WWW-Authenticate': f'Bearer realm="addrservice"{error}'}
    return {}


def _fields(exc: BaseException) -> dict[str, Any]:
    """Extra fields of the JSON error body: what failed, and where."""
    if isinstance(exc, SchemaValidationError):
        return {'detail': exc.detail, 'path': exc.path}
    if isinstance(exc, (AddressExistsError, AddressNotFoundError,
                        StorageUnavailableError, VersionConflictError)):
        # A store's message names its file or server: for the log only.
        return {}
    return {'detail': str(exc)} if str(exc) else {}
