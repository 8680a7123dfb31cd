"""Sample address-book entries, one JSON file per nickname."""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Sequence

ADDR_SERVICE_TEST_DATA_DIR = os.path.abspath(os.path.dirname(__file__))

ADDRESS_DATA_DIR = os.path.join(ADDR_SERVICE_TEST_DATA_DIR, 'addresses')

ADDRESS_FILES = sorted(glob.glob(os.path.join(ADDRESS_DATA_DIR, '*.json')))


def address_data_suite(
    json_files: Sequence[str] = ADDRESS_FILES,
) -> dict[str, dict[str, Any]]:
    """`{nickname: entry}` for each file; the nickname is the file's stem."""
    suite = {}
    for fname in json_files:
        nickname = os.path.splitext(os.path.basename(fname))[0]
        with open(fname, encoding='utf-8') as f:
            suite[nickname] = json.load(f)
    return suite
