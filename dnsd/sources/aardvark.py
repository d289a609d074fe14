"""Podman's networks as a record source: ``AardvarkRecords``, over the config directory netavark writes for
aardvark-dns (``dnsd.aardvark`` serves it in aardvark-dns's place).

netavark writes one file per network and sends SIGHUP after every change; the directory is read again then
(``mark_changed``), parsed by ``dnsd.sources.aardvark_config`` (pure), and the records it gives are that
module's (``dnsd.core.records``: what the files say, nothing made up).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from dnsd.sources.aardvark_config import (
    INTERNAL_SUFFIX,
    ContainerEntry,
    is_config_file,
    parse_config_dir,
    to_records,
)

log = logging.getLogger("dnsd")


class AardvarkRecords:
    """A ``dnsd.core.records.RecordSource`` over an aardvark config directory, re-read after ``mark_changed``.

    The generation counts the reads that found different records. A read
    that changes only container lines reports those containers (the builder
    patches); one that changes any network reports None (a full build).
    Methods other than ``mark_changed`` run in the reload thread.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self._generation = 0
        self._changed = threading.Event()
        self._changed.set()
        self._configs: list = []
        self._entries: dict[str, tuple] = {}  # container id -> its lines, per network, to diff
        self._networks: list = []
        self._attached: dict[str, tuple] = {}
        self._last_change: set[str] | None = None
        self.network_count = 0  # networks in the directory at the last read

    def mark_changed(self) -> None:
        """The directory changed (SIGHUP): the next call re-reads it. Safe from any thread."""
        self._changed.set()

    def generation(self) -> int:
        """The count of reads that found the records changed (the directory is read first if marked)."""
        self._read_if_changed()
        return self._generation

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The generation now, and the container IDs changed since ``generation`` (None: build anew)."""
        self._read_if_changed()
        if generation == self._generation:
            return generation, set()
        return self._generation, self._last_change if generation == self._generation - 1 else None

    @contextlib.contextmanager
    def dns_records(self) -> Iterator[tuple[list, Iterator]]:
        """Every network, and every container with its endpoints, as of the last read."""
        yield list(self._networks), iter(list(self._attached.values()))

    def container_records(self, ids: set[str]) -> list:
        """The containers among ``ids`` that the last read found, each with its endpoints."""
        return [self._attached[container_id] for container_id in ids if container_id in self._attached]

    def _read_if_changed(self) -> None:
        if not self._changed.is_set():
            return
        self._changed.clear()  # before reading: a SIGHUP during the read brings another read
        files = read_directory(self.directory)
        configs, problems = parse_config_dir(files)
        for problem in problems:
            log.warning("%s", problem)
        self.network_count = len(files)  # a file caught mid-rewrite still counts: netavark removes the last one
        parsed = {config.name for config in configs}
        for before in self._configs:  # netavark rewrites a file in place (truncate, write): keep what it said
            if before.name not in parsed and any(_network_name(name) == before.name for name in files):
                configs.append(before)
        configs.sort(key=lambda config: config.name)
        if configs == self._configs:
            return
        entries = _entries_by_container(configs)
        networks, attached = to_records(configs)
        same_networks = [_without_containers(c) for c in configs] == [_without_containers(c) for c in self._configs]
        self._last_change = ({container_id for container_id in entries.keys() | self._entries.keys()
                              if entries.get(container_id) != self._entries.get(container_id)}
                             if same_networks else None)
        self._configs, self._entries = configs, entries
        self._networks, self._attached = networks, {container.id: (container, endpoints)
                                                    for container, endpoints in attached}
        self._generation += 1


def _network_name(file_name: str) -> str:
    return file_name[:-len(INTERNAL_SUFFIX)] if file_name.endswith(INTERNAL_SUFFIX) else file_name


def _without_containers(config) -> tuple:
    return config.name, config.internal, config.gateways, config.upstreams


def _entries_by_container(configs) -> dict[str, tuple[tuple[str, ContainerEntry], ...]]:
    entries: dict[str, list] = {}
    for config in configs:
        for entry in config.containers:
            entries.setdefault(entry.id, []).append((config.name, entry))
    return {container_id: tuple(lines) for container_id, lines in entries.items()}


def read_directory(directory: str) -> dict[str, str]:
    """File name → text of each config file in ``directory``; files removed or unreadable meanwhile are left out."""
    files = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if not is_config_file(entry.name):
                continue
            try:
                with open(entry.path, encoding="utf-8", errors="replace") as config_file:
                    files[entry.name] = config_file.read()
            except (FileNotFoundError, IsADirectoryError):
                continue
            except OSError as err:
                log.warning("aardvark config %s: %s, skipped", entry.name, err.strerror)
    return files
