"""Runs the Address Book server.

    python3 addrservice/tornado/server.py --port 8080 \\
        --config ./configs/addressbook-local.yaml --debug
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
import sys
from typing import Any, Sequence

import tornado.httpserver

from addrservice import LOGGER_NAME
from addrservice.config import AddressBookConfig, ConfigError, load_config
from addrservice.errors import StorageUnavailableError
from addrservice.tornado.app import make_addrservice_app
from addrservice.utils import logutils


def parse_args(args: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='addrservice', description='Run Address Book Server')
    parser.add_argument(
        '-p', '--port', type=int, default=8080,
        help='port number for %(prog)s server to listen; '
        'default: %(default)s')
    parser.add_argument(
        '-d', '--debug', action='store_true',
        help='send tracebacks in error responses')
    parser.add_argument(
        '-c', '--config', required=True, type=argparse.FileType('r'),
        help='config file for %(prog)s')
    parser.add_argument(
        '--address', default='localhost',
        help='address to bind; "" or 0.0.0.0 for all interfaces; '
        'default: %(default)s')
    return parser.parse_args(args)


async def run_server(
    config: AddressBookConfig, port: int, address: str, debug: bool
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(logutils.task_factory)
    logger = logging.getLogger(LOGGER_NAME)
    service, app = make_addrservice_app(config, debug, logger)
    # The store is opened before the port is bound: a server that cannot
    # reach its database never accepts a connection.
    await service.open()
    http_server = tornado.httpserver.HTTPServer(
        app, **http_server_options(config)
    )
    try:
        _listen(http_server, port, address)
        logutils.log(logger, logging.INFO, message='STARTING',
                     service_name=config.service_name, port=port)
        await _until_signalled(loop)
        logutils.log(logger, logging.INFO, message='SHUTTING DOWN',
                     service_name=config.service_name)
        http_server.stop()
        await http_server.close_all_connections()
    finally:
        await service.close()
    logutils.log(logger, logging.INFO, message='STOPPED',
                 service_name=config.service_name)


def _listen(
    http_server: tornado.httpserver.HTTPServer, port: int, address: str
) -> None:
    try:
        http_server.listen(port, address)
    except OSError as e:
        raise OSError(f'cannot listen on {address or "*"}:{port}: '
                      f'{e.strerror or e}') from None


def http_server_options(config: AddressBookConfig) -> dict[str, Any]:
    """Options of the HTTP server, shared with the tests' server."""
    return dict(
        # The app decodes gzip bodies itself, within its size limit, so
        # that a bad one gets the JSON error body and its log line.
        decompress_request=False,
        # The app refuses bodies over its own limit with a JSON 413;
        # Tornado's limit only has to stay out of its way.
        max_body_size=max(config.max_body_size, 100 * 1024 * 1024),
    )


async def _until_signalled(loop: asyncio.AbstractEventLoop) -> None:
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def main(args: Sequence[str] | None = None) -> None:
    """Start the server; exit non-zero with one line if it cannot."""
    options = parse_args(args)
    try:
        with options.config:
            config = load_config(options.config.read())
        if config.logging is not None:
            logging.config.dictConfig(dict(config.logging))
        asyncio.run(run_server(config, options.port, options.address,
                               options.debug))
    except (ConfigError, OSError, ValueError, StorageUnavailableError) as e:
        sys.exit(f'addrservice: {e}')


if __name__ == '__main__':
    main()
