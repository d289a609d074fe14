"""Docker's --format (json, table, Go templates) and --filter over inspect-shaped documents."""

from __future__ import annotations

import json

import pytest

from netcore.cli.formatting import (
    CONTAINER_FILTERS,
    NETWORK_FILTERS,
    FormatError,
    go_text,
    parse_filters,
    render,
    select,
)

WEB = {"Id": "abc123", "Name": "/web", "State": {"Status": "running"},
       "Config": {"Labels": {"com.docker.compose.project": "shop", "tier": "front"}},
       "NetworkSettings": {"Networks": {"front": {"NetworkID": "ff00", "IPAddress": "10.0.0.2"},
                                        "back": {"NetworkID": "ee11", "IPAddress": "10.1.0.2"}}}}
DB = {"Id": "def456", "Name": "/db", "State": {"Status": "exited"}, "Config": {"Labels": {}},
      "NetworkSettings": {"Networks": {"back": {"NetworkID": "ee11", "IPAddress": "10.1.0.3"}}}}
NETS = [{"Name": "front", "Id": "ff00", "Driver": "bridge", "Scope": "local", "Labels": {"tier": "front"}},
        {"Name": "lan", "Id": "aa99", "Driver": "macvlan", "Scope": "local", "Labels": {}}]
DEFAULT = "table {{.Id}}\t{{.Name}}"


@pytest.mark.parametrize(("fmt", "expected"), [
    ("{{.Name}}", "/web\n/db"),
    ("{{.State.Status}} {{.Id}}", "running abc123\nexited def456"),
    ('{{index .Config.Labels "tier"}}', "front\n<no value>"),
    ("{{json .State}}", '{"Status":"running"}\n{"Status":"exited"}'),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.1.0.2 10.0.0.2 \n10.1.0.3 "),
    ("{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}};{{end}}", "back=10.1.0.2;front=10.0.0.2;\n"
                                                                                     "back=10.1.0.3;"),
    ("{{if .Config.Labels.tier}}labelled{{else}}bare{{end}}", "labelled\nbare"),
    ("{{.Name | upper}} {{len .NetworkSettings.Networks}}", "/WEB 2\n/DB 1"),
    ("{{join (split .Id \"c\") \"-\"}}", None),
    ("{{- .Name -}}  x", "/webx\n/dbx"),
    ("{{.Config.Labels}}", "map[com.docker.compose.project:shop tier:front]\nmap[]"),
])
def test_templates(fmt, expected):
    if expected is None:
        with pytest.raises(FormatError):
            render(fmt, [WEB, DB], DEFAULT)
        return
    assert render(fmt, [WEB, DB], DEFAULT) == expected


def test_json_and_tables():
    assert [json.loads(line)["Name"] for line in render("json", [WEB, DB], DEFAULT).splitlines()] == ["/web", "/db"]
    headers = {"Id": "CONTAINER ID", "Name": "NAMES"}
    assert render(None, [WEB], DEFAULT, headers) == "CONTAINER ID   NAMES\nabc123         /web"
    assert render("table", [WEB], DEFAULT, headers) == render(None, [WEB], DEFAULT, headers)
    assert render("table {{.Name}}\\t{{.State.Status}}", [WEB, DB], DEFAULT).splitlines() == [
        "NAME   STATUS", "/web   running", "/db    exited"]
    assert render("table {{.NetworkID}}", [{"NetworkID": "x"}], DEFAULT).splitlines()[0] == "NETWORK ID"


@pytest.mark.parametrize(("fmt", "message"), [
    ("{{.Nme}}", "no field 'Nme' (fields: Config, Id, Name, NetworkSettings, State)"),
    ("{{if .Name}}x", "{{end}} is missing"),
    ("{{end}}", "{{end}} without"),
    ("{{nope .Name}}", "function 'nope' not defined"),
    ("{{.Name", "not closed"),
    ("{{range .Name}}x{{end}}", "cannot range over"),
])
def test_bad_templates_are_one_line(fmt, message):
    with pytest.raises(FormatError) as caught:
        render(fmt, [WEB], DEFAULT)
    assert message in str(caught.value)


def test_go_printing():
    assert [go_text(v) for v in (True, None, [1, "a"], {"b": 1, "a": False}, 3)] == [
        "true", "<no value>", "[1 a]", "map[a:false b:1]", "3"]


@pytest.mark.parametrize(("filters", "names"), [
    (["name=we"], ["/web"]), (["name=^/?db$"], ["/db"]), (["name=web", "name=db"], ["/web", "/db"]),
    (["label=tier"], ["/web"]), (["label=tier=front"], ["/web"]), (["label=tier=back"], []),
    (["network=back"], ["/web", "/db"]), (["network=ff"], ["/web"]), (["status=exited"], ["/db"]),
    (["id=def"], ["/db"]), (["network=back", "status=running"], ["/web"]),
])
def test_container_filters(filters, names):
    assert [d["Name"] for d in select([WEB, DB], parse_filters(filters, CONTAINER_FILTERS))] == names


def test_network_filters():
    def names(filters):
        return [n["Name"] for n in select(NETS, parse_filters(filters, NETWORK_FILTERS))]
    assert names(["driver=macvlan"]) == ["lan"]
    assert names(["scope=local", "label=tier"]) == ["front"]
    assert names(["name=a"]) == ["lan"]


@pytest.mark.parametrize(("filters", "message"), [
    (["bogus=1"], "invalid filter 'bogus'"), (["status=sleeping"], "invalid filter 'status=sleeping'"),
    (["name"], "bad format of filter 'name'"), (["driver=bridge"], "invalid filter 'driver'"),
])
def test_bad_filters(filters, message):
    with pytest.raises(FormatError, match=message):
        parse_filters(filters, CONTAINER_FILTERS)
