"""Runs the Address Book server.

    python3 addrservice/tornado/server.py --port 8080 \\
        --config ./configs/addressbook-local.yaml --debug

With `--workers N` (N > 1), the process forks N workers that serve the
same port. Each worker opens its own connection to the store (none can be
shared across a fork), then binds the port with `SO_REUSEPORT`, so that
the kernel spreads new connections among the workers (Linux balances
them; BSD and macOS give every connection to one worker). The first
process stays as their supervisor:

- Before forking, it opens and closes the store once, so that a database
  that cannot be reached gives one error, and a schema is created or
  migrated once, not by N processes at the same time.
- It forwards SIGINT and SIGTERM to the workers, waits for them, and
  exits 0 when every worker exited 0.
- A worker that fails, at start-up or later, is not restarted: the
  supervisor logs it, stops the other workers, and exits non-zero with
  one line (the worker's own error when it gave one). A service running
  with fewer workers than asked for, or one that restarts a worker that
  crashes every time, would hide the fault.
- A worker whose supervisor is gone (killed with SIGKILL) stops by itself.
- It gives the workers a directory to share their metrics in (see
  `addrservice.metrics`), and removes it once they have all exited (or
  they do, if it was killed).

Every process of the group writes to the same log handlers. Size-based
rotation (`RotatingFileHandler`) is done by each process on its own and
does not work with several workers; rotate the file from outside and use
`logging.handlers.WatchedFileHandler`, or log to the console. Adding
`%(process)d` to a format shows which worker wrote each line.

Any process of the same user that binds the port with `SO_REUSEPORT`
would join the group. So before forking, the supervisor binds the port
once without it and lets it go: a port in use, by another server with
workers too, fails as it does for a single process.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import logging.config
import signal
import sys
from typing import Any, Sequence

import tornado.httpserver
import tornado.netutil

from addrservice import LOGGER_NAME
from addrservice.config import AddressBookConfig, ConfigError, load_config
from addrservice.database.base import AbstractAddressBookDB
from addrservice.database.db_engines import create_addressbook_db
from addrservice.errors import StorageUnavailableError
from addrservice.metrics import forget_this_process, shared_directory
from addrservice.tornado.app import make_addrservice_app
from addrservice.tornado.gate import RequestGate
from addrservice.tornado.workers import (
    STOP_SIGNALS,
    Supervisor,
    Worker,
    WorkerFailedError,
    stop_when_supervisor_gone,
)
from addrservice.utils import logutils

# More processes than this only share the same cores and connections.
MAX_WORKERS = 64

# Exit status of a start-up interrupted with Ctrl-C, as shells report it.
_INTERRUPTED = 128 + signal.SIGINT


_STARTUP_ERRORS = (ConfigError, OSError, ValueError, StorageUnavailableError,
                   WorkerFailedError)


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
    parser.add_argument(
        '--workers', type=_worker_count, default=1, metavar='N',
        help='number of server processes sharing the port; '
        'default: %(default)s')
    options = parser.parse_args(args)
    if options.workers > 1 and options.port == 0:
        parser.error(f'--workers {options.workers} needs a fixed --port: '
                     'with port 0 each worker would get a port of its own')
    return options


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'not an integer: {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f'must be at most {MAX_WORKERS}, not {value}')
    return value


async def run_server(
    config: AddressBookConfig, port: int, address: str, debug: bool,
    worker: Worker | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly.

    On the signal, stop accepting connections and refuse new requests on
    open ones (503), let the requests in flight finish (for at most
    `drain_timeout` seconds; a second Ctrl-C cuts that short), then close
    the connections and the store.

    As one of several `worker`s, bind the port with `SO_REUSEPORT`, name
    the worker in the log lines, and stop too when the supervisor is gone.

    Log handlers run in a thread of their own meanwhile, so that no
    request waits for a log line to be formatted and written.
    """
    log_thread = logutils.HandlerThread()
    log_thread.start()
    try:
        await _serve(config, port, address, debug, worker)
    finally:
        log_thread.stop()
        forget_this_process()  # its live figures go; its counts stay


async def _serve(
    config: AddressBookConfig, port: int, address: str, debug: bool,
    worker: Worker | None,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(logutils.task_factory)
    logger = logging.getLogger(LOGGER_NAME)
    gate = RequestGate()
    service, app = make_addrservice_app(config, debug, logger, gate)
    # The store is opened before the port is bound: a server that cannot
    # reach its database never accepts a connection.
    await service.open()
    http_server = tornado.httpserver.HTTPServer(
        app, **http_server_options(config)
    )
    fields: dict[str, Any] = {} if worker is None else worker.log_fields()
    try:
        _listen(http_server, port, address, reuse_port=worker is not None)
        logutils.log(logger, logging.INFO, message='STARTING',
                     service_name=config.service_name, port=port, **fields)
        interrupted = await _until_signalled(loop, worker, logger)
        logutils.log(logger, logging.INFO, message='SHUTTING DOWN',
                     service_name=config.service_name,
                     in_flight=gate.in_flight, **fields)
        http_server.stop()
        gate.close()
        await _drain(gate, config.drain_timeout, interrupted, logger)
        await http_server.close_all_connections()
    finally:
        await service.close()
    logutils.log(logger, logging.INFO, message='STOPPED',
                 service_name=config.service_name, **fields)


def _listen(
    http_server: tornado.httpserver.HTTPServer, port: int, address: str,
    reuse_port: bool = False,
) -> None:
    try:
        http_server.listen(port, address, reuse_port=reuse_port)
    except OSError as e:
        raise _cannot_listen(port, address, e) from None


def _check_port_free(port: int, address: str) -> None:
    """`OSError` if some other socket listens on the port already."""
    try:
        sockets = tornado.netutil.bind_sockets(port, address)
    except OSError as e:
        raise _cannot_listen(port, address, e) from None
    for sock in sockets:
        sock.close()


def _cannot_listen(port: int, address: str, error: OSError) -> OSError:
    return OSError(f'cannot listen on {address or "*"}:{port}: '
                   f'{error.strerror or error}')


# A body size no client reaches (the app's limit is what applies).
_NO_BODY_LIMIT = 2 ** 62


def http_server_options(config: AddressBookConfig) -> dict[str, Any]:
    """Options of the HTTP server, shared with the tests' server."""
    return dict(
        # The app decodes gzip bodies itself, within its size limit, so
        # that a bad one gets the JSON error body and its log line.
        decompress_request=False,
        # The app refuses bodies over its own limit with a JSON 413, as
        # they stream in. Tornado's limit must stay out of its way: it
        # refuses a chunk whose announced size goes over it before the
        # app sees a byte, with a bare 400.
        max_body_size=_NO_BODY_LIMIT,
        # Tornado's default keeps an idle connection for an hour; the
        # same timeout also bounds the time to send a request's headers.
        idle_connection_timeout=config.idle_connection_timeout,
        # The whole body must arrive within this, however it trickles in.
        body_timeout=config.body_timeout,
        max_header_size=config.max_header_size,
        # Tornado then takes the client's address and scheme from
        # X-Real-Ip, X-Forwarded-For and X-Forwarded-Proto, which any
        # client can send: only a proxy that sets them may be trusted.
        xheaders=config.behind_proxy,
    )


async def _until_signalled(
    loop: asyncio.AbstractEventLoop, worker: Worker | None,
    logger: logging.Logger,
) -> asyncio.Event:
    """Wait for the first stop signal; return the event a second one sets
    (never, for a worker)."""
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    if worker is not None:
        stop_when_supervisor_gone(loop, worker, stop, logger)
        # Held back since the fork, so that a signal sent while this
        # worker was starting is not lost; it is delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    await stop.wait()
    again = asyncio.Event()
    for signum in STOP_SIGNALS:
        if worker is None:
            loop.add_signal_handler(signum, again.set)
        else:
            # Ctrl-C reaches every process of the group and the
            # supervisor forwards it too: a worker counts it once.
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
    return again


async def _drain(
    gate: RequestGate, timeout: float, interrupted: asyncio.Event,
    logger: logging.Logger,
) -> None:
    """Wait for the requests in flight; log those left behind."""
    left = await gate.drain(timeout, interrupted)
    if left:
        logutils.log(logger, logging.WARNING, message='DRAIN CUT SHORT',
                     in_flight=left, drain_timeout=timeout,
                     interrupted=interrupted.is_set())


def main(args: Sequence[str] | None = None) -> None:
    """Start the server; exit non-zero with one line if it cannot.

    With `--workers` N > 1 this forks: call it only as the program's
    entry point, as each worker leaves it through `sys.exit()`.
    """
    options = parse_args(args)
    try:
        with options.config:
            config = load_config(options.config.read())
        if config.logging is not None:
            logging.config.dictConfig(dict(config.logging))
        _warn_if_open(config, options.address)
        if options.workers == 1:
            asyncio.run(run_server(config, options.port, options.address,
                                   options.debug))
        else:
            _serve_in_workers(config, options)
    except _STARTUP_ERRORS as e:
        sys.exit(f'addrservice: {e}')
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers are in place: while opening
        # the store, which can wait for a database or a lock.
        print('addrservice: interrupted while starting', file=sys.stderr)
        sys.exit(_INTERRUPTED)


def _warn_if_open(config: AddressBookConfig, address: str) -> None:
    """Say so when anyone on the network can change the address book."""
    if config.auth is None and not _is_loopback(address):
        logutils.log(
            logging.getLogger(LOGGER_NAME), logging.WARNING,
            message='OPEN WITHOUT AUTH', address=address or '*',
            detail='auth is off and the server listens beyond this '
            'machine: anyone who reaches the port can read and change every '
            'entry; set auth.tokens_file, or listen on localhost')


def _is_loopback(address: str) -> bool:
    if address == 'localhost':
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # all interfaces (''), or a host name
        return False


def _serve_in_workers(
    config: AddressBookConfig, options: argparse.Namespace
) -> None:
    store = create_addressbook_db(config.addr_db)
    _check_store_is_shared(config, store, options.workers)
    _check_port_free(options.port, options.address)
    asyncio.run(_open_and_close(store))
    # Every worker writes its metrics there, so that any can report all.
    with shared_directory() as metrics_dir:
        supervisor = Supervisor(logging.getLogger(LOGGER_NAME))
        worker = supervisor.fork(options.workers)
        if worker is None:
            supervisor.wait()
        else:
            status = _run_worker(config, options, worker)
            metrics_dir.remove_if_orphaned()
            sys.exit(status)


def _check_store_is_shared(
    config: AddressBookConfig, store: AbstractAddressBookDB, workers: int
) -> None:
    [engine] = config.addr_db
    if store.process_local:
        raise ConfigError(
            f'--workers {workers} needs a store shared by processes; the '
            f'{engine} engine keeps entries in each process '
            '(use sqlite, fs or postgres)')


async def _open_and_close(store: AbstractAddressBookDB) -> None:
    await store.open()
    await store.close()


def _run_worker(
    config: AddressBookConfig, options: argparse.Namespace, worker: Worker
) -> int:
    try:
        asyncio.run(run_server(config, options.port, options.address,
                               options.debug, worker))
    except _STARTUP_ERRORS as e:
        worker.report(str(e))
        return 1
    return 0


if __name__ == '__main__':
    main()
