"""The service's configuration, read once from its YAML mapping."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import yaml

DEFAULT_MAX_BODY_SIZE = 1024 * 1024


class ConfigError(ValueError):
    """A config key that is missing or has a value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class AddressBookConfig:
    service_name: str
    addr_db: Mapping[str, Any]
    logging: Mapping[str, Any] | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

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
    config: Mapping[str, Any], key: str, kind: type, default: Any = _MISSING
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
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"Config '{key}' must be a {kind.__name__}, "
                          f'not {value!r}')
    return value


def _positive(value: int, key: str) -> int:
    if value <= 0:
        raise ConfigError(f"Config '{key}' must be positive, not {value}")
    return value
