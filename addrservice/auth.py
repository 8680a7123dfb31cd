"""Bearer-token authentication, independent of the web framework.

The tokens file holds one token per line, with the name the log records
for it:

    # name:token
    billing:3kV9p1wQ7sT2yH8mZ4bN6cX0
    frontend:Q2hY7pLm4ZtR9sKx1VbN3wGd

Blank lines and lines starting with `#` are ignored, as is space around
the name and the token. Names are 1 to 64 of `A-Z a-z 0-9 . _ -`; tokens
are at least 16 characters of what a bearer token may hold (RFC 6750:
`A-Z a-z 0-9 - . _ ~ + /`, then any `=` padding). A file that breaks
these rules, repeats a name or a token, or holds no token at all is
refused with the line at fault, never with its text: that could be a
token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Mapping

from addrservice.config import AuthConfig, ConfigError
from addrservice.errors import AuthenticationError

MIN_TOKEN_LENGTH = 16

_NAME = re.compile(r'[A-Za-z0-9._-]{1,64}\Z')
_TOKEN = re.compile(r'[A-Za-z0-9._~+/-]+=*\Z')


class BearerTokens:
    """The known tokens, each with its name; only their digests are kept,
    so that no token can show up in a repr or a traceback."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """`tokens` maps each name to its token."""
        self._digests = tuple(
            (name, _digest(token)) for name, token in tokens.items()
        )

    def __repr__(self) -> str:
        names = ', '.join(name for name, _ in self._digests)
        return f'BearerTokens({names})'

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._digests)

    def identify(self, token: str) -> str | None:
        """The name of `token`, or None if it is not known.

        Every known token is compared, whatever matches, and digests of
        one length are compared, so the time taken says nothing about
        how close a guess came.
        """
        presented = _digest(token)
        found = None
        for name, digest in self._digests:
            if hmac.compare_digest(presented, digest):
                found = name
        return found

    def authenticate(self, authorization: str | None) -> str:
        """The name of the token in an `Authorization` header value.

        `AuthenticationError` if there is none, it is not a bearer token,
        or the token is not known (then with `invalid_token`).
        """
        if authorization is None:
            raise AuthenticationError('no Authorization header')
        # RFC 7235: a case-insensitive scheme, then one or more spaces.
        scheme, _, token = authorization.partition(' ')
        if scheme.lower() != 'bearer':
            raise AuthenticationError('Authorization is not a Bearer token')
        token = token.lstrip(' ')
        if not _TOKEN.match(token):
            raise AuthenticationError(
                'Authorization is not a well-formed Bearer token')
        name = self.identify(token)
        if name is None:
            raise AuthenticationError('the token is not known',
                                      invalid_token=True)
        return name


def load_tokens(
    config: AuthConfig, environ: Mapping[str, str] = os.environ
) -> BearerTokens:
    """The tokens of the file the config names, directly or through an
    environment variable; `ConfigError` if it cannot be used."""
    return read_tokens_file(tokens_file_path(config, environ))


def tokens_file_path(config: AuthConfig, environ: Mapping[str, str]) -> str:
    if config.tokens_file is not None:
        return config.tokens_file
    variable = config.tokens_file_env
    assert variable is not None  # the config holds one of the two
    path = environ.get(variable, '')
    if not path:
        raise ConfigError(f"Config 'auth.tokens_file_env' names {variable},"
                          ' which is not set')
    return path


def read_tokens_file(path: str) -> BearerTokens:
    try:
        with open(path, encoding='utf-8-sig') as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f'cannot read tokens file {path}: '
                          f'{e.strerror or e}') from None
    except UnicodeDecodeError:
        raise ConfigError(f'tokens file {path} is not UTF-8 text') from None
    return BearerTokens(parse_tokens(text, path))


def parse_tokens(text: str, path: str) -> dict[str, str]:
    """Each name with its token, from the text of a tokens file."""
    tokens: dict[str, str] = {}
    first_line: dict[tuple[str, str], int] = {}
    # Not splitlines(): it also breaks at characters editors do not.
    for number, line in enumerate(text.split('\n'), start=1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        where = f'tokens file {path}, line {number}'
        name, token = _parse_line(line, where)
        for key in (('name', name), ('token', token)):
            if key in first_line:
                raise ConfigError(f'{where}: the {key[0]} of line '
                                  f'{first_line[key]} again')
            first_line[key] = number
        tokens[name] = token
    if not tokens:
        raise ConfigError(f'tokens file {path} holds no token')
    return tokens


def _parse_line(line: str, where: str) -> tuple[str, str]:
    name, colon, token = (part.strip() for part in line.partition(':'))
    if not colon:
        raise ConfigError(f'{where}: expected name:token')
    if not _NAME.match(name):
        raise ConfigError(f'{where}: a name is 1 to 64 of A-Z a-z 0-9 . _ -')
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f'{where}: the token is shorter than '
                          f'{MIN_TOKEN_LENGTH} characters')
    if not _TOKEN.match(token):
        raise ConfigError(f'{where}: the token holds characters a bearer '
                          'token cannot (A-Z a-z 0-9 - . _ ~ + / then =)')
    return name, token


def _digest(token: str) -> bytes:
    # Stored tokens are ASCII; a presented one that is not cannot match.
    return hashlib.sha256(token.encode('utf-8', 'replace')).digest()
