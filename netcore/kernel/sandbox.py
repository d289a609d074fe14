"""A container's files and processes: /etc/netns/<ns>/{resolv.conf,hosts}, and running commands inside.

`ip netns exec` bind-mounts the files of /etc/netns/<ns>/ over /etc in a private
mount namespace; `run_in` does the same with setns(2), unshare(2) and mount(2),
so the command sees the container's resolv.conf and hosts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import time

from netcore.errors import NetcoreError
from netcore.system import linux
from netcore.system.files import write_atomically

ETC_NETNS = "/etc/netns"


def etc_dir(namespace: str) -> str:
    return os.path.join(ETC_NETNS, namespace)


EMBEDDED_HEADER = "# written by netcore: the embedded DNS of each network this container joins"


def resolv_conf(nameservers: list[str], search: tuple[str, ...] = (), options: tuple[str, ...] = ("ndots:0",),
                header: str = EMBEDDED_HEADER) -> str:
    """A container's resolv.conf: ``header`` (a comment), a ``nameserver`` line each, ``search`` and
    ``options`` lines when there are any."""
    lines = [header]
    lines += [f"nameserver {ns}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_file(hostname: str, addresses: list[str], extra: list[tuple[str, str]] = ()) -> str:
    """A container's hosts file: localhost, each of ``addresses`` with ``hostname``, then each (address, host)
    of ``extra`` (``--add-host``, Compose's ``extra_hosts``), as Docker appends them."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{hostname}" for address in addresses]
    lines += [f"{address}\t{host}" for address, host in extra]
    return "\n".join(lines) + "\n"


def write_etc(namespace: str, resolv: str, hosts: str) -> None:
    """Write /etc/netns/<namespace>/{resolv.conf,hosts}, changing existing files in place.

    Processes already running in the container see these files through bind
    mounts (`exec`, `ip netns exec`), and a bind mount pins an inode: a file
    replaced by rename would leave them reading the old one forever
    (podman#11042). So an existing file keeps its inode (see ``rewrite_in_place``),
    and only a missing one is created, atomically, by rename.

    Nothing is written through a link (issue 24, item 6): ``/etc/netns`` and
    ``/etc/netns/<namespace>`` are opened without following a symlink, and
    every file is opened relative to that directory, so a symlinked directory
    is refused; a file with more than one hard link is refused too (writing
    it in place would change the other name's file). Refusals are one
    NetcoreError line; OSError if the directory cannot be written.
    """
    directory = _open_etc_dir(namespace)
    try:
        for name, text in (("hosts", hosts), ("resolv.conf", resolv)):  # the servers last: the names are there first
            if not rewrite_in_place(name, text.encode(), directory):
                write_atomically(name, text, 0o644, dir_fd=directory)  # a new file: whole or not at all
    finally:
        os.close(directory)


def _open_etc_dir(namespace: str) -> int:
    """A descriptor of the directory /etc/netns/<namespace>, made (0755) if missing, reached without following a
    symlink at ``/etc/netns`` or at ``<namespace>``. NetcoreError when either is a symlink or not a directory."""
    parent = os.open(os.path.dirname(ETC_NETNS) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in (os.path.basename(ETC_NETNS), namespace):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = os.path.join(ETC_NETNS, namespace) if name == namespace else ETC_NETNS
                raise NetcoreError(f"refusing to write {where}: it is a symbolic link or not a directory "
                                   "(netcore writes only into a directory of its own)") from None
            os.close(parent)
            parent = child
        return parent
    except BaseException:
        os.close(parent)
        raise


def rewrite_in_place(path: str, data: bytes, dir_fd: int | None = None) -> bool:
    """Give the regular file at ``path`` (relative to ``dir_fd`` when given) the content ``data`` without
    changing its inode; False if there is none (or a symlink is there: not ours to write through, it is
    replaced). NetcoreError for a file with more than one hard link: writing it would write the other's.

    One pwrite(2) of ``data`` padded with newlines to at least the old length,
    then ftruncate(2) to ``len(data)``: a reader sees the old content, the new
    content followed by blank lines (harmless in resolv.conf and hosts, and all
    a crash between the two calls leaves), or the new content, never a
    truncated or empty file. (A read that races the write's own copy into the
    page cache could mix old and new bytes, as with any in-place write; glibc
    then sees the stat change during its load and reads the file again on its
    next lookup.) Unchanged content is not written. The mtime always moves on
    a change, even within one tick of a coarse clock: glibc reloads
    resolv.conf only when its (inode, size, mtime, ctime) differ from what it
    last read. Raises OSError if the file cannot be written.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink: not ours to write through; replace it
            return False
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return False
        if before.st_nlink > 1:
            raise NetcoreError(f"refusing to write {path}: it has {before.st_nlink} hard links, and writing it "
                               "would change the file of another name")
        if before.st_size == len(data) and os.pread(fd, before.st_size + 1, 0) == data:
            return True
        padded = data + b"\n" * max(0, before.st_size - len(data))
        if os.pwrite(fd, padded, 0) != len(padded):
            raise OSError(errno.EIO, f"short write to {path}")
        os.ftruncate(fd, len(data))
        after = os.fstat(fd)
        if after.st_mtime_ns == before.st_mtime_ns:
            os.utime(fd, ns=(after.st_atime_ns, max(time.time_ns(), before.st_mtime_ns + 1_000)))
        if stat.S_IMODE(before.st_mode) != 0o644:
            os.fchmod(fd, 0o644)
        return True
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    """The text of the file at ``path`` (a resolv.conf: what the engine reads of the host), None if it cannot
    be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read(65536)
    except OSError:
        return None


def remove_etc(namespace: str) -> None:
    shutil.rmtree(etc_dir(namespace), ignore_errors=True)


def list_etc() -> list[str]:
    """The names under /etc/netns, sorted; [] when there is no such directory."""
    try:
        return sorted(os.listdir(ETC_NETNS))
    except FileNotFoundError:
        return []


def _enter(namespace: str | None) -> None:
    """In the child, before exec: join the network namespace and see its /etc files."""
    if namespace is None:
        return
    linux.enter_netns(namespace)
    directory = etc_dir(namespace)
    if os.path.islink(directory) or os.path.islink(ETC_NETNS) or not os.path.isdir(directory):
        return  # netcore's files are in a directory of its own; nothing is mounted through a symlink
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", linux.MS_REC | linux.MS_SLAVE)
    for name in os.listdir(directory):
        target = os.path.join("/etc", name)
        if os.path.islink(os.path.join(directory, name)):
            continue  # a mount would follow it
        if os.path.exists(target):
            linux.mount(os.path.join(directory, name), target, linux.MS_BIND)


def spawn(namespace: str | None, argv: list[str] | tuple[str, ...], output: int, env: dict[str, str],
          cwd: str = "/") -> subprocess.Popen:
    """Start ``argv`` inside ``namespace`` (None: this process's own) as ``run_in`` runs it (the container's
    /etc files mounted over /etc), detached: a session of its own, standard input from /dev/null, standard
    output and error to the file descriptor ``output``, environment ``env`` (PATH in it is where ``argv[0]``
    is looked up), working directory ``cwd``. Returns the Popen, whose pid is the command's own.

    NetcoreError, nothing left running, with Docker's exit codes: 127 when the command is not found, 126
    when it cannot be run, 125 when the namespace cannot be entered. (The child runs ``_enter`` between fork
    and exec: it imports nothing and takes no lock another thread could hold, so it is safe in netcored's
    threads.)"""
    if not argv:
        raise NetcoreError("no command given: use -- CMD [ARG...]", exit_code=125)
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env, cwd=cwd,
                                start_new_session=True, close_fds=True, preexec_fn=lambda: _enter(namespace))
    except FileNotFoundError:
        raise NetcoreError(f"exec: {argv[0]}: executable file not found in $PATH", exit_code=127) from None
    except PermissionError:
        raise NetcoreError(f"exec: {argv[0]}: permission denied", exit_code=126) from None
    except (subprocess.SubprocessError, OSError) as err:
        raise NetcoreError(f"cannot start {argv[0]} in the container's namespace {namespace}: {err}",
                           exit_code=125) from None


def run_in(namespace: str | None, argv: list[str]) -> int:
    """Run ``argv`` inside ``namespace`` (None: the host's) and return its exit status, as a shell would."""
    if not argv:
        raise NetcoreError("no command given: use -- CMD [ARG...]")
    try:
        proc = subprocess.run(argv, preexec_fn=lambda: _enter(namespace))
    except FileNotFoundError:
        raise NetcoreError(f"command not found: {argv[0]}", exit_code=127) from None
    except PermissionError:
        raise NetcoreError(f"cannot run {argv[0]}: permission denied", exit_code=126) from None
    except subprocess.SubprocessError as err:
        raise NetcoreError(f"cannot enter the container's namespace {namespace}: {err}", exit_code=125) from None
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode  # killed by a signal: 128+N
