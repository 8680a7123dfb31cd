"""The API contract: schema/openapi.yaml, bundled into one JSON document.

The document refers to the entry schema by its file name
(`$ref: address-book-v1.0.json`), so that the two cannot drift. Clients
get one document: each schema file it refers to becomes a component named
after the file (`address-book-v1.0`), with the references into it rewritten
to point there, and the file's content otherwise as it is.

Both are JSON Schema draft 7 (the document says so in `jsonSchemaDialect`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any, Callable, Iterator, Mapping

import yaml

from addrservice.utils import strictjson

OPENAPI_FILE = 'openapi.yaml'

# What a reference to a schema file beside the document may be: its name,
# then optionally a JSON pointer into it.
_FILE_REF = re.compile(
    r'(?P<file>[A-Za-z0-9._-]+)\.json(?:#(?P<pointer>.*))?\Z')

_YAML_LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)

ReadSchema = Callable[[str], Mapping[str, Any]]


class BundleError(ValueError):
    """A reference the bundle cannot keep meaning what it meant."""


@functools.cache
def openapi_json() -> bytes:
    """The bundled document as JSON text, read once per process."""
    return strictjson.dumps(load_openapi()).encode()


def load_openapi() -> dict[str, Any]:
    """The OpenAPI document, with the schema files it refers to bundled in."""
    directory = importlib.resources.files('addrservice').joinpath('schema')

    def read_schema(name: str) -> Mapping[str, Any]:
        document: Mapping[str, Any] = json.loads(
            directory.joinpath(name).read_text(encoding='utf-8'))
        return document

    text = directory.joinpath(OPENAPI_FILE).read_text(encoding='utf-8')
    return bundle(yaml.load(text, Loader=_YAML_LOADER), read_schema)


def bundle(
    document: Mapping[str, Any], read_schema: ReadSchema
) -> dict[str, Any]:
    """`document` with each schema file it refers to as a component.

    `read_schema` reads a file by name. `BundleError` for a reference the
    bundle cannot keep.
    """
    files = sorted(_referenced_files(document))
    bundled: dict[str, Any] = _map_refs(document, _component_ref)
    schemas = bundled.setdefault('components', {}).setdefault('schemas', {})
    for name in files:
        component = _component_name(name)
        if component in schemas:
            raise BundleError(f'{name} would replace component {component}')
        schemas[component] = _as_component(read_schema(name), component)
    return bundled


def _referenced_files(document: Mapping[str, Any]) -> set[str]:
    return {
        _file_ref(ref).group('file') + '.json'
        for ref in _refs(document) if not ref.startswith('#')
    }


def _refs(node: Any) -> Iterator[str]:
    """Every `$ref` in `node`."""
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key == '$ref' and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)


def _file_ref(ref: str) -> re.Match[str]:
    match = _FILE_REF.match(ref)
    if match is None:
        raise BundleError(f'{ref!r} is not a schema file beside the document')
    return match


def _component_name(file_name: str) -> str:
    return file_name.removesuffix('.json')


def _component_ref(ref: str) -> str:
    """The reference within the bundle of a reference in the document."""
    if ref.startswith('#'):
        return ref
    match = _file_ref(ref)
    return _pointer_into(match.group('file'), match.group('pointer') or '')


def _pointer_into(component: str, pointer: str) -> str:
    if pointer and not pointer.startswith('/'):
        # A draft-7 name ('#addressEntry'): not kept by the bundle.
        raise BundleError(f'#{pointer} into {component} is not a JSON pointer')
    return f'#/components/schemas/{component}{pointer}'


def _as_component(schema: Mapping[str, Any], component: str) -> Any:
    """A schema file's content, with its references rebased onto
    `component`."""
    def rebase(ref: str) -> str:
        if not ref.startswith('#'):
            raise BundleError(f'{component} refers to {ref!r}, outside it')
        return _pointer_into(component, ref[1:])
    return _map_refs(_without_names(schema), rebase)


def _without_names(schema: Any) -> Any:
    """`schema` without draft 7's subschema names (`"$id": "#name"`).

    No reference uses them (a reference by name is refused above), and
    a resolver of the 2020-12 dialect, OpenAPI 3.1's default, would take
    one for a new base URI and resolve the pointers below it wrongly.
    """
    if isinstance(schema, list):
        return [_without_names(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    kept = {}
    for key, value in schema.items():
        if key == '$id' and isinstance(value, str):
            if not value.startswith('#'):
                raise BundleError(f'$id {value!r} would change how '
                                  'references resolve')
            continue
        kept[key] = _without_names(value)
    return kept


def _map_refs(node: Any, rewrite: Callable[[str], str]) -> Any:
    """A deep copy of `node` with `rewrite` applied to every `$ref`."""
    if isinstance(node, list):
        return [_map_refs(item, rewrite) for item in node]
    if not isinstance(node, Mapping):
        return node  # a scalar
    return {
        key: rewrite(value) if key == '$ref' and isinstance(value, str)
        else _map_refs(value, rewrite)
        for key, value in node.items()
    }
