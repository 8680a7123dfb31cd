"""Contract fuzzing: Schemathesis against a live server of one engine.

The server runs as a process on a free port of 127.0.0.1, and Schemathesis
reads the contract from the server itself (`GET /openapi.json`), so what is
fuzzed is what is served. It talks to that server only. Its settings, and
the reason for each, are in `schemathesis.toml` beside this file.

- `run_contract`: `schemathesis run`, every phase (coverage, fuzzing and
  stateful, along the links between POST, GET, PUT and DELETE), bounded by
  a number of examples per operation and reproducible by its seed.
- `run_fuzz`: `schemathesis fuzz`, sequences of calls until a time limit,
  for `./run.py fuzz`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

import yaml

from tests.e2e.server_test import ServerProcess, free_port, local_config

SETTINGS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'schemathesis.toml')
SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), 'schemathesis')
ENGINES = ('memory', 'sqlite')

# Beyond its own limits, for a Schemathesis that hangs.
GRACE_S = 120.0


def engine_config(engine: str, workdir: str) -> dict[str, Any]:
    """The local config on `engine`, with its log and store in `workdir`."""
    config = local_config(os.path.join(workdir, 'addrservice-app.log'))
    if engine == 'sqlite':
        config['addr-db'] = {
            'sqlite': os.path.join(workdir, 'addressbook.sqlite3')}
    elif engine != 'memory':
        raise ValueError(f'no fuzzing config for engine {engine!r}')
    return config


def start_server(engine: str, workdir: str) -> ServerProcess:
    """A server of `engine` on a free port of 127.0.0.1, accepting."""
    path = os.path.join(workdir, f'{engine}.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(engine_config(engine, workdir), f)
    port = free_port()
    server = ServerProcess(
        [sys.executable, '-m', 'addrservice', '-p', str(port), '-c', path,
         '--address', '127.0.0.1'],
        port, workdir)
    server.start()
    return server


def schemathesis_args(port: int, command: str) -> list[str]:
    """`schemathesis COMMAND` on the server's own contract, in one worker
    (so a seed replays the same requests) and without an example database
    (so no earlier run changes this one)."""
    base_url = f'http://127.0.0.1:{port}'
    return [SCHEMATHESIS, '--config-file', SETTINGS, command,
            f'{base_url}/openapi.json', '--url', base_url,
            '--workers', '1', '--generation-database', 'none', '--no-color']


def run_contract(port: int, seed: int, max_examples: int,
                 workdir: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` against the server: exit status 0 when every
    check passes; its report on stdout."""
    args = schemathesis_args(port, 'run') + [
        '--seed', str(seed), '--max-examples', str(max_examples)]
    return subprocess.run(args, cwd=workdir, env=_environment(),
                          capture_output=True, text=True, timeout=GRACE_S)


def run_fuzz(max_time: int, engine: str, seed: int | None) -> int:
    """`./run.py fuzz`: fuzz a fresh server of `engine` for `max_time`
    seconds; Schemathesis's report (with its seed) goes to the terminal.
    The exit status is non-zero when it found a failure, or when the
    server did not stop cleanly."""
    with tempfile.TemporaryDirectory(prefix='addrservice-fuzz-') as workdir:
        server = start_server(engine, workdir)
        try:
            args = schemathesis_args(server.port, 'fuzz') + [
                '--max-time', str(max_time),
                *(['--seed', str(seed)] if seed is not None else [])]
            status = subprocess.call(args, cwd=workdir, env=_environment(),
                                     timeout=max_time + GRACE_S)
        finally:
            stopped = server.stop()
        if stopped != 0:
            print(f'server exited {stopped}: {server.stderr}', file=sys.stderr)
        return status or stopped


def report(result: subprocess.CompletedProcess[str], limit: int = 20000
           ) -> str:
    """What to show of a failed run: its failures and errors, with the
    requests that reproduce them, and its summary."""
    text = result.stdout + result.stderr
    for heading in ('= ERRORS =', '= FAILURES ='):
        start = text.find(heading)
        if start != -1:
            text = text[text.rfind('\n', 0, start) + 1:]
            break
    return text if len(text) <= limit else '...\n' + text[-limit:]


def _environment() -> dict[str, str]:
    # Under `./run.py coverage`, a Python subprocess is measured too; that
    # is wanted for the server, not for Schemathesis.
    return {name: value for name, value in os.environ.items()
            if not name.startswith('COVERAGE_')}
