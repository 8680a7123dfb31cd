"""Request bodies: framing checked, size bounded, gzip decoded as it streams.

Decoding the body here rather than in Tornado's HTTP server means a body
that is too large, or not valid gzip, is answered like any other error:
with the JSON error body and a canonical log line.
"""

from __future__ import annotations

import re
import zlib

from tornado.httputil import HTTPHeaders

_LENGTH = re.compile(r'[0-9]{1,18}\Z')

# Bodies are JSON whatever the label; these are the labels clients use for
# it (`curl -d` sends the form type). Anything else is refused with 415.
ACCEPTED_BODY_TYPES = frozenset({
    'application/json', 'application/x-www-form-urlencoded', 'text/plain',
})

_GZIP = frozenset({'gzip', 'x-gzip'})
_IDENTITY = frozenset({'', 'identity'})


class BodyTooLargeError(Exception):
    """The body is, or would decode to, more than the configured limit."""


class InvalidBodyError(ValueError):
    """The body's framing or encoding is broken; `str()` says how."""


class UnsupportedEncodingError(ValueError):
    """A Content-Encoding other than gzip or identity."""


class UnsupportedMediaTypeError(ValueError):
    """A body labelled as something other than JSON."""


def check_media_type(content_type: str) -> None:
    """`UnsupportedMediaTypeError` unless the label fits a JSON body."""
    media_type = content_type.split(';')[0].strip().lower()
    if media_type and media_type not in ACCEPTED_BODY_TYPES \
            and not media_type.endswith('+json'):
        raise UnsupportedMediaTypeError(
            f'Content-Type {media_type[:40]!r} is not JSON')


class RequestBody:
    """Collects a body chunk by chunk: at most `limit` bytes as sent, and
    at most `limit` bytes once decoded."""

    def __init__(self, headers: HTTPHeaders, limit: int) -> None:
        self._limit = limit
        self._received = 0
        self._size = 0
        self._chunks: list[bytes] = []
        self._gunzip = _decompressor(headers.get('Content-Encoding', ''))
        length = declared_length(headers)
        if length is not None and length > limit:
            raise BodyTooLargeError(
                f'{length} bytes announced; the limit is {limit}')

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self._limit:
            raise BodyTooLargeError(f'over the limit of {self._limit} bytes')
        if self._gunzip is not None:
            chunk = self._gunzip_chunk(self._gunzip, chunk)
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLargeError(f'over the limit of {self._limit} bytes')
        self._chunks.append(chunk)

    def content(self) -> bytes:
        """The whole decoded body, once all of it has been fed."""
        if self._gunzip is not None and not self._gunzip.eof:
            raise InvalidBodyError('gzip body is truncated')
        return b''.join(self._chunks)

    def _gunzip_chunk(self, gunzip: zlib._Decompress, chunk: bytes) -> bytes:
        if gunzip.eof:
            raise InvalidBodyError('data after the end of the gzip body')
        try:
            # Never inflate more than one byte past the limit.
            data = gunzip.decompress(chunk, self._limit + 1 - self._size)
        except zlib.error as e:
            raise InvalidBodyError(f'gzip body is invalid: {e}') from None
        if gunzip.unconsumed_tail:
            raise BodyTooLargeError(
                f'over the limit of {self._limit} bytes, decoded')
        if gunzip.unused_data:
            raise InvalidBodyError('data after the end of the gzip body')
        return data


def declared_length(headers: HTTPHeaders) -> int | None:
    """Content-Length as a number; repeats of one value count as one.

    A message with both Content-Length and Transfer-Encoding is refused, as
    two framings of one body are how requests are smuggled past proxies.
    """
    value = headers.get('Content-Length')
    if value is None:
        return None
    if 'Transfer-Encoding' in headers:
        raise InvalidBodyError(
            'both Content-Length and Transfer-Encoding are given')
    values = {part.strip() for part in value.split(',')}
    if len(values) != 1:
        raise InvalidBodyError(f'conflicting Content-Length: {value[:40]}')
    [length] = values
    if not _LENGTH.match(length):
        raise InvalidBodyError(f'invalid Content-Length: {length[:40]}')
    return int(length)


def _decompressor(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in _IDENTITY:
        return None
    if encoding in _GZIP:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
    raise UnsupportedEncodingError(
        f'Content-Encoding {encoding[:40]!r} is not supported; use gzip')
