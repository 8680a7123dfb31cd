"""The entry data model: construction, validation, and the API form."""

from __future__ import annotations

import copy
import dataclasses
import json
import unittest
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from addrservice import ADDRESS_BOOK_SCHEMA
from addrservice.datamodel import (
    Address,
    AddressEntry,
    AddressType,
    Email,
    Phone,
)
from addrservice.errors import InvalidEntryError
from data import address_data_suite

DEFINITIONS: dict[str, Any] = ADDRESS_BOOK_SCHEMA['definitions']

# Each model class and the schema definition it implements.
MODELS: dict[type, str] = {
    Address: 'address',
    Phone: 'phone',
    Email: 'email',
    AddressEntry: 'addressEntry',
}

# The schema definition of the items of each list field of an entry.
LIST_ITEMS = {
    'addresses': 'address',
    'phone_numbers': 'phone',
    'fax_numbers': 'phone',
    'emails': 'email',
}

ADDRESS: dict[str, Any] = dict(
    kind=AddressType.home, building_name='Rose Villa', unit_number=4,
    street_number=52, street_name='Festive Road', locality='Putney',
    city='London', province='Greater London', pincode='SW15 1LP',
    country='UK',
)
PHONE: dict[str, Any] = dict(kind=AddressType.work, country_code=44,
                             area_code=20, local_number=79460000)
EMAIL: dict[str, Any] = dict(kind=AddressType.home,
                             email='keith@example.com')
ENTRY: dict[str, Any] = dict(
    full_name='Keith Kenneth', addresses=[Address(**ADDRESS)],
    phone_numbers=[Phone(**PHONE)], fax_numbers=[Phone(**PHONE)],
    emails=[Email(**EMAIL)],
)

# Values for every field, each different from the one above.
OTHER: dict[type, dict[str, Any]] = {
    Address: dict(
        kind=AddressType.work, building_name='Ivy House', unit_number=9.5,
        street_number='12A', street_name='Upper Richmond Road',
        locality='Roehampton', city='Wimbledon', province='Surrey',
        pincode=110011, country='United Kingdom',
    ),
    Phone: dict(kind=AddressType.home, country_code=91, area_code=11,
                local_number=23012312),
    Email: dict(kind=AddressType.work, email='kk@example.org'),
    AddressEntry: dict(
        full_name='Kenneth Keith',
        addresses=[Address(**dict(ADDRESS, city='Leeds'))],
        phone_numbers=[], fax_numbers=[Phone(**dict(PHONE, area_code=None))],
        emails=[Email(**dict(EMAIL, email='k@example.net'))],
    ),
}

VALID: dict[type, dict[str, Any]] = {
    Address: ADDRESS, Phone: PHONE, Email: EMAIL, AddressEntry: ENTRY,
}


def _fields(model: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(model)]


def _state(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in _fields(obj)}


def _required(model: type) -> list[str]:
    return list(DEFINITIONS[MODELS[model]]['required'])


class ConstructionTest(unittest.TestCase):
    """The tutorial's walk-through, with keyword arguments."""

    def test_address_getters(self) -> None:
        """An Address returns exactly the values it was built with."""
        address = Address(**ADDRESS)
        self.assertIs(address.kind, AddressType.home)
        self.assertEqual(address.building_name, 'Rose Villa')
        self.assertEqual(address.unit_number, 4)
        self.assertEqual(address.street_number, 52)
        self.assertEqual(address.street_name, 'Festive Road')
        self.assertEqual(address.locality, 'Putney')
        self.assertEqual(address.city, 'London')
        self.assertEqual(address.province, 'Greater London')
        self.assertEqual(address.pincode, 'SW15 1LP')
        self.assertEqual(address.country, 'UK')

    def test_phone_getters(self) -> None:
        """A Phone returns exactly the values it was built with."""
        phone = Phone(**PHONE)
        self.assertIs(phone.kind, AddressType.work)
        self.assertEqual(phone.country_code, 44)
        self.assertEqual(phone.area_code, 20)
        self.assertEqual(phone.local_number, 79460000)

    def test_email_getters(self) -> None:
        """An Email returns exactly the values it was built with."""
        email = Email(**EMAIL)
        self.assertIs(email.kind, AddressType.home)
        self.assertEqual(email.email, 'keith@example.com')

    def test_entry_getters(self) -> None:
        """An AddressEntry holds its name and the very objects it was given."""
        address, phone, email = Address(**ADDRESS), Phone(**PHONE), \
            Email(**EMAIL)
        entry = AddressEntry(full_name='Keith Kenneth', addresses=[address],
                             phone_numbers=[phone], fax_numbers=[],
                             emails=[email])
        self.assertEqual(entry.full_name, 'Keith Kenneth')
        self.assertIs(entry.addresses[0], address)  # type: ignore[index]
        self.assertIs(entry.phone_numbers[0], phone)  # type: ignore[index]
        self.assertEqual(entry.fax_numbers, [])
        self.assertIs(entry.emails[0], email)  # type: ignore[index]

    def test_optional_fields_default_to_none(self) -> None:
        """Fields that the schema leaves optional are None when omitted."""
        address = Address(kind=AddressType.work, street_name='South Block',
                          pincode=110011, country='India')
        self.assertEqual(
            [address.building_name, address.unit_number,
             address.street_number, address.locality, address.city,
             address.province],
            [None] * 6,
        )
        phone = Phone(kind=AddressType.work, country_code=91,
                      local_number=23012312)
        self.assertIsNone(phone.area_code)
        entry = AddressEntry(full_name='Bill Gates')
        self.assertEqual(
            [entry.addresses, entry.phone_numbers, entry.fax_numbers,
             entry.emails],
            [None] * 4,
        )

    def test_arguments_are_keyword_only(self) -> None:
        """Positional arguments are refused, as fields can be reordered."""
        with self.assertRaises(TypeError):
            Email(AddressType.home,  # type: ignore[call-arg]
                  'keith@example.com')

    def test_list_field_is_copied_into_a_list(self) -> None:
        """A tuple given for a list field is stored as a new list."""
        email = Email(**EMAIL)
        entry = AddressEntry(full_name='K', emails=(email,))  # type: ignore
        self.assertEqual(entry.emails, [email])
        self.assertIsInstance(entry.emails, list)

    def test_every_setter_stores_into_its_own_field(self) -> None:
        """Assigning a field changes that field and leaves all others alone."""
        for model, values in OTHER.items():
            for name in _fields(model):
                with self.subTest(model=model.__name__, field=name):
                    obj = model(**VALID[model])
                    setattr(obj, name, values[name])
                    self.assertEqual(_state(obj),
                                     {**VALID[model], name: values[name]})

    def test_setters_of_optional_fields(self) -> None:
        """The tutorial's walk-through: set city and area_code, read back."""
        address = Address(**ADDRESS)
        address.city = 'Wimbledon'
        self.assertEqual(address.city, 'Wimbledon')
        self.assertEqual(address.locality, 'Putney')
        phone = Phone(**PHONE)
        phone.area_code = 11
        self.assertEqual(phone.area_code, 11)
        self.assertEqual(phone.country_code, 44)
        self.assertEqual(phone.local_number, 79460000)

    def test_optional_fields_accept_none_and_empty(self) -> None:
        """Optional scalar fields may be set to None or ''."""
        for model, name in [(Address, 'building_name'), (Address, 'city'),
                            (Address, 'street_number'), (Phone, 'area_code')]:
            for value in (None, ''):
                with self.subTest(model=model.__name__, field=name,
                                  value=value):
                    obj = model(**VALID[model])
                    setattr(obj, name, value)
                    self.assertEqual(getattr(obj, name), value)


class RequiredFieldTest(unittest.TestCase):
    """Required fields are refused empty, at construction and later."""

    def test_required_fields_match_the_schema(self) -> None:
        """Exactly the schema's required fields refuse None at construction."""
        for model in MODELS:
            refused = []
            for name in _fields(model):
                try:
                    model(**{**VALID[model], name: None})
                except ValueError:
                    refused.append(name)
            with self.subTest(model=model.__name__):
                self.assertEqual(sorted(refused), sorted(_required(model)))

    def test_construction_refuses_missing_none_and_empty(self) -> None:
        """Leaving out a required field, or giving None or '', is refused."""
        for model in MODELS:
            for name in _required(model):
                omitted = {k: v for k, v in VALID[model].items() if k != name}
                cases = {'missing': omitted,
                         'None': {**omitted, name: None},
                         'empty': {**omitted, name: ''}}
                for case, kwargs in cases.items():
                    with self.subTest(model=model.__name__, field=name,
                                      case=case):
                        with self.assertRaises(ValueError):
                            model(**kwargs)

    def test_assignment_refuses_none_and_empty(self) -> None:
        """Assigning None or '' to a required field fails, changing nothing."""
        for model in MODELS:
            for name in _required(model):
                for value in (None, ''):
                    with self.subTest(model=model.__name__, field=name,
                                      value=value):
                        obj = model(**VALID[model])
                        with self.assertRaises(ValueError):
                            setattr(obj, name, value)
                        self.assertEqual(_state(obj), VALID[model])

    def test_error_names_field_and_value(self) -> None:
        """The error is an InvalidEntryError naming the field and its value."""
        with self.assertRaises(InvalidEntryError) as cm:
            Address(**{**ADDRESS, 'street_name': ''})
        self.assertEqual(str(cm.exception), "street_name has invalid value ''")
        entry = AddressEntry(full_name='Keith')
        with self.assertRaises(InvalidEntryError) as cm:
            entry.full_name = None  # type: ignore[assignment]
        self.assertEqual(str(cm.exception), 'full_name has invalid value None')

    def test_nul_characters_are_refused(self) -> None:
        """A string holding U+0000 is refused, in any field, by name."""
        with self.assertRaises(InvalidEntryError) as cm:
            AddressEntry(full_name='Bill\x00Gates')
        self.assertEqual(str(cm.exception),
                         'full_name contains a NUL character')
        with self.assertRaises(InvalidEntryError) as cm:
            Address(**{**ADDRESS, 'locality': '\x00'})
        self.assertEqual(str(cm.exception),
                         'locality contains a NUL character')
        with self.assertRaises(InvalidEntryError):
            AddressEntry.from_api_dm({'full_name': 'x', 'emails': [
                {'kind': 'home', 'email': 'a\x00@b.c'}]})

    def test_zero_is_not_empty(self) -> None:
        """A required number may be 0; only None and '' count as empty."""
        phone = Phone(kind=AddressType.home, country_code=0, local_number=0)
        self.assertEqual((phone.country_code, phone.local_number), (0, 0))


class ApiFormTest(unittest.TestCase):
    """from_api_dm and to_api_dm convert the JSON form exactly."""

    def test_samples_round_trip_exactly(self) -> None:
        """Each sample file's entry comes back from the model unchanged."""
        for nickname, entry in address_data_suite().items():
            with self.subTest(nickname=nickname):
                before = copy.deepcopy(entry)
                result = AddressEntry.from_api_dm(entry).to_api_dm()
                self.assertEqual(result, before)
                self.assertEqual(entry, before)

    def test_name_only_round_trips_without_added_lists(self) -> None:
        """An entry with only full_name comes back with no empty lists."""
        entry = AddressEntry.from_api_dm({'full_name': 'Bill Gates'})
        self.assertEqual(entry.to_api_dm(), {'full_name': 'Bill Gates'})

    def test_empty_list_is_kept(self) -> None:
        """An empty list given in the API form is returned, not dropped."""
        api = {'full_name': 'x', 'addresses': []}
        self.assertEqual(AddressEntry.from_api_dm(api).to_api_dm(), api)

    def test_from_api_builds_model_objects(self) -> None:
        """Nested JSON objects become Address, Phone and Email objects."""
        entry = AddressEntry.from_api_dm(address_data_suite()['raga'])
        self.assertEqual(entry.full_name, 'Rahul Gandhi')
        assert entry.addresses is not None and entry.emails is not None
        assert entry.fax_numbers is not None
        self.assertEqual(
            entry.addresses[1],
            Address(kind=AddressType.home, street_number=12,
                    street_name='Tughlak Lane', city='New Delhi',
                    pincode=110011, country='India'),
        )
        self.assertEqual(entry.fax_numbers, [
            Phone(kind=AddressType.work, country_code=91, area_code=11,
                  local_number=23012410)
        ])
        self.assertEqual(entry.emails, [
            Email(kind=AddressType.work, email='office@rahulgandhi.in')
        ])

    def test_to_api_of_built_entry(self) -> None:
        """to_api_dm writes kinds by name and leaves out absent fields."""
        entry = AddressEntry(
            full_name='Keith',
            phone_numbers=[Phone(kind=AddressType.work, country_code=44,
                                 local_number=79460000)],
            emails=[Email(**EMAIL)],
        )
        self.assertEqual(entry.to_api_dm(), {
            'full_name': 'Keith',
            'phone_numbers': [{'kind': 'work', 'country_code': 44,
                               'local_number': 79460000}],
            'emails': [{'kind': 'home', 'email': 'keith@example.com'}],
        })

    def test_unknown_keys_are_refused(self) -> None:
        """A key that the schema does not define is refused, at any level."""
        address = dict(kind='home', street_name='S', pincode=1, country='C')
        cases: dict[str, dict[str, Any]] = {
            'top level': {'full_name': 'x', 'nickname': 'y'},
            'in an address': {'full_name': 'x',
                              'addresses': [{**address, 'zip': '1'}]},
            'in an email': {'full_name': 'x', 'emails': [
                {'kind': 'home', 'email': 'a@b.c', 'primary': True}]},
        }
        for case, api in cases.items():
            with self.subTest(case=case):
                with self.assertRaises(ValueError):
                    AddressEntry.from_api_dm(api)

    def test_unknown_keys_are_named(self) -> None:
        """The error lists the unknown keys, sorted."""
        with self.assertRaises(InvalidEntryError) as cm:
            AddressEntry.from_api_dm({'full_name': 'x', 'zz': 1, 'aa': 2})
        self.assertEqual(str(cm.exception), 'unknown field(s): aa, zz')

    def test_bad_kind_is_refused(self) -> None:
        """A kind other than 'home' or 'work' is refused."""
        for kind in ('office', 'Home', '', 1, None, ['home'], {'k': 1}):
            with self.subTest(kind=kind):
                with self.assertRaises(ValueError):
                    AddressEntry.from_api_dm({'full_name': 'x', 'emails': [
                        {'kind': kind, 'email': 'a@b.c'}]})

    def test_non_list_for_list_field_is_refused(self) -> None:
        """A list field given an object, string or number is refused."""
        email = {'kind': 'home', 'email': 'a@b.c'}
        for name in LIST_ITEMS:
            for value in (email, 'a@b.c', 1):
                with self.subTest(field=name, value=value):
                    with self.assertRaises(ValueError):
                        AddressEntry.from_api_dm({'full_name': 'x',
                                                  name: value})

    def test_list_items_must_be_objects(self) -> None:
        """A list item that is not a JSON object is refused."""
        items: list[Any] = ['home', 1, None, []]
        for item in items:
            with self.subTest(item=item):
                with self.assertRaises(ValueError):
                    AddressEntry.from_api_dm({'full_name': 'x',
                                              'emails': [item]})

    def test_missing_required_is_refused(self) -> None:
        """An API form without a required field is refused, nested too."""
        cases = {
            'full_name': {},
            'country': {'full_name': 'x', 'addresses': [
                {'kind': 'home', 'street_name': 'S', 'pincode': 1}]},
            'local_number': {'full_name': 'x', 'phone_numbers': [
                {'kind': 'home', 'country_code': 1}]},
        }
        for case, api in cases.items():
            with self.subTest(missing=case):
                with self.assertRaises(ValueError):
                    AddressEntry.from_api_dm(api)


def _no_empty_required(entry: Any) -> bool:
    """True if no required field is '' and no string holds a NUL (the
    schema allows both; we do not)."""
    documents = [(entry, 'addressEntry')] + [
        (item, definition)
        for name, definition in LIST_ITEMS.items()
        for item in entry.get(name, [])
    ]
    return all(
        document[key] != ''
        for document, definition in documents
        for key in DEFINITIONS[definition]['required']
    ) and not any(
        isinstance(value, str) and '\x00' in value
        for document, _ in documents for value in document.values()
    )


class RoundTripPropertyTest(unittest.TestCase):
    # Drawing from the schema costs tens of milliseconds an example, so
    # the generation health check would fail on a slow machine.
    @settings(max_examples=50, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(from_schema(ADDRESS_BOOK_SCHEMA).filter(_no_empty_required))
    def test_schema_valid_entries_round_trip(
        self, api: dict[str, Any]
    ) -> None:
        """Any schema-valid entry with filled required strings round-trips."""
        self.assertEqual(AddressEntry.from_api_dm(api).to_api_dm(), api)

    @settings(max_examples=50, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(from_schema(ADDRESS_BOOK_SCHEMA).filter(_no_empty_required),
           st.randoms())
    def test_ordering_keys_gives_the_api_form(
        self, api: dict[str, Any], random: Any
    ) -> None:
        """An entry whose keys come in any order is put in the order of
        `to_api_dm()`, as a store that sorts keys needs, and the same JSON
        results as from building the entry."""
        expected = json.dumps(AddressEntry.from_api_dm(api).to_api_dm())
        self.assertEqual(
            json.dumps(AddressEntry.ordered_api_dm(_shuffled(api, random))),
            expected)


def _shuffled(value: Any, random: Any) -> Any:
    """`value` with the keys of every object in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        random.shuffle(items)
        return {key: _shuffled(item, random) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, random) for item in value]
    return value


if __name__ == '__main__':
    unittest.main()
