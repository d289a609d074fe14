"""What the ``netcore-dns`` CNI plugin registered: one SQLite file in the plugin's state dir (issue 29).

One row per attachment, the CNI spec's unit: a container (``CNI_CONTAINERID``)
on a network (the configuration's ``name``) through one interface
(``CNI_IFNAME``), with what dnsd serves of it: its name, hostname and aliases,
its addresses and its network's gateways and subnets as the chain's
``prevResult`` gave them, and the identity of its network namespace, so a
registration that outlived its container can be told and swept.

Why a store of its own and not netcore's: netcore's store holds what netcore
built (bridges, veths, its IPAM) under the state-dir lock of its engine; a CNI
runtime built these attachments itself, and the plugin, a process started per
call that must stay cheap, writes only these rows (``dnsd.sources.cni`` reads
them for dnsd). The rules are netcore's store's: every write is one
``BEGIN IMMEDIATE`` transaction that bumps a generation counter and records the
containers it touched in a change feed ('' for a network that came or went),
so dnsd patches its snapshot instead of rebuilding it; WAL journal, so a
reader never blocks the writers and a plugin killed mid-call leaves the last
committed state whole. Concurrent plugins wait for each other (busy timeout).

Stale registrations (the CNI spec's "catastrophic failure": a runtime that
never called DEL) are swept by every write: a row whose namespace file is gone
or is another namespace now (``namespace_id``), and every row of an earlier
boot of the machine (the boot ID in ``meta``).

Imports only ``os``, ``sqlite3``, ``netcore.errors`` (which imports
nothing) and ``netcore.system.processes`` (the namespace identity's home,
which imports ``os`` and ``contextlib``): the plugin pays for every import
on every call.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from netcore.errors import StoreError  # stdlib-free; raised with one line: the file and SQLite's reason
from netcore.system.processes import namespace_identity

DB_NAME = "cni.db"
SCHEMA_VERSION = 1
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"  # as netcore.clock reads it (not imported: it loads datetime)
NETWORK_CHANGE = ""  # in the change feed: a network came, went or changed its gateways (readers rebuild)
CHANGES_KEPT = 10_000  # generations of change feed kept; a reader further behind rebuilds
BUSY_TIMEOUT_MS = 30_000  # how long a plugin waits for the others' writes

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (
    container_id TEXT NOT NULL, ifname TEXT NOT NULL, network TEXT NOT NULL,
    name TEXT NOT NULL, hostname TEXT NOT NULL, aliases TEXT NOT NULL,
    ipv4 TEXT NOT NULL, ipv6 TEXT NOT NULL, gateways TEXT NOT NULL, subnets TEXT NOT NULL,
    domain TEXT NOT NULL, netns TEXT NOT NULL, netns_id TEXT NOT NULL,
    PRIMARY KEY (container_id, ifname, network)
);
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, container_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_by_generation ON changes(generation);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0');
INSERT OR IGNORE INTO meta (key, value) VALUES ('boot_id', '');
"""

COLUMNS = ("container_id", "ifname", "network", "name", "hostname", "aliases", "ipv4", "ipv6", "gateways",
           "subnets", "domain", "netns", "netns_id")


class Attachment:
    """One registered attachment. Lists (aliases, addresses, gateways, subnets) are tuples of strings;
    addresses without a prefix length, subnets in CIDR notation; ``netns_id`` is ``namespace_id(netns)``
    as it was at ADD ("" when the namespace could not be looked at)."""

    __slots__ = COLUMNS

    def __init__(self, container_id: str, ifname: str, network: str, name: str = "", hostname: str = "",
                 aliases: tuple[str, ...] = (), ipv4: tuple[str, ...] = (), ipv6: tuple[str, ...] = (),
                 gateways: tuple[str, ...] = (), subnets: tuple[str, ...] = (), domain: str = "",
                 netns: str = "", netns_id: str = ""):
        self.container_id = container_id
        self.ifname = ifname
        self.network = network
        self.name = name
        self.hostname = hostname
        self.aliases = tuple(aliases)
        self.ipv4 = tuple(ipv4)
        self.ipv6 = tuple(ipv6)
        self.gateways = tuple(gateways)
        self.subnets = tuple(subnets)
        self.domain = domain
        self.netns = netns
        self.netns_id = netns_id

    def _row(self) -> tuple:
        return tuple(",".join(value) if isinstance(value, tuple) else value
                     for value in (getattr(self, column) for column in COLUMNS))

    @classmethod
    def _of_row(cls, row: tuple) -> Attachment:
        values = dict(zip(COLUMNS, row, strict=True))
        for column in ("aliases", "ipv4", "ipv6", "gateways", "subnets"):
            values[column] = tuple(item for item in values[column].split(",") if item)
        return cls(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attachment) and self._row() == other._row()

    def __repr__(self) -> str:
        return f"Attachment({', '.join(f'{c}={getattr(self, c)!r}' for c in COLUMNS)})"


def namespace_id(path: str) -> str:
    """The identity of the network namespace at ``path`` (``DEV:INODE`` of the nsfs file); "" if it is gone.

    A path can outlive its namespace's meaning: ``/proc/PID/ns/net`` (nerdctl's
    CNI_NETNS) names another process's namespace once the PID is reused, a
    bind-mounted ``/run/netns/NAME`` another namespace once recreated.
    """
    identity = namespace_identity(path)
    return f"{identity[0]}:{identity[1]}" if identity is not None else ""


def boot_id() -> str:
    """This boot of the machine (the kernel's random boot ID); "" where it cannot be read."""
    try:
        with open(BOOT_ID_PATH) as source:
            return source.read().strip()
    except OSError:
        return ""


class Registrations:
    """The registrations of one state dir; a writer (the plugin) or a reader (``readonly``, dnsd).

    Every method raises StoreError, one line, when SQLite fails (a damaged file, a full disk, a timeout).
    """

    def __init__(self, state_dir: str, readonly: bool = False):
        self.path = os.path.join(state_dir, DB_NAME)
        self.readonly = readonly
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            else:
                old_umask = os.umask(0o077)
                try:
                    os.makedirs(state_dir, mode=0o700, exist_ok=True)
                    self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
                finally:
                    os.umask(old_umask)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                self._prepare()
        except OSError as err:
            raise StoreError(f"cannot open {self.path}: {err.strerror or err}") from None
        except sqlite3.Error as err:
            raise StoreError(f"cannot open {self.path}: {err}") from None

    def _prepare(self) -> None:
        """WAL journal (once per file), the schema (once), refusing a file of a newer schema."""
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # in WAL: a killed process loses no commit
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this plugin's ({SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @classmethod
    def open_readonly(cls, state_dir: str) -> Registrations:
        """A reader of ``state_dir``'s registrations (StoreError if there is no file yet)."""
        return cls(state_dir, readonly=True)

    def close(self) -> None:
        self._db.close()

    # -- writes: one transaction each -------------------------------------------

    def add(self, attachment: Attachment, alive=namespace_id, current_boot: str | None = None) -> None:
        """Register (or replace) one attachment; stale rows are swept in the same transaction.

        ``alive(netns) -> namespace id`` and ``current_boot`` are injectable for tests (default: the
        real namespace files and boot ID).
        """
        with self._write(alive, current_boot) as touched:
            db = self._db
            row = attachment._row()
            before = db.execute("SELECT gateways FROM attachments WHERE network = ? LIMIT 1",
                                (attachment.network,)).fetchone()
            db.execute(f"INSERT OR REPLACE INTO attachments ({', '.join(COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(COLUMNS))})", row)
            touched.add(attachment.container_id)
            if before is None or before[0] != row[COLUMNS.index("gateways")]:
                touched.add(NETWORK_CHANGE)

    def remove(self, container_id: str, ifname: str, network: str, alive=namespace_id,
               current_boot: str | None = None) -> int:
        """Unregister one attachment (nothing if it is not registered); returns how many rows remain."""
        with self._write(alive, current_boot) as touched:
            deleted = self._db.execute("DELETE FROM attachments WHERE container_id = ? AND ifname = ? AND network = ?",
                                       (container_id, ifname, network)).rowcount
            if deleted:
                touched.add(container_id)
                self._touch_network_if_empty(network, touched)
            return self._db.execute("SELECT count(*) FROM attachments").fetchone()[0]

    def keep_only(self, network: str, valid: set[tuple[str, str]], alive=namespace_id,
                  current_boot: str | None = None) -> int:
        """CNI's GC: unregister every attachment of ``network`` whose (container ID, ifname) is not in
        ``valid``; returns how many rows remain (all networks)."""
        with self._write(alive, current_boot) as touched:
            rows = self._db.execute("SELECT container_id, ifname FROM attachments WHERE network = ?",
                                    (network,)).fetchall()
            for container_id, ifname in rows:
                if (container_id, ifname) not in valid:
                    self._db.execute("DELETE FROM attachments WHERE container_id = ? AND ifname = ? AND network = ?",
                                     (container_id, ifname, network))
                    touched.add(container_id)
            self._touch_network_if_empty(network, touched)
            return self._db.execute("SELECT count(*) FROM attachments").fetchone()[0]

    def sweep(self, alive=namespace_id, current_boot: str | None = None) -> int:
        """Only the sweep of stale rows, as a transaction of its own; returns how many rows remain."""
        with self._write(alive, current_boot):
            return self._db.execute("SELECT count(*) FROM attachments").fetchone()[0]

    def _touch_network_if_empty(self, network: str, touched: set[str]) -> None:
        if self._db.execute("SELECT 1 FROM attachments WHERE network = ? LIMIT 1", (network,)).fetchone() is None:
            touched.add(NETWORK_CHANGE)

    def _write(self, alive, current_boot: str | None):
        return _Write(self, alive, current_boot)

    def _sweep_stale(self, alive, current_boot: str | None, touched: set[str]) -> None:
        db = self._db
        boot = boot_id() if current_boot is None else current_boot
        if boot:
            stored = db.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone()[0]
            if stored != boot:
                if stored:  # a reboot: every namespace of the last boot is gone
                    for (container_id,) in db.execute("SELECT DISTINCT container_id FROM attachments").fetchall():
                        touched.add(container_id)
                    if db.execute("DELETE FROM attachments").rowcount:
                        touched.add(NETWORK_CHANGE)
                db.execute("UPDATE meta SET value = ? WHERE key = 'boot_id'", (boot,))
        stale = [(container_id, ifname, network) for container_id, ifname, network, netns, netns_id in
                 db.execute("SELECT container_id, ifname, network, netns, netns_id FROM attachments").fetchall()
                 if netns_id and alive(netns) != netns_id]
        for key in stale:
            db.execute("DELETE FROM attachments WHERE container_id = ? AND ifname = ? AND network = ?", key)
            touched.add(key[0])
            self._touch_network_if_empty(key[2], touched)

    # -- reads --------------------------------------------------------------------

    def generation(self) -> int:
        """The counter every write bumps."""
        try:
            return int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        except sqlite3.Error as err:
            raise StoreError(f"cannot read {self.path}: {err}") from None

    def attachments(self, container_ids: set[str] | None = None) -> list[Attachment]:
        """Every registered attachment (or those of these containers), by container ID, then network, then ifname."""
        try:
            if container_ids is None:
                rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM attachments "
                                        "ORDER BY container_id, network, ifname").fetchall()
            else:
                rows, ordered = [], sorted(container_ids)
                for start in range(0, len(ordered), 500):  # SQLite bounds the number of parameters
                    chunk = ordered[start:start + 500]
                    rows += self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM attachments WHERE container_id IN "
                                             f"({', '.join('?' * len(chunk))}) ORDER BY container_id, network, ifname",
                                             chunk).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read {self.path}: {err}") from None
        return [Attachment._of_row(row) for row in rows]

    def find(self, container_id: str, ifname: str, network: str) -> Attachment | None:
        """The one attachment with this key, or None."""
        for attachment in self.attachments({container_id}):
            if attachment.ifname == ifname and attachment.network == network:
                return attachment
        return None

    def read(self):
        """A context manager: one read transaction (``generation`` and ``attachments`` inside agree)."""
        return _Read(self._db, self.path)

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The current generation and the IDs of the containers changed after ``generation``; None instead of
        the IDs when the reader must rebuild (a network changed, or the feed no longer reaches back)."""
        with self.read():
            current = self.generation()
            if current == generation:
                return current, set()
            try:
                rows = self._db.execute("SELECT generation, container_id FROM changes WHERE generation > ?",
                                        (generation,)).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"cannot read {self.path}: {err}") from None
        if generation > current or len({g for g, _ in rows}) != current - generation:
            return current, None
        changed = {container_id for _, container_id in rows}
        return current, None if NETWORK_CHANGE in changed else changed


class _Write:
    """``BEGIN IMMEDIATE`` → sweep → the caller's changes → generation and change feed → ``COMMIT``."""

    def __init__(self, store: Registrations, alive, current_boot: str | None):
        self._store = store
        self._alive = alive
        self._boot = current_boot
        self._touched: set[str] = set()

    def __enter__(self) -> set[str]:
        try:
            self._store._db.execute("BEGIN IMMEDIATE")
            self._store._sweep_stale(self._alive, self._boot, self._touched)
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"cannot write {self._store.path}: {err}") from None
        except BaseException:  # __exit__ is not called when __enter__ raises: the transaction must not stay open
            self._rollback()
            raise
        return self._touched

    def __exit__(self, kind, error, traceback) -> bool:
        db = self._store._db
        if kind is not None:
            self._rollback()
            if isinstance(error, sqlite3.Error):
                raise StoreError(f"cannot write {self._store.path}: {error}") from None
            return False
        try:
            if self._touched:
                generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
                db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
                db.executemany("INSERT INTO changes (generation, container_id) VALUES (?, ?)",
                               [(generation, touched) for touched in sorted(self._touched)])
                if generation % 1000 == 0:
                    db.execute("DELETE FROM changes WHERE generation <= ?", (generation - CHANGES_KEPT,))
            db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"cannot write {self._store.path}: {err}") from None
        return False

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open (BEGIN itself failed)
            self._store._db.execute("ROLLBACK")


class _Read:
    def __init__(self, db: sqlite3.Connection, path: str):
        self._db = db
        self._path = path
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._db.in_transaction
        if not self._nested:
            try:
                self._db.execute("BEGIN")
            except sqlite3.Error as err:
                raise StoreError(f"cannot read {self._path}: {err}") from None

    def __exit__(self, *_exc) -> bool:
        if not self._nested:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("COMMIT")
        return False
