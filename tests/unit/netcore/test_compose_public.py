"""Public Compose files, used as they are (origins and licenses in fixtures/compose/README.md), parse,
validate, normalise and plan."""

from __future__ import annotations

import os

from netcore.compose.files import ProjectOptions
from netcore.compose.loader import load
from netcore.compose.plan import CREATE, plan_up

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "compose")


def loaded(directory: str, environ=None):
    return load(ProjectOptions(), os.path.join(FIXTURES, directory), environ or {})


def test_react_express_mysql():
    p = loaded("react-express-mysql")
    assert p.name == "react-express-mysql"
    assert [s.name for s in p.services] == ["db", "backend", "frontend"]
    assert [n.name for n in p.used_networks] == ["react-express-mysql_public", "react-express-mysql_private"]
    assert p.service("backend").command == ("npm", "run", "start-watch")
    assert [a.network for a in p.service("db").networks] == ["private"]  # not reachable from frontend's network
    assert "services.*.build" in p.not_applied and "secrets" in p.not_applied
    plan = plan_up(p, [])
    assert [a.name for a in plan.build if a.verb == CREATE][-1] == "react-express-mysql-frontend-1"


def test_nginx_golang_postgres_gets_the_default_network():
    p = loaded("nginx-golang-postgres")
    assert [n.name for n in p.networks] == ["nginx-golang-postgres_default"]
    assert [s.name for s in p.services] == ["db", "backend", "proxy"]
    assert "services.*.depends_on.condition: service_healthy" in p.not_applied
    assert len(plan_up(p, []).build) == 4


def test_pihole_with_its_dotenv():
    p = loaded("pihole-cloudflared-DoH")
    assert p.container_name("cloudflared", 1) == "cloudflared"
    assert p.service("cloudflared").networks[0].ipv4_address == "172.20.0.2"
    assert p.network("dns-net").subnet4.subnet == "172.20.0.0/24"
    assert [publish.protocol for publish in p.service("pihole").ports] == ["tcp", "udp", "udp", "tcp", "tcp"]
    assert any("version` is obsolete" in w for w in p.warnings)
    assert not any("TIMEZONE" in w for w in p.warnings)  # .env set it


def test_interpolated_subnets_addresses_and_a_variable_boolean():
    p = loaded("interpolated-mail", {"IPV4_NETWORK": "10.77.1"})
    network = p.network("mail-network")
    assert (network.subnet4.subnet, network.subnet6.subnet, network.enable_ipv6) == (
        "10.77.1.0/24", "fd4d:6169:6c63:6f77::/64", True)
    assert network.driver_opts == (("com.docker.network.bridge.name", "br-mail"),)
    unbound = p.service("unbound-mail").networks[0]
    assert (unbound.ipv4_address, unbound.aliases) == ("10.77.1.254", ("unbound-mail", "unbound"))
    assert p.service("netfilter-mail").network_mode == "host"
    assert p.service("mysql-mail").ports[0].host_ip == "127.0.0.1"
    plan = plan_up(p, [])
    assert len([a for a in plan.build if a.kind == "container"]) == len(p.services)
