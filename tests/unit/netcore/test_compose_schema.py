"""Validation against the vendored Compose specification schema, errors mapped to file, line and key."""

from __future__ import annotations

import pytest

from netcore.compose.document import parse
from netcore.compose.errors import ComposeError
from netcore.compose.schema import compose_schema, validate


def check(text: str) -> None:
    validate(parse(text, "compose.yaml")[0])


def test_the_vendored_schema_is_compose_specs():
    schema = compose_schema()
    assert schema["$schema"].startswith("https://json-schema.org/draft-07")
    assert {"services", "networks", "volumes", "secrets"} <= set(schema["properties"])


def test_valid_files_pass():
    check("services:\n  web:\n    image: nginx\n    ports: [80, '8080:80', {target: 53, protocol: udp}]\n"
          "    networks: {front: {aliases: [www]}}\nnetworks:\n  front:\n    ipam: {config: [{subnet: 10.0.0.0/24}]}\n"
          "x-anything: {whatever: 1}\n")


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    imagee: x\n", "compose.yaml:3: services.web.imagee: unknown key 'imagee'"),
    ("services:\n  web:\n    ports:\n      - {target: 80, hostip: x}\n",
     "compose.yaml:4: services.web.ports[0].hostip: unknown key 'hostip'"),
    ("services:\n  web:\n    scale: [1]\n",
     "compose.yaml:3: services.web.scale: must be an integer or a string, not a list"),
    ("networks:\n  a:\n    internal: {x: 1}\n", "compose.yaml:3: networks.a.internal: must be a boolean or a string"),
    ("foo: 1\n", "compose.yaml:1: foo: unknown top-level key 'foo'"),
    ("services:\n  web:\n    depends_on:\n      db: {required: true}\n",
     "compose.yaml:4: services.web.depends_on.db: 'condition' is required here"),
    ("services:\n  web:\n    networks: 5\n", "compose.yaml:3: services.web.networks: must be a list or a mapping"),
    ("services:\n  a: {}\n  b:\n    ports: [80]\n  c:\n    dns: {x: 1}\n",
     "compose.yaml:6: services.c.dns: must be a string or a list"),  # the first error in the file's order
])
def test_errors_point_at_the_line_and_key(text, message):
    with pytest.raises(ComposeError) as caught:
        check(text)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
