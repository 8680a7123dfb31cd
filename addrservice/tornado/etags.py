"""Entity tags: an entry's version tag, quoted, is its ETag."""

from __future__ import annotations

import re
from typing import Sequence

from addrservice.service import IfMatch

# RFC 9110, section 8.8.3: [ W/ ] DQUOTE *etagc DQUOTE, one element of a
# comma-separated list (whose elements may be empty).
_LIST_ELEMENT = re.compile(
    r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|\Z)')


class InvalidPreconditionError(ValueError):
    """An `If-Match` header that is not `*` or a list of entity tags."""


def format_etag(tag: str) -> str:
    return f'"{tag}"'


def parse_if_match(values: Sequence[str]) -> IfMatch:
    """The versions that `If-Match` header `values` let a write replace.

    If-Match compares strongly, so a weak tag never matches.
    `InvalidPreconditionError` for a header that is not a list of entity
    tags.
    """
    text = ','.join(values)
    if text.strip(' \t') == '*':  # only HTTP's own whitespace around it
        return IfMatch(any_version=True)
    return IfMatch(tags=frozenset(
        opaque for weak, opaque in _entity_tags(text) if not weak))


def _entity_tags(text: str) -> list[tuple[bool, str]]:
    """`(weak, opaque)` of each entity tag in the list `text`."""
    tags = []
    position = 0
    while position < len(text):
        match = _LIST_ELEMENT.match(text, position)
        if match is None or match.end() == position:
            raise _invalid(text)
        if match.group(2) is not None:
            tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    if not tags:
        raise _invalid(text)
    return tags


def _invalid(text: str) -> InvalidPreconditionError:
    shown = text if len(text) <= 100 else text[:97] + '...'
    return InvalidPreconditionError(
        f'If-Match must be * or a list of quoted entity tags, not {shown!r}')
