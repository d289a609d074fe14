"""Compose files as YAML 1.2 (booleans are true/false only) with the line of every value, and env files."""

from __future__ import annotations

import pytest

from netcore.compose.document import MAX_NODE_VISITS, parse
from netcore.compose.envfile import parse_env
from netcore.compose.errors import ComposeError, Location


def test_yaml_1_1_booleans_and_sexagesimals_stay_strings():
    text = "services:\n  web:\n    hostname: off\n    aliases: [yes, on, web, no, y, True, false]\n" \
           "    ports: [22:22, 80, 0o17, 0x1F, 1.5, ~, null, '']\n"
    web = parse(text, "c.yaml")[0].data["services"]["web"]
    assert web["hostname"] == "off"
    assert web["aliases"] == ["yes", "on", "web", "no", "y", True, False]
    assert web["ports"] == ["22:22", 80, 15, 31, 1.5, None, None, ""]


def test_positions_of_keys_and_items_and_merge_keys():
    text = "x-base: &base\n  dns: [1.1.1.1]\nservices:\n  web:\n    <<: *base\n    ports:\n      - 80\n      - 81\n"
    document = parse(text, "compose.yaml")[0]
    assert document.data["services"]["web"] == {"ports": [80, 81], "dns": ["1.1.1.1"]}
    assert document.positions[("services", "web")] == Location("compose.yaml", 4, 3)
    assert document.positions[("services", "web", "ports", 1)].line == 8
    assert document.positions[("services", "web", "dns")].line == 2  # where the merged value was written
    assert str(document.error(("services", "web", "ports", 1), "bad")) == "compose.yaml:8: services.web.ports[1]: bad"
    assert str(document.error(("services", "web", "nope"), "bad")) == "compose.yaml:4: services.web.nope: bad"


def test_written_keys_win_over_merged_ones():
    text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 0\n"
    assert parse(text, "c.yaml")[0].data["c"] == {"x": 0, "y": 1, "z": 2}


def test_reset_and_override_tags_are_recorded():
    document = parse("services:\n  web:\n    ports: !reset []\n    command: !override [a]\n", "c.yaml")[0]
    assert document.tags == {("services", "web", "ports"): "!reset", ("services", "web", "command"): "!override"}


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    image: [x\n", "c.yaml:4:1: "),  # a syntax error names line and column
    ("services:\n web:\n  image: x\n   ports: []\n", "c.yaml:4:9: mapping values are not allowed"),
    ("services:\n  web: {}\n  web: {}\n", "c.yaml:3: services.web: mapping key 'web' already defined at line 2"),
    ("- a\n", "c.yaml:1: the top level must be a mapping"),
    ("a: !!binary aGk=\n", "c.yaml:1: a: unsupported tag"),
    ("a: !custom x\n", "c.yaml:1: a: unsupported tag !custom"),
    ("a: &x [*x]\n", "recursive alias"),
    ("? [a]\n: 1\n", "a mapping key must be a plain value"),
])
def test_bad_yaml_is_one_line_with_its_place(text, message):
    with pytest.raises(ComposeError) as caught:
        parse(text, "c.yaml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_alias_bombs_are_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(ComposeError, match=f"more than {MAX_NODE_VISITS} values"):
        parse("\n".join(lines) + "\n", "bomb.yaml")


def test_several_documents_and_empty_ones():
    assert [d.data for d in parse("---\na: 1\n---\n---\nb: 2\n", "c.yaml")] == [{"a": 1}, {"b": 2}]
    assert parse("", "c.yaml") == []


def test_env_file_syntax_and_compose_expansion():
    text = ('# comment\nexport A=1\nB = "x\\n${A} \\$HOME"  # trailing\nC=\'lit $A\'\nD=unq $A # tail\n'
            'E\nINHERITED\nF="multi\nline"\nG=${A:-z}${U:-d}\nH=${MISSING-${A}}\n')
    values = parse_env(text, ".env", {"A": "os", "INHERITED": "from-env"})
    assert values == {"A": "1", "B": "x\nos $HOME", "C": "lit $A", "D": "unq os", "INHERITED": "from-env",
                      "F": "multi\nline", "G": "osd", "H": "os"}  # the environment wins in expansions


def test_env_file_reads_its_own_earlier_values_and_earlier_files():
    assert parse_env("A=1\nB=${A}2\nC=${EARLIER}\n", ".env", {}, {"EARLIER": "e"}) == {"A": "1", "B": "12", "C": "e"}


@pytest.mark.parametrize(("text", "message"), [
    ("A=1\nnot a binding\n", ".env:2: not a KEY=VALUE line: 'not a binding'"),
    ("A=${B:?needed}\n", ".env:1: A: required variable B is missing a value: needed"),
])
def test_env_file_errors_name_the_line(text, message):
    with pytest.raises(ComposeError, match=message.replace("?", r"\?")):
        parse_env(text, ".env", {})
