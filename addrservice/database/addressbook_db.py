"""The storage interface and its engines, at the tutorial's import path.

Each engine lives in a module named after its technology.
"""

from addrservice.database.base import (
    NICKNAME_PATTERN,
    AbstractAddressBookDB,
    existing_nickname,
    new_nickname,
)
from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.database.memory import InMemoryAddressBookDB

__all__ = [
    'AbstractAddressBookDB',
    'FilesystemAddressBookDB',
    'InMemoryAddressBookDB',
    'NICKNAME_PATTERN',
    'existing_nickname',
    'new_nickname',
]
