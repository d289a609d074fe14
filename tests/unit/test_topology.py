import pytest
import yaml

from netcore import topology
from netcore.errors import NetcoreError

EXAMPLE = """
networks:
  app: {subnet: 172.30.0.0/24, ip_range: 172.30.0.128/25, gateway: 172.30.0.254}
containers:
  web:
    networks:
      app: {aliases: [www], ip: 172.30.0.130}
  db:
    networks: [app, bridge]
  tool:
    net: host
"""


def test_parse_example():
    t = topology.parse(yaml.safe_load(EXAMPLE), "t.yaml")
    assert t.networks["app"]["ip_range"] == "172.30.0.128/25"
    web, db, tool = t.containers
    assert (web.name, web.attachments[0].network, web.attachments[0].aliases, web.attachments[0].ip) \
        == ("web", "app", ["www"], "172.30.0.130")
    assert [a.network for a in db.attachments] == ["app", "bridge"]
    assert tool.mode == "host" and tool.attachments == []


@pytest.mark.parametrize("text, message", [
    ("networks: [a, b]", "networks: expected a mapping"),
    ("networks: {app: {subnett: 10.0.0.0/24}}", "unknown key 'subnett'"),
    ("containers: {web: {networks: {app: {alias: [x]}}}}", "unknown key 'alias'"),
    ("containers: {web: {net: host, networks: [app]}}", "not both"),
    ("services: {}", "unknown key 'services'"),
    ("containers: {web: {ports: 8080}}", r"web.ports: expected a list of port mappings"),
    ("containers: {web: {ports: [70000]}}", r"web.ports: 70000 is not a port"),
    ("containers: {web: {ports: ['80:']}}", r"web.ports: invalid -p '80:': no container port"),
])
def test_bad_topologies_name_the_place(text, message):
    with pytest.raises(NetcoreError, match=message):
        topology.parse(yaml.safe_load(text), "t.yaml")


def test_ports_are_run_p_values_and_an_unquoted_22_22_is_not_the_number_1342(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("containers:\n  web:\n    ports:\n      - 22:22\n      - '8080:80'\n      - 53/udp\n      - 9090\n"
                    "      - 0x10\n")
    parsed = topology.load(str(path))
    assert [(p.host_ports, p.container_ports, p.protocol) for p in parsed.containers[0].ports] == [
        ((22, 22), (22, 22), "tcp"), ((8080, 8080), (80, 80), "tcp"), (None, (53, 53), "udp"),
        (None, (9090, 9090), "tcp"), (None, (16, 16), "tcp")]


def test_load_reports_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(NetcoreError, match="cannot read topology"):
        topology.load(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("networks: {app: [\n")
    with pytest.raises(NetcoreError, match="not valid YAML"):
        topology.load(str(bad))


def test_examples_parse():
    import glob
    files = glob.glob("examples/*.yaml")
    assert files
    for path in files:
        topology.load(path)


def test_a_container_sharing_a_namespace_is_created_after_its_owner_whatever_the_file_order():
    t = topology.parse(yaml.safe_load("""
containers:
  side: {net: "container:web"}
  sidecar2: {net: "container:side"}
  web: {networks: [app]}
  other: {net: "container:elsewhere"}
  loop1: {net: "container:loop2"}
  loop2: {net: "container:loop1"}
networks:
  app: {}
"""), "t.yaml")
    order = [spec.name for spec in topology.creation_order(t.containers)]
    assert sorted(order) == sorted(spec.name for spec in t.containers)  # each once
    assert order.index("web") < order.index("side") < order.index("sidecar2")
    assert order.index("other") < order.index("loop1")  # not declared in the file: kept where it is
