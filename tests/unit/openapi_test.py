"""The API contract: schema/openapi.yaml, and the document served from it."""

from __future__ import annotations

import copy
import glob
import json
import os
import pathlib
import tempfile
import unittest
from typing import Any, Iterator

import jsonschema
import yaml
from jsonschema_path import SchemaPath
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing.jsonschema import DRAFT7

from addrservice.openapi import BundleError, bundle, load_openapi
from tests.support import AddressServiceTornadoAppTestSetup, memory_config

REPO = pathlib.Path(__file__).resolve().parents[2]
OPENAPI_YAML = REPO / 'schema' / 'openapi.yaml'
ENTRY_SCHEMA_FILE = 'address-book-v1.0.json'
ENTRY_COMPONENT = 'address-book-v1.0'
ADDRESSES_DIR = REPO / 'data' / 'addresses'


def read_yaml() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        OPENAPI_YAML.read_text(encoding='utf-8'))
    return document


def read_entry_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (REPO / 'schema' / ENTRY_SCHEMA_FILE).read_text(encoding='utf-8'))
    return schema


class DocumentTest(unittest.TestCase):
    def test_file_is_valid_openapi(self) -> None:
        """openapi-spec-validator accepts schema/openapi.yaml, its
        reference to the entry schema resolved as the draft 7 it is."""
        document = read_yaml()
        self.assertEqual(document['openapi'], '3.1.0')
        self.assertEqual(document['jsonSchemaDialect'],
                         read_entry_schema()['$schema'])
        OpenAPIV31SpecValidator(SchemaPath.from_dict(
            document, base_uri=OPENAPI_YAML.as_uri(),
            specification=DRAFT7)).validate()

    def test_file_refers_to_the_entry_schema(self) -> None:
        """The file refers to the entry schema rather than copying it."""
        document = read_yaml()
        self.assertEqual(document['components']['schemas']['Entry']['$ref'],
                         ENTRY_SCHEMA_FILE)
        self.assertNotIn(ENTRY_COMPONENT, document['components']['schemas'])
        self.assertNotIn('addressEntry', OPENAPI_YAML.read_text('utf-8'))

    def test_bundled_document_is_valid_openapi(self) -> None:
        """openapi-spec-validator accepts the bundled document as it is."""
        validate(load_openapi())

    def test_bundle_is_the_file_with_the_reference_resolved(self) -> None:
        """The bundled document is the file with the entry schema file as
        a component and the references rewritten, and nothing else."""
        bundled = load_openapi()
        schemas = bundled['components']['schemas']
        component = schemas.pop(ENTRY_COMPONENT)
        schemas['Entry']['$ref'] = ENTRY_SCHEMA_FILE
        self.assertEqual(bundled, read_yaml())

        # Rebased by text, unlike the bundle does it; draft 7's unused
        # subschema name left out.
        expected = json.loads(json.dumps(read_entry_schema()).replace(
            '"#/definitions/',
            f'"#/components/schemas/{ENTRY_COMPONENT}/definitions/'))
        del expected['definitions']['addressEntry']['$id']
        self.assertEqual(component, expected)

    def test_bundled_entry_schema_judges_as_the_file(self) -> None:
        """The bundled entry schema accepts and refuses the same entries
        as the schema file."""
        original = jsonschema.Draft7Validator(
            read_entry_schema(),
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        document = load_openapi()
        bundled = jsonschema.Draft7Validator(
            {**document, '$ref': '#/components/schemas/Entry'},
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        for entry in sample_entries():
            with self.subTest(entry=entry):
                self.assertEqual(bundled.is_valid(entry),
                                 original.is_valid(entry))
                self.assertEqual(
                    [e.message for e in bundled.iter_errors(entry)],
                    [e.message for e in original.iter_errors(entry)])

    def test_entry_rules_name_fields_of_the_entry_schema(self) -> None:
        """Every field the service's extra rules name is a field of the
        entry schema, at the same place."""
        document = load_openapi()
        schemas = document['components']['schemas']
        definitions = schemas[ENTRY_COMPONENT]['definitions']
        entry = definitions['addressEntry']
        for path, name in rule_fields(schemas['EntryRules']):
            with self.subTest(field='/'.join([*path, name])):
                schema = entry
                for part in path:
                    items = schema['properties'][part]['items']['$ref']
                    schema = definitions[items.rsplit('/', 1)[1]]
                self.assertIn(name, schema['properties'])

    def test_every_operation_documents_request_id(self) -> None:
        """Every response of every operation documents X-Request-ID."""
        document = load_openapi()
        components = document['components']['responses']
        for path, item in document['paths'].items():
            for method, operation in item.items():
                if method == 'parameters':
                    continue
                for status, response in operation['responses'].items():
                    with self.subTest(operation=f'{method} {path}',
                                      status=status):
                        if '$ref' in response:
                            response = components[
                                response['$ref'].rsplit('/', 1)[1]]
                        self.assertIn('X-Request-ID', response['headers'])


def rule_fields(rules: dict[str, Any], path: tuple[str, ...] = ()
                ) -> Iterator[tuple[tuple[str, ...], str]]:
    """(the lists it is in, name) of every field the rules name."""
    for name, rule in rules['properties'].items():
        if 'items' in rule:
            yield from rule_fields(rule['items'], (*path, name))
        else:
            yield path, name


def sample_entries() -> list[Any]:
    """The sample entries, and entries each wrong in one way."""
    samples = [json.loads(pathlib.Path(p).read_text('utf-8'))
               for p in sorted(glob.glob(os.path.join(ADDRESSES_DIR,
                                                      '*.json')))]
    wrong: list[Any] = [
        {}, [], 'Bill', {'full_name': 7}, {'full_name': 'A', 'x': 1},
        {'full_name': 'A', 'emails': [{'kind': 'home', 'email': 'nope'}]},
        {'full_name': 'A', 'phone_numbers': [{'kind': 'cell'}]},
        {'full_name': 'A', 'addresses': [{'kind': 'home'}]},
    ]
    for sample in samples:
        broken = copy.deepcopy(sample)
        broken['addresses'][0]['pincode'] = None
        wrong.append(broken)
    return samples + wrong


def no_file(name: str) -> dict[str, Any]:
    raise AssertionError(f'read {name}')


class BundleTest(unittest.TestCase):
    def test_file_becomes_component(self) -> None:
        """A schema file becomes a component named after it, and pointers
        into it, from the document and from within it, point there."""
        document = {'components': {'schemas': {
            'A': {'$ref': 'b.json'},
            'C': {'$ref': 'b.json#/definitions/d'}}}}
        schema = {'$schema': 'x', 'definitions': {'d': {'type': 'string'}},
                  'properties': {'p': {'$ref': '#/definitions/d'}},
                  'items': {'$ref': '#'}}
        self.assertEqual(bundle(document, {'b.json': schema}.__getitem__), {
            'components': {'schemas': {
                'A': {'$ref': '#/components/schemas/b'},
                'C': {'$ref': '#/components/schemas/b/definitions/d'},
                'b': {'$schema': 'x',
                      'definitions': {'d': {'type': 'string'}},
                      'properties': {'p': {
                          '$ref': '#/components/schemas/b/definitions/d'}},
                      'items': {'$ref': '#/components/schemas/b'}}}}})

    def test_document_without_files_is_unchanged(self) -> None:
        """A document that refers to no file comes out equal."""
        document = {'paths': {}, 'components': {'schemas': {
            'A': {'$ref': '#/components/schemas/B'}, 'B': {}}}}
        self.assertEqual(bundle(document, no_file), document)

    def test_refused_references(self) -> None:
        """References the bundle could not keep meaning the same are
        refused, naming the reference."""
        cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
            'https://example.com/s.json': (
                {'$ref': 'https://example.com/s.json'}, {}),
            '#name into b is not': ({'$ref': 'b.json#name'}, {}),
            '#name': ({'$ref': 'b.json'}, {'$ref': '#name'}),
            "'other.json'": ({'$ref': 'b.json'}, {'$ref': 'other.json'}),
            'change how references resolve': (
                {'$ref': 'b.json'}, {'$id': 'http://example.com/b'}),
            'would replace component b': (
                {'$ref': 'b.json', 'components': {'schemas': {'b': {}}}},
                {}),
        }
        for fragment, (document, schema) in cases.items():
            with self.subTest(fragment):
                with self.assertRaisesRegex(BundleError, fragment):
                    bundle(document, lambda name: schema)

    def test_name_ids_are_dropped(self) -> None:
        """Draft 7's subschema names (`$id: '#name'`) are left out."""
        bundled = bundle({'$ref': 'b.json'},
                         lambda name: {'$id': '#b', 'items': {'$id': '#i'}})
        self.assertEqual(bundled['components']['schemas']['b'],
                         {'items': {}})


class ServedDocumentTest(AddressServiceTornadoAppTestSetup):
    def test_get_serves_the_bundle(self) -> None:
        """GET /openapi.json answers the bundled document as JSON."""
        r = self.fetch('/openapi.json', headers={'X-Request-ID': 'doc-1'})
        self.assertEqual(r.code, 200)
        self.assertEqual(r.headers['X-Request-ID'], 'doc-1')
        self.assertEqual(self.json_of(r), load_openapi())

    def test_head_and_other_methods(self) -> None:
        """HEAD sends the headers only; other methods get 405 with Allow."""
        r = self.fetch('/openapi.json', method='HEAD')
        self.assertEqual((r.code, r.body), (200, b''))
        r = self.request('DELETE', '/openapi.json')
        self.assert_error(r, 405, 'Method Not Allowed')
        self.assertEqual(r.headers['Allow'], 'GET, HEAD')


class ServedWithAuthTest(AddressServiceTornadoAppTestSetup):
    def make_config(self) -> dict[str, Any]:
        tmp = self.enterContext(tempfile.TemporaryDirectory())
        tokens = os.path.join(tmp, 'tokens')
        with open(tokens, 'w', encoding='utf-8') as f:
            f.write('client:0123456789abcdef0123\n')
        return {**memory_config(), 'auth': {'tokens_file': tokens}}

    def test_served_without_a_token(self) -> None:
        """With authentication on, the document needs no token; the
        address book does."""
        self.assertEqual(self.fetch('/openapi.json').code, 200)
        self.assert_error(self.fetch('/addresses'), 401, 'Unauthorized')


if __name__ == '__main__':
    unittest.main()
