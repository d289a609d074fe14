"""Removing containers that share a namespace (--net container:NAME), and store errors users can read
(issue 11, item 12)."""

from __future__ import annotations

import pytest

from netcore.errors import StoreError
from netcore.model import MODE_CONTAINER, Container, removal_order
from netcore.store import Store


def container(name: str, peer: Container | None = None) -> Container:
    return Container(id=name.encode().hex().ljust(64, "0"), name=name, hostname=name,
                     netns=peer.netns if peer else f"ns-{name}", mode=MODE_CONTAINER if peer else "bridge",
                     peer=peer.id if peer else None)


web = container("web")
side = container("side", web)
side2 = container("side2", web)
db = container("db")
sidecar = container("sidecar", db)


def names(containers) -> list[str]:
    return [c.name for c in containers]


@pytest.mark.parametrize("given", [[web, side], [side, web]], ids=["owner-first", "dependent-first"])
def test_dependents_go_before_the_container_whose_namespace_they_share(given):
    assert names(removal_order(given)) == ["side", "web"]


def test_other_containers_keep_their_order_and_each_dependent_goes_right_before_its_owner():
    order = names(removal_order([db, web, side2, sidecar, side]))
    assert order == ["sidecar", "db", "side2", "side", "web"]
    assert order.index("side") < order.index("web") and order.index("side2") < order.index("web")


def test_a_chain_of_any_depth_and_duplicates_are_ordered_once():
    middle = container("middle", web)
    last = container("last", middle)
    assert names(removal_order([web, middle, last, web, last])) == ["last", "middle", "web"]


def test_a_dependent_whose_owner_is_not_removed_is_kept_in_place():
    assert names(removal_order([side, db])) == ["side", "db"]
    assert removal_order([]) == []


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "state"))
    yield s
    s.close()


def test_deleting_a_container_others_share_says_what_failed_and_writes_nothing(store):
    with store.transaction():
        store.insert(web)
        store.insert(side)
    generation = store.generation()
    with pytest.raises(StoreError) as raised, store.transaction():
        store.delete(web)
    message = str(raised.value)
    assert message.startswith("cannot delete container web: other records still refer to it")
    assert "rolled back" in message and "nothing was half-written" in message and "\n" not in message
    assert sorted(names(store.containers())) == ["side", "web"] and store.generation() == generation
    with store.transaction():  # the store is usable after the refusal
        store.delete(side)
        store.delete(web)
    assert store.containers() == []
