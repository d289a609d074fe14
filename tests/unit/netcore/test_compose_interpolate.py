"""Interpolation as Compose does it: the cases of compose-go's template tests (template/template_test.go),
written anew here, plus the typed paths and the positions of errors."""

from __future__ import annotations

import pytest

from netcore.compose.document import parse
from netcore.compose.errors import ComposeError
from netcore.compose.interpolate import InterpolationError, interpolate, substitute

ENV = {"FOO": "first", "BAR": "", "JSON": '{"json":2}'}


def sub(text: str, env=None) -> str:
    return substitute(text, (ENV if env is None else env).get)[0]


@pytest.mark.parametrize(("template", "expected"), [
    ("$${foo}", "${foo}"),
    ("foo", "foo"),
    ("a $ string", "a $ string"), ("^REGEX$", "^REGEX$"), ("$}", "$}"), ("$", "$"), ("$1", "$1"),
    ("$FOO-bar", "first-bar"),  # docker/compose#8601
    ("This ${missing} var", "This  var"), ("This ${BAR} var", "This  var"),
    ("This $FOO var", "This first var"), ("This ${FOO} var", "This first var"),
    ("ok ${missing:-def}", "ok def"), ("ok ${missing-def}", "ok def"),
    ("ok ${BAR:-def}", "ok def"), ("ok ${FOO:-def}", "ok first"), ("ok ${BAR-def}", "ok "),
    ("ok ${UNSET_VAR:+presence_value}", "ok "), ("ok ${UNSET_VAR+presence_value}", "ok "),
    ("ok ${FOO:+presence_value}", "ok presence_value"), ("ok ${FOO+presence_value}", "ok presence_value"),
    ("ok ${BAR+presence_value}", "ok presence_value"), ("ok ${BAR:+presence_value}", "ok "),
    ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
    ("-ok ${BAR:-defaultValue}", "-ok defaultValue"), ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
    (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"), (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
    ("ok ${UNSET_VAR-$FOO}", "ok first"), ("ok ${UNSET_VAR-${FOO}}", "ok first"),
    ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"), ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
    ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
    ("ok ${FOO:?err}", "ok first"), ("ok ${FOO?err}", "ok first"), ("ok ${BAR?err}", "ok "),
    ("${UNSET_VAR-myerror?msg}", "myerror?msg"), ("${FOO?bar-baz}", "first"),
    ('ok ${missing:-{"json":1}}', 'ok {"json":1}'), ('ok ${missing-{"json":1}}', 'ok {"json":1}'),
    ('ok ${JSON:-{"json":1}}', 'ok {"json":2}'), ('ok ${JSON-{"json":1}}', 'ok {"json":2}'),
    ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
    ("${A:-x} ${B:-y}", "x y"), ("${IPV4:-172.22.1}.254", "172.22.1.254"), ("$$$FOO", "$first"),
])
def test_substitution_matches_compose(template, expected):
    assert sub(template) == expected


@pytest.mark.parametrize("template", ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}", "${foo:bar}",
                                      "${A:-x\n}"])
def test_invalid_templates_are_refused(template):
    with pytest.raises(InterpolationError, match="invalid interpolation format"):
        sub(template)


@pytest.mark.parametrize(("template", "message"), [
    ("not ok ${UNSET_VAR:?Mandatory Variable Unset}", "required variable UNSET_VAR is missing a value: "
                                                     "Mandatory Variable Unset"),
    ("not ok ${BAR:?Mandatory Variable Empty}", "required variable BAR is missing a value: Mandatory Variable Empty"),
    ("not ok ${UNSET_VAR:?}", "required variable UNSET_VAR is missing a value"),
    ("not ok ${UNSET_VAR?}", "required variable UNSET_VAR is missing a value"),
    ("not ok ${UNSET_VAR?Mandatory Variable ${FOO}}", "missing a value: Mandatory Variable first"),
    ("${UNSET_VAR?bar-baz}", "missing a value: bar-baz"),
])
def test_required_variables(template, message):
    with pytest.raises(InterpolationError, match=message.replace("?", r"\?")):
        sub(template)


def test_unset_names_are_reported_once_and_only_when_read():
    assert substitute("${A:+${A},}B", {}.get) == ("B", [])  # the replacement is not read: no warning
    assert substitute("${A:-${B}} $B ${B}", {}.get) == ("  ", ["B"])
    assert substitute("${A?${B}}", {"A": "value"}.get) == ("value", [])


def test_interpolation_of_a_document_casts_typed_paths_and_keeps_other_strings():
    text = ("services:\n  web:\n    hostname: ${H}\n    deploy: {replicas: '${N:-2}'}\n"
            "    ports: [{target: '${P}', published: '${P}'}]\n"
            "networks:\n  n:\n    internal: ${I:-on}\n    enable_ipv6: 'false'\n    labels: {a: '${N:-2}'}\n")
    document, warnings = interpolate(parse(text, "compose.yaml")[0], {"P": "80"}.get)
    service = document.data["services"]["web"]
    assert service["hostname"] == ""
    assert service["deploy"]["replicas"] == 2
    assert service["ports"][0] == {"target": 80, "published": "80"}  # published stays a string, as in Compose
    assert document.data["networks"]["n"] == {"internal": True, "enable_ipv6": False, "labels": {"a": "2"}}
    assert warnings == ["the 'H' variable is not set: using a blank string",
                        "compose.yaml:8: networks.n.internal: 'on' for a boolean is YAML 1.1, read as true; write true"]


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    image: x\n    hostname: ${H:?give a host name}\n",
     "compose.yaml:4: services.web.hostname: required variable H is missing a value: give a host name"),
    ("services:\n  web:\n    ports:\n      - '${P:-80'\n",
     "compose.yaml:4: services.web.ports[0]: invalid interpolation format '${P:-80'"),
    ("services:\n  web:\n    scale: ${S:-many}\n", "compose.yaml:3: services.web.scale: 'many' is not an integer"),
    ("networks:\n  n:\n    internal: ${I:-maybe}\n", "compose.yaml:3: networks.n.internal: 'maybe' is not a boolean"),
])
def test_errors_name_file_line_and_key(text, message):
    with pytest.raises(ComposeError) as caught:
        interpolate(parse(text, "compose.yaml")[0], {}.get)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
