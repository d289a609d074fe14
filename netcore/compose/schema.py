"""Validation against the Compose specification's JSON schema (``schema/compose-spec.json``, vendored;
origin and license in ``schema/README.md``), with ``jsonschema``; pure.

Each file is validated on its own, after interpolation (as Compose does: the schema wants booleans and
integers that a variable may supply), so an error names that file's line: the first error in the file's
order, reduced to the most relevant branch where the schema offers several (``oneOf``), in one line
such as ``compose.yaml:7: services.web.ports[0]: unknown key 'hostip'``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from netcore.compose.document import Document
from netcore.compose.errors import ComposeError, Path

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
               "object": "a mapping", "array": "a list", "null": "null"}


@cache
def compose_schema() -> dict:
    """The vendored Compose specification schema (draft-07), parsed once."""
    return json.loads(resources.files(__package__).joinpath("schema/compose-spec.json").read_text("utf-8"))


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(compose_schema())


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref", "") if isinstance(schema, dict) else ""
    if ref.startswith("#/definitions/"):
        return compose_schema()["definitions"][ref.rsplit("/", 1)[1]]
    return schema if isinstance(schema, dict) else {}


def _types(schema: dict) -> list[str]:
    """The JSON types a (sub)schema accepts, following ``$ref``, ``oneOf`` and ``anyOf`` one level down."""
    schema = _resolve(schema)
    if "type" in schema:
        kinds = schema["type"]
        return [kinds] if isinstance(kinds, str) else list(kinds)
    found: list[str] = []
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        for kind in _types(branch):
            if kind not in found:
                found.append(kind)
    return found


def _one_of(names: list[str]) -> str:
    names = [_TYPE_NAMES.get(n, n) for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _shape(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), "a value")


def _unexpected(error: ValidationError) -> list[str]:
    schema = error.schema
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    known = set(schema.get("properties", {}))
    return [k for k in error.instance if k not in known and not any(p.search(k) for p in patterns)]


def _describe(error: ValidationError) -> tuple[Path, str]:
    """(the path the message is about, the message) for one schema error."""
    path = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = _unexpected(error)
        if extra:
            return (*path, extra[0]), f"unknown {'' if path else 'top-level '}key {extra[0]!r}: not in the " \
                                      "Compose specification"
    if validator == "type":
        return path, f"must be {_one_of(_types(error.schema))}, not {_shape(error.instance)} ({error.instance!r})"
    if validator in ("oneOf", "anyOf"):
        kinds = _types(error.schema)
        return path, (f"must be {_one_of(kinds)}, not {_shape(error.instance)}" if kinds
                      else f"{error.instance!r} is not valid here")
    if validator == "enum":
        return path, f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    if validator == "required":
        return path, error.message.replace("is a required property", "is required here")
    if validator == "pattern":
        return path, f"{error.instance!r} does not match {error.validator_value}"
    if validator == "uniqueItems":
        return path, "has the same item twice"
    if validator == "additionalProperties":
        return path, "has a key the Compose specification does not allow here"
    return path, error.message


def validate(document: Document) -> None:
    """Check ``document`` (one file, interpolated) against the Compose specification.

    ComposeError ``FILE:LINE: PATH: MESSAGE`` for the first error in the file's order."""
    errors = list(_validator().iter_errors(document.data))
    if not errors:
        return

    def order(error: ValidationError):
        location = document.location(tuple(error.absolute_path))
        return (getattr(location, "line", 0), len(error.absolute_path))

    first = min(errors, key=order)
    path, message = _describe(best_match([first]))
    raise ComposeError(str(document.error(path, message)))
