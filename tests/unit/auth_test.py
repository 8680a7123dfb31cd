"""Bearer tokens: the tokens file, and who a presented token belongs to."""

from __future__ import annotations

import os
import tempfile
import time
import unittest

from addrservice.auth import (
    BearerTokens,
    load_tokens,
    parse_tokens,
    read_tokens_file,
)
from addrservice.config import AuthConfig, ConfigError
from addrservice.errors import AuthenticationError

ALICE = 'alice-token-0123456789'
BOB = 'b0b+token/ABCDEFGH=='
PATH = '/etc/book/tokens'


class ParseTokensTest(unittest.TestCase):
    def assert_refused(self, text: str, message: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            parse_tokens(text, PATH)
        self.assertEqual(str(cm.exception), message)

    def test_names_and_tokens(self) -> None:
        """Each name:token line gives a name and its token, in order."""
        self.assertEqual(parse_tokens(f'alice:{ALICE}\nbob:{BOB}\n', PATH),
                         {'alice': ALICE, 'bob': BOB})

    def test_comments_blank_lines_and_space(self) -> None:
        """# lines, blank lines, CRLF and space around the parts are
        ignored."""
        text = (f'# who may use the book\r\n\r\n  alice : {ALICE}  \r\n'
                f'   # bob left\n\t\nbob:{BOB}')
        self.assertEqual(parse_tokens(text, PATH),
                         {'alice': ALICE, 'bob': BOB})

    def test_bad_lines_name_the_line_not_the_text(self) -> None:
        """A bad line is refused with its number and what is wrong."""
        cases = {
            f'# c\n{ALICE}\n': 'line 2: expected name:token',
            f'al ice:{ALICE}': 'line 1: a name is 1 to 64 of A-Z a-z 0-9 . '
                               '_ -',
            f':{ALICE}': 'line 1: a name is 1 to 64 of A-Z a-z 0-9 . _ -',
            f'{"n" * 65}:{ALICE}': 'line 1: a name is 1 to 64 of A-Z a-z '
                                   '0-9 . _ -',
            'alice:': 'line 1: the token is shorter than 16 characters',
            'alice:0123456789abcde': 'line 1: the token is shorter than 16 '
                                     'characters',
            'alice:0123456789abcdef ghi': 'line 1: the token holds '
                                          'characters a bearer token cannot '
                                          '(A-Z a-z 0-9 - . _ ~ + / then =)',
            'alice:0123456789=abcdef': 'line 1: the token holds characters '
                                       'a bearer token cannot (A-Z a-z 0-9 '
                                       '- . _ ~ + / then =)',
            'alice:0123456789abcdéf': 'line 1: the token holds characters a '
                                      'bearer token cannot (A-Z a-z 0-9 - . '
                                      '_ ~ + / then =)',
        }
        for text, message in cases.items():
            with self.subTest(text=text):
                self.assert_refused(text, f'tokens file {PATH}, {message}')

    def test_repeats(self) -> None:
        """A name or a token given twice is refused, naming both lines."""
        self.assert_refused(
            f'alice:{ALICE}\nbob:{BOB}\n\nalice:{ALICE}x',
            f'tokens file {PATH}, line 4: the name of line 1 again')
        self.assert_refused(
            f'alice:{ALICE}\n# x\nbob:{ALICE}',
            f'tokens file {PATH}, line 3: the token of line 1 again')

    def test_no_token(self) -> None:
        """A file with no token at all is refused: it would refuse every
        request."""
        for text in ('', '\n\n', '# alice:0123456789abcdef\n'):
            with self.subTest(text=text):
                self.assert_refused(text, f'tokens file {PATH} holds no '
                                          'token')

    def test_messages_never_hold_a_token(self) -> None:
        """No refusal repeats any of the file's text."""
        secret = 'S3cretS3cretS3cret'
        for text in (secret, f'a:{secret}\nb:{secret}\n', f'a b:{secret}',
                     f'a:{secret} x', f'{secret}:{secret}\n{secret}:{secret}x',
                     f'{secret}:short'):
            with self.subTest(text=text):
                with self.assertRaises(ConfigError) as cm:
                    parse_tokens(text, PATH)
                self.assertNotIn('S3cret', str(cm.exception))


class ReadTokensFileTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='addrservice-test-')
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.path = os.path.join(self.dir, 'tokens')

    def write(self, data: bytes) -> str:
        with open(self.path, 'wb') as f:
            f.write(data)
        return self.path

    def test_reads_the_file(self) -> None:
        """The file's tokens are known by their names (a BOM is ignored)."""
        tokens = read_tokens_file(self.write(
            b'\xef\xbb\xbfalice:' + ALICE.encode() + b'\n'))
        self.assertEqual(tokens.names, ('alice',))
        self.assertEqual(tokens.identify(ALICE), 'alice')

    def test_unreadable_files(self) -> None:
        """A missing file, or a directory, is one line naming the path."""
        missing = os.path.join(self.dir, 'absent')
        for path, reason in ((missing, 'No such file or directory'),
                             (self.dir, 'Is a directory')):
            with self.subTest(reason):
                with self.assertRaises(ConfigError) as cm:
                    read_tokens_file(path)
                self.assertEqual(str(cm.exception),
                                 f'cannot read tokens file {path}: {reason}')

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused without echoing them."""
        with self.assertRaises(ConfigError) as cm:
            read_tokens_file(self.write(b'alice:\xff' + b'x' * 20))
        self.assertEqual(str(cm.exception),
                         f'tokens file {self.path} is not UTF-8 text')

    def test_path_from_the_config(self) -> None:
        """tokens_file is read as is; tokens_file_env through the
        environment."""
        self.write(f'alice:{ALICE}\n'.encode())
        by_file = load_tokens(AuthConfig(tokens_file=self.path), {})
        by_env = load_tokens(AuthConfig(tokens_file_env='BOOK_TOKENS'),
                             {'BOOK_TOKENS': self.path})
        for tokens in (by_file, by_env):
            self.assertEqual(tokens.identify(ALICE), 'alice')

    def test_variable_not_set(self) -> None:
        """A variable that is unset or empty is refused, naming it."""
        config = AuthConfig(tokens_file_env='BOOK_TOKENS')
        for environ in ({}, {'BOOK_TOKENS': ''}):
            with self.subTest(environ=environ):
                with self.assertRaises(ConfigError) as cm:
                    load_tokens(config, environ)
                self.assertEqual(str(cm.exception),
                                 "Config 'auth.tokens_file_env' names "
                                 'BOOK_TOKENS, which is not set')


class BearerTokensTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tokens = BearerTokens({'alice': ALICE, 'bob': BOB})

    def test_identify(self) -> None:
        """A known token gives its name; anything else, None."""
        self.assertEqual(self.tokens.identify(ALICE), 'alice')
        self.assertEqual(self.tokens.identify(BOB), 'bob')
        for other in ('', ALICE[:-1], ALICE + 'x', ALICE.upper(), ' ' + BOB,
                      'ali\u00e7e-token-0123456789'):
            with self.subTest(other=other):
                self.assertIsNone(self.tokens.identify(other))

    def test_authenticate(self) -> None:
        """A Bearer header with a known token gives its name; the scheme's
        case and the spaces after it do not matter."""
        for header in (f'Bearer {ALICE}', f'bearer {ALICE}',
                       f'BEARER   {ALICE}'):
            with self.subTest(header=header):
                self.assertEqual(self.tokens.authenticate(header), 'alice')

    def test_refusals(self) -> None:
        """Each refusal says why; only an unknown token is invalid_token."""
        cases = {
            None: ('no Authorization header', False),
            '': ('Authorization is not a Bearer token', False),
            f'Basic {ALICE}': ('Authorization is not a Bearer token', False),
            'Bearer': ('Authorization is not a well-formed Bearer token',
                       False),
            f'Bearer{ALICE}': ('Authorization is not a Bearer token', False),
            f'Bearer {ALICE} x': (
                'Authorization is not a well-formed Bearer token', False),
            f'Bearer\t{ALICE}': ('Authorization is not a Bearer token',
                                 False),
            f'Bearer {ALICE},Bearer {BOB}': (
                'Authorization is not a well-formed Bearer token', False),
            f'Bearer "{ALICE}"': (
                'Authorization is not a well-formed Bearer token', False),
            f'Bearer {ALICE}x': ('the token is not known', True),
            'Bearer =': ('Authorization is not a well-formed Bearer token',
                         False),
        }
        for header, (message, invalid) in cases.items():
            with self.subTest(header=header):
                with self.assertRaises(AuthenticationError) as cm:
                    self.tokens.authenticate(header)
                self.assertEqual(str(cm.exception), message)
                self.assertIs(cm.exception.invalid_token, invalid)

    def test_repr_holds_names_only(self) -> None:
        """The object shows its names, never a token."""
        self.assertEqual(repr(self.tokens), 'BearerTokens(alice, bob)')
        self.assertEqual(self.tokens.names, ('alice', 'bob'))

    def test_time_does_not_depend_on_which_token_matches(self) -> None:
        """Matching the first, the last or no token takes as long: every
        token is compared, whatever matched."""
        many = BearerTokens({f'n{i}': f'token-{i:012d}' for i in range(2000)})
        presented = {'first': 'token-000000000000',
                     'last': 'token-000000001999', 'none': 'x' * 18}

        def best_time(token: str) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(10):
                    many.identify(token)
                times.append(time.perf_counter() - started)
            return min(times)

        self.assertEqual(many.identify(presented['last']), 'n1999')
        timings = {key: best_time(token) for key, token in presented.items()}
        # An early exit would make 'first' about 2000 times faster.
        self.assertGreater(min(timings.values()) / max(timings.values()),
                           0.5, timings)


if __name__ == '__main__':
    unittest.main()
