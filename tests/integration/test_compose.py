"""`netcore compose` end to end, as root in sandboxes (issue 28): a file written for these tests with every key
netcore applies (compose/shop/compose.yaml), and three public files used as they are
(tests/unit/netcore/fixtures/compose, origins and licenses in its README). What Compose gives is checked with
real clients (getent, dig, curl): names, rotation over replicas, reachability and isolation; `up` twice; an edit
per kind of key; objects made by hand refused and left alone; a failure part way, then `up` and `down`."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from tests.support.sandbox import wait_for

SHOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compose", "shop")
PUBLIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit", "netcore", "fixtures",
                      "compose")


def compose(sandbox, *args, directory=SHOP, check=True, env=None, timeout=240):
    """``netcore compose --project-directory DIR ARGS`` with the test's variables (PY: this Python)."""
    saved = dict(os.environ)
    os.environ.update({"PY": sys.executable, **(env or {})})
    try:
        return sandbox.nc("compose", "--project-directory", directory, *args, check=check, timeout=timeout)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def lines(proc, word: str) -> list[str]:
    """The names of the objects whose progress line ends with ``word`` (``Container shop-web-1  Recreated``)."""
    return [m.group(1) for m in re.finditer(rf"^(?:Network|Container) (\S+)  {word}$", proc.stdout, re.M)]


def pids(sandbox) -> dict[str, int]:
    docs = json.loads(sandbox.nc("inspect", *sandbox.nc("ps", "-q").stdout.split()).stdout)
    return {d["Name"][1:]: d["State"]["Pid"] for d in docs if d["State"]["Pid"]}


def ids(sandbox) -> dict[str, str]:
    """Every container's and network's ID by name."""
    found = dict(line.split() for line in sandbox.nc("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}")
                 .stdout.splitlines())
    found.update(line.split() for line in sandbox.nc("network", "ls", "--no-trunc", "--format", "{{.Name}} {{.ID}}")
                 .stdout.splitlines())
    return found


def getent(sandbox, container: str, name: str) -> list[str]:
    proc = sandbox.exec(container, "getent", "ahostsv4", name, check=False)
    return sorted({line.split()[0] for line in proc.stdout.splitlines()})


def fetch(sandbox, container: str, url: str, seconds: float = 10.0) -> bool:
    """Whether ``container`` gets ``url`` over HTTP, waiting for a server that was just started to listen."""
    return bool(wait_for(lambda: sandbox.exec(container, "curl", "-sf", "-m", "2", "-o", "/dev/null", url,
                                              check=False).returncode == 0, seconds, 0.2))


def hand_made(sandbox):
    """What the file names as external, made by hand: network ``lan`` and container ``outsider``."""
    sandbox.nc("network", "create", "--subnet", "10.88.0.0/24", "lan")
    sandbox.nc("run", "--name", "outsider", "--net", "lan")


@pytest.fixture
def shop(sandbox):
    hand_made(sandbox)
    up = compose(sandbox, "up", "-d")
    return sandbox, up


def test_every_key_as_compose_gives_it(shop):
    sandbox, up = shop
    assert lines(up, "Created") == ["shop-frontnet", "shop_back", "shop-api-1", "shop-api-2", "shop-api-3",
                                    "shop-database", "shop-web-1", "shop-sidecar-1", "shop-probe-1",
                                    "shop-hostnet-1", "shop-lonely-1", "shop-buddy-1"]
    assert lines(up, "Started") == ["shop-api-1", "shop-api-2", "shop-api-3", "shop-database", "shop-web-1"]
    assert up.stderr.count("not applied by netcore (outside networking and processes): services: image; top "
                           "level: volumes") == 1 and "`version` is obsolete" in up.stderr
    web = json.loads(sandbox.nc("inspect", "shop-web-1").stdout)[0]
    labels = web["Config"]["Labels"]
    assert (labels["com.docker.compose.project"], labels["com.docker.compose.service"]) == ("shop", "web")
    assert len(labels["com.docker.compose.config-hash"]) == 64
    assert web["Config"]["Hostname"] == "shopweb" and web["HostConfig"]["DnsSearch"] == ["corp.example"]
    assert web["NetworkSettings"]["Networks"]["shop-frontnet"]["GlobalIPv6Address"] == "fd00:77::80"
    back = json.loads(sandbox.nc("network", "inspect", "shop_back").stdout)[0]
    assert back["IPAM"]["Config"][0] == {"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1", "IPRange": "10.77.0.128/25"}
    assert back["Options"]["com.docker.network.driver.mtu"] == "1400" and back["Labels"]["com.docker.compose.network"] \
        == "back"
    front = json.loads(sandbox.nc("network", "inspect", "shop-frontnet").stdout)[0]
    assert front["Labels"]["tier"] == "front" and front["EnableIPv6"] is True
    # names: the service on each of its networks, aliases, links; a fixed address; the replicas rotating
    api = sorted(getent(sandbox, "shop-web-1", "api"))
    assert len(api) == 3 and all(a.startswith("10.77.0.") for a in api)
    firsts = {sandbox.exec("shop-web-1", "dig", "+short", "api").stdout.split()[0] for _ in range(4)}
    assert len(firsts) > 1  # the first answer rotates
    assert getent(sandbox, "shop-web-1", "database") == getent(sandbox, "shop-web-1", "db") == ["10.77.0.10"]
    assert getent(sandbox, "shop-probe-1", "www") == getent(sandbox, "shop-probe-1", "web")
    # reachability and isolation: the backend only is on back; probe is on front only
    assert fetch(sandbox, "shop-web-1", "http://api:8000/")
    assert getent(sandbox, "shop-probe-1", "api") == [] and getent(sandbox, "shop-probe-1", "db") == []
    refused = sandbox.exec("shop-probe-1", "curl", "-s", "-m", "2", "http://10.77.0.10:8000/", check=False)
    assert refused.returncode != 0
    # the files of web: search domain, extra hosts (host-gateway: its first network's gateway)
    files = sandbox.exec("shop-web-1", "cat", "/etc/resolv.conf", "/etc/hosts").stdout
    assert "search corp.example" in files and "10.99.0.9\tprinter.lan" in files and "10.77.0.1\tgw.lan" in files
    # network modes: service: shares db's namespace, container: the hand-made one's, none and host
    assert fetch(sandbox, "shop-sidecar-1", "http://127.0.0.1:8000/")
    buddy = json.loads(sandbox.nc("inspect", "shop-buddy-1").stdout)[0]
    assert buddy["HostConfig"]["NetworkMode"] == "container:outsider"
    assert "10.88.0.3" in getent(sandbox, "shop-probe-1", "shop-probe-1") or getent(sandbox, "outsider", "probe")
    ports = sandbox.nc("port", "shop-web-1").stdout
    assert "8000/tcp -> 0.0.0.0:8080" in ports and "53/udp -> 0.0.0.0:5353" in ports and "7001/tcp -> 0.0.0.0:9001" \
        in ports and "8000/tcp -> 127.0.0.1:8443" in ports
    listed = compose(sandbox, "ps", "--format", "{{.Name}} {{.Service}} {{.State}}").stdout.splitlines()
    assert "shop-database db running" in listed and len(listed) == 10
    assert sandbox.nc("compose", "ls").stdout.splitlines()[1].startswith("shop ")


def test_up_twice_changes_nothing_and_down_leaves_what_it_did_not_make(shop):
    sandbox, _ = shop
    before = (pids(sandbox), ids(sandbox))
    again = compose(sandbox, "up", "-d")
    assert lines(again, "Running") and not lines(again, "Created") and not lines(again, "Recreated")
    after = (pids(sandbox), ids(sandbox))
    assert after == before  # the same objects, their processes running on
    down = compose(sandbox, "down")
    assert len(lines(down, "Removed")) == 12 and len(lines(down, "Stopped")) == 5
    assert sandbox.nc("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["outsider"]
    assert sorted(sandbox.nc("network", "ls", "--format", "{{.Name}}").stdout.split()) == ["bridge", "lan"]
    assert len(sandbox.namespaces()) == 2  # the gateway namespace and outsider's


@pytest.mark.parametrize(("env", "recreated"), [
    ({"WEB_PORT": "8090"}, ["shop-web-1"]),  # a published port
    ({"WEB_HOSTNAME": "web2"}, ["shop-web-1"]),  # a hostname
    ({"WEB_ALIAS": "w3"}, ["shop-web-1"]),  # an alias
    ({"API_DNS": "10.77.0.54"}, ["shop-api-1", "shop-api-2", "shop-api-3"]),  # dns
    ({"DB_ADDRESS": "10.77.0.11"}, ["shop-database", "shop-sidecar-1"]),  # an address; sidecar shares its namespace
    ({"BACK_SUBNET": "10.77.0.0/23"}, ["shop_back", "shop-api-1", "shop-api-2", "shop-api-3", "shop-database",
                                       "shop-web-1", "shop-sidecar-1"]),  # a network's subnet: it and what is on it
])
def test_an_edit_recreates_exactly_its_object(shop, env, recreated):
    sandbox, _ = shop
    before, running = ids(sandbox), pids(sandbox)
    proc = compose(sandbox, "up", "-d", env=env)
    assert sorted(lines(proc, "Recreated")) == sorted(recreated), proc.stdout
    after, running_after = ids(sandbox), pids(sandbox)
    assert {name for name in before if after[name] != before[name]} == set(recreated)
    assert all(running_after[name] == pid for name, pid in running.items() if name not in recreated)  # ran on
    assert not lines(compose(sandbox, "up", "-d", env=env), "Recreated")  # and converged


def test_a_hand_made_container_of_the_same_name_is_refused_and_untouched(sandbox):
    hand_made(sandbox)
    sandbox.nc("run", "-d", "--name", "shop-web-1", "--net", "lan", "--", sys.executable, "-m", "http.server", "8000")
    state = (ids(sandbox), pids(sandbox))
    proc = compose(sandbox, "up", "-d", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    error = [line for line in proc.stderr.splitlines() if not line.startswith("netcore: warning:")]
    assert error == ["netcore: project shop: container shop-web-1 already exists, made by not compose; nothing was "
                     "created or removed"]
    assert (ids(sandbox), pids(sandbox)) == state
    down = compose(sandbox, "down")  # nothing of the project exists: down touches nothing either
    assert lines(down, "Removed") == [] and (ids(sandbox), pids(sandbox)) == state


def test_a_failure_midway_names_what_was_made_then_up_and_down_complete(sandbox):
    hand_made(sandbox)
    sandbox.nc("run", "--name", "squatter", "-p", "8099:80")  # holds the host port web will ask for
    failed = compose(sandbox, "up", "-d", env={"WEB_PORT": "8099"}, check=False)
    assert failed.returncode == 1
    error = failed.stderr.splitlines()[-1]
    assert error.startswith("netcore: project shop: container shop-web-1 not created") or \
        error.startswith("netcore: project shop: Bind for 0.0.0.0:8099 failed"), error
    assert ("made before it: network shop-frontnet, network shop_back, container shop-api-1, container shop-api-2, "
            "container shop-api-3, container shop-database;") in error
    assert "shop-web-1" not in sandbox.nc("ps", "-a").stdout  # the failed one was taken back whole
    sandbox.nc("rm", "squatter")
    done = compose(sandbox, "up", "-d", env={"WEB_PORT": "8099"})
    assert lines(done, "Created") == ["shop-web-1", "shop-sidecar-1", "shop-probe-1", "shop-hostnet-1",
                                      "shop-lonely-1", "shop-buddy-1"]
    assert len(lines(done, "Running")) == 6
    compose(sandbox, "down")
    assert sandbox.nc("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["outsider"]


def test_a_failure_midway_then_down_removes_it_all(sandbox):
    hand_made(sandbox)
    sandbox.nc("run", "--name", "squatter", "-p", "8098:80")
    assert compose(sandbox, "up", "-d", env={"WEB_PORT": "8098"}, check=False).returncode == 1
    down = compose(sandbox, "down")
    assert sorted(lines(down, "Removed")) == ["shop-api-1", "shop-api-2", "shop-api-3", "shop-database",
                                              "shop-frontnet", "shop_back"]
    assert sorted(sandbox.nc("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["outsider", "squatter"]


def test_react_express_mysql_as_it_is(sandbox):
    """docker/awesome-compose (CC0): the frontend reaches the backend, never the database."""
    directory = os.path.join(PUBLIC, "react-express-mysql")
    up = compose(sandbox, "up", "-d", directory=directory)
    assert lines(up, "Created") == ["react-express-mysql_public", "react-express-mysql_private",
                                    "react-express-mysql-db-1", "react-express-mysql-backend-1",
                                    "react-express-mysql-frontend-1"]
    assert "its main process did not start" in up.stderr  # db's command is a flag of mariadb's image
    backend = getent(sandbox, "react-express-mysql-backend-1", "db")
    assert backend and getent(sandbox, "react-express-mysql-frontend-1", "db") == []
    assert getent(sandbox, "react-express-mysql-frontend-1", "backend")
    assert len(lines(compose(sandbox, "down", directory=directory), "Removed")) == 5
    assert sandbox.nc("ps", "-aq").stdout == ""


def test_nginx_golang_postgres_as_it_is(sandbox):
    """docker/awesome-compose (CC0): no networks declared: PROJECT_default, with names."""
    directory = os.path.join(PUBLIC, "nginx-golang-postgres")
    up = compose(sandbox, "up", "-d", directory=directory)
    assert lines(up, "Created")[0] == "nginx-golang-postgres_default"
    assert "depends_on.condition: service_healthy" in up.stderr
    assert getent(sandbox, "nginx-golang-postgres-proxy-1", "backend") == \
        [json.loads(sandbox.nc("inspect", "nginx-golang-postgres-backend-1").stdout)[0]["NetworkSettings"]["Networks"]
         ["nginx-golang-postgres_default"]["IPAddress"]]
    assert "0.0.0.0:80->80/tcp" in sandbox.nc("ps").stdout
    compose(sandbox, "down", directory=directory)
    assert sandbox.nc("network", "ls", "-q").stdout.count("\n") == 1  # the default bridge alone


def test_pihole_cloudflared_doh_as_it_is(sandbox):
    """docker/awesome-compose (CC0), with its .env: a fixed address, container_name, port 53 published."""
    directory = os.path.join(PUBLIC, "pihole-cloudflared-DoH")
    up = compose(sandbox, "up", "-d", directory=directory)
    assert lines(up, "Created") == ["pihole-cloudflared-doh_dns-net", "cloudflared", "pihole"]
    assert getent(sandbox, "pihole", "cloudflared") == ["172.20.0.2"]
    ports = sandbox.nc("port", "pihole").stdout
    assert "53/udp -> 0.0.0.0:53" in ports and "53/tcp -> 0.0.0.0:53" in ports
    compose(sandbox, "down", directory=directory)


def test_up_without_detach_follows_the_output_until_the_processes_end(sandbox, tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "name: talk\nservices:\n  hello:\n    command: [sh, -c, 'echo hello from $$HOSTNAME; sleep 1; echo bye']\n"
        "  quiet: {}\n")
    proc = sandbox.nc("compose", "-f", str(tmp_path / "compose.yaml"), "up", timeout=120)
    assert "Container talk-hello-1  Started" in proc.stdout
    assert proc.stdout.index("Container talk-quiet-1  Created\nAttaching to talk-hello-1\n") < \
        proc.stdout.index("talk-hello-1  | hello")  # once everything is up, as Compose says it
    assert re.search(r"^talk-hello-1  \| hello from \S+$", proc.stdout, re.M)
    assert re.search(r"^talk-hello-1  \| bye$", proc.stdout, re.M)  # followed until it ended
    assert json.loads(sandbox.nc("inspect", "talk-hello-1").stdout)[0]["State"]["ExitCode"] == 0
    sandbox.nc("compose", "-f", str(tmp_path / "compose.yaml"), "down")
