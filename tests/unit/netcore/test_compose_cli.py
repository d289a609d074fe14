"""`netcore compose` and `netcore up/down -f` through the engine, without root (an in-memory kernel and
supervisor): labelled objects, converging, refusals before anything, down touching only the project; the
mapping from the plan to netcore's requests; and the command line's new words (issue 28)."""

from __future__ import annotations

import io
import subprocess
import sys
from argparse import Namespace

import pytest

from netcore import cli
from netcore.cli import compose as handlers
from netcore.cli.parser import build_parser
from netcore.compose.errors import ComposeError
from netcore.compose.plan import HASH_LABEL, PROJECT_LABEL, SERVICE_LABEL, ContainerSpec, EndpointSpec, NetworkSpec
from netcore.errors import NetcoreError
from netcore.requests import Attachment
from tests.support.engine_calls import run_container
from tests.support.fake_kernel import new_world

world = pytest.fixture(new_world)

FILE = """name: shop
services:
  web:
    command: [server]
    networks:
      front: {aliases: [www]}
      back:
    ports: ["${WEB_PORT:-8080}:80"]
    dns_search: [corp.example]
    extra_hosts: ["printer:10.9.0.9", "gw=host-gateway"]
    links: ["db:database"]
  db:
    networks:
      back: {ipv4_address: 10.9.0.10}
  side:
    network_mode: service:db
  lonely:
    network_mode: none
networks:
  front: {}
  back: {ipam: {config: [{subnet: 10.9.0.0/24}]}}
"""


def args(tmp_path, **more) -> Namespace:
    given = {"files": [], "project_name": None, "project_directory": None, "env_files": [], "cwd": str(tmp_path),
             "environ": {}, "detach": True, "remove_orphans": False, "timeout": 10}
    return Namespace(**{**given, **more})


@pytest.fixture
def project(tmp_path):
    (tmp_path / "compose.yaml").write_text(FILE)
    return tmp_path


def up(engine, directory, **more):
    out = io.StringIO()
    assert handlers.compose_up(engine, args(directory, **more), out) == 0
    return out.getvalue().splitlines()


def test_up_builds_labelled_objects_with_compose_semantics(world, project):
    engine = world.engine()
    lines = up(engine, project)
    assert lines == ["Network shop_front  Created", "Network shop_back  Created", "Container shop-db-1  Created",
                     "Container shop-web-1  Created", "Container shop-web-1  Started", "Container shop-side-1  Created",
                     "Container shop-lonely-1  Created"]  # db first: web links to it
    store = engine.store
    web = store.container("shop-web-1")
    assert (web.labels[PROJECT_LABEL], web.labels[SERVICE_LABEL]) == ("shop", "web")
    assert len(web.labels[HASH_LABEL]) == 64
    assert store.network("shop_back").labels["com.docker.compose.network"] == "back"
    endpoints = {store.network(e.network_id).name: e for e in store.endpoints_of_container(web.id)}
    assert list(endpoints) == ["shop_back", "shop_front"]  # Compose's order: by name, eth0 first
    assert endpoints["shop_front"].aliases == ("web", "www")
    db = store.container("shop-db-1")
    assert store.endpoints_of_container(db.id)[0].aliases == ("db", "database")  # the link's alias
    assert store.endpoints_of_container(db.id)[0].ipv4 == "10.9.0.10"
    assert store.container("shop-side-1").peer == db.id and store.container("shop-lonely-1").mode == "none"
    assert (web.dns_search, web.extra_hosts) == (("corp.example",), ("printer:10.9.0.9", "gw:host-gateway"))
    resolv, hosts = world.kernel.etc[web.netns]
    gateway = store.network("shop_back").gateway
    assert "10.9.0.9\tprinter" in hosts and f"{gateway}\tgw" in hosts and "search corp.example" in resolv
    assert store.process(web.id).argv == ("server",) and store.process(db.id) is None


def test_up_twice_changes_nothing_and_an_edit_recreates_its_object(world, project):
    engine = world.engine()
    up(engine, project)
    ids = {c.name: c.id for c in engine.store.containers()}
    assert {line.rsplit("  ", 1)[1] for line in up(engine, project)} == {"Running"}
    assert {c.name: c.id for c in engine.store.containers()} == ids
    lines = up(engine, project, environ={"WEB_PORT": "8081"})
    assert [line for line in lines if "Running" not in line] == ["Container shop-web-1  Recreated",
                                                                "Container shop-web-1  Started"]
    now = {c.name: c.id for c in engine.store.containers()}
    assert [name for name in ids if now[name] != ids[name]] == ["shop-web-1"]


def test_a_hand_made_container_of_the_same_name_is_refused_before_anything(world, project):
    engine = world.engine()
    run_container(engine, "shop-db-1")
    before = [n.name for n in engine.store.networks()]
    with pytest.raises(ComposeError, match="container shop-db-1 already exists, made by not compose; nothing was "
                                           "created or removed"):
        up(engine, project)
    assert [n.name for n in engine.store.networks()] == before and engine.store.container("shop-db-1").labels == {}


def test_down_touches_only_the_project_and_refuses_a_foreign_sharer(world, project):
    engine = world.engine()
    up(engine, project)
    run_container(engine, "mine", "shop_front")  # made by hand on the project's network
    out = io.StringIO()
    handlers.compose_down(engine, args(project), out)
    assert "Container shop-web-1  Stopped" in out.getvalue() and "Network shop_back  Removed" in out.getvalue()
    assert [c.name for c in engine.store.containers()] == ["mine"]
    assert [n.name for n in engine.store.networks()] == ["bridge", "shop_front"]  # still used by mine
    up(engine, project)
    run_container(engine, "intruder", "container:shop-db-1")
    with pytest.raises(ComposeError, match="shares its namespace with intruder, which is not the project's"):
        handlers.compose_down(engine, args(project), io.StringIO())
    assert engine.store.find_container("shop-db-1") is not None


def test_down_without_a_file_removes_every_object_of_the_named_project(world, project, tmp_path_factory):
    engine = world.engine()
    up(engine, project)
    elsewhere = tmp_path_factory.mktemp("empty")
    handlers.compose_down(engine, args(elsewhere, project_name="shop"), io.StringIO())
    assert [c.name for c in engine.store.containers()] == []


def test_a_failure_midway_names_what_was_made_and_a_second_up_completes(world, project):
    engine = world.engine()
    original = engine.run
    calls = []

    def failing(spec, start=True):
        calls.append(spec.name)
        if spec.name == "shop-web-1" and len(calls) < 3:
            raise NetcoreError("container shop-web-1 not created: injected")
        return original(spec, start)

    engine.run = failing
    with pytest.raises(NetcoreError) as failed:
        up(engine, project)
    assert str(failed.value) == ("project shop: container shop-web-1 not created: injected; made before it: network "
                                 "shop_front, network shop_back, container shop-db-1; `netcore compose up` again "
                                 "completes the project, `netcore compose down` removes it")
    lines = up(engine, project)
    assert [line for line in lines if "Running" not in line] == [
        "Container shop-web-1  Created", "Container shop-web-1  Started", "Container shop-side-1  Created",
        "Container shop-lonely-1  Created"]


def test_compose_ls_ps_and_config(world, project):
    engine = world.engine()
    up(engine, project)
    out = io.StringIO()
    handlers.compose_ls(engine, Namespace(all=False, quiet=False, format=None), out)
    assert out.getvalue().splitlines()[1].split()[:2] == ["shop", "running(4)"]
    out = io.StringIO()
    handlers.compose_ps(engine, args(project, all=False, quiet=False, format="{{.Name}} {{.Service}}"), out)
    assert out.getvalue().splitlines() == ["shop-db-1 db", "shop-web-1 web", "shop-side-1 side", "shop-lonely-1 lonely"]
    out = io.StringIO()
    handlers.compose_config(engine, args(project, services=True, networks=False, quiet=False), out)
    assert out.getvalue().split() == ["db", "web", "side", "lonely"]
    out = io.StringIO()
    handlers.compose_config(engine, args(project, services=False, networks=False, quiet=False,
                                         environ={"WEB_PORT": "9"}), out)
    assert out.getvalue().startswith("name: shop\nservices:\n") and "- 9:80" in out.getvalue()


def test_an_old_topology_file_gets_a_hint(world, tmp_path):
    (tmp_path / "t.yaml").write_text("networks:\n  app: {}\ncontainers:\n  web: {networks: [app]}\n")
    with pytest.raises(ComposeError, match="topology files are Compose files now: write services: for containers:"):
        handlers.up(world.engine(), args(tmp_path, files=["t.yaml"]), io.StringIO())


def test_the_plan_maps_to_the_engines_requests():
    network = NetworkSpec("p_back", subnet="10.9.0.0/24", gateway="10.9.0.1", subnet6="fd00::/64",
                          enable_ipv6=True, options=(("com.docker.network.driver.mtu", "1400"),),
                          labels=(("k", "v"),)).request().check()
    assert (network.subnets, network.gateways, network.ipv6, network.options, network.labels) == (
        ("10.9.0.0/24", "fd00::/64"), ("10.9.0.1",), True, {"com.docker.network.driver.mtu": "1400"}, {"k": "v"})
    container = ContainerSpec("p-web-1", "web", 1, None, (EndpointSpec("p_back", ("web",), "10.9.0.5"),
                                                          EndpointSpec("p_front", ("web", "www"))),
                              extra_hosts=(("h", "1.2.3.4"),), process=("server", "-v")).request().check()
    assert container.networks == (Attachment("p_back", ("web",), "10.9.0.5"), Attachment("p_front", ("web", "www")))
    assert (container.extra_hosts, container.command) == (("h:1.2.3.4",), ("server", "-v"))
    assert ContainerSpec("p-a-1", "a", 1, "bridge").request().check().attachments == (Attachment("bridge"),)
    assert ContainerSpec("p-a-1", "a", 1, "container:p-db-1").request().check().net == "container:p-db-1"


# -- the command line -------------------------------------------------------------------------------------------


def test_several_networks_and_the_new_run_flags_parse():
    parsed = build_parser().parse_args(["run", "--net", "a", "--network", "b", "--dns-search", "x.example",
                                        "--add-host", "h:1.2.3.4", "-d", "--", "sleep", "1"])
    assert (parsed.net, parsed.dns_search, parsed.add_host, parsed.detach) == (["a", "b"], ["x.example"],
                                                                               ["h:1.2.3.4"], True)


@pytest.mark.parametrize(("argv", "status"), [
    (["run", "--nam", "x"], 2), (["ps", "--filt", "x"], 2), (["network", "ls", "--quie"], 2),
    (["run", "--nam", "x", "--", "true"], 125), (["compose", "--projec", "x", "ls"], 2),
])
def test_abbreviations_are_refused(argv, status, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == status and capsys.readouterr().err.count("\n") == 1


def test_bash_completion_is_generated_from_the_parser_without_privileges(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "netcore", "--state-dir", str(tmp_path / "none"), "completion",
                           "bash"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "-F _shtab_netcore netcore" in proc.stdout
    for word in ("compose", "logs", "--remove-orphans", "--no-trunc", "prune"):
        assert word in proc.stdout
    assert not (tmp_path / "none").exists()  # no agent, no state dir
    syntax = subprocess.run(["bash", "-n"], input=proc.stdout, capture_output=True, text=True, timeout=60)
    assert syntax.returncode == 0, syntax.stderr


def test_network_ls_quiet_format_filter_and_prune(world):
    from netcore.cli import commands
    from tests.support.engine_calls import create_network

    engine = world.engine()
    create_network(engine, "used", labels={"team": "a"})
    create_network(engine, "idle")
    run_container(engine, "web", "used")
    out = io.StringIO()
    commands.network_ls(engine, Namespace(quiet=False, format="{{.Name}} {{.Driver}}", filter=["label=team=a"],
                                          no_trunc=False), out)
    assert out.getvalue() == "used bridge\n"
    out = io.StringIO()
    commands.network_ls(engine, Namespace(quiet=True, format=None, filter=[], no_trunc=True), out)
    assert [len(line) for line in out.getvalue().split()] == [64, 64, 64]
    out = io.StringIO()
    commands.network_prune(engine, Namespace(force=True), out)
    assert out.getvalue() == "Deleted Networks:\nidle\n"
    assert sorted(n.name for n in engine.store.networks()) == ["bridge", "used"]


def test_version_and_dnsd_version(world):
    from netcore.cli import commands

    out = io.StringIO()
    commands.version(world.engine(), Namespace(), out)
    assert out.getvalue().startswith("Server: netcored\n Version:")
    proc = subprocess.run([sys.executable, "-m", "dnsd", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("dnsd ")


def test_run_with_two_networks_attaches_both(world):
    """Docker 25's `run --network A --network B` (main kept only B)."""
    from netcore.requests import ContainerSpec as Request
    from tests.support.engine_calls import create_network

    engine = world.engine()
    create_network(engine, "a", ["10.5.1.0/24"])
    create_network(engine, "b", ["10.5.2.0/24"])
    container = engine.run(Request.from_flags("two", ["a", "b"], ["alias"]))
    endpoints = engine.store.endpoints_of_container(container.id)
    assert [(e.ifname, engine.store.network(e.network_id).name, e.aliases) for e in endpoints] == [
        ("eth0", "a", ("alias",)), ("eth1", "b", ())]
