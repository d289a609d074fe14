import dataclasses
import multiprocessing
import os
import signal
import time

import pytest

from netcore.errors import Conflict, NotFound
from netcore.model import STATE_CREATING, STATE_RUNNING, Container, Endpoint, Network
from netcore.store import Store


def network(name="app", subnet="10.1.0.0/24", **kw):
    return Network(id=(name * 64)[:64].encode().hex()[:64], name=name, bridge=f"br-{name}", subnet=subnet,
                   gateway=subnet.replace("0/24", "1"), **kw)


def container(name, **kw):
    return Container(id=name.encode().hex().ljust(64, "0"), name=name, hostname=name, netns=f"ns-{name}", **kw)


def endpoint(c, n, ip, **kw):
    return Endpoint(id=(c.id[:32] + n.id[:32]), container_id=c.id, network_id=n.id, ifname="eth0",
                    host_ifname=f"veth{c.name}", mac="02:42:00:00:00:00", ipv4=ip, **kw)


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "state"))
    yield s
    s.close()


def test_round_trip_and_lookup_by_name_id_and_prefix(store):
    n = network(dns=("10.0.0.53", "10.0.0.54:5353"), options={"com.docker.network.driver.mtu": "1400"})
    c = container("web", dns=("1.1.1.1",))
    e = endpoint(c, n, "10.1.0.2", aliases=("www", "site"))
    with store.transaction():
        store.insert(n)
        store.insert(c)
        store.insert(e)
    assert store.network("app") == n
    assert store.network(n.id) == n
    assert store.container(c.id[:6]) == c
    assert store.endpoints_of_container(c.id) == [e]
    assert store.addresses_on_network(n.id) == ["10.1.0.2"]
    assert n.mtu == 1400


def test_exact_name_checks_ignore_id_prefixes(store):
    a = Container(id="b" * 64, name="a", hostname="a", netns="ns-a")
    with store.transaction():
        store.insert(a)
    assert store.container("bbbb") == a  # a user's ID prefix finds it...
    assert store.find_container("b") is None  # ...but the name "b" is still free
    assert store.find_container("a") == a


def test_unknown_names_raise_not_found(store):
    with pytest.raises(NotFound, match="no such network: nope"):
        store.network("nope")
    with pytest.raises(NotFound, match="no such container: nope"):
        store.container("nope")


def test_schema_refuses_duplicate_names_and_addresses(store):
    n = network()
    a, b = container("a"), container("b")
    with store.transaction():
        store.insert(n)
        store.insert(a)
        store.insert(b)
        store.insert(endpoint(a, n, "10.1.0.2"))
    with pytest.raises(Conflict), store.transaction():
        store.insert(endpoint(b, n, "10.1.0.2"))
    with pytest.raises(Conflict), store.transaction():
        store.insert(container("a"))
    # the failed transactions left nothing behind
    assert [c.name for c in store.containers()] == ["a", "b"]
    assert store.addresses_on_network(n.id) == ["10.1.0.2"]


def test_generation_counts_commits_not_rollbacks(store):
    start = store.generation()
    with store.transaction():
        store.insert(network())
    assert store.generation() == start + 1
    with pytest.raises(RuntimeError), store.transaction():
        store.insert(container("x"))
        raise RuntimeError("boom")
    assert store.generation() == start + 1
    assert store.containers() == []


def test_change_feed_names_the_containers_each_generation_touched(store):
    n = network()
    a, b = container("a"), container("b")
    with store.transaction():
        store.insert(n)
    start = store.generation()
    assert store.changes_since(start) == (start, set())
    with store.transaction():
        store.insert(a)
        store.insert(endpoint(a, n, "10.1.0.2"))
    with store.transaction():
        store.insert(b)
    with store.transaction():
        pass  # writes nothing: no new generation
    assert store.changes_since(start) == (start + 2, {a.id, b.id})
    assert store.changes_since(start + 1) == (start + 2, {b.id})
    assert store.changes_since(start - 1) == (start + 2, None)  # a network changed: reload everything
    attached = {c.name: [e.ipv4 for e in endpoints] for c, endpoints in store.container_records({a.id, b.id, "f" * 64})}
    assert attached == {"a": ["10.1.0.2"], "b": []}


def test_change_feed_without_history_asks_for_a_full_reload(store):
    with store.transaction():
        store.insert(container("a"))
    current = store.generation()
    assert store.changes_since(current + 5) == (current, None)  # the store was recreated behind the reader
    store._db.execute("DELETE FROM changes")
    assert store.changes_since(current - 1) == (current, None)  # pruned


def test_dns_records_hold_only_running_rows(store, tmp_path):
    n = network()
    done, half = container("done"), container("half", state=STATE_CREATING)
    with store.transaction():
        store.insert(n)
        store.insert(done)
        store.insert(half)
        store.insert(endpoint(done, n, "10.1.0.2"))
        store.insert(endpoint(half, n, "10.1.0.3", state=STATE_CREATING))
    reader = Store.open_readonly(str(tmp_path / "state"))
    with reader.dns_records() as (_networks, containers):
        assert [(c.name, [e.ipv4 for e in endpoints]) for c, endpoints in containers] == [("done", ["10.1.0.2"])]
    assert reader.generation() == store.generation()
    reader.close()


def test_dns_records_pair_each_running_container_with_exactly_its_endpoints(store, tmp_path):
    nets = [network("app"), network("db", subnet="10.2.0.0/24")]
    # ids sort as the names do: a container without endpoints and a stopped one sit between the others
    rows = {"a": (STATE_RUNNING, [0, 1]), "b": (STATE_RUNNING, []), "c": (STATE_CREATING, [0]),
            "d": (STATE_RUNNING, [1]), "e": (STATE_RUNNING, [0, 1])}
    expected = []
    with store.transaction():
        for n in nets:
            store.insert(n)
        for index, (name, (state, on)) in enumerate(rows.items()):
            c = container(name, state=state)
            store.insert(c)
            eps = [dataclasses.replace(endpoint(c, nets[i], f"10.{i + 1}.0.{index + 2}", state=state),
                                       ifname=f"eth{i}", host_ifname=f"veth{name}{i}") for i in on]
            for e in eps:
                store.insert(e)
            if state == STATE_RUNNING:
                expected.append((name, sorted(e.ipv4 for e in eps)))
    reader = Store.open_readonly(str(tmp_path / "state"))
    with reader.dns_records() as (networks, containers):
        assert [n.name for n in networks] == ["app", "db"]
        assert [(c.name, sorted(e.ipv4 for e in endpoints)) for c, endpoints in containers] == expected
    with store.transaction():  # the read transaction ended with the block: a writer goes on
        store.delete(store.container("b"))
    reader.close()


def test_state_dir_is_root_only(tmp_path):
    Store.open(str(tmp_path / "s")).close()
    assert os.stat(tmp_path / "s").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "s" / "netcore.db").st_mode & 0o077 == 0


def _insert_in_child(path, name):
    s = Store.open(path)
    try:
        with s.transaction():
            if s.find_container(name) is None:
                s.insert(container(name))
                return "inserted"
            return "exists"
    except Conflict:
        return "conflict"


def test_concurrent_writers_never_both_win(tmp_path):
    path = str(tmp_path / "state")
    Store.open(path).close()
    with multiprocessing.Pool(8) as pool:
        results = pool.starmap(_insert_in_child, [(path, "same")] * 16)
    assert results.count("inserted") == 1
    s = Store.open(path)
    assert [c.name for c in s.containers()] == ["same"]
    assert s.containers()[0].state == STATE_RUNNING


def _write_until_killed(path, ready):
    """Insert containers one transaction after another, and inside each, several rows; never stops."""
    s = Store.open(path)
    n = s.find_network("app") or network()
    if s.find_network("app") is None:
        with s.transaction():
            s.insert(n)
    i = 0
    while True:
        with s.transaction():
            c = container(f"c{i}")
            s.insert(c)
            s.insert(endpoint(c, n, f"10.1.{i // 250}.{i % 250 + 2}"))
        i += 1
        if i == 20:
            ready.set()


def test_a_writer_killed_between_writes_leaves_whole_transactions_only(tmp_path):
    """Power-loss stand-in: SIGKILL the writer at arbitrary moments; every container it stored has its endpoint."""
    path = str(tmp_path / "state")
    for attempt in range(5):
        ready = multiprocessing.Event()
        proc = multiprocessing.Process(target=_write_until_killed, args=(path, ready))
        proc.start()
        assert ready.wait(30)
        time.sleep(0.01 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        s = Store.open(path)
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        containers = s.containers()
        endpoints = s.endpoints()
        assert len(containers) >= 20
        assert {e.container_id for e in endpoints} == {c.id for c in containers}
        s._db.execute("DELETE FROM endpoints")
        s._db.execute("DELETE FROM containers")
        s.close()


def _synchronous(s):
    return s._db.execute("PRAGMA synchronous").fetchone()[0]  # 1 NORMAL, 2 FULL


def test_deferred_sync_flushes_the_wal_once_when_the_outermost_block_ends(store, monkeypatch):
    """An action's commits are not flushed one by one (synchronous=NORMAL inside) but by one fsync of the WAL
    at its end, nested blocks included; a block that committed nothing flushes nothing; an error still
    flushes what was committed before it."""
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                 real_fsync(fd)))
    assert _synchronous(store) == 2
    with store.deferred_sync():
        assert _synchronous(store) == 1
        with store.transaction():
            store.insert(network())
        with store.deferred_sync():
            for name in ("a", "b"):
                with store.transaction():
                    store.insert(container(name))
        assert flushed == []  # the inner block leaves the flush to the outer one
    assert flushed == [store.path + "-wal"] and _synchronous(store) == 2
    with store.deferred_sync():
        store.containers()
    assert len(flushed) == 1  # nothing committed: nothing to flush
    with pytest.raises(RuntimeError), store.deferred_sync():
        with store.transaction():
            store.insert(container("c"))
        raise RuntimeError("the action failed after a commit")
    assert len(flushed) == 2 and _synchronous(store) == 2
    other = Store.open_readonly(os.path.dirname(store.path))
    assert {c.name for c in other.containers()} == {"a", "b", "c"}
    other.close()


def _write_deferred_until_killed(path, committed):
    """Commit containers one transaction after another inside one deferred_sync, counting the commits."""
    s = Store.open(path)
    with s.deferred_sync():
        with s.transaction():
            s.insert(network())
        i = 0
        while True:
            with s.transaction():
                s.insert(container(f"c{i}"))
            i += 1
            committed.value = i


def test_a_writer_killed_inside_deferred_sync_loses_nothing_it_committed(tmp_path):
    """Deferred flushing is about power cuts only: a process killed in the middle of an action keeps every
    commit it made (the WAL's frames are in the kernel's page cache), and only whole transactions."""
    path = str(tmp_path / "state")
    committed = multiprocessing.Value("i", 0)
    proc = multiprocessing.Process(target=_write_deferred_until_killed, args=(path, committed))
    proc.start()
    deadline = time.monotonic() + 30
    while committed.value < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    seen = committed.value
    s = Store.open(path)
    assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(s.containers()) >= seen >= 50
    s.close()
