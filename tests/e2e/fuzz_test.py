"""Contract fuzzing: Schemathesis finds nothing against a live server.

For each engine, a server runs as a process on 127.0.0.1, and Schemathesis
tests every operation of the contract it serves at /openapi.json, with all
its checks (see tests/e2e/fuzzing.py and schemathesis.toml): no 5xx, status
codes, content types, headers and bodies as documented, invalid input
refused and valid input accepted, and, along the links between POST, GET,
PUT and DELETE, that a created entry can be read and a deleted one cannot.

The seed is fixed, so every run sends the same requests: a failure here is
reproduced by running the test again. `./run.py fuzz --max-time N` fuzzes
for longer, with other seeds.
"""

from __future__ import annotations

import tempfile
import unittest

from tests.e2e.fuzzing import report, run_contract, start_server

SEED = 20261129
# Examples per operation and phase (and stateful scenarios): enough for the
# stateful phase to follow most links; the two engines take about 50 s
# together.
MAX_EXAMPLES = 40


class FuzzContract(unittest.TestCase):
    engine: str

    def test_schemathesis_finds_no_failure(self) -> None:
        """Every Schemathesis check passes on every operation, and the
        server then stops cleanly."""
        workdir = self.enterContext(
            tempfile.TemporaryDirectory(prefix='addrservice-fuzz-'))
        server = start_server(self.engine, workdir)
        self.addCleanup(server.close)

        result = run_contract(server.port, SEED, MAX_EXAMPLES, workdir)

        self.assertEqual(result.returncode, 0,
                         f'{self.engine}, seed {SEED}:\n{report(result)}')
        self.assertEqual(server.stop(), 0, server.stderr)


class MemoryFuzzTest(FuzzContract):
    engine = 'memory'


class SqliteFuzzTest(FuzzContract):
    engine = 'sqlite'


del FuzzContract  # run only through the engine subclasses
