"""The bench's pure parts: wrk's command line and report, targets,
derived figures and the tables; none needs wrk."""

from __future__ import annotations

import os
import unittest

from benchmarks.bench import run_seconds
from benchmarks.bench_report import (
    DEFAULT,
    GET_ID,
    LIST,
    PAGE,
    POST,
    PUT,
    EngineRun,
    Figure,
    Verdict,
    figure_row,
    judge,
    render,
    rss_per_entry,
    slowdown,
)
from benchmarks.rig import adapt_config, shipped_config
from benchmarks.tables import markdown_table, ms, percentile
from benchmarks.wrk import SCRIPT, Load, WrkResult, command, parse_report

REPORT_LINE = (
    'wrk-report requests=15000 duration_us=5000000 bytes=9 '
    'connect_errors=0 read_errors=1 write_errors=0 status_errors=2 '
    'timeouts=3 p50_us=4250 p99_us=12000 max_us=30000')


def wrk_result(rps: float, p50_s: float = 0.004) -> WrkResult:
    return WrkResult(requests=int(rps * 5), seconds=5.0, p50_s=p50_s,
                     p99_s=0.010, errors=0)


def figure(request: str, rps: float, stored: int = 1_000,
           returned: int = 0) -> Figure:
    return Figure(request, stored, wrk_result(rps), 5_000.0, returned)


class WrkTest(unittest.TestCase):
    def test_parse_report_line(self) -> None:
        """The report line gives requests, seconds, percentiles, errors."""
        output = f'Running 5s test @ http://127.0.0.1:1/\n{REPORT_LINE}\n'
        self.assertEqual(parse_report(output), WrkResult(
            requests=15000, seconds=5.0, p50_s=0.00425, p99_s=0.012,
            errors=6))
        self.assertEqual(parse_report(output).rps, 3000.0)

    def test_output_without_report_line_fails(self) -> None:
        """Output without report.lua's line is refused, quoted."""
        with self.assertRaisesRegex(ValueError, 'got 0'):
            parse_report('Running 5s test\n  Latency 1ms\n')

    def test_put_command(self) -> None:
        """A PUT load: 1 thread, 16 connections, method, body and ids."""
        load = Load('PUT', body_file='/t/body.json', ids_file='/t/ids.txt')
        self.assertEqual(command(8080, load, 5), [
            'wrk', '-t1', '-c16', '-d5s', '--timeout=60s', '-s', SCRIPT,
            'http://127.0.0.1:8080/addresses', '--', 'PUT', '/t/body.json',
            '/t/ids.txt'])

    def test_listing_command(self) -> None:
        """A listing on one connection sends no body and no ids."""
        self.assertEqual(command(1, Load(connections=1), 7)[1:4],
                         ['-t1', '-c1', '-d7s'])
        self.assertEqual(command(1, Load(connections=1), 7)[-4:],
                         ['http://127.0.0.1:1/addresses', '--', 'GET', '-'])

    def test_scripts_are_shipped(self) -> None:
        """requests.lua loads report.lua from its own directory."""
        here = os.path.dirname(SCRIPT)
        self.assertTrue(os.path.isfile(os.path.join(here, 'report.lua')))
        with open(SCRIPT, encoding='utf-8') as f:
            self.assertIn('dofile(here .. "report.lua")', f.read())


class TargetTest(unittest.TestCase):
    def test_ratio_target_met_and_missed(self) -> None:
        """GET by id on memory needs 0.85 of the floor's requests/s."""
        self.assertEqual(judge('memory', figure(GET_ID, 4_250), DEFAULT),
                         Verdict('≥ 0.85', True))
        self.assertEqual(judge('memory', figure(GET_ID, 4_200), DEFAULT),
                         Verdict('≥ 0.85', False))

    def test_fs_writes_are_report_only(self) -> None:
        """POST and PUT on fs have no target."""
        for request in (POST, PUT):
            self.assertEqual(judge('fs', figure(request, 10), DEFAULT),
                             Verdict('report only'))

    def test_get_at_large_size_is_judged_by_scaling_only(self) -> None:
        """GET by id at 100,000 entries has no ratio target of its own."""
        large = figure(GET_ID, 10, stored=100_000)
        self.assertEqual(judge('sqlite', large, DEFAULT), Verdict())

    def test_listing_per_entry_target(self) -> None:
        """GET /addresses at 10,000: time per entry, from requests/s."""
        fast = figure(LIST, 5.0, stored=10_000, returned=10_000)
        self.assertAlmostEqual(fast.per_entry_s or 0, 20e-6)
        self.assertEqual(judge('memory', fast, DEFAULT),
                         Verdict('≤ 20 µs/entry', True))
        slow = figure(LIST, 4.0, stored=10_000, returned=10_000)
        self.assertEqual(judge('memory', slow, DEFAULT),
                         Verdict('≤ 20 µs/entry', False))
        self.assertEqual(judge('memory', figure(LIST, 50, returned=1_000),
                               DEFAULT), Verdict())

    def test_slowdown_compares_smallest_and_largest(self) -> None:
        """GET by id: requests/s at 1,000 over those at 100,000."""
        run = EngineRun('sqlite', wrk_result(5_000), figures=[
            figure(GET_ID, 2_000, stored=100_000), figure(PUT, 1),
            figure(GET_ID, 3_000)])
        found = slowdown(run)
        assert found is not None
        self.assertEqual((found[0].stored, found[1].stored, found[2]),
                         (1_000, 100_000, 1.5))

    def test_rss_per_entry_from_two_largest_sizes(self) -> None:
        """Bytes of RSS per entry added between the two largest sizes."""
        rss = {1_000: 40_000_000, 10_000: 50_000_000, 100_000: 230_000_000}
        self.assertEqual(rss_per_entry(rss), (10_000, 100_000, 2_000.0))
        self.assertIsNone(rss_per_entry({1_000: 1}))

    def test_run_lasts_for_enough_replies(self) -> None:
        """Slow requests lengthen a run, up to a minute."""
        self.assertEqual(run_seconds(DEFAULT, 0.005), 5)
        self.assertEqual(run_seconds(DEFAULT, 1.5), 8)
        self.assertEqual(run_seconds(DEFAULT, 100.0), 60)


class RenderTest(unittest.TestCase):
    def test_figure_row(self) -> None:
        """A row: figures, ratio to the floor, target and verdict."""
        self.assertEqual(
            figure_row('postgres', figure(PUT, 1_600), DEFAULT),
            ['postgres', PUT, '1,000', '1,600', '4.00', '10.0', '0.32', '',
             '0', '≥ 0.30', 'yes'])

    def test_report(self) -> None:
        """The report has the floor, the figures, scaling and RSS rows."""
        run = EngineRun('memory', wrk_result(5_000), figures=[
            figure(GET_ID, 4_000), figure(GET_ID, 3_900, stored=100_000),
            figure(PAGE, 400, returned=100)],
            rss={10_000: 50_000_000, 100_000: 230_000_000},
            seconds=61.0, load_seconds=20.0)
        context = {'started': 0.0, 'elapsed': 75.0, 'load_before': 1.0,
                   'load_after': 2.0, 'machine': '2 cores',
                   'versions': 'Python 3'}
        text = render(DEFAULT, [run], {'postgres': 'no server'}, context)
        self.assertTrue(text.startswith(
            '# Benchmark results\n\n`./run.py bench` (default plan), run on '
            '1970-01-01 00:00 UTC; it took 1 min 15 s (budget 10 min 0 s).'))
        for line in [
            '| memory | bare Tornado: GET /addresses/{id} |  | 5,000 | 4.00 '
            '| 10.0 | 1.00 |  | 0 |  |  |',
            '| memory | GET /addresses/{id} | 1,000 | 4,000 | 4.00 | 10.0 '
            '| 0.80 |  | 0 | ≥ 0.85 | **no** |',
            '| memory | GET /addresses?limit=100 | 1,000 | 400 | 4.00 | '
            '10.0 | 0.08 | 25.0 | 0 |  |  |',
            '| memory | GET /addresses/{id}: req/s at 1,000 over req/s at '
            '100,000 stored | 1.03 | ≤ 1.20 | yes |',
            '| memory | RSS per stored entry, 10,000 to 100,000 stored | '
            '2,000 B | ≤ 2,048 B | yes |',
            '| memory | 20 s | 1 min 1 s |',
            '- postgres: not measured, no server.',
        ]:
            self.assertIn(line + '\n', text)


class TablesTest(unittest.TestCase):
    def test_percentile_nearest_rank(self) -> None:
        """Nearest-rank percentiles of sorted values."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual((percentile(values, 50), percentile(values, 99)),
                         (50.0, 99.0))
        self.assertEqual(percentile([7.0], 99), 7.0)

    def test_markdown_table_alignment(self) -> None:
        """A header ending in ':' right-aligns its column."""
        self.assertEqual(markdown_table(['name', 'n:'], [['a', '1']]),
                         '| name | n |\n| --- | --: |\n| a | 1 |')

    def test_milliseconds(self) -> None:
        """Three significant digits at least."""
        self.assertEqual([ms(0.00425), ms(0.0425), ms(1.5)],
                         ['4.25', '42.5', '1,500'])


class ConfigTest(unittest.TestCase):
    def test_store_and_log_in_workdir(self) -> None:
        """The shipped config, with store and log file in the work dir."""
        shipped = shipped_config('sqlite')
        config = adapt_config(shipped, '/w')
        self.assertEqual(config['addr-db'],
                         {'sqlite': '/w/addressbook.sqlite3'})
        self.assertEqual(config['logging']['handlers']['file']['filename'],
                         '/w/addrservice.log')
        self.assertEqual(shipped_config('sqlite'), shipped)  # not changed
        self.assertEqual(
            {k: v for k, v in config.items() if k not in ('addr-db',
                                                          'logging')},
            {k: v for k, v in shipped.items() if k not in ('addr-db',
                                                           'logging')})

    def test_postgres_gets_its_schema(self) -> None:
        """PostgreSQL keeps the shipped DSN, in the schema given."""
        config = adapt_config(shipped_config('postgres'), '/w', 'bench_1')
        postgres = config['addr-db']['postgres']
        self.assertEqual(postgres['schema'], 'bench_1')
        self.assertEqual(
            postgres['dsn'],
            shipped_config('postgres')['addr-db']['postgres']['dsn'])


if __name__ == '__main__':
    unittest.main()
