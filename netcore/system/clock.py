"""The engine's clock: when a record was created, and which boot of the machine this is.

``Clock`` is what the engine is given (a constructor parameter, ``SystemClock``
by default), so unit tests can fix the time and simulate a reboot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class Clock(Protocol):
    def now(self) -> str:
        """The current time as Docker writes ``Created``: ISO 8601 in UTC with microseconds and ``Z``."""

    def boot_id(self) -> str:
        """An ID that changes at every boot: after a reboot the kernel holds none of netcore's objects."""


class SystemClock:
    """The machine's clock and the kernel's boot ID (``/proc/sys/kernel/random/boot_id``)."""

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    @staticmethod
    def boot_id() -> str:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip()
