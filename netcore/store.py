"""The one home of networks, containers and endpoints: SQLite in the state dir.

Every write happens in a transaction (``BEGIN IMMEDIATE``) that also bumps a
generation counter, so readers such as dnsd can tell cheaply that something
changed. The journal is a WAL with ``synchronous=FULL``: a process killed (or a
machine losing power) between writes leaves the last committed state intact.
Uniqueness that must never break (names, an address on a network, a subnet's
bridge) is enforced by the schema itself, not only by the code that checks first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from .errors import Conflict, NetcoreError, NotFound, StoreError
from .model import STATE_RUNNING, Attached, Container, Endpoint, Network, group_by_container

DB_NAME = "netcore.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, bridge TEXT NOT NULL UNIQUE,
    subnet TEXT NOT NULL UNIQUE, gateway TEXT NOT NULL, ip_range TEXT,
    subnet6 TEXT UNIQUE, gateway6 TEXT, ip_range6 TEXT,
    internal INTEGER NOT NULL, dns TEXT NOT NULL, options TEXT NOT NULL, labels TEXT NOT NULL,
    driver TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, hostname TEXT NOT NULL, netns TEXT NOT NULL,
    mode TEXT NOT NULL, peer TEXT REFERENCES containers(id), dns TEXT NOT NULL,
    state TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL REFERENCES containers(id),
    network_id TEXT NOT NULL REFERENCES networks(id),
    ifname TEXT NOT NULL, host_ifname TEXT NOT NULL UNIQUE, mac TEXT NOT NULL,
    ipv4 TEXT, ipv6 TEXT, aliases TEXT NOT NULL, state TEXT NOT NULL,
    UNIQUE (container_id, network_id), UNIQUE (container_id, ifname),
    UNIQUE (network_id, ipv4), UNIQUE (network_id, ipv6)
);
CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
-- the change feed readers follow: which container each generation touched ('' for a network)
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, container_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_by_generation ON changes(generation);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0');
"""

Record = TypeVar("Record", Network, Container, Endpoint)
CHANGES_KEPT = 10_000  # generations of change feed kept; a reader further behind reloads everything
NETWORK_CHANGE = ""
TABLES = {Network: "networks", Container: "containers", Endpoint: "endpoints"}
ROLLED_BACK = "the transaction was rolled back: nothing was half-written"


def _to_row(record) -> dict:
    row = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, (tuple, dict)):
            value = json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True)
        elif isinstance(value, bool):
            value = int(value)
        row[f.name] = value
    return row


def _from_row(kind: type[Record], row: sqlite3.Row) -> Record:
    values = {}
    for f in dataclasses.fields(kind):
        value = row[f.name]
        if f.type.startswith("tuple"):
            value = tuple(json.loads(value))
        elif f.type == "dict":
            value = json.loads(value)
        elif f.type == "bool":
            value = bool(value)
        values[f.name] = value
    return kind(**values)


READER_CACHE_KIB = 256  # SQLite's page cache of a read-only connection (its default is 2 MiB)


class Store:
    def __init__(self, path: str, readonly: bool = False):
        self.path = path
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            else:
                self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        except sqlite3.OperationalError as err:
            raise NetcoreError(f"cannot open the store {path}: {err}") from None
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 30000")
        if readonly:  # dnsd: reads each row once per build, the OS caches the file; keep its page cache small
            self._db.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        else:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(SCHEMA)

    @classmethod
    def open(cls, state_dir: str) -> Store:
        """The store of a state dir, created root-only (0700 dir, 0600 files) if missing."""
        old_umask = os.umask(0o077)
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            return cls(os.path.join(state_dir, DB_NAME))
        except PermissionError:
            raise NetcoreError(f"permission denied on state dir {state_dir}: run as root") from None
        finally:
            os.umask(old_umask)

    @classmethod
    def open_readonly(cls, state_dir: str) -> Store:
        return cls(os.path.join(state_dir, DB_NAME), readonly=True)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; bumps the generation and records what it touched in the change feed.

        Anything raised inside rolls the whole transaction back. A failure of
        SQLite itself (a refused constraint, a full disk, a lock held too long)
        reaches the caller as one StoreError line that says what failed and
        that nothing was half-written; other exceptions pass through unchanged.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"cannot start a write in the store {self.path}: {err}; nothing was written") from None
        try:
            self._touched: set[str] = set()
            yield
            if not self._touched:  # nothing written: readers have nothing to catch up on
                self._db.execute("COMMIT")
                return
            generation = self.generation() + 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            self._db.executemany("INSERT INTO changes (generation, container_id) VALUES (?, ?)",
                                 [(generation, touched) for touched in self._touched])
            if generation % 1000 == 0:
                self._db.execute("DELETE FROM changes WHERE generation <= ?", (generation - CHANGES_KEPT,))
            self._db.execute("COMMIT")
        except StoreError as err:
            self._rollback()
            raise StoreError(f"{err}; {ROLLED_BACK}") from None
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"a write to the store {self.path} failed: {err}; {ROLLED_BACK}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite ends the transaction itself after some errors (a full disk)
            self._db.execute("ROLLBACK")

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Bookkeeping of netcore's own (not a change readers follow); call inside transaction()."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- writes (call inside transaction()) ----------------------------------

    def _touch(self, record: Network | Container | Endpoint) -> None:
        self._touched.add(record.id if isinstance(record, Container) else
                          record.container_id if isinstance(record, Endpoint) else NETWORK_CHANGE)

    def insert(self, record: Network | Container | Endpoint) -> None:
        row = _to_row(record)
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        try:
            self._db.execute(f"INSERT INTO {TABLES[type(record)]} ({columns}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as err:
            raise Conflict(f"{type(record).__name__.lower()} conflicts with one already stored ({err})") from None
        self._touch(record)

    def set_state(self, record: Network | Container | Endpoint, state: str) -> None:
        self._db.execute(f"UPDATE {TABLES[type(record)]} SET state = ? WHERE id = ?", (state, record.id))
        self._touch(record)

    def delete(self, record: Network | Container | Endpoint) -> None:
        """Delete the record's row; StoreError if rows still refer to it (a container others share, a network
        with endpoints): the schema's foreign keys refuse, and transaction() rolls everything back."""
        try:
            self._db.execute(f"DELETE FROM {TABLES[type(record)]} WHERE id = ?", (record.id,))
        except sqlite3.IntegrityError as err:
            kind = type(record).__name__.lower()
            name = record.host_ifname if isinstance(record, Endpoint) else record.name
            raise StoreError(f"cannot delete {kind} {name}: other records still refer to it ({err})") from None
        self._touch(record)

    # -- reads ---------------------------------------------------------------

    def _select(self, kind: type[Record], where: str = "", args: tuple = ()) -> list[Record]:
        sql = f"SELECT * FROM {TABLES[kind]} {where}"
        return [_from_row(kind, row) for row in self._db.execute(sql, args)]

    def networks(self) -> list[Network]:
        return self._select(Network, "ORDER BY created, name")

    def containers(self) -> list[Container]:
        return self._select(Container, "ORDER BY created, name")

    def endpoints(self) -> list[Endpoint]:
        return self._select(Endpoint, "ORDER BY container_id, ifname")

    def endpoints_of_container(self, container_id: str) -> list[Endpoint]:
        return self._select(Endpoint, "WHERE container_id = ? ORDER BY ifname", (container_id,))

    def endpoints_on_network(self, network_id: str) -> list[Endpoint]:
        return self._select(Endpoint, "WHERE network_id = ?", (network_id,))

    def addresses_on_network(self, network_id: str) -> list[str]:
        rows = self._db.execute("SELECT ipv4, ipv6 FROM endpoints WHERE network_id = ?", (network_id,))
        return [a for row in rows for a in row if a]

    def dependents(self, container_id: str) -> list[Container]:
        """Containers that share this one's namespace (--net container:NAME)."""
        return self._select(Container, "WHERE peer = ?", (container_id,))

    def network(self, ref: str) -> Network:
        """A network by exact name, full ID, or unique ID prefix (as Docker resolves them)."""
        return self._resolve(Network, ref, "network")

    def container(self, ref: str) -> Container:
        return self._resolve(Container, ref, "container")

    def _resolve(self, kind: type[Record], ref: str, what: str) -> Record:
        found = self._select(kind, "WHERE name = ? OR id = ?", (ref, ref))
        if not found and ref and all(c in "0123456789abcdef" for c in ref):
            found = self._select(kind, "WHERE id LIKE ?", (ref + "%",))
            if len(found) > 1:
                raise Conflict(f"{what} ID prefix {ref!r} is ambiguous: it matches {len(found)} {what}s")
        if not found:
            raise NotFound(f"no such {what}: {ref}")
        return found[0]

    def unsettled(self) -> tuple[list[Network], list[Container], list[Endpoint]]:
        """Rows left in a transitional state (creating, removing): the traces of an interrupted action."""
        where = ("WHERE state != ?", (STATE_RUNNING,))
        return self._select(Network, *where), self._select(Container, *where), self._select(Endpoint, *where)

    def find_container_by_id(self, container_id: str) -> Container | None:
        found = self._select(Container, "WHERE id = ?", (container_id,))
        return found[0] if found else None

    def find_network(self, name: str) -> Network | None:
        """The network called exactly ``name`` (no ID-prefix matching: this is for uniqueness checks)."""
        found = self._select(Network, "WHERE name = ?", (name,))
        return found[0] if found else None

    def find_container(self, name: str) -> Container | None:
        """The container called exactly ``name``."""
        found = self._select(Container, "WHERE name = ?", (name,))
        return found[0] if found else None

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The current generation and the IDs of the containers changed after ``generation``.

        None instead of the IDs means the reader must reload everything: a network
        changed, or the feed no longer reaches back that far.
        """
        self._db.execute("BEGIN")
        try:
            current = self.generation()
            if current == generation:
                return current, set()
            rows = self._db.execute("SELECT generation, container_id FROM changes WHERE generation > ?",
                                    (generation,)).fetchall()
        finally:
            self._db.execute("COMMIT")
        if generation > current or len({g for g, _ in rows}) != current - generation:
            return current, None  # pruned (or a store that was recreated): no complete history
        changed = {container_id for _, container_id in rows}
        return current, None if NETWORK_CHANGE in changed else changed

    def container_records(self, ids: set[str]) -> list[Attached]:
        """The running ones of these containers, each with its running endpoints (what dnsd patches in)."""
        containers: list[Container] = []
        endpoints: list[Endpoint] = []
        ordered = sorted(ids)
        self._db.execute("BEGIN")
        try:
            for start in range(0, len(ordered), 500):  # SQLite bounds the number of parameters
                chunk = ordered[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                containers += self._select(Container, f"WHERE state = ? AND id IN ({marks})", (STATE_RUNNING, *chunk))
                endpoints += self._select(Endpoint, f"WHERE state = ? AND container_id IN ({marks})",
                                          (STATE_RUNNING, *chunk))
        finally:
            self._db.execute("COMMIT")
        return group_by_container(containers, endpoints)

    @contextmanager
    def dns_records(self) -> Iterator[tuple[list[Network], Iterator[Attached]]]:
        """What dnsd serves, read in one transaction: the running networks, and each running container with
        its running endpoints, read as the iterator is advanced (so all rows never need to be in memory)."""
        self._db.execute("BEGIN")
        try:
            yield self._select(Network, "WHERE state = ?", (STATE_RUNNING,)), self._running_containers()
        finally:
            self._db.execute("COMMIT")

    def _running_containers(self) -> Iterator[Attached]:
        """A merge of two cursors ordered by container id (both served by an index)."""
        containers = self._db.execute("SELECT * FROM containers WHERE state = ? ORDER BY id", (STATE_RUNNING,))
        endpoints = self._db.execute("SELECT * FROM endpoints WHERE state = ? ORDER BY container_id",
                                     (STATE_RUNNING,))
        pending = next(endpoints, None)
        for row in containers:
            container = _from_row(Container, row)
            attached = []
            while pending is not None and pending["container_id"] <= container.id:
                if pending["container_id"] == container.id:
                    attached.append(_from_row(Endpoint, pending))
                pending = next(endpoints, None)
            yield container, attached
