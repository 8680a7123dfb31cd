"""A small asyncio HTTP/1.1 client with keep-alive, for the load commands.

The server under load shares two cores with its clients, so a client
must cost little CPU: this one speaks only the HTTP/1.1 the service
answers with (a body framed by Content-Length or chunked, or none) on a
connection of its own to 127.0.0.1. Tornado's `AsyncHTTPClient` costs
several times as much per request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, NamedTuple

TIMEOUT_S = 30.0
JSON_TYPE = b'application/json'
_NO_BODY = frozenset({204, 304})


class TransportError(Exception):
    """No complete reply: the connection failed, closed or timed out."""


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def encode_request(method: str, path: str, port: int,
                   body: bytes | None = None) -> bytes:
    """The request's bytes: a JSON body, if any, with its length."""
    lines = [f'{method} {path} HTTP/1.1', f'Host: 127.0.0.1:{port}']
    if body is not None:
        lines += ['Content-Type: application/json',
                  f'Content-Length: {len(body)}']
    head = '\r\n'.join(lines) + '\r\n\r\n'
    return head.encode('latin-1') + (body or b'')


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names in lower case) of a response head."""
    status_line, *lines = head.decode('latin-1').rstrip('\r\n').split('\r\n')
    version, _, rest = status_line.partition(' ')
    if not version.startswith('HTTP/1.') or not rest[:3].isdigit():
        raise TransportError(f'not an HTTP/1.x status line: {status_line!r}')
    headers = {}
    for line in lines:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


class Connection:
    """One keep-alive connection to 127.0.0.1:`port`, opened on first use
    and again after a failure; one request at a time."""

    def __init__(self, port: int, timeout: float = TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str,
                      body: bytes | None = None) -> Reply:
        """The reply, or `TransportError` (the connection is then closed)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(method, path, body)
        except (OSError, EOFError, TimeoutError, ValueError,
                asyncio.LimitOverrunError, TransportError) as e:
            self.close()
            raise TransportError(describe(e)) from e

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _exchange(self, method: str, path: str,
                        body: bytes | None) -> Reply:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                '127.0.0.1', self.port)
        reader = self._reader
        self._writer.write(encode_request(method, path, self.port, body))
        status, headers = parse_head(await reader.readuntil(b'\r\n\r\n'))
        if method == 'HEAD' or status in _NO_BODY:
            content = b''
        elif headers.get('transfer-encoding', '').lower() == 'chunked':
            content = await _read_chunked(reader)
        else:
            content = await reader.readexactly(
                int(headers.get('content-length', '0')))
        if headers.get('connection', '').lower() == 'close':
            self.close()
        return Reply(status, headers, content)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b'\r\n')).split(b';')[0], 16)
        if size == 0:
            await reader.readuntil(b'\r\n')  # no trailers are sent
            return b''.join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def describe(error: BaseException) -> str:
    """A short name for a transport failure, to count failures by."""
    if isinstance(error, TransportError):
        return str(error)
    if isinstance(error, TimeoutError):
        return 'timeout'
    if isinstance(error, asyncio.IncompleteReadError):
        return 'connection closed mid-reply'
    return type(error).__name__
