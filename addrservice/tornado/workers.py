"""Several server processes on one port: the workers and their supervisor.

The supervisor forks the workers, forwards SIGINT and SIGTERM to them and
waits; a worker that fails makes it stop the others. Each worker holds a
pipe from the supervisor (its lifeline), so that it stops by itself when
the supervisor is gone, and another on which it reports why it failed.
`addrservice.tornado.server` says how the server runs them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import select
import signal
import sys
from typing import Any

from addrservice.utils import logutils

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class WorkerFailedError(Exception):
    """A worker exited with a non-zero status; `str()` says why."""


@dataclasses.dataclass(frozen=True)
class Worker:
    """One of several server processes, as the worker itself sees it.

    `number` is 1 to N. `lifeline` is the read end of a pipe that reaches
    end-of-file when the supervisor is gone; `reports` the write end of
    one on which the worker tells the supervisor why it failed.
    """

    number: int
    lifeline: int
    reports: int

    def report(self, message: str) -> None:
        """Send one line to the supervisor, whole (up to PIPE_BUF bytes),
        or to stderr if the supervisor is gone."""
        line = message.replace('\n', ' ').encode()[:select.PIPE_BUF - 1]
        try:
            os.write(self.reports, line + b'\n')
        except BrokenPipeError:
            print(f'addrservice: {message}', file=sys.stderr)

    def log_fields(self) -> dict[str, Any]:
        return {'worker': self.number, 'pid': os.getpid()}


def stop_when_supervisor_gone(
    loop: asyncio.AbstractEventLoop, worker: Worker, stop: asyncio.Event,
    logger: logging.Logger,
) -> None:
    def on_end_of_file() -> None:
        loop.remove_reader(worker.lifeline)
        logutils.log(logger, logging.WARNING, message='SUPERVISOR GONE',
                     **worker.log_fields())
        stop.set()

    # Nothing is ever written to the lifeline: it is readable only at
    # end-of-file, when every copy of its write end is closed.
    loop.add_reader(worker.lifeline, on_end_of_file)


class Supervisor:
    """Forks the workers, forwards SIGINT and SIGTERM to them, waits.

    The first worker to exit with a non-zero status makes the supervisor
    stop the others (SIGTERM) and fail with `WorkerFailedError`.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._live: dict[int, int] = {}  # pid -> worker number
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._reports_r, self._reports_w = os.pipe()

    def fork(self, count: int) -> Worker | None:
        """Fork `count` workers; in each, its `Worker`; here, None."""
        # Blocked until each process has its handlers: a signal sent
        # meanwhile waits instead of killing a half-started process.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        # Or the children would write out what is still buffered too.
        sys.stdout.flush()
        sys.stderr.flush()
        for number in range(1, count + 1):
            pid = os.fork()
            if pid == 0:
                return self._in_worker(number)
            self._live[pid] = number
        os.close(self._lifeline_r)
        os.close(self._reports_w)
        os.set_blocking(self._reports_r, False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return None

    def _in_worker(self, number: int) -> Worker:
        os.close(self._lifeline_w)
        os.close(self._reports_r)
        self._live.clear()
        return Worker(number, self._lifeline_r, self._reports_w)

    def wait(self) -> None:
        """Wait until every worker has exited; `WorkerFailedError` if one
        did not exit with status 0."""
        failure: str | None = None
        while self._live:
            pid, status = os.waitpid(-1, 0)
            number = self._live.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if number is None or code == 0 or failure is not None:
                continue
            failure = self._failed(number, pid, code)
            self._signal_all(signal.SIGTERM)
        if failure is not None:
            raise WorkerFailedError(failure)

    def _failed(self, number: int, pid: int, code: int) -> str:
        how = (f'was killed by signal {signal.Signals(-code).name}'
               if code < 0 else f'exited with status {code}')
        logutils.log(self._logger, logging.ERROR, message='WORKER FAILED',
                     worker=number, pid=pid, reason=how)
        return self._reported() or f'worker {number} (pid {pid}) {how}'

    def _reported(self) -> str:
        """The first line a worker reported, if any."""
        try:
            data = os.read(self._reports_r, 65536)
        except BlockingIOError:
            return ''
        return data.decode(errors='replace').split('\n', 1)[0]

    def _forward(self, signum: int, frame: object) -> None:
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self._live):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # exited, not reaped yet
                pass
