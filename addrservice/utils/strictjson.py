"""Strict RFC 8259 JSON in and out, with I-JSON (RFC 7493) number limits.

Python's `json` accepts more than RFC 8259 allows (NaN, Infinity, lone
surrogates, duplicate keys, other encodings than UTF-8) and can fail with
errors other than `JSONDecodeError` (deep nesting, very long integers).
Every such case is refused here with `InvalidJSONError`, so nothing that
is stored or sent can be anything but strict, interoperable JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Integers beyond this lose precision in JavaScript and other IEEE-754
# readers (RFC 7493, section 2.2).
MAX_SAFE_INTEGER = 2 ** 53 - 1

# An address-book entry nests four levels deep; anything far deeper is
# refused before it can cost recursion elsewhere.
MAX_DEPTH = 32

_LONE_SURROGATE = re.compile('[\ud800-\udfff]')

_encoder = json.JSONEncoder(allow_nan=False)


class InvalidJSONError(ValueError):
    """The bytes are not one strict JSON document; `str()` says why."""


def loads(
    data: bytes | str, *, large_integers_as_floats: bool = False
) -> Any:
    """Parse one strict JSON document from UTF-8 bytes (or text).

    With `large_integers_as_floats`, integers beyond the I-JSON range are
    read as floats rather than refused: as a store that prints floats
    without an exponent (PostgreSQL's JSONB) gives back what was written
    as a float, since no larger integer is ever accepted.
    """
    text = _decode_utf8(data) if isinstance(data, bytes) else data
    decoder = _large_as_float_decoder if large_integers_as_floats \
        else _decoder
    try:
        document = decoder.decode(text)
    except json.JSONDecodeError as e:
        raise InvalidJSONError(str(e)) from None
    except RecursionError:
        raise InvalidJSONError('nesting too deep') from None
    if not _shallow_and_unescaped(text, from_utf8=isinstance(data, bytes)):
        _check_depth_and_strings(document)
    return document


def _shallow_and_unescaped(text: str, from_utf8: bool) -> bool:
    """Whether the walk over the parsed document can be skipped, as most
    documents allow: too few brackets to nest too deep, and no string
    that can hold a surrogate (UTF-8 cannot encode one; only an escape
    can). The walk costs several times the parse."""
    return (
        from_utf8
        and text.count('{') + text.count('[') <= MAX_DEPTH
        and '\\u' not in text
    )


def loads_jsonb(text: str) -> Any:
    """Parse JSON text as PostgreSQL's JSONB prints it, from documents that
    `loads()` accepted when they were stored.

    JSONB holds only valid JSON (no NaN, duplicate keys or lone
    surrogates), so its text needs none of `loads()`'s checks, which cost
    as much as the parse itself; only its numbers need care: it prints a
    large float as a long integer, which is read back as a float, since
    no larger integer is ever accepted.
    """
    try:
        return _jsonb_decoder.decode(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise InvalidJSONError(f'not JSON: {e}') from None


def dumps(document: Any) -> str:
    """Serialise as strict JSON; `ValueError` for NaN or infinity."""
    return _encoder.encode(document)


def _decode_utf8(data: bytes) -> str:
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise InvalidJSONError(f'body is not valid UTF-8: {e.reason} '
                               f'at byte {e.start}') from None


def _reject_constant(name: str) -> Any:
    raise InvalidJSONError(f'{name} is not valid JSON')


def _parse_int(literal: str) -> int:
    if not _safe_integer(literal):
        raise InvalidJSONError(f'integer out of range: {literal[:20]}')
    return int(literal)


def _parse_int_or_float(literal: str) -> int | float:
    return int(literal) if _safe_integer(literal) else _parse_float(literal)


def _safe_integer(literal: str) -> bool:
    # Checking the length first keeps int() away from huge literals.
    digits = literal.lstrip('-')
    return len(digits) <= 16 and int(digits) <= MAX_SAFE_INTEGER


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidJSONError(f'number out of range: {literal[:20]}')
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJSONError(f'duplicate key {key!r}')
            seen.add(key)
    return document


def _check_depth_and_strings(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidJSONError('nesting too deep')
            if isinstance(value, dict):
                for key in value:
                    _check_string(key)
                value = value.values()
            stack.extend((child, depth + 1) for child in value)


def _check_string(value: str) -> None:
    if _LONE_SURROGATE.search(value):
        raise InvalidJSONError('string contains a lone surrogate')


_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_float,
)

_jsonb_decoder = json.JSONDecoder(parse_int=_parse_int_or_float)

_large_as_float_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_constant=_reject_constant,
    parse_int=_parse_int_or_float,
    parse_float=_parse_float,
)
