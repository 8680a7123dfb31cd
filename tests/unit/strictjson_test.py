"""strictjson: RFC 8259 JSON with I-JSON limits, refused otherwise."""

from __future__ import annotations

import unittest
from typing import Any

from addrservice.utils import strictjson
from addrservice.utils.strictjson import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    InvalidJSONError,
)


def _arrays(depth: int) -> str:
    return '[' * depth + ']' * depth


def _objects(depth: int) -> str:
    return '{"a":' * (depth - 1) + '{}' + '}' * (depth - 1)


class LoadsRefusesTest(unittest.TestCase):
    def assert_refused(self, data: bytes | str, reason: str = '') -> None:
        with self.assertRaisesRegex(InvalidJSONError, reason):
            strictjson.loads(data)

    def test_error_is_a_value_error(self) -> None:
        """InvalidJSONError is a ValueError, so callers may catch either."""
        self.assertTrue(issubclass(InvalidJSONError, ValueError))

    def test_invalid_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused, naming the byte offset."""
        cases = {
            b'"\xff"': 'invalid start byte at byte 1',
            b'"caf\xe9"': 'invalid continuation byte at byte 4',  # Latin-1
            b'"\xed\xa0\x80"': 'invalid continuation byte at byte 1',  # CESU
            b'"\xc3"': 'invalid continuation byte at byte 1',  # truncated
        }
        for data, reason in cases.items():
            with self.subTest(data=data):
                with self.assertRaises(InvalidJSONError) as cm:
                    strictjson.loads(data)
                self.assertEqual(str(cm.exception),
                                 f'body is not valid UTF-8: {reason}')

    def test_utf8_bom(self) -> None:
        """A UTF-8 byte order mark before the document is refused."""
        self.assert_refused(b'\xef\xbb\xbf{"full_name": "x"}')

    def test_deep_nesting_beyond_recursion(self) -> None:
        """100,000 nested arrays or objects are refused, not a crash."""
        for name, text in [('arrays', _arrays(100_000)),
                           ('objects', _objects(100_000))]:
            with self.subTest(name):
                self.assert_refused(text, '^nesting too deep$')
                self.assert_refused(text.encode(), '^nesting too deep$')

    def test_nesting_just_over_max_depth(self) -> None:
        """One level deeper than MAX_DEPTH is refused, arrays and objects."""
        for text in (_arrays(MAX_DEPTH + 1), _objects(MAX_DEPTH + 1)):
            with self.subTest(text=text[:8]):
                self.assert_refused(text, '^nesting too deep$')

    def test_nan_and_infinities(self) -> None:
        """NaN, Infinity and -Infinity are refused, at any position."""
        for name in ('NaN', 'Infinity', '-Infinity'):
            for text in (name, f'[{name}]', f'{{"a": {name}}}'):
                with self.subTest(text=text):
                    self.assert_refused(text, f'^{name} is not valid JSON$')

    def test_float_out_of_range(self) -> None:
        """A number that overflows a double, like 1e400, is refused."""
        for text in ('1e400', '-1e400', '[1.5e309]', '1' * 400 + '.0'):
            with self.subTest(text=text[:12]):
                self.assert_refused(text, '^number out of range: ')

    def test_integer_over_max_safe(self) -> None:
        """Integers beyond +-(2**53 - 1) are refused."""
        for value in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2 ** 63):
            with self.subTest(value=value):
                self.assert_refused(str(value), '^integer out of range: ')
                self.assert_refused(f'{{"n": {value}}}', 'out of range')

    def test_huge_integer(self) -> None:
        """A 5,000-digit integer is refused, not a conversion error."""
        self.assert_refused('9' * 5000, '^integer out of range: 9{20}$')
        self.assert_refused('-' + '9' * 5000, '^integer out of range: ')

    def test_duplicate_keys(self) -> None:
        """An object with a key twice is refused, also when nested."""
        for text in ('{"a": 1, "a": 2}',
                     '{"a": 1, "a": 1}',
                     '{"x": [{"b": 1, "c": 2, "b": 3}]}'):
            with self.subTest(text=text):
                self.assert_refused(text, '^duplicate key ')

    def test_lone_surrogates(self) -> None:
        """A lone surrogate escape is refused in values and in keys."""
        for text in (r'"\ud800"', r'"\udfff"', r'["ok", "a\ud83d"]',
                     r'"\ude00\ud83d"', r'{"\udc00": 1}',
                     r'{"a": {"k\ud800": "v"}}', r'{"a": {"k": "v\ud800"}}'):
            with self.subTest(text=text):
                self.assert_refused(text,
                                    '^string contains a lone surrogate$')

    def test_lone_surrogate_in_text(self) -> None:
        """A str argument holding a raw lone surrogate is refused too."""
        self.assert_refused('"\ud800"', 'lone surrogate')

    def test_empty_body(self) -> None:
        """Empty bytes, empty text and whitespace only are refused."""
        for data in (b'', '', ' \n\t'):
            with self.subTest(data=data):
                self.assert_refused(data, '^Expecting value')

    def test_trailing_garbage(self) -> None:
        """Anything after the one document is refused."""
        for text in ('{} x', '[1] [2]', '1 2', '"a",', '{}}'):
            with self.subTest(text=text):
                self.assert_refused(text, '^Extra data')

    def test_other_syntax_errors(self) -> None:
        """Single quotes, trailing commas and raw control characters fail."""
        for text in ("{'a': 1}", '[1,]', '{"a": 1,}', '"a\nb"', '01'):
            with self.subTest(text=text):
                self.assert_refused(text)


class LargeIntegersAsFloatsTest(unittest.TestCase):
    def test_large_integers_read_as_floats(self) -> None:
        """Integers beyond 2**53-1, as JSONB prints large floats, read as
        the floats they were; others stay integers."""
        document = strictjson.loads(
            '{"a": 1' + '0' * 300 + ', "b": [9007199254740991,'
            ' 9007199254740992, -10000000000000000, 0.0000001, 100.0,'
            ' 5000000000000000.0, -0]}', large_integers_as_floats=True)
        self.assertEqual(document, {'a': 1e300, 'b': [
            9007199254740991, 9007199254740992.0, -1e16, 1e-7, 100.0, 5e15,
            0]})
        self.assertEqual([type(x) for x in [document['a'], *document['b']]],
                         [float, int, float, float, float, float, float, int])

    def test_still_strict_otherwise(self) -> None:
        """Numbers that overflow a float, constants, duplicate keys and
        deep nesting are still refused."""
        for text in ['1' + '0' * 400, '1' + '0' * 5000, '1' + '0' * 400 + '.5',
                     'NaN', '{"a": 1, "a": 2}', '[' * 40 + ']' * 40]:
            with self.subTest(text=text[:10]):
                with self.assertRaises(strictjson.InvalidJSONError):
                    strictjson.loads(text, large_integers_as_floats=True)

    def test_off_by_default(self) -> None:
        """Without the option, a large integer is refused."""
        with self.assertRaises(strictjson.InvalidJSONError):
            strictjson.loads('9007199254740992')


class LoadsAcceptsTest(unittest.TestCase):
    def test_valid_document(self) -> None:
        """A typical entry parses to the same Python values json gives."""
        text = ('{"full_name": "Narendra Modi", "addresses": [{"kind": '
                '"work", "pincode": 110011, "unit": 1.5, "x": null, '
                '"t": true, "f": false}], "emails": []}')
        self.assertEqual(strictjson.loads(text.encode('utf-8')), {
            'full_name': 'Narendra Modi',
            'addresses': [{'kind': 'work', 'pincode': 110011, 'unit': 1.5,
                           'x': None, 't': True, 'f': False}],
            'emails': [],
        })

    def test_scalars_at_top_level(self) -> None:
        """Any JSON value may be the whole document."""
        cases: list[tuple[str, Any]] = [
            ('"s"', 's'), ('0', 0), ('-0.5', -0.5), ('1e3', 1000.0),
            ('true', True), ('null', None), ('[]', []), ('{}', {}),
        ]
        for text, value in cases:
            with self.subTest(text=text):
                self.assertEqual(strictjson.loads(text), value)

    def test_non_ascii_utf8(self) -> None:
        """UTF-8 bytes of non-ASCII text decode to that text."""
        data = '{"building_name": "Prime Minister’s Office"}'.encode()
        self.assertEqual(strictjson.loads(data),
                         {'building_name': 'Prime Minister’s Office'})

    def test_surrogate_pair_escape(self) -> None:
        """A proper surrogate pair escape decodes to the one emoji."""
        self.assertEqual(strictjson.loads(b'"\\ud83d\\ude00"'), '\U0001F600')
        self.assertEqual(strictjson.loads('{"\\ud83d\\ude00": 1}'),
                         {'\U0001F600': 1})

    def test_max_safe_integer(self) -> None:
        """Exactly 2**53 - 1, and its negative, are accepted as ints."""
        self.assertEqual(MAX_SAFE_INTEGER, 9007199254740991)
        self.assertEqual(strictjson.loads('9007199254740991'),
                         MAX_SAFE_INTEGER)
        self.assertEqual(strictjson.loads('[-9007199254740991]'),
                         [-MAX_SAFE_INTEGER])

    def test_nesting_at_max_depth(self) -> None:
        """Exactly MAX_DEPTH nested arrays or objects are accepted."""
        self.assertEqual(MAX_DEPTH, 32)
        document = strictjson.loads(_arrays(MAX_DEPTH))
        for _ in range(MAX_DEPTH - 1):
            self.assertEqual(len(document), 1)
            document = document[0]
        self.assertEqual(document, [])
        nested = strictjson.loads(_objects(MAX_DEPTH))
        self.assertEqual(str(nested).count('{'), MAX_DEPTH)

    def test_scalars_inside_max_depth(self) -> None:
        """A scalar inside the deepest allowed container is accepted."""
        text = '[' * MAX_DEPTH + '1' + ']' * MAX_DEPTH
        self.assertEqual(str(strictjson.loads(text)), text)


class DumpsTest(unittest.TestCase):
    def test_refuses_nan_and_infinity(self) -> None:
        """NaN and the infinities are refused with ValueError, also nested."""
        for value in (float('nan'), float('inf'), float('-inf')):
            for document in (value, [value], {'a': {'b': value}}):
                with self.subTest(document=document):
                    with self.assertRaises(ValueError):
                        strictjson.dumps(document)

    def test_serialises_compactly_readable_json(self) -> None:
        """Documents serialise as json does by default, ASCII-escaped."""
        self.assertEqual(
            strictjson.dumps({'full_name': 'Caf\u00e9 \U0001F600',
                              'n': [1, 2.5, None, True]}),
            '{"full_name": "Caf\\u00e9 \\ud83d\\ude00", '
            '"n": [1, 2.5, null, true]}',
        )

    def test_output_loads_back(self) -> None:
        """What dumps writes for a sample entry, loads reads back equal."""
        document = {'full_name': 'x', 'emails': [{'kind': 'home',
                                                  'email': 'a@b.c'}],
                    'n': -MAX_SAFE_INTEGER, 'f': 1e300}
        self.assertEqual(strictjson.loads(strictjson.dumps(document)),
                         document)


class LoadsJsonbTest(unittest.TestCase):
    def test_numbers_as_jsonb_prints_them(self) -> None:
        """Integers beyond the safe range, as JSONB prints large floats,
        come back as floats; others as they are."""
        text = ('{"big": ' + '1' + '0' * 300 + ', "int": 9007199254740991,'
                ' "neg": -12, "float": 0.0000001, "name": "Ünï"}')
        self.assertEqual(strictjson.loads_jsonb(text), {
            'big': 1e300, 'int': 9007199254740991, 'neg': -12,
            'float': 1e-7, 'name': 'Ünï'})
        self.assertIs(type(strictjson.loads_jsonb(text)['big']), float)

    def test_not_json(self) -> None:
        for text in ('{"a": ', '[' * 100_000 + ']' * 100_000):
            with self.assertRaises(strictjson.InvalidJSONError):
                strictjson.loads_jsonb(text)


if __name__ == '__main__':
    unittest.main()
