"""Files written by rename: a reader sees the old content or the new, never a file half written or empty.

The one home of that write (pid files, ``dnsd.options``, the host-dns record, a container's /etc files,
aardvark-dns's pid file and helper, the CNI plugin executable). The new content goes to a temporary file
beside the target, ``.NAME.PID.tmp`` (hidden, so a reader of the directory that skips dot files, as
aardvark-dns's config reader does, never takes it for one of its own; named by the writer's pid, so two
processes never write the same temporary), created without following a symlink, given its mode whatever the
umask, then renamed over the target, which rename(2) does atomically. A temporary left by a writer killed
midway is removed by the next writer of the same pid, and by nothing else: it is a dot file no reader takes.

``durable``: the content and the rename are flushed to the disk (fsync(2) of the file before the rename and
of its directory after), so the new file survives a power cut, not only a crash of the writer. Only what a
person configured or installed needs it (``dnsd.options``, the aardvark-dns helper, the CNI plugin): the
rest describes a running process or is rebuilt by netcore after a reboot, and its writes stay off the disk's
critical path (a container's /etc files are written on every ``run``).
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False  # typing is not loaded: the CNI plugin pays for every import and reaches this module
if TYPE_CHECKING:
    from collections.abc import Iterator


def temporary_path(path: str) -> str:
    """The temporary a new version of ``path`` is written to: ``DIR/.NAME.PID.tmp``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(path: str, *, dir_fd: int | None = None, durable: bool = False) -> Iterator[str]:
    """Yield the temporary path for a new version of ``path``, which the block creates (any leftover of that
    name removed first); once the block ends, rename it over ``path``. If the block raises, the temporary is
    removed and ``path`` is left as it was. ``dir_fd``: both paths are relative to that directory (reached
    without following a symlink by the caller). OSError of the rename or of the syncing."""
    temporary = temporary_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary, dir_fd=dir_fd)
    try:
        yield temporary
        if durable:
            _sync(temporary, os.O_RDONLY, dir_fd)
        os.replace(temporary, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    if durable:
        _sync(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd)


def write_atomically(path: str, data: bytes | str, mode: int = 0o644, *, dir_fd: int | None = None,
                     durable: bool = False) -> None:
    """Replace the file at ``path`` (relative to ``dir_fd`` when given) with ``data`` (text: UTF-8) by rename,
    with permissions ``mode`` whatever the umask (see the module docstring, also for ``durable``). A
    symlink at ``path`` is replaced, never written through. OSError if it cannot be written."""
    if isinstance(data, str):
        data = data.encode()
    with replacing(path, dir_fd=dir_fd, durable=durable) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _sync(path: str, flags: int, dir_fd: int | None) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
