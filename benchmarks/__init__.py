"""Load-driving commands for the service: `./run.py soak` and
`./run.py bench` (see `soak.py` and `bench.py`)."""

from __future__ import annotations

# The storage engines the commands can load, in the order they run.
ENGINES = ('memory', 'fs', 'sqlite', 'postgres')
