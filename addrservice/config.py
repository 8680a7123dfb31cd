"""The service's configuration, read once from its YAML mapping."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import yaml

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# Tornado keeps an idle connection for an hour; a minute is plenty for a
# client that means to send another request.
DEFAULT_IDLE_CONNECTION_TIMEOUT = 60.0
DEFAULT_BODY_TIMEOUT = 30.0
# Tornado's own default: the request line and every header together.
DEFAULT_MAX_HEADER_SIZE = 64 * 1024
DEFAULT_DRAIN_TIMEOUT = 10.0

_ENV_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
_AUTH_KEYS = frozenset({'tokens_file', 'tokens_file_env'})


class ConfigError(ValueError):
    """A config key that is missing or has a value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Where the bearer tokens are: a file, or a variable naming the file.

    Exactly one is set. The variable is read when the server starts, so
    that reading the config (as the copy command does) does not need it.
    """

    tokens_file: str | None = None
    tokens_file_env: str | None = None


@dataclasses.dataclass(frozen=True)
class AddressBookConfig:
    service_name: str
    addr_db: Mapping[str, Any]
    logging: Mapping[str, Any] | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    # Seconds. The idle timeout also bounds the time to send the headers.
    idle_connection_timeout: float = DEFAULT_IDLE_CONNECTION_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    # Trust X-Real-Ip and X-Forwarded-For/-Proto: only behind a proxy
    # that sets them, as any client can send them.
    behind_proxy: bool = False
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    # None: no authentication.
    auth: AuthConfig | None = None

    @classmethod
    def of(
        cls, config: Mapping[str, Any] | AddressBookConfig
    ) -> AddressBookConfig:
        """The checked config, from its YAML mapping or as it is."""
        if isinstance(config, AddressBookConfig):
            return config
        return cls.from_mapping(config)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> AddressBookConfig:
        """Read and check every key; `ConfigError` names the first bad one."""
        if not isinstance(config, Mapping):
            raise ConfigError('Config must be a mapping of sections')
        return cls(
            service_name=_get(config, 'service.name', str, 'Address Book'),
            addr_db=_get(config, 'addr-db', Mapping),
            logging=_get(config, 'logging', Mapping, None),
            max_body_size=_positive(
                _get(config, 'http.max_body_size', int,
                     DEFAULT_MAX_BODY_SIZE),
                'http.max_body_size',
            ),
            idle_connection_timeout=_seconds(
                config, 'http.idle_connection_timeout',
                DEFAULT_IDLE_CONNECTION_TIMEOUT),
            body_timeout=_seconds(config, 'http.body_timeout',
                                  DEFAULT_BODY_TIMEOUT),
            max_header_size=_positive(
                _get(config, 'http.max_header_size', int,
                     DEFAULT_MAX_HEADER_SIZE),
                'http.max_header_size',
            ),
            behind_proxy=_get(config, 'http.behind_proxy', bool, False),
            drain_timeout=_seconds(config, 'http.drain_timeout',
                                   DEFAULT_DRAIN_TIMEOUT),
            auth=_auth(config),
        )


def load_config(text: str) -> AddressBookConfig:
    """Parse YAML text into a checked config."""
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f'Config is not valid YAML: {_one_line(e)}') \
            from None
    return AddressBookConfig.from_mapping(mapping)


def _one_line(error: yaml.YAMLError) -> str:
    # PyYAML's own message quotes the source over several lines.
    problem = getattr(error, 'problem', None)
    mark = getattr(error, 'problem_mark', None)
    if problem is None or mark is None:
        return str(error).splitlines()[0]
    return f'{problem} (line {mark.line + 1}, column {mark.column + 1})'


_MISSING = object()


def _get(
    config: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
    default: Any = _MISSING,
) -> Any:
    value: Any = config
    for part in key.split('.'):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) \
            else _MISSING
        if value is _MISSING:
            if default is _MISSING:
                raise ConfigError(f"Config '{key}' is missing, "
                                  'and has no default.')
            return default
    # YAML's true and false are ints to Python: only a bool is a bool.
    if not isinstance(value, kind) or \
            isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"Config '{key}' must be a {_kind_name(kind)}, "
                          f'not {value!r}')
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return ' or '.join(k.__name__ for k in kind)
    return kind.__name__


def _positive(value: int, key: str) -> int:
    if value <= 0:
        raise ConfigError(f"Config '{key}' must be positive, not {value}")
    return value


def _seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = _get(config, key, (int, float), default)
    # NaN passes a comparison with zero, and infinity is no timeout.
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Config '{key}' must be a positive number of "
                          f'seconds, not {value}')
    return float(value)


def _auth(config: Mapping[str, Any]) -> AuthConfig | None:
    section = _get(config, 'auth', Mapping, None)
    if section is None:
        return None
    # A misspelt key must not leave the service open by mistake.
    unknown = sorted(str(key) for key in section if key not in _AUTH_KEYS)
    if unknown:
        raise ConfigError(f"Config 'auth.{unknown[0]}' is not a known key; "
                          'use tokens_file or tokens_file_env')
    if len(section) != 1:
        raise ConfigError("Config 'auth' must have one of tokens_file and "
                          'tokens_file_env')
    return AuthConfig(
        tokens_file=_non_empty(config, 'auth.tokens_file'),
        tokens_file_env=_env_name(config, 'auth.tokens_file_env'),
    )


def _non_empty(config: Mapping[str, Any], key: str) -> str | None:
    value: str | None = _get(config, key, str, None)
    if value == '':
        raise ConfigError(f"Config '{key}' must not be empty")
    return value


def _env_name(config: Mapping[str, Any], key: str) -> str | None:
    value = _non_empty(config, key)
    if value is not None and not _ENV_NAME.match(value):
        raise ConfigError(f"Config '{key}' must be an environment variable "
                          f'name, not {value!r}')
    return value
