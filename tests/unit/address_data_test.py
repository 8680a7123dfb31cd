"""The sample entries in data/addresses conform to the address-book schema."""

from __future__ import annotations

import copy
import json
import os
import unittest

from jsonschema import Draft7Validator

from addrservice import ADDRESS_BOOK_SCHEMA
from data import ADDRESS_DATA_DIR, ADDRESS_FILES, address_data_suite


def _validator() -> Draft7Validator:
    return Draft7Validator(
        ADDRESS_BOOK_SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER
    )


class AddressDataTest(unittest.TestCase):
    def test_schema_is_a_valid_draft7_schema(self) -> None:
        """The schema itself passes Draft 7's meta-schema."""
        Draft7Validator.check_schema(ADDRESS_BOOK_SCHEMA)

    def test_every_file_conforms_to_the_schema(self) -> None:
        """Each JSON file in data/addresses validates, formats included."""
        self.assertTrue(ADDRESS_FILES)
        validator = _validator()
        for fname in ADDRESS_FILES:
            with self.subTest(file=os.path.basename(fname)):
                with open(fname, encoding='utf-8') as f:
                    entry = json.load(f)
                errors = [e.message for e in validator.iter_errors(entry)]
                self.assertEqual(errors, [])

    def test_format_checker_is_in_force(self) -> None:
        """A sample entry with a malformed email fails, so formats count."""
        entry = copy.deepcopy(address_data_suite()['namo'])
        entry['emails'][0]['email'] = 'not-an-email'
        errors = list(_validator().iter_errors(entry))
        self.assertEqual([list(e.absolute_path) for e in errors],
                         [['emails', 0, 'email']])
        self.assertEqual(errors[0].validator, 'format')

    def test_files_are_the_two_samples(self) -> None:
        """ADDRESS_FILES lists namo.json and raga.json in data/addresses."""
        self.assertEqual(
            ADDRESS_FILES,
            [os.path.join(ADDRESS_DATA_DIR, 'namo.json'),
             os.path.join(ADDRESS_DATA_DIR, 'raga.json')],
        )

    def test_suite_is_keyed_by_file_stem(self) -> None:
        """address_data_suite() maps each file's stem to its parsed entry."""
        suite = address_data_suite()
        self.assertEqual(sorted(suite), ['namo', 'raga'])
        for nickname, entry in suite.items():
            with self.subTest(nickname=nickname):
                path = os.path.join(ADDRESS_DATA_DIR, nickname + '.json')
                with open(path, encoding='utf-8') as f:
                    self.assertEqual(entry, json.load(f))

    def test_suite_content_of_a_sample(self) -> None:
        """The namo entry carries its full name and counts of each list."""
        namo = address_data_suite()['namo']
        self.assertEqual(namo['full_name'], 'Narendra Modi')
        self.assertEqual(
            [len(namo[k]) for k in
             ('addresses', 'phone_numbers', 'fax_numbers', 'emails')],
            [3, 1, 2, 2],
        )

    def test_suite_of_chosen_files(self) -> None:
        """address_data_suite(files) reads only the files it is given."""
        raga = os.path.join(ADDRESS_DATA_DIR, 'raga.json')
        suite = address_data_suite([raga])
        self.assertEqual(list(suite), ['raga'])
        self.assertEqual(suite['raga']['full_name'], 'Rahul Gandhi')


if __name__ == '__main__':
    unittest.main()
