"""Metrics of one process, and of several sharing a directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import unittest
from typing import Iterator

from prometheus_client.parser import text_string_to_metric_families

from addrservice.metrics import (
    MULTIPROC_ENV,
    Metrics,
    SharedDirectory,
    forget_this_process,
    shared_directory,
)
from addrservice.tornado.gate import RequestGate
from tests.support import environment

REQUESTS = 'addrservice_http_requests_total'
IN_FLIGHT = 'addrservice_http_requests_in_flight'
ENTRIES = 'addrservice_entries_stored'


class _Forked(Exception):
    """Raised in a forked child, to leave the blocks it was forked in."""


@contextlib.contextmanager
def no_directory_set() -> Iterator[None]:
    given = os.environ.pop(MULTIPROC_ENV, None)
    try:
        yield
    finally:
        if given is not None:
            os.environ[MULTIPROC_ENV] = given


def figures(metrics: Metrics) -> dict[tuple[str, str], float]:
    """(sample name, method label or '') -> value."""
    body, _ = metrics.render(None)
    return {(s.name, s.labels.get('method', '')): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


async def count_of(value: int) -> int:
    return value


class SharedDirectoryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.enterContext(no_directory_set())

    def test_made_set_and_removed(self) -> None:
        """Without the variable, a fresh directory is set for the block
        and removed after it, with the variable."""
        with shared_directory() as shared:
            path = shared.path
            self.assertEqual(os.environ[MULTIPROC_ENV], path)
            self.assertTrue(os.path.isdir(path))
        self.assertFalse(os.path.exists(path))
        self.assertNotIn(MULTIPROC_ENV, os.environ)

    def test_a_forked_process_leaving_leaves_it(self) -> None:
        """A process forked in the block (a worker) that leaves it does
        not remove the directory; the one that made it does."""
        try:
            with shared_directory() as shared:
                pid = os.fork()
                if pid == 0:
                    raise _Forked()
                _, status = os.waitpid(pid, 0)
                self.assertEqual(os.waitstatus_to_exitcode(status), 0)
                self.assertTrue(os.path.isdir(shared.path))
        except _Forked:
            shared.remove_if_orphaned()  # its parent is alive: kept
            os._exit(0)
        self.assertFalse(os.path.exists(shared.path))

    def test_the_user_s_directory_is_kept(self) -> None:
        """A directory the user set is used and kept."""
        with shared_directory() as given:
            with shared_directory() as shared:
                self.assertEqual(shared, SharedDirectory(given.path))
                shared.remove_if_orphaned()
            self.assertTrue(os.path.isdir(given.path))

    def test_the_user_s_directory_must_exist(self) -> None:
        """A variable that names no directory is a ValueError."""
        with environment(**{MULTIPROC_ENV: '/nonexistent/metrics'}):
            with self.assertRaisesRegex(ValueError, 'is not a directory'):
                with shared_directory():
                    pass
            with self.assertRaisesRegex(ValueError, 'is not a directory'):
                Metrics()


class MetricsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.enterContext(no_directory_set())

    def test_processes_add_up(self) -> None:
        """With a shared directory, each process's requests count in the
        figures any of them renders; the in-flight requests of a process
        that has ended no longer do."""
        with shared_directory():
            gate = RequestGate()
            metrics = Metrics()
            metrics.follow_in_flight(gate)
            metrics.observe_request('H', 'GET', 200, 0.01)
            gate.enter()
            self.assert_child_ran(requests=2, in_flight=2)
            self.assertEqual(figures(metrics)[REQUESTS, 'GET'], 3)
            self.assertEqual(figures(metrics)[IN_FLIGHT, ''], 1)
            asyncio.run(metrics.count_entries(lambda: count_of(7)))
            self.assertEqual(figures(metrics)[ENTRIES, ''], 7)
        alone = Metrics()
        alone.observe_request('H', 'GET', 200, 0.01)
        self.assertEqual(figures(alone)[REQUESTS, 'GET'], 1)

    def assert_child_ran(self, requests: int, in_flight: int) -> None:
        """Fork a process that answers `requests` requests and leaves
        `in_flight` in flight, then ends."""
        pid = os.fork()
        if pid == 0:
            try:
                child_gate = RequestGate()
                child = Metrics()
                child.follow_in_flight(child_gate)
                for _ in range(requests):
                    child.observe_request('H', 'GET', 200, 0.01)
                for _ in range(in_flight):
                    child_gate.enter()
                forget_this_process()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def test_one_process(self) -> None:
        """Without a directory, figures are this process's own, and the
        in-flight gauge reads the gate when rendered."""
        gate = RequestGate()
        metrics = Metrics()
        metrics.follow_in_flight(gate)
        gate.enter()
        gate.enter()
        metrics.observe_request('H', 'PUT', 204, 0.01)
        metrics.observe_request('H', 'BREW', 418, 0.01)
        got = figures(metrics)
        self.assertEqual(
            (got[REQUESTS, 'PUT'], got[REQUESTS, 'OTHER'], got[IN_FLIGHT, '']),
            (1, 1, 2))
        self.assertIsNone(metrics.directory)

    def test_entries_counted_at_most_once_per_ttl(self) -> None:
        """Entries stored is counted again only once older than the TTL."""
        metrics = Metrics(entries_ttl=3600)
        asyncio.run(metrics.count_entries(lambda: count_of(1)))
        asyncio.run(metrics.count_entries(lambda: count_of(2)))
        self.assertEqual(figures(metrics)[ENTRIES, ''], 1)
        metrics.entries_ttl = 0
        asyncio.run(metrics.count_entries(lambda: count_of(2)))
        self.assertEqual(figures(metrics)[ENTRIES, ''], 2)


if __name__ == '__main__':
    unittest.main()
