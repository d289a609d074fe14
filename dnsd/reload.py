"""Reloads: the next Snapshot from the record source (``dnsd.core.records.RecordSource``), made in a thread of its own.

A patch of the last snapshot when the store's change feed names a few
containers, a full build otherwise (a network change, a gap in the feed, a
large change). Every call to the record source runs in the one reload thread,
which also owns the snapshot builder, so a reload never stalls the queries.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from dnsd.core.builder import SnapshotBuilder
from dnsd.core.dialect import DOCKER, Dialect
from dnsd.core.records import RecordSource
from dnsd.core.snapshot import Snapshot
from dnsd.core.stats import Stats
from dnsd.io.local_addresses import local_addresses
from netcore.system.linux import release_free_memory


class Reloader:
    """Makes the snapshot of ``records`` as they are now, in its reload thread; answers get ``ttl`` seconds, names
    follow ``dialect``'s rules (``dnsd.core.dialect``).

    Counts its patches and full builds in ``stats``. Not safe for concurrent
    ``reload`` calls: the caller serialises them.
    """

    def __init__(self, records: RecordSource, ttl: int, stats: Stats, dialect: Dialect = DOCKER):
        self._records = records
        self._stats = stats
        self._builder = SnapshotBuilder(ttl, dialect)
        self._last_host_sources: frozenset[str] = frozenset()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnsd-reload")
        self.generation: int | None = None  # of the last snapshot made; None before the first

    async def reload(self) -> Snapshot | None:
        """A new snapshot if the records changed since the last one (None if not); ``generation`` is then its own.

        Raises what the record source raises (the store busy or gone).
        """
        generation, snapshot = await asyncio.get_running_loop().run_in_executor(self._thread, self._load_if_changed,
                                                                                self.generation)
        if snapshot is not None:
            self.generation = generation
        return snapshot

    def close(self) -> None:
        """Let the reload thread go; a reload under way is abandoned."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _load_if_changed(self, known: int | None) -> tuple[int, Snapshot | None]:
        """In the reload thread: the generation, and a new snapshot if it is not the one already loaded."""
        if known is not None:
            generation, changed = self._records.changes_since(known)
            if generation == known:
                return generation, None
            if changed is not None and self._builder.can_patch(len(changed)):
                snapshot = self._builder.patch(changed, self._records.container_records(changed))
                snapshot.host_sources = self._last_host_sources  # containers changed, the namespace did not
                self._stats.reloads_patch += 1
                return generation, snapshot
        generation = self._records.generation()
        with self._records.dns_records() as (networks, containers):
            snapshot = self._builder.build(networks, containers)
        snapshot.host_sources = self._last_host_sources = local_addresses()  # before it is served
        self._stats.reloads_full += 1
        release_free_memory()  # a full build leaves the previous snapshot behind
        return generation, snapshot
