"""A bench killed by a signal cleans up as one that ends: SIGTERM and SIGHUP (a closed terminal, ``timeout``, a
machine shutting down) raise SystemExit in the main thread, so the bench's ``finally`` blocks remove the
namespaces, processes and etcd members it made. Without this a killed bench left them all behind."""

from __future__ import annotations

import signal
import sys


def exit_on_signals() -> None:
    """From now on SIGTERM and SIGHUP end this process through SystemExit (status 128 + the signal's number)."""

    def leave(signum, _frame):
        signal.signal(signum, signal.SIG_IGN)  # a second one while cleaning up does not cut the cleanup short
        sys.exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)
