"""The one home of networks, containers and endpoints: SQLite in the state dir.

Every write happens in a transaction (``BEGIN IMMEDIATE``) that also bumps a
generation counter, so readers such as dnsd can tell cheaply that something
changed. The journal is a WAL with ``synchronous=FULL``: a process killed (or a
machine losing power) between writes leaves the last committed state intact. Inside
``deferred_sync`` (one netcore action, netcore.engine.frame.Engine.action) commits are
flushed to the disk once, at its end: a killed process still loses nothing committed,
a power cut at most what the unfinished action committed (SQLite's WAL with
``synchronous=NORMAL``: consistent, durable at the next flush of the WAL).
Uniqueness that must never break (names, an address on a network, a subnet's
bridge) is enforced by the schema itself, not only by the code that checks first.

The schema has a version (SQLite's ``PRAGMA user_version``) and an ordered list
of migration steps, ``MIGRATIONS``: step *i* takes a store from version *i* to
*i + 1*. The writer (``Store.open``) applies the missing steps in one
``BEGIN IMMEDIATE`` transaction, so two writers opening an old store at once
migrate it once; it never touches a store newer than it knows. Readers
(``Store.open_readonly``, dnsd) never migrate: they read versions from
``OLDEST_READABLE`` to the newest they know and refuse others with one line.
How each record field is kept in its column is declared in ``CODECS``, checked
against the model's annotations when this module is imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, Union

from netcore.errors import Conflict, NetcoreError, NotFound, StoreError
from netcore.model import (
    STATE_RUNNING,
    Attached,
    Container,
    Endpoint,
    MainProcess,
    Network,
    PortBinding,
    group_by_container,
)

DB_NAME = "netcore.db"

# Version 1: the schema exactly as the releases before schema versions created it (they left user_version 0).
# IF NOT EXISTS throughout, so on such a store the step creates only what is missing (the change feed, on a
# store older than it) and leaves every table and row as it is.
SCHEMA_V1 = """
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

# Version 2: published ports (`run -p`), one row per host port. Which host ports collide across addresses
# (every address against one) netcore.ports decides; the schema holds the exact triple unique.
SCHEMA_V2 = """
CREATE TABLE ports (
    container_id TEXT NOT NULL REFERENCES containers(id),
    protocol TEXT NOT NULL, container_port INTEGER NOT NULL,
    host_ip TEXT NOT NULL, host_port INTEGER NOT NULL, requested TEXT NOT NULL,
    UNIQUE (protocol, host_ip, host_port)
);
CREATE INDEX ports_by_container ON ports(container_id);
"""

# Version 3 (issue 25): whether the gateway namespace routes a network's traffic is the driver's to say and is
# kept with the network (before, the model knew which drivers did not: macvlan and ipvlan); containers carry
# labels (Compose's project and service among them). Readers select both columns: OLDEST_READABLE is 3.
SCHEMA_V3 = """
ALTER TABLE networks ADD COLUMN routed INTEGER NOT NULL DEFAULT 1;
UPDATE networks SET routed = 0 WHERE driver IN ('macvlan', 'ipvlan');
ALTER TABLE containers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
"""

# Version 4 (issue 28): a container's --dns-search and --add-host lines, and its main process (``run -d -- CMD``,
# a Compose service's command), one row per container. Readers select the new columns: OLDEST_READABLE is 4.
SCHEMA_V4 = """
ALTER TABLE containers ADD COLUMN dns_search TEXT NOT NULL DEFAULT '[]';
ALTER TABLE containers ADD COLUMN extra_hosts TEXT NOT NULL DEFAULT '[]';
CREATE TABLE processes (
    container_id TEXT PRIMARY KEY REFERENCES containers(id),
    argv TEXT NOT NULL, status TEXT NOT NULL, pid INTEGER, start_ticks INTEGER, boot_id TEXT NOT NULL,
    exit_code INTEGER, error TEXT NOT NULL, started TEXT NOT NULL, finished TEXT NOT NULL
);
"""

# A step is SQL (one or more statements) or a function of the connection. It runs inside the migration's
# transaction with foreign keys off (a step may rebuild a table); they are checked before the commit. Never
# edit or reorder a released step: append one. A step that changes what readers select (renames or drops a
# column they read, changes a value's meaning) also raises OLDEST_READABLE to its own version.
Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4]
OLDEST_READABLE = 4  # the oldest version this module's reads work on


class SchemaVersionError(NetcoreError):
    """The store's schema is one this program cannot use: newer than it knows, or (for a reader) too old."""


def current_version() -> int:
    """The schema version this code writes: the number of migration steps."""
    return len(MIGRATIONS)


def _statements(sql: str) -> Iterator[str]:
    """The statements of an SQL script, one by one (``executescript`` would commit the open transaction)."""
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if any(line.strip() and not line.strip().startswith("--") for line in pending[:-1].splitlines()):
                yield pending
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement in a migration step: {pending.strip()[:60]!r}")


def _stored_version(db: sqlite3.Connection) -> int:
    """The store's schema version; a store of the releases before versions (user_version 0 with tables) is 1."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return 1
    return version


# -- how fields are kept in columns -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Codec:
    """How values of one kind of annotation are kept in an SQLite column.

    ``fits(annotation)`` says whether the codec can keep a field of that
    (resolved) type; ``encode`` maps a value to what SQLite stores, ``decode``
    maps it back.
    """

    name: str
    fits: Callable[[Any], bool]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


JSON_TUPLE = Codec("JSON_TUPLE", lambda t: typing.get_origin(t) is tuple or t is tuple,
                   lambda value: json.dumps(list(value), sort_keys=True), lambda text: tuple(json.loads(text)))
JSON_DICT = Codec("JSON_DICT", lambda t: typing.get_origin(t) is dict or t is dict,
                  lambda value: json.dumps(value, sort_keys=True), json.loads)
BOOL = Codec("BOOL", lambda t: t is bool, int, bool)

SCALARS = (str, int, float, bytes, type(None))  # kept as they are; bool is not one (it would come back an int)

# Every field that is not a scalar declares its codec here; an undeclared one fails the import.
CODECS: dict[type, dict[str, Codec]] = {
    Network: {"internal": BOOL, "dns": JSON_TUPLE, "options": JSON_DICT, "labels": JSON_DICT, "routed": BOOL},
    Container: {"dns": JSON_TUPLE, "labels": JSON_DICT, "dns_search": JSON_TUPLE, "extra_hosts": JSON_TUPLE},
    MainProcess: {"argv": JSON_TUPLE},
    Endpoint: {"aliases": JSON_TUPLE},
    PortBinding: {},
}

Columns = tuple[tuple[str, Codec | None], ...]  # each field's column name and codec (None: stored as it is)


def _is_scalar(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return all(arg in SCALARS for arg in typing.get_args(annotation))
    return annotation in SCALARS


def column_spec(kind: type, codecs: dict[str, Codec]) -> Columns:
    """The columns of a record dataclass: each field with the codec declared for it in ``codecs``.

    Raises TypeError (at import, for the model's records) if a field that is
    not a scalar (``str``, ``int``, ``float``, ``bytes``, optionally ``| None``)
    has no codec, if a declared codec does not fit its field's annotation, or
    if a codec is declared for a field the record does not have.
    """
    hints = typing.get_type_hints(kind)
    fields = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(codecs) - set(fields))
    if unknown:
        raise TypeError(f"codecs declared for {kind.__name__} fields that do not exist: {', '.join(unknown)}")
    columns = []
    for name in fields:
        annotation, codec = hints[name], codecs.get(name)
        if codec is None and not _is_scalar(annotation):
            raise TypeError(f"{kind.__name__}.{name}: {annotation} is not a scalar column type; declare its codec "
                            f"({', '.join(c.name for c in (JSON_TUPLE, JSON_DICT, BOOL))}) in netcore.store.CODECS")
        if codec is not None and not codec.fits(annotation):
            raise TypeError(f"{kind.__name__}.{name}: codec {codec.name} does not fit {annotation}")
        columns.append((name, codec))
    return tuple(columns)


COLUMNS: dict[type, Columns] = {kind: column_spec(kind, codecs) for kind, codecs in CODECS.items()}

Record = TypeVar("Record", Network, Container, Endpoint, PortBinding, MainProcess)
CHANGES_KEPT = 10_000  # generations of change feed kept; a reader further behind reloads everything
NETWORK_CHANGE = ""
TABLES = {Network: "networks", Container: "containers", Endpoint: "endpoints", PortBinding: "ports",
          MainProcess: "processes"}
ROLLED_BACK = "the transaction was rolled back: nothing was half-written"


def _to_row(record, columns: Columns | None = None) -> dict:
    """The column values of a record, by its declared codecs (``COLUMNS`` of its type unless given)."""
    row = {}
    for name, codec in columns or COLUMNS[type(record)]:
        value = getattr(record, name)
        row[name] = value if codec is None else codec.encode(value)
    return row


def _from_row(kind: type[Record], row: sqlite3.Row, columns: Columns | None = None) -> Record:
    """The record of a row, by its declared codecs; columns the record does not have are ignored."""
    values = {}
    for name, codec in columns or COLUMNS[kind]:
        value = row[name]
        values[name] = value if codec is None else codec.decode(value)
    return kind(**values)


def _apply(step: Migration, db: sqlite3.Connection) -> None:
    """Run one migration step inside the open transaction."""
    if callable(step):
        step(db)
    else:
        for statement in _statements(step):
            db.execute(statement)


READER_CACHE_KIB = 256  # SQLite's page cache of a read-only connection (its default is 2 MiB)


class Store:
    """The SQLite store of one state dir: the writer (``open``) or a reader (``open_readonly``).

    Opening raises NetcoreError if the file cannot be opened, SchemaVersionError
    if its schema is newer than this code knows (or, for a reader, older than it
    reads), and StoreError if an upgrade failed (rolled back: the store is as it was).
    """

    def __init__(self, path: str, readonly: bool = False, program: str | None = None):
        self.path = path
        self.state_dir = os.path.dirname(path)
        self.readonly = readonly
        self.program = program or ("dnsd" if readonly else "netcore")  # who is refused, in a version error
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            else:
                self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        except sqlite3.OperationalError as err:
            raise NetcoreError(f"cannot open the store {path}: {err}") from None
        self._deferred = self._unsynced = False  # inside deferred_sync; something committed there not yet flushed
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 30000")
            if readonly:  # dnsd: reads each row once per build, the OS caches the file; keep its page cache small
                self._db.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
                self._check_version()
            else:
                self._check_version()  # before anything is set or written: a newer store is never touched
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._migrate()
                self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as err:
            self._db.close()
            raise StoreError(f"cannot open the store {path}: {err}") from None
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, state_dir: str) -> Store:
        """The store of a state dir, created root-only (0700 dir, 0600 files) if missing, upgraded if older.

        Safe without the state-dir lock: the upgrade runs in one ``BEGIN IMMEDIATE``
        transaction, so of several writers opening an old store at once one
        upgrades it and the others find it done. Raises as ``Store()`` does.
        """
        old_umask = os.umask(0o077)
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            return cls(os.path.join(state_dir, DB_NAME))
        except PermissionError:
            raise NetcoreError(f"permission denied on state dir {state_dir}: run as root") from None
        finally:
            os.umask(old_umask)

    @classmethod
    def open_readonly(cls, state_dir: str, program: str = "dnsd") -> Store:
        """The store of a state dir for reading only (dnsd); never creates, upgrades or writes it.

        Raises NetcoreError if it cannot be opened, SchemaVersionError if its
        schema is newer than this code knows or older than ``OLDEST_READABLE``
        (a store netcore has not upgraded yet: any netcore command upgrades it).
        Every read transaction checks the version again, so a reader kept open
        while a newer netcore upgrades the store refuses instead of misreading it.
        """
        return cls(os.path.join(state_dir, DB_NAME), readonly=True, program=program)

    # -- schema versions -------------------------------------------------------

    def schema_version(self) -> int:
        """The store's schema version (1 for a store of the releases that had none)."""
        return _stored_version(self._db)

    def _check_version(self) -> None:
        """Raise SchemaVersionError unless this code may use the store's schema as it stands."""
        version, known = _stored_version(self._db), current_version()
        if version > known:
            raise SchemaVersionError(f"the store in {self.state_dir} has schema version {version}, newer than this "
                                     f"{self.program} knows ({known}): upgrade {self.program}")
        if self.readonly and version < OLDEST_READABLE:
            raise SchemaVersionError(f"the store in {self.state_dir} has schema version {version}, older than this "
                                     f"{self.program} reads ({OLDEST_READABLE}): run any netcore command "
                                     "(e.g. netcore network ls) to upgrade it")

    def _migrate(self) -> None:
        """Apply the missing migration steps in one transaction; the writer's part of opening."""
        target = current_version()
        if self._db.execute("PRAGMA user_version").fetchone()[0] == target:
            return  # the common case: no write lock taken
        self._db.execute("PRAGMA foreign_keys = OFF")  # a step may rebuild a table; checked before the commit
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"cannot start upgrading the store in {self.state_dir}: {err}; nothing was changed") \
                from None
        try:
            self._check_version()  # another writer may have upgraded it while this one waited
            start = self._db.execute("PRAGMA user_version").fetchone()[0]  # 0 also for the releases without one
            for number in range(start, target):
                try:
                    _apply(MIGRATIONS[number], self._db)
                except Exception as err:  # noqa: BLE001  (a failed step is one line; the store stays as it was)
                    raise StoreError(f"cannot upgrade the store in {self.state_dir} from schema version {start} "
                                     f"to {target}: step {number + 1} failed: {err}; {ROLLED_BACK}") from None
            if start != target:
                self._check_upgraded(start, target)
                self._db.execute(f"PRAGMA user_version = {target:d}")
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _check_upgraded(self, start: int, target: int) -> None:
        """After the steps: every record field has its column, and every reference still holds."""
        missing = []
        for kind, table in TABLES.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            missing += [f"{table}.{name}" for name, _ in COLUMNS[kind] if name not in present]
        if missing:
            raise StoreError(f"cannot upgrade the store in {self.state_dir} from schema version {start} to {target}: "
                             f"it has no column {', '.join(missing)} (not a store netcore made?); {ROLLED_BACK}")
        broken = self._db.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(f"cannot upgrade the store in {self.state_dir} from schema version {start} to {target}: "
                             f"{len(broken)} rows refer to rows that do not exist (first in table {broken[0][0]}); "
                             f"{ROLLED_BACK}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Commits inside the block are not flushed to the disk one by one (``synchronous=NORMAL``) but once,
        when it ends, whatever ends it: one fsync(2) of the WAL, which makes every frame written before it
        durable, what ``synchronous=FULL`` does at each commit (sqlite.org/wal.html, "Performance
        Considerations"; pragma.html#pragma_synchronous). For an action of many writes (``up`` of 100
        containers: 200 commits, each one's flush ~0.4 ms of waiting on this VM). Visibility is unchanged: other
        connections (dnsd) see each commit at once; a killed process loses nothing committed. Nested: the
        outermost block flushes. OSError of the flush."""
        if self._deferred:
            yield
            return
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
            self._db.execute("PRAGMA synchronous = FULL")
            if self._unsynced:
                self._unsynced = False
                self._flush_wal()

    def _flush_wal(self) -> None:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # checkpointed and removed: SQLite synced the database file itself
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
            self._check_version()  # a newer netcore may have upgraded the store since it was opened
            self._touched: set[str] = set()
            yield
            if self._touched:  # else no row readers follow (meta bookkeeping at most): nothing to catch up on
                generation = self.generation() + 1
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
                self._db.executemany("INSERT INTO changes (generation, container_id) VALUES (?, ?)",
                                     [(generation, touched) for touched in self._touched])
                if generation % 1000 == 0:
                    self._db.execute("DELETE FROM changes WHERE generation <= ?", (generation - CHANGES_KEPT,))
            self._db.execute("COMMIT")
            self._unsynced = self._unsynced or self._deferred
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

    def meta_setdefault(self, key: str, value: str) -> str:
        """The bookkeeping value of ``key``, set to ``value`` first if it has none, in one transaction of its own
        (so two processes asking at once get the same one). Not to be called inside ``transaction()``."""
        with self.transaction():
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return self.meta(key)

    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- writes (call inside transaction()) ----------------------------------

    def _touch(self, record: Network | Container | Endpoint | PortBinding) -> None:
        self._touched.add(record.id if isinstance(record, Container) else
                          record.container_id if isinstance(record, (Endpoint, PortBinding)) else NETWORK_CHANGE)

    def insert(self, record: Network | Container | Endpoint | PortBinding) -> None:
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

    def put_process(self, process: MainProcess) -> None:
        """Record a container's main process, replacing what was recorded (its status is not a change dnsd
        follows: no generation is bumped for it). Call inside transaction()."""
        row = _to_row(process)
        self._db.execute(f"INSERT OR REPLACE INTO processes ({', '.join(row)}) VALUES "
                         f"({', '.join(':' + k for k in row)})", row)

    def delete_process(self, container: Container) -> None:
        """Delete the container's main process row (before its own row: it refers to it)."""
        self._db.execute("DELETE FROM processes WHERE container_id = ?", (container.id,))

    def process(self, container_id: str) -> MainProcess | None:
        """The container's main process, None if it has none."""
        found = self._select(MainProcess, "WHERE container_id = ?", (container_id,))
        return found[0] if found else None

    def processes(self) -> list[MainProcess]:
        return self._select(MainProcess, "ORDER BY container_id")

    def delete_ports(self, container: Container) -> None:
        """Delete the container's published ports (before its own row: they refer to it)."""
        if self._db.execute("DELETE FROM ports WHERE container_id = ?", (container.id,)).rowcount:
            self._touch(container)

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

    def ports(self) -> list[PortBinding]:
        """Every published port, whatever its container's state (a port is taken from the moment it is
        recorded), in the order they were published."""
        return self._select(PortBinding, "ORDER BY rowid")

    def ports_of_container(self, container_id: str) -> list[PortBinding]:
        return self._select(PortBinding, "WHERE container_id = ? ORDER BY rowid", (container_id,))

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
            self._check_version()
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
            self._check_version()
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
            self._check_version()
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
