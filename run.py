#!/usr/bin/env python3
"""Developer workflow: lint, typecheck, test, coverage; bench, soak, fuzz.

Each sub-command exits non-zero when it fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import unittest
from typing import Sequence

from benchmarks import ENGINES

SOURCE_CODE = ['addrservice']
TEST_CODE = ['tests']
ALL_CODE = SOURCE_CODE + ['data'] + TEST_CODE + ['benchmarks', 'run.py']

TEST_SUITES = {
    'all': 'tests',
    'unit': 'tests/unit',
    'integration': 'tests/integration',
    'e2e': 'tests/e2e',
}

COVERAGE_FAIL_UNDER = '95'
POSTGRES_ENGINE = 'addrservice/database/postgres.py'


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run linter, static type checker, tests, coverage'
    )
    commands = parser.add_subparsers(dest='func', required=True)

    typecheck = commands.add_parser('typecheck', help='run mypy')
    typecheck.add_argument('-c', '--checker', default='mypy')
    typecheck.add_argument('paths', nargs='*', default=ALL_CODE)

    lint = commands.add_parser('lint', help='run flake8')
    lint.add_argument('-l', '--linter', default='flake8')
    lint.add_argument('paths', nargs='*', default=ALL_CODE)

    for name in ('test', 'coverage'):
        command = commands.add_parser(name, help=f'run the tests ({name})')
        command.add_argument('--suite', choices=list(TEST_SUITES),
                             default='all', help='default: %(default)s')
        command.add_argument('-v', '--verbose', action='store_true')

    bench = commands.add_parser(
        'bench', help='requests/s of each endpoint, with wrk, per engine')
    bench.add_argument('--quick', action='store_true',
                       help='shorter runs, smaller stores (2 min at most)')
    bench.add_argument('--engines', nargs='+', choices=ENGINES,
                       default=list(ENGINES), help='default: all')

    soak = commands.add_parser(
        'soak', help='mixed CRUD by many clients, then check every write')
    soak.add_argument('--seconds', type=positive_int, required=True)
    soak.add_argument('--engine', choices=ENGINES, default='sqlite',
                      help='default: %(default)s')
    soak.add_argument('--clients', type=positive_int, default=50,
                      help='default: %(default)s')

    fuzz = commands.add_parser(
        'fuzz', help='Schemathesis against a live server, for a time')
    fuzz.add_argument('--max-time', type=positive_int, required=True,
                      help='seconds')
    fuzz.add_argument('--engine', choices=('memory', 'sqlite'),
                      default='sqlite', help='default: %(default)s')
    fuzz.add_argument('--seed', type=int,
                      help='replay a run (default: a new seed)')
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
    return value


def run_checker(checker: str, paths: Sequence[str]) -> int:
    return subprocess.call([sys.executable, '-m', checker, *paths])


def run_tests(suite_name: str, verbose: bool) -> int:
    """Run a suite; end with the line 'N passed, N failed[, N skipped]'."""
    suite = unittest.TestLoader().discover(
        TEST_SUITES[suite_name], pattern='*_test.py'
    )
    result = unittest.TextTestRunner(verbosity=2 if verbose else 1).run(suite)
    print(summary_line(result))
    return 0 if result.wasSuccessful() and result.testsRun else 1


def summary_line(result: unittest.TestResult) -> str:
    failed = len(result.failures) + len(result.errors) + \
        len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    line = f'{passed} passed, {failed} failed'
    if result.skipped:
        line += f', {len(result.skipped)} skipped'
    return line


def run_coverage(suite_name: str, verbose: bool) -> int:
    """Run the tests under coverage (subprocesses too) and report.

    The tests' summary line is repeated last, after the report.
    """
    coverage = [sys.executable, '-m', 'coverage']
    subprocess.call([*coverage, 'erase'])
    args = ['run.py', 'test', '--suite', suite_name]
    tests, summary = run_echoing(
        [*coverage, 'run', *args, *(['-v'] if verbose else [])]
    )
    subprocess.call([*coverage, 'combine', '--quiet'])
    report = subprocess.call(
        [*coverage, 'report', f'--fail-under={COVERAGE_FAIL_UNDER}',
         *untested_engines()]
    )
    print(summary or '0 passed, 0 failed')
    return tests or report


def untested_engines() -> list[str]:
    """`coverage report` options leaving out the PostgreSQL engine when its
    tests were skipped for want of a server (they fail rather than skip
    when ADDRSERVICE_REQUIRE_PG=1)."""
    from tests.pg import pg_dsn, pg_required, pg_unavailable
    reason = None if pg_required() else pg_unavailable(pg_dsn())
    if reason is None:
        return []
    print(f'Coverage leaves out {POSTGRES_ENGINE}: {reason}')
    return [f'--omit={POSTGRES_ENGINE}']


def run_echoing(command: Sequence[str]) -> tuple[int, str]:
    """Run a command, echoing its output; return its status and last line."""
    last = ''
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            print(line, end='', flush=True)
            last = line.strip() or last
    return p.returncode, last


def main(argv: Sequence[str] | None = None) -> int:
    os.chdir(os.path.abspath(os.path.dirname(__file__)))
    args = arg_parser().parse_args(argv)
    if args.func == 'typecheck':
        return run_checker(args.checker, args.paths)
    if args.func == 'lint':
        return run_checker(args.linter, args.paths)
    if args.func == 'test':
        return run_tests(args.suite, args.verbose)
    if args.func == 'bench':
        from benchmarks.bench import run_bench
        return run_bench(args.quick, args.engines)
    if args.func == 'soak':
        from benchmarks.soak import run_soak
        return run_soak(args.seconds, args.engine, args.clients)
    if args.func == 'fuzz':
        from tests.e2e.fuzzing import run_fuzz
        return run_fuzz(args.max_time, args.engine, args.seed)
    return run_coverage(args.suite, args.verbose)


if __name__ == '__main__':
    sys.exit(main())
