"""wrk runs: the command line for a load, and the figures it reports.

Every run uses `requests.lua`, which ends wrk's output with the line of
`report.lua`; `parse_report` reads it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, 'requests.lua')
INSTALL = 'sudo apt-get install -y wrk'
REPORT_PREFIX = 'wrk-report '
# One wrk thread is plenty: the server is one Python process.
THREADS = 1
CONNECTIONS = 16
# wrk's own timeout (2 s) would count a slow listing as an error.
TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class Load:
    """What a run sends: `method` to `path`, or to /addresses/{id} for
    each id of `ids_file` in turn; with the JSON body of `body_file`."""

    method: str = 'GET'
    path: str = '/addresses'
    body_file: str | None = None
    ids_file: str | None = None
    connections: int = CONNECTIONS


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_s: float
    p99_s: float
    #: responses with a status of 400 or more, and socket errors
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def missing() -> str | None:
    """Why wrk cannot run, with how to install it; None if it can."""
    if shutil.which('wrk') is None:
        return f'wrk is not installed; install it with `{INSTALL}`'
    return None


def version() -> str:
    """`debian/4.1.0-3+b2`, from `wrk -v` (which exits 1)."""
    output = subprocess.run(['wrk', '-v'], capture_output=True,
                            text=True).stdout
    words = output.split()
    return words[1] if len(words) > 1 else 'unknown'


def command(port: int, load: Load, seconds: int) -> list[str]:
    args = [load.method, load.body_file or '-']
    if load.ids_file is not None:
        args.append(load.ids_file)
    return ['wrk', f'-t{THREADS}', f'-c{load.connections}', f'-d{seconds}s',
            f'--timeout={TIMEOUT_S}s', '-s', SCRIPT,
            f'http://127.0.0.1:{port}{load.path}', '--', *args]


def run(port: int, load: Load, seconds: int) -> WrkResult:
    """Run wrk for `seconds` (whole seconds, as wrk takes them)."""
    done = subprocess.run(command(port, load, seconds), capture_output=True,
                          text=True, timeout=seconds + TIMEOUT_S + 30)
    if done.returncode != 0:
        raise RuntimeError(f'wrk exited {done.returncode}: '
                           f'{done.stderr.strip() or done.stdout.strip()}')
    return parse_report(done.stdout)


def parse_report(output: str) -> WrkResult:
    """The figures of report.lua's line in wrk's output."""
    lines = [line for line in output.splitlines()
             if line.startswith(REPORT_PREFIX)]
    if len(lines) != 1:
        raise ValueError(f'expected one {REPORT_PREFIX.strip()!r} line in '
                         f'wrk output, got {len(lines)}: {output!r}')
    pairs = (pair.split('=', 1) for pair in lines[0].split()[1:])
    fields = {key: int(value) for key, value in pairs}
    errors = sum(fields[key] for key in (
        'connect_errors', 'read_errors', 'write_errors', 'status_errors',
        'timeouts'))
    return WrkResult(
        requests=fields['requests'],
        seconds=fields['duration_us'] / 1e6,
        p50_s=fields['p50_us'] / 1e6,
        p99_s=fields['p99_us'] / 1e6,
        errors=errors,
    )
