"""Address Book microservice."""

from __future__ import annotations

import json
import pathlib
from typing import Any

LOGGER_NAME = 'addrservice'

# The schema ships inside the repository, one level above the package.
ADDRESS_BOOK_SCHEMA_PATH = (
    pathlib.Path(__file__).resolve().parent.parent
    / 'schema' / 'address-book-v1.0.json'
)

with ADDRESS_BOOK_SCHEMA_PATH.open(encoding='utf-8') as _schema_file:
    ADDRESS_BOOK_SCHEMA: dict[str, Any] = json.load(_schema_file)
