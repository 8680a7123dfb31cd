"""Domain errors raised below the HTTP layer.

The HTTP layer maps each class to a status code in one table
(`addrservice.tornado.errors`); nothing here knows about HTTP.
"""

from __future__ import annotations


class AddressNotFoundError(KeyError):
    """No entry has this id. `str()` is the quoted id, as `KeyError` gives."""


class AddressExistsError(KeyError):
    """An entry with this id exists already."""


class VersionConflictError(Exception):
    """A conditional write found the entry at another version than the
    one the client last saw: it was changed in between."""


class CorruptEntryError(Exception):
    """A stored entry that cannot be read back: a fault of the store."""


class InvalidEntryError(ValueError):
    """A value that the data model refuses (a required field left empty)."""


class InvalidIdError(ValueError):
    """An id that no entry can have (outside `[A-Za-z0-9-]{1,64}`)."""


class SchemaValidationError(ValueError):
    """A document that does not conform to the address-book JSON schema.

    `str()` is always 'JSON Schema validation failed'; `detail` is the
    validator's own message and `path` the JSON pointer where it failed.
    """

    MESSAGE = 'JSON Schema validation failed'

    def __init__(self, detail: str, path: str) -> None:
        super().__init__(self.MESSAGE)
        self.detail = detail
        self.path = path


class StorageUnavailableError(Exception):
    """The store cannot be reached or opened (a database that is down)."""


class InvalidPagingError(ValueError):
    """A `limit` or `after` query parameter that cannot be used."""


class AuthenticationError(Exception):
    """A request without a valid bearer token; `str()` says what is wrong,
    never the token.

    `invalid_token` is true when a token was given but is not known, false
    when none was given or it could not be read.
    """

    def __init__(self, detail: str, invalid_token: bool = False) -> None:
        super().__init__(detail)
        self.invalid_token = invalid_token
