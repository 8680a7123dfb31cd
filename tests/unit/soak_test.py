"""The soak's pure parts: choosing operations, checking the store against
what was acknowledged, the verdict and the report."""

from __future__ import annotations

import collections
import os
import random
import unittest

from benchmarks.client import TransportError, encode_request, parse_head
from benchmarks.rig import parse_cpu_seconds, parse_vmrss
from benchmarks.soak import (
    MAX_LIVE,
    MIN_LIVE,
    Journal,
    SoakResult,
    Tally,
    Unreadable,
    choose_op,
    failures,
    render,
    verify,
)

OLD = {'full_name': 'Ada c0 #1'}
NEW = {'full_name': 'Ada c0 #2'}
OTHER = {'full_name': 'Bob c1 #1'}


def journal(**fields: object) -> Journal:
    j = Journal()
    for name, value in fields.items():
        setattr(j, name, value)
    return j


class VerifyTest(unittest.TestCase):
    def test_store_as_acknowledged_passes(self) -> None:
        """Live entries as last written, deletes gone, listing exact."""
        j = journal(live={'a': NEW, 'b': OTHER}, deleted={'c'})
        found = {'a': NEW, 'b': OTHER, 'c': None}
        self.assertEqual(verify([j], found, {'a': NEW, 'b': OTHER}), [])

    def test_older_content_is_a_lost_write(self) -> None:
        """A GET giving an earlier write than the acknowledged one fails."""
        j = journal(live={'a': NEW})
        self.assertEqual(
            verify([j], {'a': OLD}, {'a': NEW}),
            ["a: acknowledged write lost, GET gives 'Ada c0 #1'"])

    def test_missing_entry_is_a_lost_write(self) -> None:
        """A live entry that reads 404 fails, and is missing from the
        listing."""
        j = journal(live={'a': NEW})
        self.assertEqual(verify([j], {'a': None}, {}), [
            'a: acknowledged write lost, GET gives 404',
            'a: missing from the listing',
        ])

    def test_deleted_entry_that_reads_back_fails(self) -> None:
        """An acknowledged DELETE must read 404, and not be listed."""
        j = journal(deleted={'c'})
        self.assertEqual(verify([j], {'c': OLD}, {'c': OLD}), [
            "c: acknowledged delete undone, GET gives 'Ada c0 #1'",
            'c: listed, never acknowledged',
        ])

    def test_unreadable_entry_fails(self) -> None:
        """A read-back with another status is reported as such."""
        j = journal(live={'a': NEW})
        found = {'a': Unreadable('status 500')}
        self.assertEqual(verify([j], found, {'a': NEW}),
                         ['a: acknowledged write lost, GET gives status 500'])

    def test_write_without_reply_may_have_happened_or_not(self) -> None:
        """After an unanswered write either state passes; a third fails."""
        j = journal(doubtful={'a': [OLD, NEW], 'd': [OLD, None]})
        for found in ({'a': OLD, 'd': OLD}, {'a': NEW, 'd': None}):
            listing = {k: v for k, v in found.items() if v is not None}
            self.assertEqual(verify([j], found, listing), [], found)
        self.assertEqual(
            verify([j], {'a': OTHER, 'd': None}, {'a': OTHER}),
            ["a: neither before nor after its unanswered write: "
             "'Bob c1 #1'"])

    def test_unanswered_post_may_be_listed_once(self) -> None:
        """An unknown listed id passes only as an unanswered POST's
        document, and only once."""
        j = journal(unplaced=[OTHER])
        self.assertEqual(verify([j], {}, {'x': OTHER}), [])
        self.assertEqual(verify([j], {}, {'x': OTHER, 'y': OTHER}),
                         ['y: listed, never acknowledged'])

    def test_listing_with_other_content_fails(self) -> None:
        """The listing must give each live entry's last write too."""
        j = journal(live={'a': NEW})
        self.assertEqual(verify([j], {'a': NEW}, {'a': OLD}),
                         ["a: listed as 'Ada c0 #1'"])

    def test_journal_in_doubt_moves_live_entry(self) -> None:
        """An unanswered write takes the id out of the live entries."""
        j = journal(live={'a': OLD})
        j.in_doubt('a', None)
        self.assertEqual((j.live, j.doubtful), ({}, {'a': [OLD, None]}))


class ChooseOpTest(unittest.TestCase):
    def test_few_entries_means_post(self) -> None:
        """Below MIN_LIVE entries a client always creates one."""
        rng = random.Random(1)
        self.assertEqual({choose_op(rng, MIN_LIVE - 1) for _ in range(50)},
                         {'post'})

    def test_no_post_at_max_live(self) -> None:
        """At MAX_LIVE entries a client never creates another."""
        rng = random.Random(1)
        ops = {choose_op(rng, MAX_LIVE) for _ in range(500)}
        self.assertEqual(ops, {'get', 'put', 'delete', 'list'})


def result(**fields: object) -> SoakResult:
    tally = Tally()
    tally.statuses.update({200: 6, 201: 2, 204: 2})
    tally.latencies.update({'get': [0.001, 0.002, 0.003],
                            'post': [0.010, 0.020]})
    r = SoakResult('sqlite', 50, 10.0, tally,
                   rss_samples=[100 * 2 ** 20, 102 * 2 ** 20],
                   rss_end=105 * 2 ** 20, cpu=(8.0, 1.0),
                   verified={'live entries': 2})
    for name, value in fields.items():
        setattr(r, name, value)
    return r


class VerdictTest(unittest.TestCase):
    def test_clean_run_passes(self) -> None:
        """No error, no lost write, RSS +5%: no failure."""
        self.assertEqual(failures(result()), [])

    def test_each_failure_is_named(self) -> None:
        """5xx, no reply, unexpected status, stale read, lost write,
        RSS, exit."""
        r = result(rss_end=111 * 2 ** 20, lost=['a: lost'],
                   server_exit=1)
        r.tally.statuses[503] += 2
        r.tally.transport['timeout'] += 1
        r.tally.unexpected.append('PUT /addresses/a: 503')
        r.tally.stale += ['GET a: stale', 'GET a: stale']
        self.assertEqual(failures(r), [
            '2 responses with a 5xx status',
            '1 requests without a reply',
            '1 responses with an unexpected status',
            '2 reads that missed an acknowledged write',
            '1 lost writes',
            'server RSS grew 11.0% after the first 10 s (limit 10%)',
            'server exited with status 1',
        ])

    def test_short_run_has_no_rss_verdict(self) -> None:
        """Without an RSS sample after the warm-up, RSS cannot fail."""
        self.assertEqual(failures(result(rss_samples=[])), [])


class RenderTest(unittest.TestCase):
    def test_report_figures(self) -> None:
        """The report gives counts, rate, percentiles, RSS and verdict."""
        text = render(result())
        self.assertTrue(text.startswith(
            '## Soak: sqlite, 50 clients, 10 s\n\n| figure | value |\n'))
        for line in [
            '| requests | 10 |',
            '| requests/s | 1 |',
            '| latency p50 / p99 | 3.00 ms / 20.0 ms |',
            '| responses by status | 200: 6, 201: 2, 204: 2 |',
            '| transport errors | 0 |',
            '| server RSS at 10 s / at end | 100.0 MiB / 105.0 MiB '
            '(+5.0%) |',
            '| server RSS every 10 s from 10 s | 100.0, 102.0 MiB |',
            '| CPU used: server / clients | 8 s (80%) / 1 s (10%) |',
            '| live entries | 2 |',
            '| reads that missed an acknowledged write | 0 |',
            '| lost writes (checked after the run) | 0 |',
            '| GET /addresses/{id} | 3 | 2.00 | 3.00 |',
            '| DELETE /addresses/{id} | 0 | - | - |',
        ]:
            self.assertIn(line + '\n', text)
        self.assertTrue(text.endswith(
            '**PASS**: no 5xx, no lost write, RSS within 10%.\n'))

    def test_failure_quotes_problems(self) -> None:
        """A failed run lists why, then the first problems."""
        text = render(result(lost=['a: acknowledged write lost']))
        self.assertTrue(text.endswith(
            '**FAIL**: 1 lost writes.\n- a: acknowledged write lost\n'))


class ParsingTest(unittest.TestCase):
    def test_response_head(self) -> None:
        """Status and lower-cased headers of a response head."""
        head = (b'HTTP/1.1 201 Created\r\nLocation: /addresses/ab\r\n'
                b'Content-Length: 0\r\n\r\n')
        self.assertEqual(parse_head(head), (
            201, {'location': '/addresses/ab', 'content-length': '0'}))

    def test_bad_status_line(self) -> None:
        """Anything but an HTTP/1.x status line is a transport error."""
        with self.assertRaises(TransportError):
            parse_head(b'SSH-2.0-OpenSSH\r\n\r\n')

    def test_request_bytes(self) -> None:
        """A request with a body carries its type and length."""
        self.assertEqual(
            encode_request('PUT', '/addresses/ab', 8080, b'{}'),
            b'PUT /addresses/ab HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n'
            b'Content-Type: application/json\r\nContent-Length: 2\r\n'
            b'\r\n{}')

    def test_vmrss(self) -> None:
        """RSS in bytes from /proc/PID/status."""
        status = 'Name:\tpython\nVmPeak:\t  9 kB\nVmRSS:\t   51200 kB\n'
        self.assertEqual(parse_vmrss(status), 51200 * 1024)

    def test_cpu_seconds(self) -> None:
        """utime + stime from /proc/PID/stat, past a name with spaces."""
        fields = ['S'] + ['0'] * 10 + ['250', '50'] + ['0'] * 8
        stat = '42 (python -m x) ' + ' '.join(fields)
        ticks = os.sysconf('SC_CLK_TCK')
        self.assertEqual(parse_cpu_seconds(stat), 300 / ticks)


class TallyTest(unittest.TestCase):
    def test_requests_count_replies_and_failures(self) -> None:
        """Requests are replies of any status plus those with none."""
        tally = Tally(statuses=collections.Counter({200: 3}),
                      transport=collections.Counter({'timeout': 1}))
        self.assertEqual(tally.requests, 4)


if __name__ == '__main__':
    unittest.main()
