"""Reading a listing a page at a time: `?limit=N&after=ID`."""

from __future__ import annotations

import dataclasses
import re
from typing import Generic, Mapping, Sequence, TypeVar

from addrservice.datamodel import ENTRY_ID_REGEX
from addrservice.errors import InvalidPagingError

_E = TypeVar('_E')

MAX_LIMIT = 1000

# The query parameters of a listing; any other is refused, as a client
# that sends one expects an effect it would not get.
PARAMETERS = ('limit', 'after')

_LIMIT = re.compile(r'[0-9]{1,9}\Z')
_AFTER = re.compile(ENTRY_ID_REGEX + r'\Z')


@dataclasses.dataclass(frozen=True)
class Paging:
    """At most `limit` entries (all if None), in id order, after the id
    `after` (from the first if None)."""

    limit: int | None = None
    after: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> Paging:
        """From query parameters, each with all its values as given;
        `InvalidPagingError` names the first one that cannot be used."""
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise InvalidPagingError(f'unknown parameter {unknown[0]!r}; '
                                     'a listing takes limit and after')
        limit = _one(query, 'limit')
        after = _one(query, 'after')
        if limit is not None and not _valid_limit(limit):
            raise InvalidPagingError(
                f'limit must be an integer from 1 to {MAX_LIMIT}, '
                f'not {limit!r}')
        if after is not None and not _AFTER.match(after):
            raise InvalidPagingError(
                f'after must be an entry id, not {after!r}')
        return cls(None if limit is None else int(limit), after)


@dataclasses.dataclass(frozen=True)
class Page(Generic[_E]):
    """A page of a listing: entries in id order, and the id to read the
    next page after, if more remain."""

    entries: dict[str, _E]
    next_after: str | None

    @classmethod
    def of(cls, entries: dict[str, _E], limit: int | None) -> Page[_E]:
        """The page of `entries`, read with one more than `limit`: that one
        only tells whether another page follows."""
        if limit is None or len(entries) <= limit:
            return cls(entries, next_after=None)
        entries.popitem()
        return cls(entries, next_after=next(reversed(entries)))


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name, ())
    if len(values) > 1:
        raise InvalidPagingError(f'{name} given more than once')
    return values[0] if values else None


def _valid_limit(text: str) -> bool:
    return bool(_LIMIT.match(text)) and 1 <= int(text) <= MAX_LIMIT
