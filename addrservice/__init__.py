"""Address Book microservice."""

from __future__ import annotations

import importlib.resources
import json
from typing import Any

LOGGER_NAME = 'addrservice'

# schema/address-book-v1.0.json, through a link inside the package so that
# an installed package carries it too.
ADDRESS_BOOK_SCHEMA: dict[str, Any] = json.loads(
    importlib.resources.files(__name__)
    .joinpath('schema', 'address-book-v1.0.json')
    .read_text(encoding='utf-8')
)
