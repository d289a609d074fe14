"""Planning up and down over labelled objects: create, keep, recreate exactly what changed, refuse names held
outside the project before anything is made, and touch nothing that is not the project's."""

from __future__ import annotations

import pytest

from netcore.compose.document import Document, parse
from netcore.compose.errors import ComposeError
from netcore.compose.merge import merge
from netcore.compose.model import normalize
from netcore.compose.plan import (
    CONTAINER,
    CREATE,
    HASH_LABEL,
    KEEP,
    NETWORK,
    PROJECT_LABEL,
    RECREATE,
    REMOVE,
    SERVICE_LABEL,
    Existing,
    plan_down,
    plan_up,
)

FILE = """services:
  web:
    networks: [front]
    ports: ['8080:80']
  api:
    deploy: {replicas: 3}
    networks: [front, back]
  db:
    networks:
      back: {ipv4_address: 10.9.0.10}
  side:
    network_mode: service:db
networks:
  front: {}
  back: {ipam: {config: [{subnet: 10.9.0.0/24}]}}
"""


def project(text: str = FILE):
    return normalize(merge(Document({}), parse(text, "compose.yaml")[0]), "demo", "/srv/demo", ("/srv/demo/c.yaml",))


def built(plan) -> list[Existing]:
    """What exists after the plan ran: the objects its build phase made or kept, as the engine labels them."""
    return [Existing(a.kind, a.name, dict(a.spec.labels)) for a in plan.build if a.spec is not None]


def steps(plan) -> list[tuple[str, str, str]]:
    return [(a.verb, a.kind, a.name) for a in plan.actions]


def test_first_up_creates_networks_then_containers_in_start_order():
    plan = plan_up(project(), [])
    assert steps(plan) == [(CREATE, NETWORK, "demo_front"), (CREATE, NETWORK, "demo_back"),
                           (CREATE, CONTAINER, "demo-web-1"), (CREATE, CONTAINER, "demo-api-1"),
                           (CREATE, CONTAINER, "demo-api-2"), (CREATE, CONTAINER, "demo-api-3"),
                           (CREATE, CONTAINER, "demo-db-1"), (CREATE, CONTAINER, "demo-side-1")]
    side = plan.build[-1].spec
    assert side.network_mode == "container:demo-db-1"
    db = plan.build[-2].spec
    assert [(e.network, e.aliases, e.ipv4_address) for e in db.endpoints] == [("demo_back", ("db",), "10.9.0.10")]
    labels = dict(db.labels)
    assert (labels[PROJECT_LABEL], labels[SERVICE_LABEL], labels["com.docker.compose.container-number"]) == \
        ("demo", "db", "1")
    assert labels["com.docker.compose.project.config_files"] == "/srv/demo/c.yaml"
    network = plan.build[1].spec
    assert (network.subnet, dict(network.labels)["com.docker.compose.network"]) == ("10.9.0.0/24", "back")
    assert plan.build[0].line() == "Network demo_front  Created"


def test_up_twice_changes_nothing():
    existing = built(plan_up(project(), []))
    again = plan_up(project(), existing)
    assert not again.changes
    assert {a.verb for a in again.actions} == {KEEP}
    assert again.build[-1].line() == "Container demo-side-1  Running"


@pytest.mark.parametrize(("edit", "recreated"), [
    (("'8080:80'", "'8081:80'"), ["demo-web-1"]),  # a published port
    (("ipv4_address: 10.9.0.10", "ipv4_address: 10.9.0.11"), ["demo-db-1", "demo-side-1"]),  # shares db's namespace
    (("networks: [front]\n    ports", "networks: [front, back]\n    ports"), ["demo-web-1"]),
    (("    ports: ['8080:80']\n", "    ports: ['8080:80']\n    hostname: w\n"), ["demo-web-1"]),
    (("    deploy: {replicas: 3}\n", "    deploy: {replicas: 3}\n    dns: [9.9.9.9]\n"),
     ["demo-api-1", "demo-api-2", "demo-api-3"]),
])
def test_an_edit_recreates_exactly_its_object(edit, recreated):
    existing = built(plan_up(project(), []))
    plan = plan_up(project(FILE.replace(*edit)), existing)
    assert sorted(a.name for a in plan.build if a.verb == RECREATE) == sorted(recreated)
    assert sorted(a.name for a in plan.teardown) == sorted(recreated)
    assert all(a.verb in (KEEP, RECREATE) for a in plan.actions)


def test_a_changed_subnet_recreates_the_network_and_its_containers_around_it():
    existing = built(plan_up(project(), []))
    plan = plan_up(project(FILE.replace("10.9.0", "10.8.0")), existing)
    assert steps(plan)[:6] == [(RECREATE, CONTAINER, "demo-side-1"), (RECREATE, CONTAINER, "demo-db-1"),
                               (RECREATE, CONTAINER, "demo-api-3"), (RECREATE, CONTAINER, "demo-api-2"),
                               (RECREATE, CONTAINER, "demo-api-1"), (RECREATE, NETWORK, "demo_back")]
    kept = [a.name for a in plan.build if a.verb == KEEP]
    assert kept == ["demo_front", "demo-web-1"]


def test_scaling_adds_and_removes_without_touching_the_others():
    existing = built(plan_up(project(), []))
    down = plan_up(project(FILE.replace("replicas: 3", "replicas: 1")), existing)
    assert [(a.verb, a.name) for a in down.teardown] == [(REMOVE, "demo-api-3"), (REMOVE, "demo-api-2")]
    assert [a.name for a in down.build if a.verb != KEEP] == []
    up = plan_up(project(FILE.replace("replicas: 3", "replicas: 5")), existing)
    assert [a.name for a in up.build if a.verb == CREATE] == ["demo-api-4", "demo-api-5"]


def test_names_held_outside_the_project_are_refused_in_one_line_before_anything():
    hand = Existing(CONTAINER, "demo-web-1", {})
    other = Existing(NETWORK, "demo_back", {PROJECT_LABEL: "elsewhere"})
    with pytest.raises(ComposeError) as caught:
        plan_up(project(), [hand, other])
    assert str(caught.value) == ("project demo: network demo_back already exists, made by project elsewhere; "
                                 "container demo-web-1 already exists, made by not compose; nothing was created or "
                                 "removed")


def test_external_networks_and_container_peers_must_exist():
    text = ("services:\n  a:\n    networks: [lan]\n  b:\n    network_mode: container:legacy\n"
            "networks:\n  lan: {external: true}\n")
    with pytest.raises(ComposeError, match="network lan is declared as external, but could not be found; container "
                                           "legacy \\(network_mode of service b\\) does not exist"):
        plan_up(project(text), [])
    plan = plan_up(project(text), [Existing(NETWORK, "lan"), Existing(CONTAINER, "legacy")])
    assert steps(plan) == [(CREATE, CONTAINER, "demo-a-1"), (CREATE, CONTAINER, "demo-b-1")]


def test_orphans_are_named_and_removed_only_when_asked():
    existing = built(plan_up(project(), []))
    smaller = project(FILE.replace("  side:\n    network_mode: service:db\n", ""))
    plan = plan_up(smaller, existing)
    assert not plan.changes
    assert plan.warnings[0].startswith("Found orphan containers (demo-side-1) for this project.")
    plan = plan_up(smaller, existing, remove_orphans=True)
    assert [(a.verb, a.name) for a in plan.teardown] == [(REMOVE, "demo-side-1")]


def test_a_one_off_or_foreign_container_is_never_the_projects():
    oneoff = Existing(CONTAINER, "demo-x-1", {PROJECT_LABEL: "demo", SERVICE_LABEL: "x",
                                              "com.docker.compose.oneoff": "True"})
    plan = plan_up(project(), [oneoff], remove_orphans=True)
    assert "demo-x-1" not in [a.name for a in plan.actions]


def test_down_removes_exactly_the_projects_objects():
    existing = built(plan_up(project(), []))
    hand = Existing(CONTAINER, "mine", {}, ("demo_front",))
    stranger = Existing(NETWORK, "other_net", {PROJECT_LABEL: "other"})
    plan = plan_down("demo", [*existing, hand, stranger], project())
    assert steps(plan) == [(REMOVE, CONTAINER, "demo-side-1"), (REMOVE, CONTAINER, "demo-db-1"),
                           (REMOVE, CONTAINER, "demo-api-3"), (REMOVE, CONTAINER, "demo-api-2"),
                           (REMOVE, CONTAINER, "demo-api-1"), (REMOVE, CONTAINER, "demo-web-1"),
                           (REMOVE, NETWORK, "demo_back")]
    assert plan.warnings == ("network demo_front is left in place: containers outside this down still use it (mine)",)
    everything = plan_down("demo", existing)  # no file: every object of the project
    assert len(everything.teardown) == len(existing)


def test_a_partly_done_up_is_completed_by_the_next_plan():
    plan = plan_up(project(), [])
    done = built(plan)[:4]  # the networks and two containers were made, then it failed
    rest = plan_up(project(), done)
    assert [a.name for a in rest.build if a.verb == CREATE] == ["demo-api-2", "demo-api-3", "demo-db-1", "demo-side-1"]
    assert plan_down("demo", done, project()).teardown[-1].name == "demo_front"


def test_a_stale_hash_label_is_recreated():
    existing = built(plan_up(project(), []))
    stale = [Existing(e.kind, e.name, {**e.labels, HASH_LABEL: "old"}) if e.name == "demo-web-1" else e
             for e in existing]
    assert [a.name for a in plan_up(project(), stale).build if a.verb == RECREATE] == ["demo-web-1"]
