"""The normalised project: Compose's names, the default network, every applied key, what is not applied,
one-line refusals with their line, and the config hash."""

from __future__ import annotations

import os

import pytest

from netcore.compose.document import Document, parse
from netcore.compose.errors import ComposeError
from netcore.compose.files import ProjectOptions
from netcore.compose.loader import load
from netcore.compose.merge import merge
from netcore.compose.model import normalize
from netcore.ports import PublishSpec

EVERY_KEY = os.path.join(os.path.dirname(__file__), "fixtures", "compose", "every-key")


def project(text: str, name: str = "p"):
    return normalize(merge(Document({}), parse(text, "compose.yaml")[0]), name)


def test_every_key_of_the_written_file():
    p = load(ProjectOptions(), EVERY_KEY, {})
    assert p.name == "shop"
    assert [s.name for s in p.services] == ["api", "db", "web", "sidecar", "tool", "plain"]  # dependencies first
    web = p.service("web")
    assert web.hostname == "off"  # YAML 1.2: not False
    assert [(a.network, a.aliases) for a in web.networks] == [("back", ("web",)),
                                                              ("front", ("web", "yes", "on", "www"))]
    assert web.ports == (PublishSpec("", (443, 443), (443, 443)), PublishSpec("", (8080, 8081), (80, 81)),
                         PublishSpec("127.0.0.1", (5353, 5353), (53, 53), "udp"),
                         PublishSpec("", (8443, 8443), (443, 443)))
    assert web.command == ("nginx", "-g", "daemon off;")  # the override file replaced it
    assert web.dns_search == ("corp.example",)
    assert web.depends_on == ("api", "db")  # depends_on and links
    api = p.service("api")
    assert api.replicas == 3
    assert api.process == ("/usr/bin/env", "python3", "-m", "http.server", "8000")
    assert api.dns == ("10.20.0.53", "10.20.0.54:5353")
    assert api.extra_hosts == (("gateway.local", "10.20.0.1"), ("v6.local", "fd00::1"))
    assert api.networks[0].aliases == ("api", "backend")
    db = p.service("db")
    assert (db.networks[0].ipv4_address, db.networks[0].ipv6_address) == ("10.20.0.10", "fd00:20::10")
    assert db.networks[0].aliases == ("db", "database")  # web's link alias, on the network they share
    assert p.container_name("db", 1) == "shop-database"
    assert p.container_name("api", 2) == "shop-api-2"
    assert p.service("sidecar").network_mode == "service:db"
    assert p.service("tool").replicas == 0
    back = p.network("back")
    assert (back.name, back.enable_ipv6) == ("shop_back", True)
    assert back.driver_opts == (("com.docker.network.driver.mtu", "1400"),)
    assert (back.subnet4.subnet, back.subnet4.ip_range, back.subnet4.gateway) == ("10.20.0.0/24", "10.20.0.128/25",
                                                                                 "10.20.0.1")
    assert back.subnet6.subnet == "fd00:20::/64"
    assert back.labels == (("tier", "back"),)
    assert p.network("front").labels == (("tier", "front"),)
    outside = p.network("outside")
    assert (outside.name, outside.external) == ("lan0", True)
    assert p.network("default").name == "shop_default"  # plain names no network
    assert [n.key for n in p.used_networks] == ["front", "back", "default"]
    assert p.not_applied == ("services.*.environment", "services.*.image", "services.*.volumes", "volumes")
    assert p.not_applied_line() == ("not applied by netcore (outside networking and processes): "
                                    "services: environment, image, volumes; top level: volumes")
    assert any("version` is obsolete" in w for w in p.warnings)


def test_no_default_network_when_every_service_names_one():
    p = project("services:\n  a:\n    networks: [n]\nnetworks:\n  n: {}\n")
    assert [n.key for n in p.networks] == ["n"]
    p = project("services:\n  a: {}\nnetworks:\n  default:\n    name: shared\n")
    assert p.network("default").name == "shared"


def test_name_and_external_names():
    p = project("services:\n  a:\n    networks: [x, y]\nnetworks:\n  x: {name: custom}\n  y: {external: {name: old}}\n")
    assert [n.name for n in p.networks] == ["custom", "old"]


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  a:\n    networks: [nope]\n",
     "compose.yaml:3: services.a.networks[0]: service 'a' refers to undefined network 'nope'"),
    ("services:\n  a:\n    depends_on: [b]\n  b:\n    depends_on: [c]\n  c:\n    depends_on: [a]\n",
     "compose.yaml:3: services.a.depends_on: dependency cycle detected: a -> b -> c -> a"),
    ("services:\n  a:\n    links: [a]\n", "dependency cycle detected: a -> a"),
    ("services:\n  a:\n    depends_on: [ghost]\n",
     "compose.yaml:3: services.a.depends_on[0]: service 'a' depends on undefined"),
    ("services:\n  a:\n    network_mode: host\n    networks: [n]\nnetworks:\n  n: {}\n",
     "compose.yaml:3: services.a.network_mode: service a declares mutually exclusive"),
    ("services:\n  a:\n    network_mode: service:zz\n", "service 'zz' not found for network_mode"),
    ("services:\n  a:\n    network_mode: wat\n", "expected host, none, bridge, service:NAME or container:NAME"),
    ("services:\n  a:\n    ports: ['70000:80']\n", "compose.yaml:3: services.a.ports[0]: invalid host port"),
    ("services:\n  a:\n    ports: [{published: 80}]\n", "a port mapping needs a target"),
    ("services:\n  a:\n    scale: 2\n    deploy: {replicas: 3}\n", "can't set distinct values on 'scale'"),
    ("services:\n  a:\n    scale: 2\n    container_name: x\n", "can't set container_name with 2 replicas"),
    ("services:\n  a:\n    command: 'echo \"unterminated'\n", "services.a.command: cannot split"),
    ("services:\n  a:\n    dns: [not-an-ip]\n", "services.a.dns[0]: bad DNS server"),
    ("services:\n  a:\n    extra_hosts: [nohost]\n", "services.a.extra_hosts[0]: extra host 'nohost' has no address"),
    ("services:\n  a:\n    networks:\n      n: {ipv4_address: 10.0.0.5}\nnetworks:\n  n: {}\n",
     "compose.yaml:4: services.a.networks.n.ipv4_address: a fixed address needs a subnet"),
    ("services:\n  a:\n    networks:\n      n: {ipv4_address: 10.9.0.5}\nnetworks:\n  n:\n"
     "    ipam: {config: [{subnet: 10.0.0.0/24}]}\n", "10.9.0.5 is not inside network 'n''s subnet 10.0.0.0/24"),
    ("services:\n  a:\n    scale: 2\n    networks:\n      n: {ipv4_address: 10.0.0.5}\nnetworks:\n  n:\n"
     "    ipam: {config: [{subnet: 10.0.0.0/24}]}\n", "a fixed address with 2 replicas"),
    ("networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n        - subnet: 10.1.0.0/24\n",
     "compose.yaml:6: networks.n.ipam.config[1]: a second IPv4 subnet"),
    ("networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.1/24\n",
     "compose.yaml:5: networks.n.ipam.config[0].subnet: invalid subnet '10.0.0.1/24': host bits are set"),
    ("networks:\n  n:\n    ipam:\n      config:\n        - subnet: fd00::/64\n",
     "an IPv6 subnet needs enable_ipv6: true"),
    ("networks:\n  n:\n    external: true\n    driver: macvlan\n",
     "compose.yaml:4: networks.n.driver: conflicting parameters \"external\" and 'driver'"),
    ("services:\n  " + "a" * 70 + ": {}\n", "is not a valid name for netcore"),
])
def test_refusals_are_one_line_with_the_place(text, message):
    with pytest.raises(ComposeError) as caught:
        project(text)
    assert message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_optional_dependency_on_a_missing_service_is_a_warning():
    p = project("services:\n  a:\n    depends_on:\n      ghost: {condition: service_started, required: false}\n")
    assert p.service("a").depends_on == ()
    assert "not required: ignored" in p.warnings[0]


def test_config_hash_changes_exactly_with_what_matters():
    base = "services:\n  web:\n    image: nginx\n    ports: ['80:80']\n    networks: [n]\nnetworks:\n  n: {}\n"
    first = project(base)
    same = project(base.replace("image: nginx", "image: httpd").replace("services:", "x-note: 1\nservices:"))
    scaled = project(base.replace("image: nginx", "scale: 3"))
    assert first.service_hash("web") == same.service_hash("web") == scaled.service_hash("web")
    assert first.network("n").config_hash == same.network("n").config_hash
    assert first.service_hash("web") == project(base).service_hash("web")  # stable
    for edit in (("'80:80'", "'81:80'"), ("networks: [n]", "networks: {n: {aliases: [w]}}"),
                 ("image: nginx", "hostname: h"), ("image: nginx", "dns: [1.1.1.1]"),
                 ("image: nginx", "command: [x]")):
        assert project(base.replace(*edit)).service_hash("web") != first.service_hash("web"), edit
    internal = project(base.replace("n: {}", "n: {internal: true}"))
    assert internal.network("n").config_hash != first.network("n").config_hash
    assert internal.service_hash("web") == first.service_hash("web")


def test_links_alias_only_on_shared_networks():
    p = project("services:\n  web:\n    networks: [a]\n    links: ['db:database']\n  db:\n    networks: [a, b]\n"
                "networks:\n  a: {}\n  b: {}\n")
    assert [(n.network, n.aliases) for n in p.service("db").networks] == [("a", ("db", "database")), ("b", ("db",))]
