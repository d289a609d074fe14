"""The query log: one JSON line per query, to a file rotated by size, at most ``rate`` lines a second.

Off by default (``dnsd --query-log PATH``). A line holds the time (RFC 3339,
UTC, microseconds), the client's address, the network of the gateway it asked
(empty for a forwarded query's reply line when unknown), the name as asked,
its type, the reply's rcode, where the reply came from (local, cache,
upstream) and how long dnsd took, in microseconds:

    {"time": "2026-12-01T00:31:02.123456Z", "client": "10.89.1.2", "network": "app", "name": "web.",
     "type": "A", "rcode": "NOERROR", "source": "local", "duration_us": 4}

A flood cannot fill the disk: past ``rate`` lines in one second the rest of
that second's queries are not written, and the first line of the next second
that is written is preceded by one line saying how many were left out
(``{"time": ..., "dropped": N}``); the file is rotated at ``max_bytes`` and
``backups`` old files are kept (so at most (backups + 1) x max_bytes on disk),
as logging's RotatingFileHandler does it.

Every query of every container is in it, so only its owner reads it: the log
and each rotated file are made mode 0600 (``LOG_MODE``), whatever the umask,
and a file already there with a wider mode is narrowed when dnsd opens it
(issue 24). A symbolic link at the path is refused (O_NOFOLLOW), as dnsd runs
as root and the directory may not be root's alone.

Threads: the UDP listener threads and the event loop write; the handler's
lock keeps lines whole. The rate window is counted without a lock: two
threads may each take the last slot of a second, so a second may hold a line
or two over ``rate``, never more than one per thread.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import time

import dnslib

from dnsd.core.config import DEFAULT_QUERY_LOG_BACKUPS, DEFAULT_QUERY_LOG_MAX_BYTES, DEFAULT_QUERY_LOG_RATE
from dnsd.ops.metrics import rcode_label, type_label

DEFAULT_RATE = DEFAULT_QUERY_LOG_RATE  # lines a second
DEFAULT_MAX_BYTES = DEFAULT_QUERY_LOG_MAX_BYTES  # per file, before it is rotated
DEFAULT_BACKUPS = DEFAULT_QUERY_LOG_BACKUPS  # rotated files kept
LOG_MODE = 0o600  # of the log and its rotated files: its owner's alone


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are ``LOG_MODE`` from the moment they exist, and never a symlink's target.

    ``_open`` is where the handler opens the file, at the start and after each rotation (the rotated files
    are the same files renamed, so they keep the mode).
    """

    def _open(self):
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        descriptor = os.open(self.baseFilename, flags, LOG_MODE)
        try:
            os.fchmod(descriptor, LOG_MODE)  # a file made before, under another mode, is narrowed too
            return open(descriptor, self.mode, encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(descriptor)
            raise


class QueryLog:
    """Writes query lines to ``path`` (see the module's docstring); OSError if the file cannot be opened (ELOOP
    for a symbolic link)."""

    def __init__(self, path: str, rate: int = DEFAULT_RATE, max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS, clock=time.monotonic):
        self.path = path
        self.rate = rate
        self.clock = clock
        self._handler = _PrivateRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._second = -1
        self._used = 0
        self.dropped = 0  # lines left out since the last "dropped" line
        self.dropped_total = 0

    def allow(self) -> bool:
        """Whether one more line fits this second's rate; counts the ones that do not."""
        second = int(self.clock())
        if second != self._second:
            self._second = second
            self._used = 0
        if self._used >= self.rate:
            self.dropped += 1
            self.dropped_total += 1
            return False
        self._used += 1
        return True

    def write(self, client: str, network: str, query: bytes, rcode: int | None, source: str,
              duration: float) -> None:
        """One line for ``query`` (its wire bytes) if the rate allows; ``duration`` in seconds."""
        if not self.allow():
            return
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            self._emit({"time": now, "dropped": dropped})
        name, qtype = _question_of(query)
        self._emit({"time": now, "client": client, "network": network, "name": name, "type": qtype,
                    "rcode": rcode_label(rcode) if rcode is not None else "", "source": source,
                    "duration_us": round(duration * 1e6)})

    def _emit(self, fields: dict) -> None:
        self._handler.emit(logging.makeLogRecord({"msg": json.dumps(fields, separators=(",", ":")),
                                                  "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


def _question_of(query: bytes) -> tuple[str, str]:
    """(name as asked, type) of a query's question; ("", "other") if it has none that parses."""
    try:
        question = dnslib.DNSRecord.parse(query).q
    except Exception:  # noqa: BLE001 - garbage is logged as such: dnslib raises many kinds of errors on it
        return "", "other"
    return str(question.qname), type_label(question.qtype.to_bytes(2, "big"))
