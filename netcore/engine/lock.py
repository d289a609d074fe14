"""The state dir's lock: one action at a time across processes, and orphans known as such.

An exclusive ``flock`` on ``STATE_DIR/lock``. The kernel releases it when its holder dies, however it dies,
so whoever takes it next knows that rows left ``creating`` or ``removing`` are an interrupted action's.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

LOCK_NAME = "lock"


class StateLock:
    """The lock of one state dir (``STATE_DIR/lock``, 0600)."""

    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, LOCK_NAME)

    @contextmanager
    def held(self) -> Iterator[None]:
        """The block runs holding the lock exclusively; waits for another holder to finish."""
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def busy(self) -> bool:
        """Whether another process holds the lock now (an action runs). Takes it only for a moment, never
        waits: rows left in a transitional state while nobody holds it are an interrupted action's."""
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
