"""Schema versions: a store of the release before them opens intact and answers the same names; upgrades are
one transaction, newer stores are refused; record fields are kept by declared codecs."""

from __future__ import annotations

import dataclasses
import ipaddress
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnsd.core.answer import Answerer
from dnsd.core.builder import SnapshotBuilder
from dnsd.core.wire import NOERROR
from netcore import store as store_module
from netcore.errors import Conflict, NetcoreError, StoreError
from netcore.model import (
    MODE_BRIDGE,
    MODE_CONTAINER,
    MODE_NONE,
    STATE_RUNNING,
    Container,
    Endpoint,
    MainProcess,
    Network,
    PortBinding,
)
from netcore.store import (
    BOOL,
    COLUMNS,
    DB_NAME,
    JSON_DICT,
    JSON_TUPLE,
    SchemaVersionError,
    Store,
    _from_row,
    _to_row,
    column_spec,
    current_version,
)

FIXTURE = Path(__file__).parent / "fixtures" / "store-v1.sql"
ADD_RESTART = "ALTER TABLE containers ADD COLUMN restart TEXT NOT NULL DEFAULT 'no'"
V = current_version()  # this release's schema version; the tests' "later release" adds one step to it

# -- the records the fixture holds, field by field (written through the CLI of the release before versions) --

BRIDGE = "e8c5b9d5d20e17f3faa2195e6cfb10b59bfe18e6434e95014103d75d10587cf3"
FRONTEND = "4b0bbc8c4ad176baf93c0161684ec048709dd9e708d556726f334f90a0d3ebfc"
BACKEND = "8ffd5c19e341c540cbdf04ede7b39651bd9eab05344e51b5e05c460ae801532f"
WEB = "d497b448e0133481831768356fca09e921fe5953b269dbce0ceff5988cb36d82"
WEB2 = "d5141dc33dfeaf6657def16bf032676152ac9498ef98624369c728607cb59b24"
DB = "5584f4968dd498ae41368019873cc8e84b2c36c10d70069f9592db6ea77a99e5"
SIDE = "2460f3cf5317e32f517a8e4c19a41964d7ce09978e5b2d3798a7a9599b24022d"
PLAIN = "0fa131d2bd79a6ba7799a04c93f7c015abae8ed7f335267b12805bf84eae8a48"
LONE = "16285f79dc211a9b91688a4d7c69acef0d3e3a149f2a2244c90a3ed97bd84be9"

NETWORKS = [
    Network(id=BRIDGE, name="bridge", bridge="netcore0", subnet="172.17.0.0/16", gateway="172.17.0.1",
            options={"com.docker.network.bridge.name": "netcore0"}, created="2026-11-30T22:26:34.333014Z"),
    Network(id=FRONTEND, name="frontend", bridge="br-4b0bbc8c4ad1", subnet="10.77.1.0/24", gateway="10.77.1.1",
            subnet6="fd00:77:1::/64", gateway6="fd00:77:1::1", dns=("10.77.1.53", "[fd00:77::53]:5353"),
            options={"com.docker.network.driver.mtu": "1400"}, labels={"env": "test", "team": "net"},
            created="2026-11-30T22:26:34.337647Z"),
    Network(id=BACKEND, name="backend", bridge="br-backfix", subnet="10.77.2.0/24", gateway="10.77.2.254",
            ip_range="10.77.2.128/25", internal=True,
            options={"com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.name": "br-backfix"},
            created="2026-11-30T22:26:34.780057Z"),
]
CONTAINERS = [
    Container(id=WEB, name="web", hostname="webhost", netns="ncfix-d497b448e013", dns=("1.1.1.1", "9.9.9.9:5353"),
              created="2026-11-30T22:26:35.088872Z"),
    Container(id=WEB2, name="web2", hostname="d5141dc33dfe", netns="ncfix-d5141dc33dfe",
              created="2026-11-30T22:26:35.805053Z"),
    Container(id=DB, name="db", hostname="5584f4968dd4", netns="ncfix-5584f4968dd4",
              created="2026-11-30T22:26:36.203243Z"),
    Container(id=SIDE, name="side", hostname="2460f3cf5317", netns="ncfix-d497b448e013", mode=MODE_CONTAINER,
              peer=WEB, created="2026-11-30T22:26:36.519359Z"),
    Container(id=PLAIN, name="plain", hostname="0fa131d2bd79", netns="ncfix-0fa131d2bd79", mode=MODE_BRIDGE,
              created="2026-11-30T22:26:36.928918Z"),
    Container(id=LONE, name="lone", hostname="16285f79dc21", netns="ncfix-16285f79dc21", mode=MODE_NONE,
              created="2026-11-30T22:26:37.389394Z"),
]
ENDPOINTS = sorted([
    Endpoint(id="7d349f36cd2aa6b9f2f7e1741bf48dac1bb4ef97b927d281fa439cbde4c85c58", container_id=WEB,
             network_id=FRONTEND, ifname="eth0", host_ifname="vetha3fccdb", mac="02:42:0a:4d:01:02",
             ipv4="10.77.1.2", ipv6="fd00:77:1::2", aliases=("www", "site")),
    Endpoint(id="fc5fadfa8aa660ff39945f6ae4bbb857b8a59fff20210440d68de951383669be", container_id=WEB,
             network_id=BACKEND, ifname="eth1", host_ifname="veth75bae7c", mac="02:42:0a:4d:02:c8",
             ipv4="10.77.2.200", aliases=("api",)),
    Endpoint(id="9f6c22b246153850aaba165863aa1bf87f9009aca5caf57e491ab3d394fef1e1", container_id=WEB2,
             network_id=FRONTEND, ifname="eth0", host_ifname="veth0834c43", mac="02:42:0a:4d:01:03",
             ipv4="10.77.1.3", ipv6="fd00:77:1::3", aliases=("www",)),
    Endpoint(id="a8809badff74d3d90d74e3c3ca606def3deeebc3a8304a566d22bc7022fa4edc", container_id=DB,
             network_id=BACKEND, ifname="eth0", host_ifname="veth6fd595d", mac="02:42:0a:4d:02:80",
             ipv4="10.77.2.128", aliases=("database",)),
    Endpoint(id="0d60a1d7d2088911c90ddba41f7562c62ebacb5d71f9903083cf182c27b975ca", container_id=PLAIN,
             network_id=BRIDGE, ifname="eth0", host_ifname="vethf009a97", mac="02:42:ac:11:00:02",
             ipv4="172.17.0.2"),
], key=lambda e: (e.container_id, e.ifname))

# What the release's dnsd answered for this store (dig from inside the containers web, web2 and db).
ANSWERED = [
    # (client, listener, name, type, answers)
    ("10.77.1.2", "10.77.1.1", "web", "A", ["10.77.1.2"]),
    ("10.77.1.2", "10.77.1.1", "web", "AAAA", ["fd00:77:1::2"]),
    ("10.77.1.2", "10.77.1.1", "webhost", "A", ["10.77.1.2"]),
    ("10.77.1.2", "10.77.1.1", "site", "AAAA", ["fd00:77:1::2"]),
    ("10.77.1.2", "10.77.1.1", "web2", "A", ["10.77.1.3"]),
    ("10.77.1.2", "10.77.1.1", "web.frontend", "A", ["10.77.1.2"]),
    ("10.77.1.2", "10.77.1.1", "d497b448e013", "A", ["10.77.1.2"]),
    ("10.77.1.2", "10.77.1.1", "2.1.77.10.in-addr.arpa", "PTR", ["web.frontend."]),
    ("10.77.1.3", "10.77.1.1", ipaddress.ip_address("fd00:77:1::3").reverse_pointer, "PTR", ["web2.frontend."]),
    ("10.77.2.128", "10.77.2.254", "db", "A", ["10.77.2.128"]),
    ("10.77.2.128", "10.77.2.254", "database", "A", ["10.77.2.128"]),
    ("10.77.2.128", "10.77.2.254", "api", "A", ["10.77.2.200"]),
    ("10.77.2.128", "10.77.2.254", "web", "A", ["10.77.2.200"]),
    ("10.77.2.128", "10.77.2.254", "web.backend", "A", ["10.77.2.200"]),
    ("10.77.2.128", "10.77.2.254", "database.backend", "A", ["10.77.2.128"]),
]
ROTATED = [  # alias sets: every holder, in an order that rotates
    ("10.77.1.2", "10.77.1.1", "www", "A", ["10.77.1.2", "10.77.1.3"]),
    ("10.77.1.3", "10.77.1.1", "www", "AAAA", ["fd00:77:1::2", "fd00:77:1::3"]),
]


def load_fixture(state_dir: Path) -> str:
    """A state dir holding the fixture store, WAL as netcore leaves it; returns the state dir."""
    state_dir.mkdir(mode=0o700)
    db = sqlite3.connect(state_dir / DB_NAME)
    db.executescript(FIXTURE.read_text())
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    return str(state_dir)


def raw(state_dir: str, sql: str) -> list[tuple]:
    db = sqlite3.connect(os.path.join(state_dir, DB_NAME))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def user_version(state_dir: str) -> int:
    return raw(state_dir, "PRAGMA user_version")[0][0]


def dump(state_dir: str) -> list[str]:
    db = sqlite3.connect(os.path.join(state_dir, DB_NAME))
    try:
        return list(db.iterdump())
    finally:
        db.close()


def schema_of(state_dir: str) -> set[tuple]:
    return set(raw(state_dir, "SELECT type, name, tbl_name, sql FROM sqlite_master"))


def assert_fixture_records(s: Store) -> None:
    assert s.networks() == NETWORKS
    assert s.containers() == CONTAINERS
    assert s.endpoints() == ENDPOINTS
    assert [n.mtu for n in s.networks()] == [1500, 1400, 1500]
    assert [n.icc for n in s.networks()] == [True, True, False]
    assert s.dependents(WEB) == [CONTAINERS[3]]
    assert s.generation() == 20
    assert s.meta("boot_id") == "29489f11-dd57-4e9e-a7dd-e12d21d0717e"
    assert s.changes_since(18) == (20, {LONE})


@pytest.fixture
def old_store(tmp_path) -> str:
    return load_fixture(tmp_path / "state")


@pytest.fixture
def newer_code(monkeypatch):
    """This code as a later release with one more step (a column readers need not read)."""
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, ADD_RESTART])
    return monkeypatch


# -- a store of the release before versions ---------------------------------------------------------------


V3_COLUMNS = ("\n, routed INTEGER NOT NULL DEFAULT 1)",  # as ALTER adds them: version 3's, then version 4's
              "\n, labels TEXT NOT NULL DEFAULT '{}', dns_search TEXT NOT NULL DEFAULT '[]', extra_hosts TEXT NOT "
              "NULL DEFAULT '[]')")


def without_v3_columns(schema: set[tuple]) -> set[tuple]:
    """A schema as version 2 had it: the two columns version 3 adds (ALTER TABLE appends them) cut off."""
    cut = set()
    for kind, name, table, sql in schema:
        for column in V3_COLUMNS:
            if sql and sql.endswith(column):
                sql = sql[: -len(column)] + "\n)"
        cut.add((kind, name, table, sql))
    return cut


def test_version_1_is_exactly_the_schema_the_release_before_versions_created(old_store, tmp_path):
    Store.open(str(tmp_path / "new")).close()
    assert user_version(str(tmp_path / "new")) == current_version() == V
    # later versions added the published ports (version 2), two columns (version 3: networks.routed,
    # containers.labels), two more and the main processes (version 4: containers.dns_search and extra_hosts,
    # processes); the rest is the old release's, exactly
    new = {row for row in schema_of(str(tmp_path / "new")) if row[2] not in ("ports", "processes")}
    assert new != schema_of(old_store) and without_v3_columns(new) == schema_of(old_store)
    assert raw(str(tmp_path / "new"), "SELECT * FROM meta") == [("generation", "0")]


def test_a_store_of_the_release_before_versions_opens_as_version_1_with_every_record_intact(old_store):
    before = raw(old_store, "SELECT * FROM networks") + raw(old_store, "SELECT * FROM containers")
    rows = {table: raw(old_store, f"SELECT * FROM {table}") for table in ("endpoints", "meta", "changes")}
    assert user_version(old_store) == 0
    with pytest.raises(SchemaVersionError, match="schema version 1, older than this dnsd reads"):
        Store.open_readonly(old_store)  # dnsd before netcore upgraded it (version 3 added columns it reads)
    writer = Store.open(old_store)
    assert writer.schema_version() == V and user_version(old_store) == V
    assert_fixture_records(writer)
    assert writer.ports() == []
    writer.close()
    reader = Store.open_readonly(old_store)  # once upgraded, dnsd reads it
    assert reader.schema_version() == V
    assert_fixture_records(reader)
    reader.close()
    # stamped and upgraded, not re-created: every row as it was, networks and containers with version 3's and
    # 4's columns beside their old ones (the bridge and macvlan drivers routed, no container labels, no
    # search domains, no extra hosts)
    networks = raw(old_store, "SELECT * FROM networks")
    containers = raw(old_store, "SELECT * FROM containers")
    assert [row[:-1] for row in networks] + [row[:-3] for row in containers] == before
    assert [row[-1] for row in networks] == [1] * len(NETWORKS)
    assert [row[-3:] for row in containers] == [("{}", "[]", "[]")] * len(CONTAINERS)
    assert {table: raw(old_store, f"SELECT * FROM {table}") for table in rows} == rows


def test_dnsd_answers_the_names_it_answered_before_the_upgrade(old_store, dns):
    Store.open(old_store).close()
    reader = Store.open_readonly(old_store)
    with reader.dns_records() as (networks, containers):
        answerer = Answerer(SnapshotBuilder().build(networks, containers), ())
    reader.close()
    for client, listener, name, qtype, answers in ANSWERED:
        reply = answerer.handle(dns.query(name, qtype), client, listener, False)
        assert (name, reply[3] & 0x0F, dns.rdata(reply)) == (name, NOERROR, answers)
    for client, listener, name, qtype, answers in ROTATED:
        replies = [dns.rdata(answerer.handle(dns.query(name, qtype), client, listener, False)) for _ in range(2)]
        assert [sorted(r) for r in replies] == [answers, answers] and replies[0] != replies[1]


def test_a_store_older_than_the_change_feed_gains_it_on_upgrade(old_store):
    raw_db = sqlite3.connect(os.path.join(old_store, DB_NAME))
    raw_db.executescript("DROP TABLE changes")
    raw_db.close()
    s = Store.open(old_store)
    assert s.schema_version() == V
    assert s.networks() == NETWORKS
    assert s.changes_since(20) == (20, set())
    s.close()


def test_a_version_0_store_that_netcore_did_not_make_is_refused_and_left_alone(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / DB_NAME)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL);"
                     "INSERT INTO containers VALUES ('x', 'x');")
    db.close()
    before = dump(str(state))
    with pytest.raises(StoreError, match=rf"from schema version 0 to {V}: it has no column containers.hostname, .*"
                                         r"rolled back"):
        Store.open(str(state))
    assert dump(str(state)) == before and user_version(str(state)) == 0


# -- upgrades -----------------------------------------------------------------------------------------------


def test_an_upgrade_step_adds_a_column_and_every_record_survives(old_store, newer_code):
    s = Store.open(old_store)
    assert s.schema_version() == V + 1 and user_version(old_store) == V + 1
    assert_fixture_records(s)
    assert raw(old_store, "SELECT DISTINCT restart FROM containers") == [("no",)]
    with s.transaction():  # and the upgraded store takes writes as before
        s.set_state(s.container("lone"), STATE_RUNNING)
    assert s.generation() == 21
    s.close()
    assert Store.open(old_store).schema_version() == V + 1  # nothing left to do


def test_a_step_that_rebuilds_a_table_runs_with_foreign_keys_checked_at_the_end(old_store, monkeypatch):
    def rebuild_containers(db: sqlite3.Connection) -> None:
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'containers'").fetchone()[0]
        db.execute(sql.replace("CREATE TABLE containers (", "CREATE TABLE containers_new (", 1)
                   .replace("created TEXT NOT NULL", "created TEXT NOT NULL, restart TEXT NOT NULL DEFAULT 'no'"))
        db.execute("INSERT INTO containers_new (id, name, hostname, netns, mode, peer, dns, state, created) "
                   "SELECT id, name, hostname, netns, mode, peer, dns, state, created FROM containers")
        db.execute("DROP TABLE containers")  # endpoints still refer to it: fine with foreign keys off
        db.execute("ALTER TABLE containers_new RENAME TO containers")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, rebuild_containers])
    s = Store.open(old_store)
    assert s.schema_version() == V + 1
    assert_fixture_records(s)
    assert s._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # on again for every write after the upgrade
    s.close()


def test_a_failed_step_rolls_the_whole_upgrade_back(old_store, monkeypatch):
    Store.open(old_store).close()
    before = dump(old_store)
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        [*store_module.MIGRATIONS, ADD_RESTART, "ALTER TABLE nope ADD COLUMN y TEXT"])
    with pytest.raises(StoreError) as raised:
        Store.open(old_store)
    assert str(raised.value) == (f"cannot upgrade the store in {old_store} from schema version {V} to {V + 2}: "
                                 f"step {V + 2} failed: no such table: nope; the transaction was rolled back: "
                                 "nothing was half-written")
    assert dump(old_store) == before and user_version(old_store) == V  # no restart column either


def test_an_upgrade_that_would_break_a_reference_is_rolled_back(old_store, monkeypatch):
    Store.open(old_store).close()
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        [*store_module.MIGRATIONS, "DELETE FROM networks WHERE name = 'backend'"])
    with pytest.raises(StoreError, match=r"2 rows refer to rows that do not exist .* rolled back"):
        Store.open(old_store)
    assert user_version(old_store) == V
    assert len(raw(old_store, "SELECT * FROM networks")) == 3


def _open_and_count(state_dir: str) -> int:
    s = Store.open(state_dir)
    try:
        return s.schema_version()
    finally:
        s.close()


def _slow_step(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE step_runs (at REAL)")  # a second run would fail: the table exists
    db.execute("INSERT INTO step_runs VALUES (?)", (time.time(),))
    time.sleep(0.3)


def test_writers_opening_an_old_store_at_once_upgrade_it_once(old_store, monkeypatch):
    """Store.open runs before the state-dir lock (Engine.__init__): the upgrade is its own BEGIN IMMEDIATE."""
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, _slow_step])
    with multiprocessing.get_context("fork").Pool(6) as pool:  # forked: the children see the patched steps
        versions = pool.map(_open_and_count, [old_store] * 6)
    assert versions == [V + 1] * 6
    assert len(raw(old_store, "SELECT * FROM step_runs")) == 1
    assert_fixture_records(Store.open_readonly(old_store, program="test"))


# -- newer and older stores ---------------------------------------------------------------------------------


def test_a_store_newer_than_this_code_is_refused_by_writer_and_reader_and_left_alone(old_store, newer_code):
    Store.open(old_store).close()
    newer_code.undo()  # back to this release's code
    before = dump(old_store)
    with pytest.raises(SchemaVersionError) as raised:
        Store.open(old_store)
    assert str(raised.value) == (f"the store in {old_store} has schema version {V + 1}, newer than this netcore "
                                 f"knows ({V}): upgrade netcore")
    with pytest.raises(SchemaVersionError) as raised:
        Store.open_readonly(old_store)
    assert str(raised.value) == (f"the store in {old_store} has schema version {V + 1}, newer than this dnsd "
                                 f"knows ({V}): upgrade dnsd")
    assert isinstance(raised.value, NetcoreError)
    assert dump(old_store) == before and user_version(old_store) == V + 1


def test_open_stores_refuse_once_a_newer_netcore_upgraded_the_file(old_store, monkeypatch):
    Store.open(old_store).close()
    reader, old_writer = Store.open_readonly(old_store), Store.open(old_store)
    with monkeypatch.context() as newer:
        newer.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, ADD_RESTART])
        Store.open(old_store).close()
    for read in (lambda: reader.changes_since(0), lambda: reader.container_records({WEB}),
                 lambda: reader.dns_records().__enter__()):
        with pytest.raises(SchemaVersionError, match=f"schema version {V + 1}, newer than this dnsd knows"):
            read()
    with (pytest.raises(SchemaVersionError, match=f"schema version {V + 1}, newer than this netcore knows"),
          old_writer.transaction()):
        old_writer.set_state(CONTAINERS[0], "removing")
    assert raw(old_store, "SELECT state FROM containers WHERE name = 'web'") == [("running",)]
    assert old_writer.generation() == 20
    reader.close()
    old_writer.close()


def test_a_reader_reads_older_versions_down_to_the_oldest_it_declares(old_store, newer_code):
    with pytest.raises(SchemaVersionError) as raised:
        Store.open_readonly(old_store)  # version 1 (unstamped): versions 3 and 4 added columns readers select
    assert str(raised.value) == (f"the store in {old_store} has schema version 1, older than this dnsd reads "
                                 "(4): run any netcore command (e.g. netcore network ls) to upgrade it")
    newer_code.setattr(store_module, "OLDEST_READABLE", V + 1)  # a later step changed what readers select
    with pytest.raises(SchemaVersionError) as raised:
        Store.open_readonly(old_store)
    assert str(raised.value) == (f"the store in {old_store} has schema version 1, older than this dnsd reads "
                                 f"({V + 1}): run any netcore command (e.g. netcore network ls) to upgrade it")
    Store.open(old_store).close()
    assert Store.open_readonly(old_store).schema_version() == V + 1


def test_a_reader_of_a_file_that_is_no_store_gets_one_line(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(StoreError, match=r"cannot open the store .*: file is not a database"):
        Store.open_readonly(str(tmp_path))


# -- declared codecs ------------------------------------------------------------------------------------------


def test_every_model_field_has_a_column_and_non_scalars_their_declared_codec():
    assert {kind: [name for name, _ in columns] for kind, columns in COLUMNS.items()} == {
        kind: [f.name for f in dataclasses.fields(kind)]
        for kind in (Network, Container, Endpoint, PortBinding, MainProcess)}
    assert dict(COLUMNS[Network])["options"] is JSON_DICT
    assert dict(COLUMNS[Network])["internal"] is BOOL
    assert dict(COLUMNS[Endpoint])["aliases"] is JSON_TUPLE
    assert dict(COLUMNS[Container])["name"] is None


@dataclasses.dataclass(frozen=True)
class Tight:
    id: str
    note: str | None
    count: int
    flag: bool
    names: tuple[str, ...]
    options: dict[str, str]


def test_a_typed_dict_field_round_trips_through_its_codec():
    columns = column_spec(Tight, {"flag": BOOL, "names": JSON_TUPLE, "options": JSON_DICT})
    record = Tight(id="x", note=None, count=3, flag=True, names=("a", "b"), options={"k": "v", "a": "1"})
    row = _to_row(record, columns)
    assert row == {"id": "x", "note": None, "count": 3, "flag": 1, "names": '["a", "b"]',
                   "options": '{"a": "1", "k": "v"}'}
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE t (id, note, count, flag, names, options)")
    db.execute("INSERT INTO t VALUES (:id, :note, :count, :flag, :names, :options)", row)
    assert _from_row(Tight, db.execute("SELECT * FROM t").fetchone(), columns) == record


@pytest.mark.parametrize("codecs, error", [
    ({"flag": BOOL, "names": JSON_TUPLE}, r"Tight.options: dict\[str, str\] is not a scalar column type; "
                                          r"declare its codec \(JSON_TUPLE, JSON_DICT, BOOL\) in netcore.store.CODECS"),
    ({"names": JSON_TUPLE, "options": JSON_DICT}, r"Tight.flag: <class 'bool'> is not a scalar column type"),
    ({"flag": BOOL, "names": JSON_DICT, "options": JSON_DICT}, r"Tight.names: codec JSON_DICT does not fit"),
    ({"flag": BOOL, "names": JSON_TUPLE, "options": JSON_DICT, "nope": BOOL}, r"fields that do not exist: nope"),
])
def test_an_undeclared_or_mismatched_codec_fails_when_the_columns_are_defined(codecs, error):
    with pytest.raises(TypeError, match=error):
        column_spec(Tight, codecs)


def test_an_undeclared_non_scalar_model_field_fails_the_import_of_the_store():
    """A field tightened or added in the model without a codec in the store stops netcore and dnsd at start."""
    script = """
import dataclasses
import netcore.model as model

@dataclasses.dataclass(frozen=True)
class Endpoint(model.Endpoint):
    driver_opts: dict[str, str] = dataclasses.field(default_factory=dict)

model.Endpoint = Endpoint
import netcore.store
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).parents[3])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "TypeError: Endpoint.driver_opts: dict[str, str] is not a scalar column type; "
        "declare its codec (JSON_TUPLE, JSON_DICT, BOOL) in netcore.store.CODECS")


# -- version 2: published ports --------------------------------------------------------------------------------


def test_version_2_keeps_published_ports_with_their_container_and_one_owner_per_host_port(old_store):
    s = Store.open(old_store)
    web, lone = PortBinding(WEB, "tcp", 80, "", 8080, "8080"), PortBinding(LONE, "udp", 53, "127.0.0.1", 5353, "")
    with s.transaction():
        s.insert(web)
        s.insert(lone)
    assert s.ports() == [web, lone] and s.ports_of_container(LONE) == [lone]
    with pytest.raises(Conflict, match="conflicts with one already stored"), s.transaction():
        s.insert(PortBinding(DB, "tcp", 81, "", 8080, "8080"))
    lone_container = CONTAINERS[5]
    with pytest.raises(StoreError, match="cannot delete container lone: other records still refer to it"), \
            s.transaction():
        s.delete(lone_container)  # it has no endpoint and no dependent: its published port holds it
    with s.transaction():
        s.delete_ports(lone_container)
        s.delete(lone_container)
    assert s.ports() == [web] and s.generation() == 22  # each write one generation, the refused ones none
