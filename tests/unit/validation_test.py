"""The fast validator agrees with `jsonschema`, the oracle, on every
document: generated valid entries, near misses and arbitrary JSON."""

from __future__ import annotations

import copy
import unittest
from typing import Any

import jsonschema
import jsonschema_rs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from addrservice import ADDRESS_BOOK_SCHEMA
from addrservice.errors import SchemaValidationError
from addrservice.validation import EntryValidator
from data import address_data_suite

ORACLE = jsonschema.Draft7Validator(
    ADDRESS_BOOK_SCHEMA,
    format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
)
VALIDATOR = EntryValidator(ADDRESS_BOOK_SCHEMA)

JSON_SCALARS = (st.none() | st.booleans() | st.text(max_size=8)
                | st.integers(-2**53 + 1, 2**53 - 1)
                | st.floats(allow_nan=False, allow_infinity=False))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ['full_name', 'addresses', 'phone_numbers', 'fax_numbers',
          'emails', 'kind', 'email', 'country_code', 'local_number',
          'building_name', 'unit', 'street', 'locality', 'city', 'region',
          'country', 'postal_code']

SLOW = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def mutate(document: Any, path: list[Any], value: Any) -> Any:
    """`document` with the part at `path` replaced by `value`, or as it
    is where `path` leads nowhere (names index objects, numbers lists)."""
    mutated = copy.deepcopy(document)
    node = mutated
    for step in path[:-1]:
        node = _child(node, step)
        if node is None:
            return mutated
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    elif isinstance(node, list) and node and isinstance(last, int):
        node[last % len(node)] = value
    return mutated


def _child(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and node and isinstance(step, int):
        return node[step % len(node)]
    return None


class DifferentialTest(unittest.TestCase):
    def assert_agree(self, document: Any) -> None:
        expected = ORACLE.is_valid(document)
        self.assertEqual(VALIDATOR.is_valid(document), expected, document)
        if expected:
            VALIDATOR.validate(document)
        else:
            with self.assertRaises(SchemaValidationError):
                VALIDATOR.validate(document)

    @SLOW
    @given(from_schema(ADDRESS_BOOK_SCHEMA))
    def test_generated_entries(self, document: Any) -> None:
        """Documents generated from the schema: both accept them."""
        self.assertTrue(ORACLE.is_valid(document))
        self.assert_agree(document)

    @SLOW
    @given(from_schema(ADDRESS_BOOK_SCHEMA),
           st.lists(st.sampled_from(FIELDS) | st.integers(0, 3),
                    min_size=1, max_size=4),
           JSON_VALUES)
    def test_near_misses(
        self, document: Any, path: list[Any], value: Any
    ) -> None:
        """Valid documents with one part replaced by any JSON value."""
        self.assert_agree(mutate(document, path, value))

    @SLOW
    @given(JSON_VALUES)
    def test_arbitrary_json(self, document: Any) -> None:
        self.assert_agree(document)

    @SLOW
    @given(st.text(max_size=12))
    def test_email_formats(self, email: str) -> None:
        """Both check "email" by `jsonschema`'s rule, whatever the text."""
        self.assert_agree({'full_name': 'x',
                           'emails': [{'kind': 'work', 'email': email}]})

    def test_email_edge_cases(self) -> None:
        """Where the two libraries' own email rules differ, the service
        keeps `jsonschema`'s: any text with an @."""
        for email in ['@', 'a@', '@b', 'a b@c', '"a"@b', 'a@b.c', 'ab']:
            with self.subTest(email=email):
                self.assert_agree({'full_name': 'x', 'emails': [
                    {'kind': 'work', 'email': email}]})

    def test_own_email_rules_would_differ(self) -> None:
        """Why the fast validator is given `jsonschema`'s format rules:
        with its own, it refuses emails the service has always taken."""
        own_rules = jsonschema_rs.Draft7Validator(
            ADDRESS_BOOK_SCHEMA, validate_formats=True)
        document = {'full_name': 'x',
                    'emails': [{'kind': 'work', 'email': 'a b@c'}]}
        self.assertTrue(ORACLE.is_valid(document))
        self.assertFalse(own_rules.is_valid(document))
        self.assertTrue(VALIDATOR.is_valid(document))

    def test_reference_entries(self) -> None:
        for name, document in address_data_suite().items():
            with self.subTest(name=name):
                self.assertTrue(VALIDATOR.is_valid(document))
                self.assert_agree(document)


class ErrorDetailTest(unittest.TestCase):
    def test_detail_and_path_come_from_jsonschema(self) -> None:
        """An invalid document's error names the failing part."""
        document = {'full_name': 'x', 'emails': [
            {'kind': 'work', 'email': 'ok@example.com'},
            {'kind': 'home', 'email': 'nope'}]}
        with self.assertRaises(SchemaValidationError) as caught:
            VALIDATOR.validate(document)
        self.assertEqual(caught.exception.detail, "'nope' is not a 'email'")
        self.assertEqual(caught.exception.path, '/emails/1/email')

    def test_long_detail_is_shortened(self) -> None:
        with self.assertRaises(SchemaValidationError) as caught:
            VALIDATOR.validate({'full_name': 'x' * 1000, 'kind': 7})
        self.assertLessEqual(len(caught.exception.detail), 300)


if __name__ == '__main__':
    unittest.main()
