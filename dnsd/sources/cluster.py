"""A ``dnsd.core.records.RecordSource``: netcore's store, and the containers of the cluster's other hosts (issue 27).

On a host that joined a cluster, netcored's cluster member writes every other host's containers on overlay
networks into ``STATE_DIR/cluster-names.json`` (netcore.dnsd_protocol.cluster_names) once their data plane
entries are programmed, and tells dnsd to ``sync``. ``ClusterRecords`` serves them beside the store's own
records: the store's networks (an overlay network is served on a host once one of its containers runs there,
which gives it its gateway and listener), the store's containers, and the file's; the snapshot builder then
answers each client the names of the networks it is on, remote containers' names, aliases (rotating across
hosts), hostnames, ``NAME.NETWORK`` and PTR included, from memory, as CoreDNS's kubernetes plugin answers
from its watch. Nothing here ever reads etcd.

Generations: without the file this source is the store itself (its generations, its change feed). Once a
file was seen, its own counter numbers every distinct (store generation, file version) pair it handed out,
and ``changes_since`` joins the store's change feed with the containers each new file added, changed or
dropped, so a change of one remote container is a patch, as a local one is. A file that cannot be read
keeps the names last read (dnsd keeps answering what it knew), with one warning.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Iterator

from netcore.dnsd_protocol import cluster_names
from netcore.model import Attached, Network

log = logging.getLogger("dnsd")

HISTORY = 64  # generations handed out whose changes can still be told; an older one means a full build


class ClusterRecords:
    """``records`` (netcore's Store, opened read-only) and the cluster's names of ``state_dir``."""

    def __init__(self, records, state_dir: str):
        self._records = records
        self._state_dir = state_dir
        self._path = cluster_names.path(state_dir)
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the file last read
        self._remote: dict[str, Attached] = {}  # container ID -> the container with its endpoints
        self._version = 0  # bumped with every file read that changed the names; 0: none ever
        self._changes: deque[tuple[int, frozenset[str]]] = deque(maxlen=HISTORY)
        self._pairs: OrderedDict[int, tuple[int, int]] = OrderedDict()  # generation -> (store's, version)
        self._counter = 0
        self._warned = False

    # -- the file --------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Read the file if it changed since the last read (one stat otherwise)."""
        try:
            found = os.stat(self._path)
            stamp = (found.st_ino, found.st_mtime_ns, found.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        if stamp is None:
            remote: dict[str, Attached] = {}
        else:
            try:
                _, containers = cluster_names.read(self._state_dir) or (0, [])
            except (OSError, cluster_names.NamesError) as err:
                if not self._warned:
                    log.warning("cannot read %s: %s; answering the cluster's names last read", self._path, err)
                    self._warned = True
                return
            self._warned = False
            remote = {container.id: (container, endpoints) for container, endpoints in containers}
        self._stamp = stamp
        changed = frozenset(c for c in remote.keys() | self._remote.keys() if remote.get(c) != self._remote.get(c))
        if changed or (self._version == 0 and stamp is not None):
            self._version += 1
            self._changes.append((self._version, changed))
        self._remote = remote

    def _generation(self, store_generation: int) -> int:
        """The generation of (``store_generation``, the file's version): the store's own while no file was ever
        seen, else this source's counter, one number per distinct pair."""
        if self._version == 0:
            return store_generation
        pair = (store_generation, self._version)
        if self._pairs and next(reversed(self._pairs.values())) == pair:
            return self._counter
        self._counter = max(self._counter, store_generation) + 1  # never one the store gave out before
        self._pairs[self._counter] = pair
        while len(self._pairs) > HISTORY:
            self._pairs.popitem(last=False)
        return self._counter

    def _remote_changes_since(self, version: int) -> set[str] | None:
        if version == self._version:
            return set()
        if not self._changes or self._changes[0][0] > version + 1:
            return None
        return {c for v, ids in self._changes if v > version for c in ids}

    # -- RecordSource ----------------------------------------------------------------------------------------

    def generation(self) -> int:
        self._refresh()
        return self._generation(self._records.generation())

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        self._refresh()
        if self._version == 0:
            return self._records.changes_since(generation)
        pair = self._pairs.get(generation)
        if pair is None:  # from before the file, or too old: build anew
            return self.generation(), None
        store_generation, local = self._records.changes_since(pair[0])
        remote = self._remote_changes_since(pair[1])
        current = self._generation(store_generation)
        if local is None or remote is None:
            return current, None
        return current, local | remote

    @contextlib.contextmanager
    def dns_records(self) -> Iterator[tuple[list[Network], Iterator[Attached]]]:
        remote = list(self._remote.values())
        with self._records.dns_records() as (networks, containers):
            yield networks, itertools.chain(containers, remote)

    def container_records(self, ids: set[str]) -> list[Attached]:
        return [*self._records.container_records(ids), *(self._remote[c] for c in sorted(ids) if c in self._remote)]

    def close(self) -> None:
        self._records.close()
