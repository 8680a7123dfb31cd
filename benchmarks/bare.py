"""The framework's floor: bare Tornado serving one entry's JSON bytes.

    python -m benchmarks.bare --port N --config CONFIG --body FILE

`GET /addresses/{id}` answers every id with the bytes of FILE as JSON.
The logging section of CONFIG is applied as the service applies it, so
Tornado's own access line goes to the same log file on every request.
Stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import signal
from typing import Sequence

import tornado.web
import yaml

JSON_CONTENT_TYPE = 'application/json; charset=UTF-8'


class EntryHandler(tornado.web.RequestHandler):
    def initialize(self, body: bytes) -> None:
        self.body = body

    def get(self, entry_id: str) -> None:
        self.set_header('Content-Type', JSON_CONTENT_TYPE)
        self.write(self.body)


def make_app(body: bytes) -> tornado.web.Application:
    return tornado.web.Application(
        [(r'/addresses/([A-Za-z0-9-]{1,64})/?', EntryHandler,
          dict(body=body))],
        # As the service's app: compressed only when a client asks.
        compress_response=True,
    )


async def serve(body: bytes, port: int) -> None:
    server = make_app(body).listen(port, '127.0.0.1')
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='bare', description=__doc__)
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--config', required=True)
    parser.add_argument('--body', required=True)
    options = parser.parse_args(argv)
    with open(options.config, encoding='utf-8') as f:
        logging.config.dictConfig(yaml.safe_load(f)['logging'])
    with open(options.body, 'rb') as f:
        body = f.read()
    asyncio.run(serve(body, options.port))


if __name__ == '__main__':
    main()
