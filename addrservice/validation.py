"""Validation of entries against the address-book JSON schema.

Two validators, compiled once from the same schema:

- `jsonschema_rs` (Rust) decides whether a document is valid: about
  3 us for a reference entry, against about 500 us for `jsonschema`'s
  compiled validator. It is on the path of every write.
- `jsonschema` explains an invalid document: its best error's message
  and JSON-pointer path go into the 400 body, as they always have. It
  runs only for documents the first has refused, and has the last word.

Formats are checked with `jsonschema`'s own format checker in both, so
that both accept the same documents: `jsonschema_rs` would otherwise
apply its stricter rules of its own (for "email", RFC 5321 instead of
"contains an @"). A differential test checks that the two agree.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Mapping

import jsonschema
import jsonschema.exceptions
import jsonschema_rs

from addrservice.errors import SchemaValidationError

# The validator's message quotes the offending value, which may be large.
_MAX_DETAIL = 300

# The best error is chosen among the first few: a document can hold
# hundreds of thousands of errors, and each costs time to find.
_ERRORS_WEIGHED = 20

_FORMAT_CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER


class EntryValidator:
    """Checks documents against one JSON schema (draft 7)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        jsonschema.Draft7Validator.check_schema(schema)
        self._explainer = jsonschema.Draft7Validator(
            schema, format_checker=_FORMAT_CHECKER)
        self._checker = jsonschema_rs.Draft7Validator(
            dict(schema), validate_formats=True,
            formats=_jsonschema_formats())

    def is_valid(self, document: Any) -> bool:
        """Whether `document` conforms, by the fast validator alone."""
        return bool(self._checker.is_valid(document))

    def validate(self, document: Any) -> None:
        """`SchemaValidationError` unless `document` conforms."""
        if self._checker.is_valid(document):
            return
        error = jsonschema.exceptions.best_match(itertools.islice(
            self._explainer.iter_errors(document), _ERRORS_WEIGHED
        ))
        if error is not None:
            raise SchemaValidationError(
                detail=_shorten(error.message),
                path=_json_pointer(error.absolute_path),
            )


def _jsonschema_formats() -> dict[str, Callable[[str], bool]]:
    """Every format `jsonschema` checks, by its own rule."""
    return {
        name: _conforms_to(name) for name in _FORMAT_CHECKER.checkers
    }


def _conforms_to(name: str) -> Callable[[str], bool]:
    def conforms(instance: str) -> bool:
        return bool(_FORMAT_CHECKER.conforms(instance, name))
    return conforms


def _shorten(message: str) -> str:
    if len(message) <= _MAX_DETAIL:
        return message
    return message[:_MAX_DETAIL - 3] + '...'


def _json_pointer(path: Iterable[Any]) -> str:
    """RFC 6901 pointer to the failing part of the document ('' is all)."""
    return ''.join(
        '/' + str(part).replace('~', '~0').replace('/', '~1')
        for part in path
    )
