"""The logs of netcore's own processes (dnsd.log, ports.log in the state dir), kept bounded in size."""

from __future__ import annotations

import contextlib
import os

LOG_MAX_BYTES = 1 << 20  # dnsd.log and ports.log: rotated past 1 MiB
LOG_BACKUPS = 2  # NAME.1 (newest) and NAME.2


def rotate_log(path: str, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> bool:
    """Rotate the log at ``path`` once it is larger than ``max_bytes``: ``path.1`` becomes ``path.2`` (the
    oldest goes), the log is copied to ``path.1`` and then truncated in place (logrotate's copytruncate:
    dnsd and its supervisor keep writing to the same open file, with O_APPEND, so their next line lands at
    the new end). Lines written between the copy and the truncation are lost. True if it rotated; a log
    that cannot be read or written is left as it is."""
    try:
        if os.stat(path, follow_symlinks=False).st_size <= max_bytes:
            return False
        for index in range(backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}.{index}", f"{path}.{index + 1}")
        source = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        try:
            copy = os.open(f"{path}.1", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                while chunk := os.read(source, 1 << 16):
                    os.write(copy, chunk)
            finally:
                os.close(copy)
            os.ftruncate(source, 0)
        finally:
            os.close(source)
        return True
    except OSError:
        return False
