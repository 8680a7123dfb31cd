"""Object data model of an address-book entry.

Each class is a dataclass whose keyword arguments are named as the JSON
schema's properties. Required fields are checked once, generically, by
`_Model.__setattr__`, so the check holds at construction and on every
assignment alike. `None` means "absent": `to_api_dm()` leaves such fields
out, which keeps `from_api_dm(d).to_api_dm() == d` exact.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, unique
from typing import Any, Mapping, TypeVar

from addrservice.errors import InvalidEntryError

VALUE_ERR_MSG = '{} has invalid value {!r}'

# What an entry's id (its nickname in storage) may be: safe in a URL path
# and as a file name.
ENTRY_ID_REGEX = r'[A-Za-z0-9-]{1,64}'

_M = TypeVar('_M', bound='_Model')


@unique
class AddressType(Enum):
    home = 1
    work = 2


def _required(enum: type[Enum] | None = None) -> Any:
    return dataclasses.field(
        default=None, metadata={'required': True, 'enum': enum}
    )


def _optional() -> Any:
    return dataclasses.field(default=None)


def _list_of(model: type[_Model]) -> Any:
    return dataclasses.field(default=None, metadata={'items': model})


def _is_empty(value: Any) -> bool:
    return value is None or value == ''


class _Model:
    """Shared behaviour of the entry classes; holds no data of its own."""

    __slots__ = ()
    __dataclass_fields__: dict[str, dataclasses.Field[Any]]

    def __setattr__(self, name: str, value: Any) -> None:
        kind = _field_kinds(type(self)).get(name)
        if kind is not None:
            if kind is _REQUIRED and _is_empty(value):
                raise InvalidEntryError(VALUE_ERR_MSG.format(name, value))
            if isinstance(value, str) and '\x00' in value:
                # No text needs it, and not every store can hold it
                # (PostgreSQL's jsonb cannot).
                raise InvalidEntryError(f'{name} contains a NUL character')
            if kind is _LIST and value is not None:
                value = list(value)
        object.__setattr__(self, name, value)

    @classmethod
    def from_api_dm(cls: type[_M], vars: Mapping[str, Any]) -> _M:
        """Build from the API (JSON) form; `ValueError` if it does not fit."""
        vars = _as_mapping(vars)
        specs = cls.__dataclass_fields__
        unknown = sorted(set(vars) - set(specs))
        if unknown:
            raise InvalidEntryError(f'unknown field(s): {", ".join(unknown)}')
        kwargs = {
            name: _from_api(specs[name], value)
            for name, value in vars.items()
        }
        return cls(**kwargs)

    @classmethod
    def ordered_api_dm(cls, api: Mapping[str, Any]) -> dict[str, Any]:
        """The API form `api` with its keys in the order of `to_api_dm()`
        (which some stores, such as PostgreSQL's JSONB, do not keep), and
        any keys that are not fields after them. Nothing is checked: for
        entries that were checked when stored, at a fraction of the cost
        of building them."""
        models = _item_models(cls)
        ordered = {}
        for name in cls.__dataclass_fields__:
            value = api.get(name)
            if value is None:
                continue
            model = models.get(name)
            if model is not None and isinstance(value, list):
                value = [model.ordered_api_dm(x) if isinstance(x, dict)
                         else x for x in value]
            ordered[name] = value
        for name, value in api.items():
            ordered.setdefault(name, value)
        return ordered

    def to_api_dm(self) -> dict[str, Any]:
        """The API (JSON) form, leaving out absent fields."""
        api: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None:
                api[name] = _to_api(value)
        return api


# What `__setattr__` checks of each field, worked out once per class from
# the dataclass fields (reading their metadata on every assignment costs
# more than the rest of building an entry).
_REQUIRED, _LIST, _PLAIN = 'required', 'list', 'plain'
_KINDS: dict[type, dict[str, str]] = {}


def _field_kinds(cls: type[_Model]) -> dict[str, str]:
    kinds = _KINDS.get(cls)
    if kinds is None:
        kinds = _KINDS[cls] = {
            name: _REQUIRED if spec.metadata.get('required')
            else _LIST if 'items' in spec.metadata else _PLAIN
            for name, spec in cls.__dataclass_fields__.items()
        }
    return kinds


_ITEM_MODELS: dict[type, dict[str, type[_Model]]] = {}


def _item_models(cls: type[_Model]) -> dict[str, type[_Model]]:
    """The model of each list field's items."""
    models = _ITEM_MODELS.get(cls)
    if models is None:
        models = _ITEM_MODELS[cls] = {
            name: spec.metadata['items']
            for name, spec in cls.__dataclass_fields__.items()
            if 'items' in spec.metadata
        }
    return models


def _from_api(spec: dataclasses.Field[Any], value: Any) -> Any:
    items = spec.metadata.get('items')
    if items is not None and value is not None:
        if not isinstance(value, list):
            raise InvalidEntryError(VALUE_ERR_MSG.format(spec.name, value))
        return [items.from_api_dm(_as_mapping(x)) for x in value]
    enum = spec.metadata.get('enum')
    if enum is not None and value is not None:
        try:
            return enum[value]
        except (KeyError, TypeError):
            raise InvalidEntryError(VALUE_ERR_MSG.format(spec.name, value))
    return value


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # as parsed from JSON: skip the slower check
        return value
    if not isinstance(value, Mapping):
        raise InvalidEntryError(f'expected an object, got {value!r}')
    return value


def _to_api(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, list):
        return [_to_api(x) for x in value]
    if isinstance(value, _Model):
        return value.to_api_dm()
    return value


@dataclasses.dataclass(kw_only=True, slots=True)
class Address(_Model):
    kind: AddressType = _required(enum=AddressType)
    building_name: str | None = _optional()
    unit_number: int | float | None = _optional()
    street_number: int | float | str | None = _optional()
    street_name: str = _required()
    locality: str | None = _optional()
    city: str | None = _optional()
    province: str | None = _optional()
    pincode: int | float | str = _required()
    country: str = _required()


@dataclasses.dataclass(kw_only=True, slots=True)
class Phone(_Model):
    kind: AddressType = _required(enum=AddressType)
    country_code: int | float = _required()
    area_code: int | float | None = _optional()
    local_number: int | float = _required()


@dataclasses.dataclass(kw_only=True, slots=True)
class Email(_Model):
    kind: AddressType = _required(enum=AddressType)
    email: str = _required()


@dataclasses.dataclass(kw_only=True, slots=True)
class AddressEntry(_Model):
    full_name: str = _required()
    addresses: list[Address] | None = _list_of(Address)
    phone_numbers: list[Phone] | None = _list_of(Phone)
    fax_numbers: list[Phone] | None = _list_of(Phone)
    emails: list[Email] | None = _list_of(Email)
